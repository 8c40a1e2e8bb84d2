"""`kubectl rolecall` at a terminal: a destructive verb asks first (under a real pseudo-terminal) and
--yes does not; `status -w` redraws on watch events; Ctrl-C during a wait leaves the request running and
says how to follow it."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from kubernetes import client  # type: ignore[import-untyped]

from cachekit import (
    annotate_clear,
    cacheserver,
    cmd_flush,
    create_cs,
    create_pods,
    get_cs,
    pod_ips,
    standin_pod,
    status,
    wait_handled,
    wait_memcached,
)
from dbkit import MAINTENANCES, pg, pg_pods, pg_scalar, pg_server, seed_events
from dbkit import create as create_db
from harness import Cluster, Operator, running_pods, wait_for
from pluginkit import PLUGIN_BIN, plugin_env, popen

CLEAR_TOKEN = "rolecall.dev/clear-requested-at"


def _cache(cluster: Cluster, ns: str, operator: Operator | None, pods: int = 2) -> list[str]:
    create_pods(cluster, ns, [standin_pod(f"mc-{i}", "memcached", {"app": "mc"}) for i in range(pods)])
    running_pods(cluster, ns, "app=mc", pods)
    ips = [ip for _, ip in sorted(pod_ips(cluster, ns, "app=mc").items())]
    wait_memcached(ips)
    if operator is not None:
        operator.start()
    create_cs(cluster, ns, cacheserver("mc", "memcached", {"app": "mc"}))
    if operator is not None:
        wait_for(lambda: status(cluster, ns, "mc").get("phase") == "Running", "Running", 60)
    return ips


def _at_a_terminal(cluster: Cluster, ns: str, answer: str | None, *args: str,
                   before_answer: Callable[[], None] = lambda: None) -> tuple[int, str]:
    """Runs the plugin with a pseudo-terminal as stdin and stderr (where the question goes), as a person at a
    terminal does; answers `answer` once the question appears (after `before_answer`, a person taking their
    time). Returns the exit code and what the terminal showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(PLUGIN_BIN / "kubectl-rolecall"), "-n", ns, *args], env=plugin_env(cluster),
                            stdin=slave, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    answered = answer is None
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal (it exited)
                    break
                shown += chunk
                if not answered and b"[y/N]" in shown:
                    before_answer()
                    os.write(master, answer.encode() + b"\n")  # type: ignore[union-attr]
                    answered = True
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
    finally:
        proc.kill()
        os.close(master)
    assert answered, f"no question within 90s; the terminal showed: {shown!r}"
    return proc.returncode, shown.decode(errors="replace")


def test_a_clear_at_a_terminal_asks_first_and_yes_does_not(local_bed: Cluster, namespace: str,
                                                           operator: Operator) -> None:
    ips = _cache(local_bed, namespace, operator)
    code, said = _at_a_terminal(local_bed, namespace, "n", "clear", "cache/mc", "--timeout", "60s")
    assert code == 2 and "not confirmed: nothing was requested" in said, said
    assert "clear cache/mc in " + namespace + "? a real run would act on 2 pods: mc-0, mc-1." in said, said
    assert CLEAR_TOKEN not in (get_cs(local_bed, namespace, "mc")["metadata"].get("annotations") or {})
    assert [cmd_flush(ip) for ip in ips] == [0, 0]

    code, said = _at_a_terminal(local_bed, namespace, "y", "clear", "cache/mc", "--timeout", "60s")
    assert code == 0, said
    assert [cmd_flush(ip) for ip in ips] == [1, 1]

    code, said = _at_a_terminal(local_bed, namespace, None, "clear", "cache/mc", "--yes", "--timeout", "60s")
    assert code == 0 and "[y/N]" not in said, said
    assert [cmd_flush(ip) for ip in ips] == [2, 2]


