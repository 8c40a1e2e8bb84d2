"""Engine clients: one module per engine, each a small typed interface over a maintained library."""

from rolecall.engines.base import CacheEngine, Credentials, Endpoint, EngineError
from rolecall.engines.memcached import Memcached
from rolecall.engines.redis import Redis

CACHE_ENGINES: dict[str, CacheEngine] = {"memcached": Memcached(), "redis": Redis()}

__all__ = ["CACHE_ENGINES", "CacheEngine", "Credentials", "Endpoint", "EngineError"]
