"""What every engine client offers, and how it reports failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


class EngineError(Exception):
    """The engine refused or failed an action; the message is the engine's own answer, for status.

    `answered` is True when the engine itself answered with an error (a PostgreSQL SQLSTATE, sqlite3's own
    exit code): the statement certainly did not take effect. False: the answer was lost (a broken connection,
    an exec that did not finish), so whether it took effect is unknown.

    `fix` is set when retrying cannot help (memcached -F, a Redis ACL, a missing table, wrong credentials): what
    a person has to change, for the Stalled message."""

    def __init__(self, message: str, answered: bool = True, fix: str | None = None) -> None:
        super().__init__(message)
        self.answered = answered
        self.fix = fix


@dataclass(frozen=True)
class Credentials:
    password: str
    username: str | None = None

    def __repr__(self) -> str:  # never let a password reach a log line or status
        return f"Credentials(username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True)
class Endpoint:
    """Where one pod's engine listens: always the Pod object's own status.podIP."""

    ip: str
    port: int
    timeout: float
    credentials: Credentials | None = None


@dataclass
class CacheFigures:
    items: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0


Role = Literal["primary", "replica"]


class CacheEngine(Protocol):
    default_port: int

    async def role(self, ep: Endpoint) -> Role:
        """primary when writes (and so clears) are accepted; a replica follows its primary anyway."""

    async def clear(self, ep: Endpoint) -> str:
        """Removes every item; returns the engine's acknowledgement or raises EngineError."""

    async def figures(self, ep: Endpoint) -> CacheFigures:
        """Items, bytes, hits, misses and evictions as the engine counts them."""
