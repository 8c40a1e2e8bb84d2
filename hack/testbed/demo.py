"""`make run`: a local bed, rolecall installed with its Helm chart and running *in the cluster* as a pod from the
locally built image (the bed's container stand-in runs it under podman), and a demo of all four kinds:

- memcached: a Deployment of 3 pods and a CacheServer;
- nginx: 2 pods and a WebServer;
- PostgreSQL: a pod with a table `events` of 30 old and 20 new rows, a DatabaseServer, and a DatabaseMaintenance
  that deletes the rows older than 30 days.

`--local-operator` runs the operator as a local process instead (faster to iterate on the operator's code).
`make stop` (python -m testbed.demo down) stops the operator, the stand-ins and the cluster.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import psycopg

from testbed import cluster, install, servers
from testbed.containers import podman

PLUGIN_BIN = cluster.REPO / ".testbed" / "plugin" / "bin"  # make plugin installs kubectl-rolecall there
VERSION = tomllib.loads((cluster.REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE_REPOSITORY = "localhost/rolecall/operator"
PG_SECRET = "demo-pg-credentials"  # noqa: S105 - the name of a Secret, not a secret

def _role(kind: str, name: str, engine: str, replicas: int, image: str) -> str:
    """A Deployment whose pods get a real `engine` stand-in, and the rolecall resource for it."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: default}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata:
      labels: {{app: {name}, testbed.rolecall.dev/engine: {engine}}}
    spec:
      containers: [{{name: {engine}, image: "{image}"}}]
---
apiVersion: rolecall.dev/v1alpha1
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec:
  engine: {engine}
  selector: {{matchLabels: {{app: {name}}}}}
  workloadRef: {{kind: Deployment, name: {name}}}
"""


DEMO = _role("CacheServer", "demo-cache", "memcached", 3, "memcached:1.6") + "---" + _role(
    "WebServer", "demo-web", "nginx", 2, "nginx:1.27") + f"""---
apiVersion: v1
kind: Secret
metadata: {{name: {PG_SECRET}, namespace: default}}
stringData: {{username: postgres, password: "{servers.POSTGRES_PASSWORD}"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: demo-pg-0, namespace: default, labels: {{app: demo-pg, testbed.rolecall.dev/engine: postgresql}}}}
spec:
  containers: [{{name: postgres, image: "postgres:15"}}]
"""

DATABASE = f"""
apiVersion: rolecall.dev/v1alpha1
kind: DatabaseServer
metadata: {{name: demo-db, namespace: default}}
spec:
  engine: postgresql
  selector: {{matchLabels: {{app: demo-pg}}}}
  credentialsSecretRef: {{name: {PG_SECRET}, usernameKey: username}}
---
apiVersion: rolecall.dev/v1alpha1
kind: DatabaseMaintenance
metadata: {{name: demo-purge, namespace: default}}
spec:
  databaseServerRef: {{name: demo-db}}
  operations:
    - clearOldData: {{table: events, timestampColumn: created_at, olderThan: 30d, batchSize: 10}}
