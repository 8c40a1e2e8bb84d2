"""WebServer: start, stop (with connection draining), status and the current user count of nginx and Apache."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema, model_validator

from rolecall.api.types import MAX_NAME, Model
from rolecall.api.v1alpha1.common import (
    STOP_NEEDS_WORKLOAD,
    WINDOWS_NEED_WORKLOAD,
    HistorySpec,
    RoleStatus,
    StopSpec,
    TargetsSpec,
)

REFRESH_ANNOTATION = "rolecall.dev/refresh-requested-at"
UsersSource = Literal["application", "activeConnections"]
DrainFigure = Literal["activeConnections", "currentUsers"]
MAX_WEB_PODS = 50
HttpPath = Annotated[str, WithJsonSchema({
    "type": "string", "maxLength": 256,
    "x-kubernetes-validations": [
        {"rule": "self.startsWith('/')", "message": "must be an HTTP path that starts with /, e.g. /nginx_status",
         "reason": "FieldValueInvalid"},
        {"rule": "self.matches('^[A-Za-z0-9._~!$&()*+,;=:@%/-]*$')",
         "message": "may hold only URL path characters (no spaces, quotes or query string)",
         "reason": "FieldValueInvalid"}]})]
JsonField = Annotated[str, WithJsonSchema({
    "type": "string", "maxLength": 128,
    "x-kubernetes-validations": [{
        "rule": "self.matches('^[A-Za-z_][A-Za-z0-9_]*([.][A-Za-z_][A-Za-z0-9_]*)*$')",
        "message": "must be a dotted path of JSON keys, e.g. sessions.active", "reason": "FieldValueInvalid"}]})]


DRAIN_ON_USERS_NEEDS_USER_COUNT = {
    "rule": "!has(self.drainOn) || self.drainOn != 'currentUsers' || has(self.userCount)",
    "message": "drainOn: currentUsers needs spec.userCount (where the application reports its users); without it "
               "drain on activeConnections",
    "fieldPath": ".drainOn",
    "reason": "FieldValueRequired",
}


class UserCount(Model):
    """Where the application itself reports how many users it has (e.g. logged-in sessions)."""

    path: HttpPath = Field(description="HTTP path on each pod that answers with JSON, e.g. /internal/stats. Must start "
                                  "with /.")
    field: JsonField = Field(description="Dotted path of the number in that JSON, e.g. sessions.active.")
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="Port of that endpoint on the pod (default: spec.port).")
    aggregate: Literal["sum", "max"] = Field(
        default="sum",
        description="How the pods' figures combine: sum when each pod counts its own users, max when every "
                    "pod reports the same shared total (e.g. sessions kept in a shared store).")


class WebServerSpec(TargetsSpec, StopSpec, HistorySpec):
    """The desired state of a web role: what it runs on, whether it is stopped, how users are counted."""

    engine: Literal["nginx", "apache"] = Field(description="The web server: nginx or apache (httpd).")
    port: int = Field(default=80, ge=1, le=65535, description="Port of the server's status page on each pod.")
    status_path: HttpPath | None = Field(
        default=None,
        description="Path of the status page: nginx stub_status (default /nginx_status) or Apache mod_status "
                    "(default /server-status; ?auto is added). It must be reachable from the operator's pod.")
    user_count: UserCount | None = Field(
        default=None, description="Read currentUsers from the application; without it currentUsers is "
                                  "activeConnections.")
    refresh_interval_seconds: int = Field(
        default=30, ge=5, le=86400,
        description="How often status figures are refreshed (written only when they change).")
    drain_timeout_seconds: int | None = Field(
        default=None, ge=0, le=3600,
        description="On stop, first wait up to this long for activeConnections to fall to drainThreshold, "
                    "then scale to 0 anyway.")
    drain_threshold: int = Field(default=0, ge=0, le=1000000,
                                 description="The figure (see drainOn) at or below which a draining stop proceeds.")
    drain_on: DrainFigure = Field(
        default="activeConnections",
        description="What a draining stop waits on: activeConnections (default), or currentUsers (the "
                    "application's own count, spec.userCount; with aggregate max the shared total).")
    drain_on_timeout: Literal["proceed", "abort"] = Field(
        default="proceed",
        description="When drainTimeoutSeconds passes with the figure still above drainThreshold: proceed "
                    "(default) scales to 0 anyway; abort leaves the workload running and sets Stalled "
                    "(DrainAborted) until the spec changes or the role should run again (a window opens).")
    timeout_seconds: int = Field(default=5, ge=1, le=3600,
                                 description="Time allowed for one status-page or user-count request.")

    @model_validator(mode="after")
    def _drain_figure_exists(self) -> WebServerSpec:
        if self.drain_on == "currentUsers" and self.user_count is None:
            raise ValueError(DRAIN_ON_USERS_NEEDS_USER_COUNT["message"])
        return self


class WebPodStatus(Model):
    pod: str = Field(max_length=MAX_NAME, description="Pod name.")
    node: str | None = Field(default=None, description="Node the pod runs on.")
    healthy: bool = Field(description="Whether the status page answered.")
    active_connections: int | None = Field(default=None, description="Client connections, rolecall's probe excluded.")
    requests: int | None = Field(default=None, description="Requests served since the server started.")
    current_users: int | None = Field(default=None, description="The application's own user count, if configured.")
    error: str | None = Field(default=None, max_length=512, description="Why the pod could not be read.")


class Drain(Model):
    """A draining stop in progress: kept in status so that its deadline survives an operator restart."""

    started_at: str = Field(description="When the draining stop began.")
    deadline: str = Field(description="When the stop proceeds even if connections remain.")
    active_connections: int | None = Field(default=None, description="Connections at the last check.")
    unreadable_pods: int | None = Field(
        default=None, description="Pods whose figure could not be read (the drain waits for them).")
    figure: DrainFigure = Field(default="activeConnections", description="What the drain waits on (spec drainOn).")
    value: int | None = Field(default=None, description="That figure at the last check.")
    aborted_at: str | None = Field(
        default=None, description="When the drain timed out with drainOnTimeout abort: the workload keeps running "
                                  "until the spec changes or the role should run again.")
    generation: int | None = Field(default=None, description="The spec generation the drain began under.")


class WebServerStatus(RoleStatus):
    active_connections: int | None = Field(default=None, description="Client connections summed over target pods.")
    current_users: int | None = Field(default=None, description="Users now: see currentUsersSource.")
    current_users_source: UsersSource | None = Field(
        default=None, description="application (spec.userCount) or activeConnections.")
    requests_served: int | None = Field(default=None, description="Requests served, summed over target pods.")
    healthy_pods: int | None = Field(default=None, description="Pods whose status page answered.")
    pods: list[WebPodStatus] | None = Field(default=None, max_length=MAX_WEB_PODS,
                                            description=f"Per-pod figures (the first {MAX_WEB_PODS} by name).")
    refreshed_at: str | None = Field(default=None,
                                     description="When these figures last changed or a refresh was requested.")
    last_handled_refresh_request: str | None = Field(
        default=None, description=f"The last {REFRESH_ANNOTATION} value handled, copied verbatim.")
    drain: Drain | None = Field(default=None, description="The draining stop in progress, if any.")


class WebServer(Model):
    """A web role (nginx or Apache pods): start, stop with draining, live connection and user counts."""

    spec: WebServerSpec
    status: WebServerStatus | None = None


SPEC_RULES = [STOP_NEEDS_WORKLOAD, WINDOWS_NEED_WORKLOAD, DRAIN_ON_USERS_NEEDS_USER_COUNT]
