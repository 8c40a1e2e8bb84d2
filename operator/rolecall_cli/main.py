"""The `kubectl rolecall` entry point: puts kubectl's global flags where the CLI expects them, runs one
verb, and turns every way a verb ends into its documented exit code and a message (never a traceback).

Every verb writes only what a person could write with kubectl (an annotation, a spec field, a
DatabaseMaintenance) as the person running it, so admission and RBAC judge it exactly as they would judge
the raw kubectl command; then it follows the status until the operator acknowledges the request.
"""

from __future__ import annotations

import signal
import sys

import pydantic
import urllib3

from rolecall_cli import purging, reading, requesting, scaling  # noqa: F401 - importing registers the verbs
from rolecall_cli.app import GLOBAL_FLAGS, app, err, out
from rolecall_cli.exits import Exit, ExitCode


def global_flags_first(argv: list[str]) -> list[str]:
    """kubectl takes -n, --context and --kubeconfig anywhere on the line (`kubectl rolecall clear cache/x -n
    shop`); the CLI library wants them before the verb: move them there."""
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in GLOBAL_FLAGS and i + 1 < len(argv):
            moved += argv[i:i + 2]
            i += 2
            continue
        if any(arg.startswith(f"{flag}=") for flag in GLOBAL_FLAGS if flag.startswith("--")) or \
                (arg.startswith("-n") and len(arg) > 2 and not arg.startswith("--")):
            moved.append(arg)
        else:
            rest.append(arg)
        i += 1
    return moved + rest


def main(argv: list[str] | None = None) -> int:
    """Runs one command; usage errors exit 2 (the CLI library's own code), our Exit its code."""
    args = global_flags_first(sys.argv[1:] if argv is None else argv)
    # Ctrl-C always ends a wait (exit 130), even when started with SIGINT ignored (a job a shell script put in
    # the background inherits that, and Python then never raises KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        app(args=args, prog_name="kubectl rolecall")
    except Exit as e:
        if e.message:
            (out if e.code is ExitCode.OK else err).print(e.message)
        return int(e.code)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    except KeyboardInterrupt:
        err.print("\ninterrupted")
        return int(ExitCode.INTERRUPTED)
    except urllib3.exceptions.HTTPError as e:
        err.print(f"the Kubernetes API did not answer: {e}")
        return int(ExitCode.API)
    except pydantic.ValidationError as e:
        err.print(f"this kubectl-rolecall cannot read the resource's status (written by a newer rolecall?): "
                  f"upgrade the plugin. {e.error_count()} fields: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}")
        return int(ExitCode.API)
    except Exception as e:  # a bug in the plugin: its own code, not one that says what the request did
        err.print(f"kubectl-rolecall failed unexpectedly (a bug: please report it with this line): "
                  f"{type(e).__name__}: {e}")
        return int(ExitCode.INTERNAL)
    return int(ExitCode.OK)


def run() -> None:
    sys.exit(main())
