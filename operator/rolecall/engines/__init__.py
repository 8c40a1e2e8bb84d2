"""Engine clients: one module per engine, each a small typed interface over a maintained library."""

from rolecall.engines.base import CacheEngine, Credentials, Endpoint, EngineError
from rolecall.engines.database import DatabaseEngine
from rolecall.engines.memcached import Memcached
from rolecall.engines.postgres import Postgres
from rolecall.engines.redis import Redis
from rolecall.engines.sqlite import Sqlite

# One registry per role family: a new engine is a module here and a name in the spec's enum.
CACHE_ENGINES: dict[str, CacheEngine] = {"memcached": Memcached(), "redis": Redis()}
DATABASE_ENGINES: dict[str, DatabaseEngine] = {"postgresql": Postgres(), "sqlite": Sqlite()}

__all__ = ["CACHE_ENGINES", "DATABASE_ENGINES", "CacheEngine", "Credentials", "DatabaseEngine", "Endpoint",
           "EngineError"]
