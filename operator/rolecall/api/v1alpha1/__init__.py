"""rolecall.dev/v1alpha1 kinds."""

from rolecall.api.v1alpha1.cacheserver import CacheServer, CacheServerSpec, CacheServerStatus

__all__ = ["CacheServer", "CacheServerSpec", "CacheServerStatus"]
