"""CacheServer: clear, stop, start and watch memcached and Redis servers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rolecall.api.types import Model, SecretKeyRef
from rolecall.api.v1alpha1.common import (
    STOP_NEEDS_WORKLOAD,
    WINDOWS_NEED_WORKLOAD,
    RequestLimits,
    RequestTime,
    RoleStatus,
    ScheduleSpec,
    StopSpec,
    TargetsSpec,
    Waves,
)

CLEAR_ANNOTATION = "rolecall.dev/clear-requested-at"


class CacheServerSpec(TargetsSpec, StopSpec, RequestLimits):
    """The desired state of a cache role: what it runs on, whether it is stopped, when it was cleared."""

    engine: Literal["memcached", "redis"] = Field(description="The cache engine: memcached or redis.")
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="The engine's port on each pod (default: 11211 memcached, 6379 redis).")
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Redis AUTH credentials (password, optional ACL user) from a Secret in this "
                                  "namespace.")
    cleared_after: RequestTime | None = Field(
        default=None,
        description="The cache has been cleared at or after this time. If the last completed clear is older "
                    "(or none happened), every target is cleared once; a future time waits until then. "
                    "Re-applying the same value never clears again.")
    clear_schedule: ScheduleSpec | None = Field(
        default=None,
        description="Clear on a schedule: each slot clears every target once, like a clear-requested-at token "
                    "set at that time. Setting or changing it is a clear request (admission checks the right); "
                    "before each slot runs, the recorded clear requester must still hold it.")
    clear_waves: Waves | None = Field(
        default=None,
        description="Clear in waves: size pods (a number or a percentage), then pauseSeconds, then the next "
                    "wave; within a wave at most concurrency at once. Status shows the pause (Reconciling, reason "
                    "WaitingForWave). Failed pods are retried afterwards, all in one pass.")
    stats_interval_seconds: int = Field(
        default=60, ge=10, le=86400,
        description="How often aggregated stats are refreshed in status (written only when they change).")


class CacheStats(Model):
    items: int | None = Field(default=None, description="Items (memcached curr_items, Redis keys) over targets.")
    bytes: int | None = Field(default=None, description="Memory used by cached data, summed over targets.")
    hit_ratio: str | None = Field(default=None, description="Hits / (hits + misses), as a percentage.")
    evictions: int | None = Field(default=None, description="Evictions summed over targets.")
    updated_at: str | None = Field(default=None, description="When these figures were read.")


class CacheServerStatus(RoleStatus):
    last_cleared_at: str | None = Field(default=None, description="When the last clear completed on every target.")
    last_handled_clear_request: str | None = Field(
        default=None, description=f"The last {CLEAR_ANNOTATION} value handled, copied verbatim.")
    stats: CacheStats | None = Field(default=None, description="Aggregated cache statistics.")


class CacheServer(Model):
    """A cache role (memcached or Redis pods) with a declarative clear, stop and start."""

    spec: CacheServerSpec
    status: CacheServerStatus | None = None


SPEC_RULES = [STOP_NEEDS_WORKLOAD, WINDOWS_NEED_WORKLOAD]