def test_a_purge_at_a_terminal_deletes_what_its_plan_counted_though_the_clock_moved_on(
        local_bed: Cluster, namespace: str, operator: Operator) -> None:
    """A yes runs the purge pinned to the cut-off its dry run recorded: a row just newer than that cut-off, which
    an olderThan recomputed when the person answered would have taken, stays; the rows counted go."""
    ip = pg_pods(local_bed, namespace, ["pg-0"])["pg-0"]
    seed_events(ip)  # 30 rows older than 30 days, 20 newer
    operator.start()
    create_db(local_bed, namespace, "databaseservers", pg_server("db", {"app": "pg"}))
    api = client.CustomObjectsApi(local_bed.api_client)
    planned: list[str] = []

    def think_it_over() -> None:
        (plan,) = api.list_namespaced_custom_object("rolecall.dev", "v1alpha1", namespace, MAINTENANCES)["items"]
        planned.append(plan["status"]["operations"][0]["cutoff"])
        with pg(ip) as conn:
            conn.execute("INSERT INTO events (created_at, payload) VALUES (%s::timestamptz + interval '1 second', "
                         "'edge')", (planned[0],))
        wait_for(lambda: pg_scalar(ip, "SELECT now() - interval '30 days' > created_at FROM events "
                                       "WHERE payload = 'edge'"), "30 days after the edge row to pass", 10)

    code, said = _at_a_terminal(local_bed, namespace, "y", "purge", "db/db", "--table", "events", "--column",
                                "created_at", "--older-than", "30d", "--timeout", "90s", before_answer=think_it_over)
    assert code == 0 and "30 rows older than" in said and "30 rows deleted" in said, said
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE payload = 'old'") == 0
    assert pg_scalar(ip, "SELECT count(*) FROM events WHERE payload IN ('new', 'edge')") == 21
    made = api.list_namespaced_custom_object("rolecall.dev", "v1alpha1", namespace, MAINTENANCES)["items"]
    specs = sorted(((m["spec"]["dryRun"], m["spec"]["operations"][0]["clearOldData"]) for m in made),
                   key=lambda pair: pair[0])
    assert [dry for dry, _ in specs] == [False, True], specs
    assert specs[0][1].get("cutoff") == planned[0] and "olderThan" not in specs[0][1], specs
    assert specs[1][1].get("olderThan") == "30d", specs


def test_status_watch_redraws_on_events_and_ctrl_c_ends_it(local_bed: Cluster, namespace: str,
                                                           operator: Operator) -> None:
    _cache(local_bed, namespace, operator)
    proc = popen(local_bed, namespace, "status", "-w")
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(lambda: any(line.startswith("cache/mc ") for line in lines), "the first table", 30)
        annotate_clear(local_bed, namespace, "mc", "w1")
        wait_handled(local_bed, namespace, "mc", "w1", 60)
        rows = lambda: [line for line in lines if line.startswith("cache/mc ")]  # noqa: E731
        wait_for(lambda: any("Clearing" in r for r in rows()), "a redraw while the clear ran", 30)
        wait_for(lambda: "clear Succeeded" in rows()[-1], "a redraw once it ended", 30)
        assert len(rows()) >= 3, lines  # the first table, and one per change since
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130


def test_ctrl_c_during_a_wait_leaves_the_request_running(local_bed: Cluster, namespace: str,
                                                         operator: Operator) -> None:
    ips = _cache(local_bed, namespace, None, pods=1)  # no operator yet: the wait cannot end by itself
    proc = popen(local_bed, namespace, "clear", "cache/mc", "--timeout", "120s")
    try:
        token = wait_for(lambda: (get_cs(local_bed, namespace, "mc")["metadata"].get("annotations") or {})
                         .get(CLEAR_TOKEN), "the request written", 30)
        time.sleep(1)  # inside the wait, not in the write
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "the request keeps running" in stderr and "status cache/mc -w" in stderr, stderr
    assert "Traceback" not in stderr
    operator.start()
    wait_handled(local_bed, namespace, "mc", token, 60)
    assert cmd_flush(ips[0]) == 1
