"""A selector that matches no pod, per kind: Degraded with reason NoTargetPods and the selector named, a
Warning Event, and `kubectl rolecall clear` on the cache exits non-zero with the reason; nothing is called
done."""

from __future__ import annotations

from typing import Any

from cachekit import cacheserver, condition, create_cs, events, status
from dbkit import SERVERS, sqlite_server, status_of
from dbkit import create as create_db
from harness import Cluster, Operator, wait_for
from pluginkit import rolecall, said
from webkit import create_web, web_status, webserver

TYPO = {"app": "memcahced"}


def _degraded(st: dict[str, Any]) -> dict[str, Any] | None:
    found = condition(st, "Degraded")
    return found if found.get("status") == "True" and found.get("reason") == "NoTargetPods" else None


def test_each_kind_with_a_mistyped_selector_shows_it_and_a_clear_exits_non_zero(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    operator.start()
    create_cs(local_bed, namespace, cacheserver("mc", "memcached", TYPO, statsIntervalSeconds=10))
    create_web(local_bed, namespace, webserver("web", "nginx", TYPO, refreshIntervalSeconds=10))
    create_db(local_bed, namespace, SERVERS, sqlite_server("db", TYPO, "/data/app.db"))
    for read in (lambda: status(local_bed, namespace, "mc"), lambda: web_status(local_bed, namespace, "web"),
                 lambda: status_of(local_bed, namespace, SERVERS, "db")):
        degraded = wait_for(lambda read=read: _degraded(read()), "Degraded NoTargetPods", 60)
        assert "spec.selector app=memcahced" in degraded["message"], degraded
    assert "NoTargetPods" in [e.reason for e in events(local_bed, namespace, "mc") if e.type == "Warning"]

    cleared = rolecall(local_bed, namespace, "clear", "cache/mc", "--timeout", "60s")
    assert cleared.returncode != 0 and "NoTargetPods" in cleared.stdout + cleared.stderr, said(cleared)
    last = status(local_bed, namespace, "mc")["lastRequest"]
    assert (last["outcome"], last["reason"]) == ("Failed", "NoTargetPods"), last
    assert "app=memcahced" in last["message"], last
