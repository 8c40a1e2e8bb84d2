"""nginx and Apache httpd through httpx: the status page's connection and request counts, and an app's user count.

Every probe opens a fresh connection with `Connection: close` (no keep-alive pool), so rolecall never
leaves an idle connection behind that a later probe would count; the probe's own connection is the one
connection each status page includes in its figure while it is being answered, and is subtracted.

What is counted (activeConnections), per engine:
- nginx `stub_status`: "Active connections" minus rolecall's probe. It counts every open client
  connection, live: idle keep-alive ("Waiting"), requests whose headers are still arriving ("Reading")
  and requests being answered ("Writing").
- Apache `mod_status?auto` (event MPM): the connections a worker holds now, from the live scoreboard
  (states R reading, W writing, K keep-alive read, D, C closing, L logging, G finishing), minus
  rolecall's probe, plus the connections parked in the listener (ConnsAsyncKeepAlive, ConnsAsyncWriting,
  ConnsAsyncClosing). Apache refreshes those async counters (and ConnsTotal) only when its listener
  sweeps a timeout queue, which can be minutes apart: measured on Apache 2.4.71, three idle keep-alive
  connections held for minutes under KeepAliveTimeout 300 never showed up in ConnsTotal or
  ConnsAsyncKeepAlive. So idle keep-alive connections count for Apache only as of its last sweep;
  in-flight requests always count. Without the event MPM there are no async counters and only
  worker-held connections count.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Protocol

import httpx

from rolecall.engines.base import Endpoint, EngineError

PROBE_CONNECTIONS = 1  # the status request's own connection, included by both engines while it is answered
USER_AGENT = "rolecall-probe/0.1"


@dataclass(frozen=True)
class WebFigures:
    active_connections: int  # client connections, rolecall's probe excluded
    requests: int  # requests served since the server started (status probes included)


class WebEngine(Protocol):
    default_status_path: str

    async def figures(self, ep: Endpoint, path: str) -> WebFigures:
        """Reads the status page at `path` and returns its figures, or raises EngineError saying why not."""


async def get(ep: Endpoint, path: str) -> str:
    """GET http://podIP:port/path on a fresh, non-keep-alive connection; the body, or EngineError."""
    url = f"http://{ep.ip}:{ep.port}{path}"
    try:
        async with httpx.AsyncClient(timeout=ep.timeout, trust_env=False,
                                     limits=httpx.Limits(max_keepalive_connections=0)) as client:
            resp = await client.get(url, headers={"Connection": "close", "User-Agent": USER_AGENT})
    except httpx.TimeoutException as e:
        raise EngineError(f"{path}: no answer within {ep.timeout:g}s") from e
    except httpx.HTTPError as e:
        raise EngineError(f"{path}: {type(e).__name__}: {e}".rstrip(": ")) from e
    if resp.status_code != 200:
        raise EngineError(f"{path} answered HTTP {resp.status_code} {resp.reason_phrase}".rstrip())
    return resp.text


_NGINX_ACTIVE = re.compile(r"^Active connections:\s*(\d+)", re.MULTILINE)
_NGINX_COUNTS = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", re.MULTILINE)


class Nginx:
    default_status_path = "/nginx_status"

    async def figures(self, ep: Endpoint, path: str) -> WebFigures:
        return parse_stub_status(await get(ep, path), path)


def parse_stub_status(text: str, path: str) -> WebFigures:
    active, counts = _NGINX_ACTIVE.search(text), _NGINX_COUNTS.search(text)
    if active is None or counts is None:
        raise EngineError(f"{path} is not an nginx stub_status page (is `stub_status;` enabled in that "
                          f"location?); it began {text[:60]!r}")
    return WebFigures(active_connections=max(0, int(active.group(1)) - PROBE_CONNECTIONS),
                      requests=int(counts.group(3)))


class Apache:
    default_status_path = "/server-status"

    async def figures(self, ep: Endpoint, path: str) -> WebFigures:
        return parse_mod_status(await get(ep, f"{path}?auto"), path)


# Scoreboard states in which a worker holds a client connection (see mod_status's legend).
_WORKER_HOLDS_CONNECTION = frozenset("RWKDCLG")
_ASYNC_COUNTERS = ("ConnsAsyncKeepAlive", "ConnsAsyncWriting", "ConnsAsyncClosing")


def parse_mod_status(text: str, path: str) -> WebFigures:
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    board = fields.get("Scoreboard")
    if board is None:
        raise EngineError(f"{path}?auto is not an Apache mod_status page (is `SetHandler server-status` set "
                          f"for that location?); it began {text[:60]!r}")
    try:
        parked = sum(int(fields.get(name, "0")) for name in _ASYNC_COUNTERS)
        requests = int(fields.get("Total Accesses", "0"))
    except ValueError as e:
        raise EngineError(f"{path}?auto: unreadable figure: {e}") from e
    held = sum(1 for state in board if state in _WORKER_HOLDS_CONNECTION)
    return WebFigures(active_connections=max(0, held - PROBE_CONNECTIONS) + parked, requests=requests)


async def app_users(ep: Endpoint, path: str, field: str) -> int:
    """The application's own user count: the number at dotted `field` of the JSON at `path`."""
    text = await get(ep, path)
    try:
        value: object = json.loads(text)
    except ValueError as e:
        raise EngineError(f"{path} did not answer JSON: {e}") from e
    for key in field.split("."):
        if not isinstance(value, dict) or key not in value:
            raise EngineError(f"{path}: the JSON has no field {field}")
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
        raise EngineError(f"{path}: {field} is {value!r}, not a whole number of users")
    return int(value)

