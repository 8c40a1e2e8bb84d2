"""The status-page parsers: the figures rolecall reports for each engine, and readable refusals."""

from __future__ import annotations

import pytest

from rolecall.engines.base import EngineError
from rolecall.engines.web import parse_mod_status, parse_stub_status

STUB_STATUS = ("Active connections: 7 \nserver accepts handled requests\n 120 120 348 \n"
               "Reading: 1 Writing: 2 Waiting: 4 \n")

MOD_STATUS = """127.10.0.5
ServerVersion: Apache/2.4.71 (Debian)
ServerMPM: event
Total Accesses: 42
BusyWorkers: 4
IdleWorkers: 96
ConnsTotal: 0
ConnsAsyncWriting: 1
ConnsAsyncKeepAlive: 3
ConnsAsyncClosing: 0
Scoreboard: __RW_R_K_C.....
"""


def test_nginx_counts_every_open_connection_but_the_probe() -> None:
    figures = parse_stub_status(STUB_STATUS, "/nginx_status")
    assert figures.active_connections == 6 and figures.requests == 348


def test_apache_counts_worker_held_connections_but_the_probe_plus_parked_ones() -> None:
    # Workers holding a connection: R W R K C = 5, one of them rolecall's probe; parked: 1 + 3 + 0.
    figures = parse_mod_status(MOD_STATUS, "/server-status")
    assert figures.active_connections == 4 + 4 and figures.requests == 42


def test_apache_without_event_mpm_counters_counts_workers_only() -> None:
    text = "Total Accesses: 3\nBusyWorkers: 2\nScoreboard: _W_R__\n"
    assert parse_mod_status(text, "/server-status").active_connections == 1


@pytest.mark.parametrize(("parse", "text", "phrase"), [
    (parse_stub_status, "ok\n", "/nginx_status is not an nginx stub_status page (is `stub_status;` enabled"),
    (parse_stub_status, "<html>Welcome to nginx</html>", "is not an nginx stub_status page"),
    (parse_mod_status, "<html>It works</html>", "/server-status?auto is not an Apache mod_status page"),
    (parse_mod_status, "Scoreboard: __W\nConnsAsyncKeepAlive: lots\n", "unreadable figure"),
])
def test_a_page_that_is_not_a_status_page_is_refused_readably(parse: object, text: str, phrase: str) -> None:
    path = "/nginx_status" if parse is parse_stub_status else "/server-status"
    with pytest.raises(EngineError) as err:
        parse(path=path, text=text)  # type: ignore[operator]
    assert phrase in str(err.value)
