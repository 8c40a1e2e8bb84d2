"""KIND/NAME references as people type them (cache/web, cacheserver, cacheservers, dbm, ...), resolved
against the kinds rolecall.api defines: no kind, plural or short name is spelled here."""

from __future__ import annotations

from dataclasses import dataclass

from rolecall.api.kinds import KINDS, Kind
from rolecall_cli.exits import Exit, ExitCode


def _names(kind: Kind) -> set[str]:
    return {kind.kind.lower(), kind.plural, *kind.short_names,
            f"{kind.plural}.{kind.group}", f"{kind.kind.lower()}.{kind.group}"}


def kind_named(word: str) -> Kind:
    for kind in KINDS:
        if word.lower() in _names(kind):
            return kind
    known = ", ".join(f"{k.kind} ({'/'.join(k.short_names)})" for k in KINDS)
    raise Exit(ExitCode.USAGE, f"unknown kind {word!r}: rolecall has {known}")


@dataclass(frozen=True)
class Ref:
    kind: Kind
    name: str | None

    def __str__(self) -> str:
        return f"{self.kind.short_names[0]}/{self.name}" if self.name else self.kind.plural


def parse(text: str, *, need_name: bool = True, kinds: tuple[Kind, ...] = KINDS) -> Ref:
    """`cache/sessions` -> (CacheServer, sessions); `caches` -> (CacheServer, None) unless a name is needed."""
    word, _, name = text.partition("/")
    kind = kind_named(word)
    if kind not in kinds:
        allowed = ", ".join(f"{k.short_names[0]}/NAME" for k in kinds)
        raise Exit(ExitCode.USAGE, f"{kind.kind} has no such verb; it applies to {allowed}")
    if need_name and not name:
        raise Exit(ExitCode.USAGE, f"name the resource: {kind.short_names[0]}/NAME")
    return Ref(kind, name or None)
