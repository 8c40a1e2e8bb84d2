"""Engine clients: one module per engine, each a small typed interface over a maintained library.

One registry per role family maps the engine names a spec may use to their clients. A client's module (and
so its library: psycopg, httpx, redis-py, pymemcache) is imported the first time a resource of that engine
needs it, so an operator that never meets a PostgreSQL or a web server holds none of their drivers
(psycopg, httpx and redis-py together are ~20 MiB of RSS once imported).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from rolecall.engines.base import CacheEngine, Credentials, Endpoint, EngineError
from rolecall.engines.database import DatabaseEngine

if TYPE_CHECKING:
    from rolecall.engines.web import WebEngine

E = TypeVar("E")


class Registry(Mapping[str, E]):
    """Engines by name, each built from "module:Class" on first use."""

    def __init__(self, where: dict[str, str]) -> None:
        self._where = where
        self._loaded: dict[str, E] = {}

    def __getitem__(self, name: str) -> E:
        if name not in self._loaded:
            module, _, cls = self._where[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), cls)()
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


# A new engine is a module here and a name in the spec's enum: roles never branch on an engine's name.
CACHE_ENGINES: Registry[CacheEngine] = Registry({"memcached": "rolecall.engines.memcached:Memcached",
                                                  "redis": "rolecall.engines.redis:Redis"})
DATABASE_ENGINES: Registry[DatabaseEngine] = Registry({"postgresql": "rolecall.engines.postgres:Postgres",
                                                        "sqlite": "rolecall.engines.sqlite:Sqlite"})
WEB_ENGINES: Registry[WebEngine] = Registry({"nginx": "rolecall.engines.web:Nginx",
                                              "apache": "rolecall.engines.web:Apache"})


async def app_users(ep: Endpoint, path: str, field: str) -> int:
    """The application's own user count (engines/web.py), its HTTP client loaded on first use."""
    web: Any = importlib.import_module("rolecall.engines.web")
    return int(await web.app_users(ep, path, field))


__all__ = ["CACHE_ENGINES", "DATABASE_ENGINES", "WEB_ENGINES", "CacheEngine", "Credentials", "DatabaseEngine",
           "Endpoint", "EngineError", "Registry", "app_users"]
