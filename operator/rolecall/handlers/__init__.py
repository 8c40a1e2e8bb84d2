"""kopf handlers: decorators only. Each passes the watched body to a role's work queue and returns."""

from __future__ import annotations

import kopf

from rolecall.handlers import cacheserver


def register(registry: kopf.OperatorRegistry) -> None:
    cacheserver.register(registry)
