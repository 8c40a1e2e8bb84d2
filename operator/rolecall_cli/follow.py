"""Following a request until the operator acknowledges it: watch events on the one object (no polling),
a progress bar on stderr, failures named as they happen, and an exit code from the recorded outcome.

Every wait ends in one of three ways: the check says the request ended; --timeout passes (with what the
status says: never accepted means no operator acknowledged it); or Ctrl-C (the request keeps running).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rolecall.api.kinds import Kind
from rolecall_cli.cluster import Cluster
from rolecall_cli.exits import Exit, ExitCode

err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
WATCH_SECONDS = 55  # one watch call; the loop re-watches from the last resourceVersion until --timeout


@dataclass
class Ended:
    code: ExitCode
    message: str


@dataclass
class Step:
    """What the status says about the request now: ended, or its progress (done of total) so far."""

    ended: Ended | None = None
    accepted: bool = False
    done: int = 0
    total: int | None = None
    failures: list[str] = field(default_factory=list)  # "pod: why", named once each
    note: str = ""


Check = Callable[[dict[str, Any]], Step]


def follow(cluster: Cluster, kind: Kind, obj: dict[str, Any], what: str, check: Check, timeout: float,
           follow_hint: str) -> Ended:
    """Watches `obj` (as the write returned it) until `check` says the request ended, or --timeout."""
    deadline = time.monotonic() + timeout
    name = obj["metadata"]["name"]
    named: set[str] = set()
    last = Step()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[note]}"), console=err, transient=False) as bar:
        task = bar.add_task(what, total=None, note="waiting for the operator")

        def seen(o: dict[str, Any]) -> Step:
            step = check(o)
            for failure in step.failures:
                if failure not in named:
                    named.add(failure)
                    bar.console.print(f"failed: {failure}")
            note = step.note or ("" if step.accepted else "waiting for the operator")
            bar.update(task, total=step.total, completed=step.done, note=note)
            return step

        last = seen(obj)
        rv = obj["metadata"].get("resourceVersion")
        try:
            last = _until_ended(cluster, kind, name, rv, deadline, seen, last)
        except KeyboardInterrupt:
            raise Exit(ExitCode.INTERRUPTED, f"interrupted: the request keeps running (the operator carries it "
                                             f"out). Follow it with: {follow_hint}") from None
    if last.ended is not None:
        return last.ended
    if not last.accepted:
        raise Exit(ExitCode.TIMED_OUT,
                   f"no operator acknowledged the request within {timeout:g}s: is the rolecall operator running "
                   "(kubectl get pods -A -l app.kubernetes.io/name=rolecall)? The request stays recorded and is "
                   f"carried out when an operator starts; follow it with: {follow_hint}")
    progress = f"{last.done} of {last.total} done" if last.total is not None else last.note
    raise Exit(ExitCode.TIMED_OUT, f"still running after {timeout:g}s ({progress}); it goes on. Follow it with: "
                                   f"{follow_hint}")


def _until_ended(cluster: Cluster, kind: Kind, name: str, rv: str | None, deadline: float,
                 seen: Callable[[dict[str, Any]], Step], last: Step) -> Step:
    while last.ended is None:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for kind_of_event, o in cluster.watch(kind, name, rv, min(left, WATCH_SECONDS)):
            if kind_of_event == "DELETED":
                raise Exit(ExitCode.TARGETS_FAILED, f"{kind.kind} {name} was deleted while waiting")
            rv = o["metadata"].get("resourceVersion", rv)
            last = seen(o)
            if last.ended is not None or time.monotonic() >= deadline:
                break
        else:  # the watch ended by itself (its time, or 410 Gone): start again from a fresh read
            o = cluster.get(kind, name)
            rv = o["metadata"].get("resourceVersion")
            last = seen(o)
    return last
