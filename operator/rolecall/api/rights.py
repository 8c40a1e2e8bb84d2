"""The rights behind each action a rolecall resource can trigger, as admission CEL and as words for people.

Each action is allowed when the requesting user holds either the underlying Kubernetes right (what they
could do by hand) or a narrower rolecall right checked the way cert-manager checks signers: create on a
pseudo-subresource of the rolecall resource, e.g. cacheservers/clear. api/admission.py turns this table
into the admission policies; runs/authz.py asks the same questions with SubjectAccessReviews at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

from rolecall.api.v1alpha1.cacheserver import CLEAR_ANNOTATION
from rolecall.api.v1alpha1.common import CANCEL_ANNOTATION, OVERRIDE_RUNNING, OVERRIDE_STOPPED, dry_run_annotation
from rolecall.api.v1alpha1.database import COMPACT_ANNOTATION


@dataclass(frozen=True)
class Right:
    """One way to be allowed an action: a Kubernetes authorizer check (CEL), and its words for messages."""

    group: str
    resource: str  # a CEL expression (usually a quoted literal)
    subresource: str | None
    verb: str
    name: str | None  # a CEL expression for the object name, or None for the whole namespace
    words: str

    def cel(self) -> str:
        expr = f"authorizer.group('{self.group}').resource({self.resource})"
        if self.subresource:
            expr += f".subresource('{self.subresource}')"
        expr += ".namespace(request.namespace)"
        if self.name:
            expr += f".name({self.name})"
        return expr + f".check('{self.verb}').allowed()"


EXEC = Right("", "'pods'", "exec", "create", None, "create on pods/exec")
SCALE = Right("apps", "object.spec.workloadRef.kind == 'Deployment' ? 'deployments' : 'statefulsets'", "scale",
              "patch", "object.spec.workloadRef.name",
              "patch on the workload's scale subresource (deployments/scale or statefulsets/scale)")


def _narrow(plural: str, what: str) -> Right:
    return Right("rolecall.dev", f"'{plural}'", what, "create", "object.metadata.name",
                 f"create on {plural}/{what} (rolecall.dev)")


def ann(key: str, obj: str = "object") -> str:
    return f"(has({obj}.metadata.annotations) && '{key}' in {obj}.metadata.annotations ? " \
           f"{obj}.metadata.annotations['{key}'] : '')"


def field_changed(field: str) -> str:
    """True on CREATE when spec.<field> is set, on UPDATE when it changed (presence or value)."""
    return (f"(request.operation == 'CREATE' ? has(object.spec.{field}) : "
            f"(has(object.spec.{field}) != has(oldObject.spec.{field}) || "
            f"(has(object.spec.{field}) && object.spec.{field} != oldObject.spec.{field})))")


def token_changed(key: str) -> str:
    return f"(request.operation == 'CREATE' ? {ann(key)} != '' : {ann(key)} != {ann(key, 'oldObject')})"


STOP_CHANGED = ("(request.operation == 'CREATE' ? object.spec.stopped == true : "
                "(object.spec.stopped != oldObject.spec.stopped || "
                f"(object.spec.stopped == true && {field_changed('workloadRef')})))")


@dataclass(frozen=True)
class Action:
    name: str  # e.g. clear
    trigger: str  # CEL: the request asks for this action
    rights: tuple[Right, ...]  # any one suffices
    says: str  # what the user asked for, for the message
    # Whether admission records who asked, per action (not per object: a user who edits another field
    # never becomes the requester of someone else's pending clear). Credentials are a condition of the
    # actions that use them, checked for those actions' requesters.
    has_requester: bool = True

    @property
    def requested_by(self) -> str:
        return f"rolecall.dev/{self.name}-requested-by"

    @property
    def requested_by_groups(self) -> str:
        return f"rolecall.dev/{self.name}-requested-by-groups"

    def message(self) -> str:
        return (f"{self.says} needs " + " or ".join(r.words for r in self.rights) + " in this namespace, "
                "which the requesting user does not have")


def _dry_run(action: str, plural: str, says: str) -> Action:
    """A dry run changes nothing, but reveals which pods the action would touch: the action's own right."""
    key = dry_run_annotation(action)
    return Action(f"{action}-dry-run", token_changed(key), (EXEC, _narrow(plural, action)),
                  f"a dry run of {says} ({key})", has_requester=False)


def _cancel(action: str, plural: str, says: str) -> Action:
    """Cancelling needs the same right as requesting."""
    return Action(f"{action}-cancel", token_changed(CANCEL_ANNOTATION), (EXEC, _narrow(plural, action)),
                  f"cancelling {says} ({CANCEL_ANNOTATION})", has_requester=False)


def _stop(plural: str) -> Action:
    # Run windows and overrides are stop and start requests for every future change they cause.
    trigger = (f"has(object.spec.workloadRef) && ({STOP_CHANGED} || {field_changed('runWindows')} || "
               f"{token_changed(OVERRIDE_RUNNING)} || {token_changed(OVERRIDE_STOPPED)})")
    return Action("stop", trigger, (SCALE, _narrow(plural, "stop")),
                  "stopping or starting (spec.stopped, spec.runWindows, keep-running-until or keep-stopped-until, "
                  "or spec.workloadRef while stopped)")


SECRET = Action(
    "credentials", field_changed("credentialsSecretRef"),
    (Right("", "'secrets'", None, "get", "object.spec.credentialsSecretRef.name", "get on that Secret"),),
    "spec.credentialsSecretRef (rolecall reads that Secret for you)", has_requester=False)

ACTIONS: dict[str, tuple[Action, ...]] = {  # by plural
    "cacheservers": (
        Action("clear", f"{token_changed(CLEAR_ANNOTATION)} || {field_changed('clearedAfter')} || "
                        f"{field_changed('clearSchedule')}",
               (EXEC, _narrow("cacheservers", "clear")),
               "a cache clear (clear-requested-at, spec.clearedAfter, or spec.clearSchedule for every slot)"),
        _dry_run("clear", "cacheservers", "a cache clear"), _cancel("clear", "cacheservers", "a cache clear"),
        _stop("cacheservers"), SECRET),
    "webservers": (_stop("webservers"),),
    "databaseservers": (
        Action("compact", f"{token_changed(COMPACT_ANNOTATION)} || {field_changed('compactedAfter')} || "
                          f"{field_changed('compactSchedule')}",
               (EXEC, _narrow("databaseservers", "compact")),
               "a compaction (compact-requested-at, spec.compactedAfter, or spec.compactSchedule for every slot)"),
        _dry_run("compact", "databaseservers", "a compaction"), _cancel("compact", "databaseservers", "a compaction"),
        _stop("databaseservers"), SECRET),
    "databasemaintenances": (
        Action("run", "request.operation == 'CREATE' || (oldObject.spec.suspend == true && "
                      "object.spec.suspend == false) || (has(oldObject.spec.dryRun) && oldObject.spec.dryRun == true "
                      "&& (!has(object.spec.dryRun) || object.spec.dryRun == false))",
               (EXEC, _narrow("databasemaintenances", "run")),
               "creating (or resuming, or turning dryRun off on) a DatabaseMaintenance, which runs SQL on the "
               "database"),
        _cancel("run", "databasemaintenances", "a maintenance run")),
}


