"""The typer application, the global kubectl-style flags and what every verb shares: option types,
request tokens, durations, the confirmation question, and how a wait's end becomes the exit."""

from __future__ import annotations

import datetime as dt
import enum
import json
import sys
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console

from rolecall.api.types import duration_seconds
from rolecall_cli.cluster import Cluster
from rolecall_cli.exits import Exit, ExitCode
from rolecall_cli.follow import Ended
from rolecall_cli.refs import Ref

# Not a terminal (a pipe, a file): one line per row, however wide, as kubectl prints.
out = Console(highlight=False, soft_wrap=True, markup=False, width=None if sys.stdout.isatty() else 1000)
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
app = typer.Typer(name="kubectl rolecall", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="rolecall's role verbs: clear caches, compact databases, stop and start roles, purge old "
                       "rows, and see what they are doing. Exit codes: 0 succeeded, 1 some targets failed (the "
                       "operator retries them), 2 usage, 3 timed out, 4 refused or forbidden, 5 stalled, "
                       "6 cancelled, 7 the API failed, 130 interrupted (the request keeps running).")

# The flags kubectl takes anywhere on the line; main() moves them before the verb.
GLOBAL_FLAGS = ("--kubeconfig", "--context", "-n", "--namespace")


@dataclass
class Flags:
    kubeconfig: str | None
    context: str | None
    namespace: str | None
    _cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster(self.kubeconfig, self.context, self.namespace)
        return self._cluster

    def hint(self, ref: Ref) -> str:
        """The command that follows `ref`, on the same cluster and namespace."""
        where = "".join(f" --{k} {v}" for k, v in (("kubeconfig", self.kubeconfig), ("context", self.context)) if v)
        return f"kubectl rolecall{where} -n {self.cluster.namespace} status {ref} -w"


def flags(ctx: typer.Context) -> Flags:
    found: Flags = ctx.ensure_object(Flags)
    return found


@app.callback()
def _global(ctx: typer.Context,
            kubeconfig: Annotated[str | None, typer.Option(help="Path to the kubeconfig file (default: $KUBECONFIG, "
                                                                "~/.kube/config).")] = None,
            context: Annotated[str | None, typer.Option(help="The kubeconfig context to use.")] = None,
            namespace: Annotated[str | None, typer.Option("-n", "--namespace",
                                                          help="Namespace (default: the context's).")] = None) -> None:
    ctx.obj = Flags(kubeconfig, context, namespace)


class Format(enum.StrEnum):
    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


Wait = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the operator to acknowledge the request.")]
Timeout = Annotated[str, typer.Option(help="How long to wait, e.g. 90s, 5m.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Output = Annotated[Format, typer.Option("-o", "--output", help="table, wide, json or yaml.")]


def seconds(text: str, what: str = "--timeout") -> float:
    """A duration (90s, 5m, 2h, or plain seconds): checked before anything is written."""
    try:
        return float(text) if text.isdigit() else float(duration_seconds(text))
    except (ValueError, KeyError) as e:
        raise Exit(ExitCode.USAGE, f"{what} {text!r} is not a duration like 90s, 5m or 2h") from e


def token() -> str:
    """A new request token: the time now, to the microsecond (two requests never share one)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def end(ended: Ended) -> NoReturn:
    raise Exit(ended.code, ended.message)


def requested(hint: str) -> NoReturn:
    raise Exit(ExitCode.OK, f"requested; follow it with: {hint}")


def can_ask() -> bool:
    """A question needs a person at a terminal: stdin to answer, stderr to see it."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def confirm(question: str, yes: bool, undo: str = "nothing was requested") -> None:
    """Asks at a terminal; --yes, or no terminal (a script, CI), goes ahead without asking. A no (or Ctrl-C,
    or end of input) ends the command with 2 and says what was left (`undo`)."""
    if yes or not can_ask():
        return
    try:
        agreed = typer.confirm(question, default=False, err=True)
    except typer.Abort:
        agreed = False
    if not agreed:
        raise Exit(ExitCode.USAGE, f"not confirmed: {undo}")


def dump(data: Any, output: Format) -> bool:
    """Prints `data` as JSON or YAML for -o json|yaml; False for the other formats (the caller prints)."""
    if output is Format.json:
        out.out(json.dumps(data, indent=2))
        return True
    if output is Format.yaml:
        out.out(yaml.safe_dump(data, sort_keys=False))
        return True
    return False
