"""Types shared by every rolecall kind: times, durations, selectors, references, conditions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

# Bounds keep CEL rule cost estimates finite (the apiserver refuses unbounded lists/strings in rules).
MAX_NAME = 253
MAX_LABELS = 64
MAX_EXPRESSIONS = 32
MAX_VALUES = 64

RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
DURATION_PATTERN = r"^([1-9][0-9]{0,5})(s|m|h|d|w)$"
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Model(BaseModel):
    """Base of all API models: camelCase on the wire, unknown fields refused (the apiserver prunes them)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore",
                              use_enum_values=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _parse_time(value: str) -> str:
    # The pattern already demands an offset; this also catches impossible dates (2026-02-30).
    datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    return value


Timestamp = Annotated[
    str,
    AfterValidator(_parse_time),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN, "maxLength": 40,
                    "description": "An RFC 3339 time with an explicit offset, e.g. 2026-11-25T10:00:00Z."}),
]
"""An RFC 3339 time that must carry an offset (Z or +hh:mm): a time without one is ambiguous."""

Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, max_length=8),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "maxLength": 8,
                    "description": "A duration: a whole number and a unit (s, m, h, d, w), e.g. 30d or 12h."}),
]
"""Durations as ops people write them (30d, 12h): neither Go's nor ISO 8601's syntax."""


def duration_seconds(value: str) -> int:
    return int(value[:-1]) * DURATION_UNITS[value[-1]]


_FRACTION = re.compile(r"\.(\d+)")


def parse_time(value: str) -> datetime:
    """An RFC 3339 time as an aware datetime. Python keeps microseconds: a finer fraction is rounded *up*, so
    "cleared at or after T" is never satisfied by a time before T (a clear at T.1234560 is not after T.1234567)."""
    text = value.replace("z", "Z").replace("t", "T")
    m = _FRACTION.search(text)
    if m is None or len(m.group(1)) <= 6:
        return datetime.fromisoformat(text)
    digits = m.group(1)
    parsed = datetime.fromisoformat(text[:m.start()] + "." + digits[:6] + text[m.end():])
    return parsed + timedelta(microseconds=1) if int(digits[6:]) else parsed


def format_time(t: datetime) -> str:
    """Status times keep microseconds: a request time given with a fraction must compare exactly (a clear
    accepted at 04:37:29.7 satisfies clearedAfter 04:37:29.6; written as 04:37:29 it would not)."""
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class LabelSelectorRequirement(Model):
    key: str = Field(max_length=317, description="The label key the requirement applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist.")
    values: list[Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, max_length=MAX_VALUES,
        description="Values for In and NotIn (must be non-empty there); empty for Exists and DoesNotExist.")


class LabelSelector(Model):
    """A standard Kubernetes label selector (matchLabels AND matchExpressions)."""

    match_labels: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, json_schema_extra={"maxProperties": MAX_LABELS},
        description="Labels a pod must carry, all of them, e.g. {app: cache}.")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=MAX_EXPRESSIONS,
        description="Set-based requirements a pod's labels must all meet.")

    def to_label_selector(self) -> str:
        """The selector in the string form the list API accepts."""
        parts = [f"{k}={v}" for k, v in sorted((self.match_labels or {}).items())]
        for e in self.match_expressions or []:
            if e.operator == "Exists":
                parts.append(e.key)
            elif e.operator == "DoesNotExist":
                parts.append(f"!{e.key}")
            else:
                op = "in" if e.operator == "In" else "notin"
                parts.append(f"{e.key} {op} ({','.join(e.values or [])})")
        return ",".join(parts)


class SecretKeyRef(Model):
    name: str = Field(max_length=MAX_NAME, description="Name of a Secret in the resource's own namespace.")
    username_key: str | None = Field(default=None, max_length=MAX_NAME,
                                     description="Key of the user name in the Secret (optional).")
    password_key: str = Field(default="password", max_length=MAX_NAME,
                              description="Key of the password in the Secret.")


class WorkloadRef(Model):
    kind: Literal["Deployment", "StatefulSet"] = Field(description="Deployment or StatefulSet.")
    name: str = Field(max_length=MAX_NAME, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                      description="Name of the workload in the resource's own namespace.")


class Condition(Model):
    """A Kubernetes-style condition: `kubectl wait --for=condition=Cleared` reads these."""

    type: str = Field(max_length=64, description="Condition type, e.g. Ready, Cleared, Degraded.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", max_length=128, description="A CamelCase reason a program can match.")
    message: str = Field(default="", max_length=2048, description="A sentence for people.")
    last_transition_time: str | None = Field(default=None, description="When the status last changed.")
    observed_generation: int | None = Field(default=None, description="The spec generation this reflects.")
