#!/usr/bin/env bash
# Scans the chart's renderings with checkov's Kubernetes checks (a maintained scanner from PyPI), with the
# exceptions in hack/checkov.yaml. checkov runs in a venv cached per version, in a network namespace of its
# own where it can (it would otherwise try to fetch guidelines from its vendor's API).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
CHECKOV_VERSION=3.3.30
cache=${ROLECALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rolecall}
venv=$cache/checkov-$CHECKOV_VERSION
helm=$cache/bin/helm
[[ -x $helm ]] || helm=helm
if [[ ! -x $venv/bin/checkov ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "checkov==$CHECKOV_VERSION"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
render() {  # render NAME [helm args...]
  local name=$1; shift
  "$helm" template rolecall "$repo/charts/rolecall" --namespace rolecall-system "$@" > "$out/$name.yaml"
}
render policy --set admission.mode=policy
render webhook --set admission.mode=webhook --set networkPolicy.enabled=true \
  --set 'networkPolicy.apiServer.cidrs={10.96.0.1/32}'
render cert-manager --set admission.mode=webhook --set admission.webhook.certificates=cert-manager
render namespaced --set admission.mode=policy --set 'watchNamespaces={shop,web}' --set replicaCount=2 \
  --set podDisruptionBudget.enabled=true
render shards --set admission.mode=policy --set 'shards[0].name=a' --set 'shards[0].namespaces={t1}'
isolate=()
if unshare -n true 2>/dev/null; then isolate=(unshare -n); fi
failed=0
for file in "$out"/*.yaml; do  # one rendering at a time: checkov's graph checks would mix installs
  echo "--- checkov: $(basename "$file" .yaml) rendering"
  "${isolate[@]}" "$venv/bin/checkov" --config-file "$repo/hack/checkov.yaml" -f "$file" || failed=1
done
exit $failed
