"""Redis through redis-py (asyncio): role from INFO replication, FLUSHALL, and INFO figures."""

from __future__ import annotations

from redis import asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError

from rolecall.engines.base import CacheFigures, Endpoint, EngineError, Role


def _client(ep: Endpoint) -> aioredis.Redis:
    creds = ep.credentials
    return aioredis.Redis(host=ep.ip, port=ep.port, socket_timeout=ep.timeout, socket_connect_timeout=ep.timeout,
                          username=creds.username if creds else None, password=creds.password if creds else None,
                          retry_on_timeout=False, single_connection_client=True)


def _fix(e: RedisError) -> str | None:
    """What a person must change when retrying FLUSHALL cannot help."""
    if isinstance(e, NoPermissionError):
        return "the Redis user may not run FLUSHALL (ACL): grant it (ACL SETUSER <user> +flushall)"
    if isinstance(e, AuthenticationError):
        return "Redis refuses the credentials: point spec.credentialsSecretRef at the right password"
    if isinstance(e, ResponseError) and "unknown command" in str(e).lower():
        return "FLUSHALL is renamed or disabled in this Redis (rename-command): rolecall cannot clear it"
    return None


class Redis:
    default_port = 6379

    async def role(self, ep: Endpoint) -> Role:
        async with _client(ep) as r:
            try:
                info = await r.info("replication")
            except RedisError as e:
                raise EngineError(f"redis INFO replication: {e}") from e
        return "replica" if info.get("role") == "slave" else "primary"

    async def clear(self, ep: Endpoint) -> str:
        async with _client(ep) as r:
            try:
                # READONLY (replica), NOPERM (ACL), unknown command (renamed) and auth errors all raise.
                ok = await r.flushall()
            except RedisError as e:
                raise EngineError(f"redis: {e}", fix=_fix(e)) from e
        if ok is not True:
            raise EngineError(f"redis FLUSHALL answered {ok!r}")
        return "FLUSHALL: OK"

    async def figures(self, ep: Endpoint) -> CacheFigures:
        async with _client(ep) as r:
            try:
                info = await r.info("all")
            except RedisError as e:
                raise EngineError(f"redis INFO: {e}") from e
        keys = sum(int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))
        return CacheFigures(items=keys, bytes=int(info.get("used_memory_dataset", info.get("used_memory", 0))),
                            hits=int(info.get("keyspace_hits", 0)), misses=int(info.get("keyspace_misses", 0)),
                            evictions=int(info.get("evicted_keys", 0)))
