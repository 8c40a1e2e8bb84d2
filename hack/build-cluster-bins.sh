#!/usr/bin/env bash
# Builds the local cluster's binaries from Go modules (nothing else is downloaded) into a per-user,
# per-version cache, so a fresh clone reuses them and only a changed pin triggers a rebuild.
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  <- k8s.io/kubernetes (one `go build`)
#   --compat: kube-apiserver, -controller-manager, -scheduler at COMPAT_KUBE_VERSION only (the oldest minor)
#   etcd                                                               <- go.etcd.io/etcd/server/v3
#   kwok                                                               <- sigs.k8s.io/kwok/cmd/kwok
#   helm                                                               <- helm.sh/helm/v3/cmd/helm
#   kstatus, argolua (the health checkers the tests run)              <- hack/tools (our own Go module)
# Prints the bin directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
cache=${ROLECALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rolecall}
log() { printf '[build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

"$here/check-go.sh"

build_kube() {  # build_kube VERSION COMMAND...
  local KUBE_VERSION=$1; shift
  local commands=("$@")
  local out="$cache/kube-$KUBE_VERSION"
  [[ -f "$out/.complete" ]] && { log "kube $KUBE_VERSION cached in $out"; return; }
  local mod="$cache/src/kube-$KUBE_VERSION"
  rm -rf "$mod" && mkdir -p "$mod" "$out"
  log "fetching k8s.io/kubernetes@$KUBE_VERSION go.mod through the module proxy"
  local upstream
  upstream=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  # Every staging module the upstream go.mod replaces with ./staging/src/... is replaced here by the
  # same module at its published v0.Y.Z tag (v1.36.3 -> v0.36.3). Derived, never hard-coded.
  local staging_version="v0.${KUBE_VERSION#v1.}"
  {
    echo "module rolecall.dev/hack/kubetools"
    echo
    grep -E '^go [0-9]' "$upstream"
    grep -E '^godebug ' "$upstream" || true
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    python3 - "$upstream" "$staging_version" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
mods = sorted(set(re.findall(r'^\s*(?:replace\s+)?(k8s\.io/[\w./-]+)\s*=>\s*\./staging/src/', text, re.M)))
if not mods:
    sys.exit("no staging replace lines found in upstream go.mod: the build recipe needs updating")
print("replace (")
for m in mods:
    print(f"\t{m} => {m} {sys.argv[2]}")
print(")")
PY
  } > "$mod/go.mod"
  log "replaced $(grep -c '=>' "$mod/go.mod") staging modules with $staging_version"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for c in "${commands[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } > "$mod/tools.go"
  (cd "$mod" && go mod tidy)
  local major minor
  major=${KUBE_VERSION#v}; major=${major%%.*}
  minor=${KUBE_VERSION#v*.}; minor=${minor%%.*}
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "go build (one invocation, ${#commands[@]} commands) -> $out"
  local t=$SECONDS
  (cd "$mod" && go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" -o "$out/" \
      "${commands[@]/#/k8s.io/kubernetes/cmd/}")
  log "kube $KUBE_VERSION built in $((SECONDS - t))s"
  touch "$out/.complete"
}

build_etcd() {
  local out="$cache/etcd-$ETCD_VERSION"
  [[ -f "$out/.complete" ]] && { log "etcd $ETCD_VERSION cached in $out"; return; }
  # Its own module: one graph with kubernetes would let version selection move grpc/otel under it.
  local mod="$cache/src/etcd-$ETCD_VERSION"
  rm -rf "$mod" && mkdir -p "$mod" "$out"
  printf 'module rolecall.dev/hack/etcdtools\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$GO_MIN_VERSION" "$ETCD_VERSION" > "$mod/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$mod/tools.go"
  (cd "$mod" && go mod tidy)
  log "go build etcd -> $out"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
  touch "$out/.complete"
}

build_kwok() {
  local out="$cache/kwok-$KWOK_VERSION"
  [[ -f "$out/.complete" ]] && { log "kwok $KWOK_VERSION cached in $out"; return; }
  mkdir -p "$out"
  log "go install kwok -> $out"
  GOBIN="$out" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  touch "$out/.complete"
}

build_helm() {
  local out="$cache/helm-$HELM_VERSION"
  [[ -f "$out/.complete" ]] && { log "helm $HELM_VERSION cached in $out"; return; }
  mkdir -p "$out"
  log "fetching helm.sh/helm/v3@$HELM_VERSION go.mod through the module proxy"
  local upstream
  upstream=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  # `go install pkg@version` refuses a module whose go.mod has replace directives: say so up front.
  if grep -qE '^\s*replace\b' "$upstream"; then
    echo "error: helm.sh/helm/v3@$HELM_VERSION go.mod has replace directives; build it through a tools module like kube" >&2
    exit 1
  fi
  # The same -X flags as helm's release Makefile: the pinned version, and the Kubernetes version that
  # `helm template`/`lint` assume (client-go v0.37.0 -> 1.37). Derived from its go.mod, never hard-coded.
  local client_go major minor
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$upstream")
  [[ "$client_go" =~ ^v0\.([0-9]+)\. ]] || { echo "error: no k8s.io/client-go v0.Y.Z in helm's go.mod: the build recipe needs updating" >&2; exit 1; }
  major=1 minor=${BASH_REMATCH[1]}
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=$major -X $pkg.k8sVersionMinor=$minor"
  done
  log "go install helm (Kubernetes $major.$minor capabilities) -> $out"
  local t=$SECONDS
  GOBIN="$out" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  log "helm built in $((SECONDS - t))s"
  touch "$out/.complete"
}

build_tools() {
  # Keyed by the sources' hash, so an edit rebuilds them and a fresh clone reuses the cache.
  local key
  key=$(cd "$here/tools" && cat go.mod go.sum ./*/*.go | sha256sum | cut -c1-16)
  local out="$cache/tools-$key"
  if [[ -f "$out/.complete" ]]; then
    log "kstatus, argolua cached in $out"
  else
    mkdir -p "$out"
    log "go build hack/tools (kstatus on sigs.k8s.io/cli-utils, argolua on gopher-lua) -> $out"
    (cd "$here/tools" && go build -trimpath -ldflags "-s -w" -o "$out/" ./kstatus ./argolua)
    touch "$out/.complete"
  fi
  ln -sf "$out/kstatus" "$out/argolua" "$cache/bin/"
}

start=$SECONDS
if [[ ${1:-} == --compat ]]; then  # the compatibility bed's control plane only (make compat-bins)
  build_kube "$COMPAT_KUBE_VERSION" kube-apiserver kube-controller-manager kube-scheduler
  log "compat binaries ready in $((SECONDS - start))s"
  echo "$cache/kube-$COMPAT_KUBE_VERSION"
  exit 0
fi
mkdir -p "$cache/bin"
build_tools
build_etcd
build_kwok
build_helm
build_kube "$KUBE_VERSION" kube-apiserver kube-controller-manager kube-scheduler kubectl
log "all binaries ready in $((SECONDS - start))s"
mkdir -p "$cache/bin"
ln -sf "$cache/kube-$KUBE_VERSION/"{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl} "$cache/bin/"
ln -sf "$cache/etcd-$ETCD_VERSION/etcd" "$cache/kwok-$KWOK_VERSION/kwok" "$cache/helm-$HELM_VERSION/helm" "$cache/bin/"
echo "$cache/bin"
