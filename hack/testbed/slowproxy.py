"""A stand-in that is slow to flush: runs a real server on a side port and proxies the pod's port to it,
holding each client chunk that contains a flush command for --delay seconds (test bed only).

  python -m testbed.slowproxy --listen IP:PORT --upstream-port P --delay S -- <server argv...>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys

FLUSH_COMMANDS = (b"flush_all", b"FLUSHALL", b"flushall")


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            if delay and any(c in data for c in FLUSH_COMMANDS):
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    writer.close()


async def serve(host: str, port: int, upstream: tuple[str, int], delay: float) -> None:
    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(*upstream)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, uw, delay), pipe(ur, cw, 0))

    server = await asyncio.start_server(handle, host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--delay", type=float, default=1.0)
    p.add_argument("server", nargs=argparse.REMAINDER)
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    argv = a.server[1:] if a.server[:1] == ["--"] else a.server
    child = subprocess.Popen(argv)
    signal.signal(signal.SIGTERM, lambda *_: (child.terminate(), sys.exit(0)))
    try:
        asyncio.run(serve(host, int(port), (host, a.upstream_port), a.delay))
    finally:
        child.terminate()


if __name__ == "__main__":
    main()
