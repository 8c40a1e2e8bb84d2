"""Running the real `kubectl rolecall` executable, installed the way users install it (`make plugin`:
its own venv, as pipx would), as a subprocess, through kubectl's plugin discovery on PATH."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from harness import REPO, Cluster

PLUGIN_BIN = REPO / ".testbed" / "plugin" / "bin"


def plugin_env(cluster: Cluster, kubeconfig: Path | None = None) -> dict[str, str]:
    if not (PLUGIN_BIN / "kubectl-rolecall").exists():
        raise AssertionError(f"{PLUGIN_BIN / 'kubectl-rolecall'} is missing: run `make plugin` (make test does)")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(KUBECONFIG=str(kubeconfig or cluster.kubeconfig), PATH=f"{PLUGIN_BIN}:{env['PATH']}",
               COLUMNS="200", NO_COLOR="1")
    return env


def rolecall(cluster: Cluster, ns: str, *args: str, kubeconfig: Path | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`kubectl rolecall -n NS ARGS...` (stdin not a terminal: it never prompts)."""
    return subprocess.run(["kubectl", "rolecall", "-n", ns, *args], env=plugin_env(cluster, kubeconfig),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def popen(cluster: Cluster, ns: str, *args: str) -> subprocess.Popen[str]:
    """Started with SIGINT ignored, as a shell script's background job inherits it (and as CI may run us): the
    plugin must still end on Ctrl-C (a test SIGINTs it), whatever its parent did."""
    return subprocess.Popen([str(PLUGIN_BIN / "kubectl-rolecall"), "-n", ns, *args], env=plugin_env(cluster),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


def said(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
