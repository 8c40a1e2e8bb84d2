#!/usr/bin/env bash
# Fails early, with a message a person can act on, when Go is missing or older than the pinned go line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.env"
if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed (need Go >= $GO_MIN_VERSION to build the local cluster; https://go.dev/doc/install)" >&2
  exit 1
fi
have=$(GOTOOLCHAIN=local go env GOVERSION); have=${have#go}
if [[ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -1)" != "$GO_MIN_VERSION" ]]; then
  echo "error: Go $have is older than $GO_MIN_VERSION, which Kubernetes ${KUBE_VERSION} needs (its go.mod 'go' line)." >&2
  exit 1
fi
