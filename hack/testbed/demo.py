"""`make run`: a local bed, rolecall installed from manifests/, the operator running, and a small demo.

The demo is a Deployment of 3 cache pods (a real memcached behind each pod IP) and a CacheServer for it.
`make stop` (python -m testbed.demo down) stops the operator, the stand-ins and the cluster.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from testbed import cluster, install

DEMO = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: demo-cache, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: demo-cache}}
  template:
    metadata:
      labels: {app: demo-cache, testbed.rolecall.dev/engine: memcached}
    spec:
      containers: [{name: memcached, image: "memcached:1.6"}]
---
apiVersion: rolecall.dev/v1alpha1
kind: CacheServer
metadata: {name: demo-cache, namespace: default}
spec:
  engine: memcached
  selector: {matchLabels: {app: demo-cache}}
  workloadRef: {kind: Deployment, name: demo-cache}
"""


def up(dir: Path) -> None:
    t0 = time.monotonic()
    bed = cluster.up(dir)
    install.install(bed.kubeconfig)
    op_kc = install.operator_kubeconfig(bed.kubeconfig, dir / "operator.kubeconfig", hours=24)
    log = open(dir / "logs" / "operator.log", "ab")  # noqa: SIM115 - handed to the child
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(KUBECONFIG=str(op_kc), PYTHONUNBUFFERED="1")
    metrics = f"127.0.0.1:{cluster.free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "rolecall", "--lease-namespace", install.OPERATOR_NAMESPACE,
                             "--metrics-address", metrics, "--health-address", ""],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    bed.pids = {"operator": proc.pid, **bed.pids}
    bed.save()
    install.kubectl(bed.kubeconfig, "apply", "-f", "-", input=DEMO)
    install.kubectl(bed.kubeconfig, "rollout", "status", "deployment/demo-cache", "--timeout=60s")
    kubectl = install.kubectl_path()
    print(f"""
rolecall is running on a local cluster ({time.monotonic() - t0:.0f}s).

  export KUBECONFIG={bed.kubeconfig}
  export PATH={Path(kubectl).parent}:$PATH      # the kubectl built with the cluster ({bed.server})

Try:
  kubectl get nodes,pods -A -o wide
  kubectl get cacheservers                       # Engine, Phase, Pods, Items, HitRatio, LastCleared
  kubectl annotate cacheserver demo-cache rolecall.dev/clear-requested-at="$(date +%s)" --overwrite
  kubectl wait cacheserver/demo-cache --for=jsonpath='{{.status.lastHandledClearRequest}}'=<that value>
  kubectl describe cacheserver demo-cache         # conditions and Events
  kubectl patch cacheserver demo-cache --type merge -p '{{"spec":{{"stopped":true}}}}'   # scale to 0
  kubectl patch cacheserver demo-cache --type merge -p '{{"spec":{{"stopped":false}}}}'  # back to 3

Operator log: {dir / 'logs' / 'operator.log'}
Metrics:      http://{metrics}/metrics
Stop everything: make stop
""")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("command", choices=["up", "down"])
    p.add_argument("--dir", type=Path, default=cluster.REPO / ".testbed" / "run")
    args = p.parse_args()
    if args.command == "up":
        up(args.dir.resolve())
    else:
        cluster.down(args.dir.resolve())
        print("stopped")


if __name__ == "__main__":
    main()
