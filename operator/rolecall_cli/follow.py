"""Following a request until the operator acknowledges it: watch events on the one object (no polling),
a progress bar on stderr, failures named as they happen, and an exit code from the recorded outcome.

A wait ends when the check says the request ended; when --timeout passes (saying what status shows:
never accepted means no operator acknowledged it); on Ctrl-C (the request keeps running); or when the
object is deleted or the API fails (the request, once written, still stands).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rolecall.api.kinds import Kind
from rolecall_cli.cluster import Cluster, Gone
from rolecall_cli.exits import Exit, ExitCode

err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
WATCH_SECONDS = 55  # one watch call; the loop watches again, from a fresh read, until --timeout


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


class Deleted(Exit):
    """The object went away while waiting: its request went with it."""


def follow(cluster: Cluster, kind: Kind, obj: dict[str, Any], what: str, check: Check, timeout: float,
           follow_hint: str, *, interrupted: str | None = None) -> Ended:
    """Watches `obj` (as the write returned it) until `check` says the request ended, or --timeout.
    `interrupted`: what Ctrl-C says (default: the request keeps running, and how to follow it)."""
    deadline = time.monotonic() + timeout
    named: set[str] = set()
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

        try:
            last = _until_ended(cluster, kind, obj, deadline, seen)
        except KeyboardInterrupt:
            raise Exit(ExitCode.INTERRUPTED, interrupted or f"interrupted: the request keeps running (the operator "
                                                            f"carries it out). Follow it with: {follow_hint}") from None
        except Deleted:
            raise
        except Exit as e:  # the API failed or refused the watch: the request, once written, still stands
            raise Exit(e.code, f"{e.message}. The request was written and stands; follow it with: "
                               f"{follow_hint}") from None
    if last.ended is not None:
        return last.ended
    if not last.accepted:
        raise Exit(ExitCode.TIMED_OUT,
                   f"no operator acknowledged the request within {timeout:g}s: is the rolecall operator running "
                   "(kubectl get pods -A -l app.kubernetes.io/name=rolecall)? The request stays recorded and is "
                   f"carried out when an operator starts; follow it with: {follow_hint}")
    progress = f"{last.done} of {last.total} done" if last.total is not None else last.note
    raise Exit(ExitCode.TIMED_OUT, f"not ended after {timeout:g}s ({progress}); the operator goes on with it. "
                                   f"Follow it with: {follow_hint}")


def _until_ended(cluster: Cluster, kind: Kind, obj: dict[str, Any], deadline: float,
                 seen: Callable[[dict[str, Any]], Step]) -> Step:
    name = obj["metadata"]["name"]
    last = seen(obj)
    rv = obj["metadata"].get("resourceVersion")
    while last.ended is None and (left := deadline - time.monotonic()) > 0:
        try:
            for event, o in cluster.watch(kind, name, rv, min(left, WATCH_SECONDS)):
                if event == "DELETED":
                    raise Deleted(ExitCode.API, f"{kind.kind} {name} was deleted while waiting")
                rv = o["metadata"].get("resourceVersion", rv)
                last = seen(o)
                if last.ended is not None or time.monotonic() >= deadline:
                    return last
        except Gone:
            pass
        # The watch ended (its time, 410 Gone, a silent connection): read afresh, then watch from there.
        o = cluster.get(kind, name)
        rv = o["metadata"].get("resourceVersion")
        last = seen(o)
    return last