"""


def _helm(bed: cluster.Bed, *args: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(bed.kubeconfig)}
    done = subprocess.run([install.tool_path("helm"), *args], env=env, text=True, capture_output=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        raise SystemExit(f"helm {args[0]} failed: {done.stderr.strip()}")


def _operator_in_cluster(bed: cluster.Bed) -> str:
    image = f"{IMAGE_REPOSITORY}:{VERSION}"
    if podman("image", "exists", image).returncode != 0:
        raise SystemExit(f"error: the image {image} is not in local podman storage; run `make image` first "
                         "(or `make run LOCAL_OPERATOR=1` for the operator as a local process)")
    _helm(bed, "install", "rolecall", str(cluster.REPO / "charts" / "rolecall"), "--namespace",
          install.OPERATOR_NAMESPACE, "--create-namespace", "--set", f"image.repository={IMAGE_REPOSITORY}",
          "--set", f"image.tag={VERSION}", "--set-string", "podLabels.testbed\\.rolecall\\.dev/runtime=podman",
          "--wait", "--timeout", "180s")
    install.wait_admissible(bed.kubeconfig)
    return f"""the operator runs in the cluster from {image}:
  kubectl get pods -n {install.OPERATOR_NAMESPACE} -o wide      # Running and Ready, its pod IP on loopback
  kubectl logs -n {install.OPERATOR_NAMESPACE} deploy/rolecall-operator
  helm upgrade rolecall charts/rolecall -n {install.OPERATOR_NAMESPACE} --reuse-values --set replicaCount=2"""


def _operator_local(bed: cluster.Bed, dir: Path) -> str:
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
    return f"the operator runs as a local process: log {dir / 'logs' / 'operator.log'}, metrics http://{metrics}/metrics"


def _seed_postgres(bed: cluster.Bed) -> None:
    # The stand-in marks the pod once its own PostgreSQL accepts connections (initdb takes a while on a busy host).
    install.kubectl(bed.kubeconfig, "wait", "pod/demo-pg-0", "--timeout=180s",
                    "--for=jsonpath={.metadata.annotations.testbed\\.rolecall\\.dev/standin}=ready")
    ip = install.kubectl(bed.kubeconfig, "get", "pod", "demo-pg-0", "-o", "jsonpath={.status.podIP}").stdout
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = psycopg.connect(host=ip, user="postgres", password=servers.POSTGRES_PASSWORD, dbname="postgres",
                                   autocommit=True, connect_timeout=3)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS events (id serial PRIMARY KEY, created_at timestamptz NOT NULL, "
                     "payload text)")
        conn.execute("INSERT INTO events (created_at, payload) SELECT now() - interval '40 days' - g * interval "
                     "'1 hour', 'old' FROM generate_series(1, 30) g")
        conn.execute("INSERT INTO events (created_at, payload) SELECT now() - interval '10 days' + g * interval "
                     "'1 hour', 'new' FROM generate_series(1, 20) g")


def up(dir: Path, local_operator: bool = False) -> None:
    t0 = time.monotonic()
    bed = cluster.up(dir)
    where = _operator_local(bed, dir) if local_operator else _operator_in_cluster(bed)
    install.kubectl(bed.kubeconfig, "apply", "-f", "-", input=DEMO)
    for workload in ("deployment/demo-cache", "deployment/demo-web"):
        install.kubectl(bed.kubeconfig, "rollout", "status", workload, "--timeout=90s")
    install.kubectl(bed.kubeconfig, "wait", "pod/demo-pg-0", "--for=condition=Ready", "--timeout=90s")
    _seed_postgres(bed)
    install.kubectl(bed.kubeconfig, "apply", "-f", "-", input=DATABASE)
    kubectl = install.kubectl_path()
    print(f"""
rolecall is running on a local cluster ({time.monotonic() - t0:.0f}s); {where}

  export KUBECONFIG={bed.kubeconfig}
  export PATH={Path(kubectl).parent}:{PLUGIN_BIN}:$PATH
  # kubectl and helm built with the cluster ({bed.server}), and kubectl-rolecall (make plugin)

Try (each verb waits for its outcome; the raw kubectl it replaces is beside it):
  kubectl rolecall status                        # kubectl get cacheservers,webservers,databaseservers,dbm
  kubectl rolecall clear cache/demo-cache        # kubectl annotate cacheserver demo-cache \\
                                                 #   rolecall.dev/clear-requested-at="$(date +%s)" --overwrite
                                                 # kubectl wait cacheserver/demo-cache \\
                                                 #   --for=jsonpath='{{.status.lastHandledClearRequest}}'=<that value>
  kubectl rolecall stop cache/demo-cache         # kubectl patch cacheserver demo-cache --type merge \\
                                                 #   -p '{{"spec":{{"stopped":true}}}}'   (scale to 0)
  kubectl rolecall start cache/demo-cache        # the same with false (back to 3)
  kubectl rolecall users web/demo-web -o wide    # kubectl annotate webserver demo-web \\
                                                 #   rolecall.dev/refresh-requested-at="$(date +%s)"
                                                 # kubectl get webservers
  kubectl rolecall compact db/demo-db            # kubectl annotate databaseserver demo-db \\
                                                 #   rolecall.dev/compact-requested-at="$(date +%s)"
  kubectl rolecall purge db/demo-db --table events --column created_at --older-than 30d
                                                 # a DatabaseMaintenance like demo-purge (which deleted 30 old rows)
  kubectl rolecall history cache/demo-cache      # kubectl get cacheserver demo-cache -o jsonpath='{{.status.history}}'
  kubectl describe cacheserver demo-cache        # conditions and Events

Stop everything: make stop
""")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["up", "down"])
    p.add_argument("--dir", type=Path, default=cluster.REPO / ".testbed" / "run")
    p.add_argument("--local-operator", action="store_true", help="run the operator as a local process, not a pod")
    args = p.parse_args()
    if args.command == "up":
        up(args.dir.resolve(), args.local_operator)
    else:
        cluster.down(args.dir.resolve())
        print("stopped")


if __name__ == "__main__":
    main()
