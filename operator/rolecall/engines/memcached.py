"""memcached through pymemcache: flush_all with the reply read (never noreply), and stats."""

from __future__ import annotations

import asyncio

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

from rolecall.engines.base import CacheFigures, Endpoint, EngineError, Role


def _client(ep: Endpoint) -> Client:
    return Client((ep.ip, ep.port), connect_timeout=ep.timeout, timeout=ep.timeout)


class Memcached:
    default_port = 11211

    async def role(self, ep: Endpoint) -> Role:
        return "primary"  # memcached has no replication: every pod holds its own items

    async def clear(self, ep: Endpoint) -> str:
        def flush() -> str:
            c = _client(ep)
            try:
                # noreply=False: pymemcache's default noreply=True sends the command blind and cannot
                # tell that memcached -F answered "CLIENT_ERROR flush_all not allowed".
                if not c.flush_all(noreply=False):
                    raise EngineError("flush_all was not acknowledged")
                return "flush_all: OK"
            except MemcacheError as e:
                disabled = "flush_all not allowed" in str(e)
                raise EngineError(f"memcached: {e}".strip(), fix="memcached runs with -F (flush_all disabled): "
                                                                "start it without -F" if disabled else None) from e
            except OSError as e:
                raise EngineError(f"memcached at {ep.ip}:{ep.port} unreachable: {e.strerror or e}") from e
            finally:
                c.close()

        return await asyncio.to_thread(flush)

    async def figures(self, ep: Endpoint) -> CacheFigures:
        def stats() -> CacheFigures:
            c = _client(ep)
            try:
                s = c.stats()
            except (MemcacheError, OSError) as e:
                raise EngineError(f"memcached stats: {e}") from e
            finally:
                c.close()
            return CacheFigures(items=int(s.get(b"curr_items", 0)), bytes=int(s.get(b"bytes", 0)),
                                hits=int(s.get(b"get_hits", 0)), misses=int(s.get(b"get_misses", 0)),
                                evictions=int(s.get(b"evictions", 0)))

        return await asyncio.to_thread(stats)
