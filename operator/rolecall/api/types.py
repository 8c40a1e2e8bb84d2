"""Types shared by every rolecall kind: times, durations, selectors, references, conditions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

# Bounds keep CEL rule cost estimates finite (the apiserver refuses unbounded lists/strings in rules).
MAX_NAME = 253
MAX_LABELS = 64
MAX_EXPRESSIONS = 32
MAX_VALUES = 64

# RFC 3339 with a required offset, and only dates that exist: days per month, 29 February in leap years only,
# years 0001-9999 (what both the apiserver's CEL and Python's datetime can read).
_YEAR = r"(000[1-9]|00[1-9]\d|0[1-9]\d{2}|[1-9]\d{3})"
_LEAP_YEAR = r"(\d{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_DATE = (rf"({_YEAR}-((0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)|"
         rf"02-(0[1-9]|1\d|2[0-8]))|{_LEAP_YEAR}-02-29)")
RFC3339_PATTERN = rf"^{_DATE}[Tt]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{{1,9}})?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
DURATION_PATTERN = r"^([1-9][0-9]{0,5})(s|m|h|d|w)$"
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Model(BaseModel):
    """Base of all API models: camelCase on the wire, unknown fields refused (the apiserver prunes them)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore",
                              use_enum_values=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def checked_time(value: str) -> str:
    """The value itself, once it is known to be an RFC 3339 time that exists (not 2026-02-30)."""
    if not re.match(RFC3339_PATTERN, value):
        raise ValueError(f"{value!r} must be an RFC 3339 time with an offset, e.g. 2026-11-25T10:00:00Z")
    parse_time(value)
    return value


Timestamp = Annotated[
    str,
    AfterValidator(checked_time),
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


# Kubernetes' own name rules (apimachinery validation), checked twice: by the apiserver at admission (CEL's
# format library, below) and by the operator when it parses a spec (these regexes), so both refuse the same.
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_QUALIFIED = re.compile(rf"^(?:(?P<prefix>{_DNS_SUBDOMAIN})/)?(?P<name>{_NAME})$")
_LABEL_VALUE = re.compile(rf"^({_NAME})?$")
KEY_WORDS = ("a qualified name: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, "
             "'-', '_' or '.', starting and ending with a letter or digit (e.g. app.kubernetes.io/name)")
VALUE_WORDS = ("at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (or "
               "empty)")


def cel(rule: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, Any]:
    return {"rule": rule, "message": message, "reason": reason}


def _qualified_name(key: str) -> str:
    m = _QUALIFIED.match(key)
    if m is None or len(m.group("name")) > 63 or len(m.group("prefix") or "") > 253:
        raise ValueError(f"label key {key!r} must be {KEY_WORDS}")
    return key


def _label_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(f"label value {value!r} must be {VALUE_WORDS}")
    return value


def _labels(labels: dict[str, str] | None) -> dict[str, str] | None:
    for k, v in (labels or {}).items():
        _qualified_name(k)
        _label_value(v)
    return labels


LABEL_MAP_RULES = [
    cel("self.all(k, !format.qualifiedName().validate(k).hasValue())", f"every key must be {KEY_WORDS}"),
    cel("self.all(k, !format.labelValue().validate(self[k]).hasValue())", f"every value must be {VALUE_WORDS}"),
]
LabelMap = Annotated[
    dict[str, Annotated[str, Field(max_length=63)]],
    AfterValidator(_labels),
    Field(json_schema_extra={"maxProperties": MAX_LABELS, "x-kubernetes-validations": LABEL_MAP_RULES}),
]
"""Labels as Kubernetes accepts them (label keys and values; node labels for nodeSelector)."""

LabelKey = Annotated[str, AfterValidator(_qualified_name), WithJsonSchema({
    "type": "string", "maxLength": 317,
    "x-kubernetes-validations": [cel("!format.qualifiedName().validate(self).hasValue()", f"must be {KEY_WORDS}")]})]
LabelValue = Annotated[str, AfterValidator(_label_value), WithJsonSchema({
    "type": "string", "maxLength": 63,
    "x-kubernetes-validations": [cel("!format.labelValue().validate(self).hasValue()", f"must be {VALUE_WORDS}")]})]


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, value):
        raise ValueError(f"{value!r} must be a DNS subdomain name: lower-case letters, digits, '-' and '.', "
                         "starting and ending with a letter or digit")
    return value


ObjectName = Annotated[str, AfterValidator(_dns_subdomain), WithJsonSchema({
    "type": "string", "maxLength": 253,
    "x-kubernetes-validations": [cel(
        "!format.dns1123Subdomain().validate(self).hasValue()",
        "must be an object name: lower-case letters, digits, '-' and '.', starting and ending with a letter or "
        "digit (at most 253)")]})]
"""The name of another object in the resource's namespace (a Secret, a DatabaseServer)."""

SecretKey = Annotated[str, Field(max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]


class LabelSelectorRequirement(Model):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [cel(
        "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : "
        "(!has(self.values) || size(self.values) == 0)",
        "In and NotIn need at least one value; Exists and DoesNotExist take none")]})

    key: LabelKey = Field(description="The label key the requirement applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist.")
    values: list[LabelValue] | None = Field(
        default=None, max_length=MAX_VALUES,
        description="Values for In and NotIn (must be non-empty there); empty for Exists and DoesNotExist.")

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> LabelSelectorRequirement:
        if (self.operator in ("In", "NotIn")) != bool(self.values):
            raise ValueError("In and NotIn need at least one value; Exists and DoesNotExist take none")
        return self


class LabelSelector(Model):
    """A standard Kubernetes label selector (matchLabels AND matchExpressions)."""

    match_labels: LabelMap | None = Field(
        default=None, description="Labels a pod must carry, all of them, e.g. {app: cache}.")
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

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a pod with `labels` is selected, by the rules the list API applies to `to_label_selector()`."""
        if any(labels.get(k) != v for k, v in (self.match_labels or {}).items()):
            return False
        for e in self.match_expressions or []:
            present = e.key in labels
            if (e.operator == "Exists" and not present) or (e.operator == "DoesNotExist" and present):
                return False
            if e.operator == "In" and labels.get(e.key) not in (e.values or []):
                return False
            if e.operator == "NotIn" and present and labels[e.key] in (e.values or []):
                return False
        return True


class SecretKeyRef(Model):
    name: ObjectName = Field(description="Name of a Secret in the resource's own namespace.")
    username_key: SecretKey | None = Field(default=None, description="Key of the user name in the Secret (optional).")
    password_key: SecretKey = Field(default="password", description="Key of the password in the Secret.")


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
