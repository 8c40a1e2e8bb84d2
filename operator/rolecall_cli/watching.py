"""`status -w`: the table redrawn on watch events of the four kinds (one watch per kind in a thread, no
polling). On a terminal the table is redrawn in place; otherwise each change prints the whole table again
after a blank line, so a pipe or a log file gets every state."""

from __future__ import annotations

import queue
import threading
from typing import Any

from rich.console import Console
from rich.live import Live

from rolecall.api.kinds import KINDS, Kind
from rolecall_cli import views
from rolecall_cli.cluster import Cluster, Gone

RESTART_SECONDS = 300  # one watch call; each thread watches again from its last resourceVersion (a list
# afresh only when that is too old)


def _watch_kind(cluster: Cluster, kind: Kind, name: str | None, all_ns: bool, rv: str | None,
                out: queue.Queue[tuple[str, Kind, dict[str, Any]] | BaseException]) -> None:
    try:
        while True:
            try:
                for event, obj in cluster.watch(kind, name, rv, RESTART_SECONDS, all_namespaces=all_ns):
                    rv = obj["metadata"].get("resourceVersion", rv)
                    out.put((event, kind, obj))
            except Gone:  # too old: list afresh (objects deleted meanwhile leave the table)
                items, rv = cluster.list_of(kind, all_ns)
                out.put(("RELIST", kind, {"items": [o for o in items if name is None or
                                                    o["metadata"]["name"] == name]}))
    except BaseException as e:
        out.put(e)


def watch(cluster: Cluster, kinds: list[Kind], name: str | None, all_ns: bool, console: Console) -> None:
    """Runs until Ctrl-C (or a watch fails)."""
    objects: dict[tuple[int, str, str], tuple[Kind, dict[str, Any]]] = {}  # (kind's place in KINDS, ns, name)
    events: queue.Queue[tuple[str, Kind, dict[str, Any]] | BaseException] = queue.Queue()
    for kind in kinds:
        items, rv = cluster.list_of(kind, all_ns)
        for obj in items:
            if name is None or obj["metadata"]["name"] == name:
                objects[(KINDS.index(kind), obj["metadata"]["namespace"], obj["metadata"]["name"])] = (kind, obj)
        threading.Thread(target=_watch_kind, args=(cluster, kind, name, all_ns, rv, events), daemon=True).start()

    def render() -> Any:
        return views.table([views.row(k, o, all_ns) for k, o in (objects[key] for key in sorted(objects))])

    live = console.is_terminal
    with Live(render(), console=console, auto_refresh=False) if live else _Printer(console, render) as screen:
        while True:
            item = events.get()
            if isinstance(item, BaseException):
                raise item
            event, kind, obj = item
            if event == "RELIST":
                for key in [k for k in objects if k[0] == KINDS.index(kind)]:
                    del objects[key]
                items = obj["items"]
            else:
                items = [obj]
            for o in items:
                key = (KINDS.index(kind), o["metadata"]["namespace"], o["metadata"]["name"])
                if event == "DELETED":
                    objects.pop(key, None)
                else:
                    objects[key] = (kind, o)
            screen.update(render(), refresh=True)


class _Printer:
    """Live's interface for a console that is not a terminal: every update prints the table again."""

    def __init__(self, console: Console, render: Any) -> None:
        self.console, self.render = console, render

    def __enter__(self) -> _Printer:
        self.console.print(self.render())
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def update(self, table: Any, refresh: bool = True) -> None:
        self.console.print()
        self.console.print(table)
