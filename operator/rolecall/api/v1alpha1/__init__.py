"""rolecall.dev/v1alpha1 kinds."""

from rolecall.api.v1alpha1.cacheserver import CacheServer, CacheServerSpec, CacheServerStatus
from rolecall.api.v1alpha1.webserver import WebServer, WebServerSpec, WebServerStatus

__all__ = ["CacheServer", "CacheServerSpec", "CacheServerStatus", "WebServer", "WebServerSpec", "WebServerStatus"]
