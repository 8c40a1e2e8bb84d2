#!/usr/bin/env bash
# Builds the operator image localhost/rolecall/operator:<version> with podman (no Docker engine, no
# registry) and saves it as an OCI archive in .testbed/image/. `make image` runs it; BASE=<image>
# builds on another base instead of the local Debian one (see Containerfile), SOURCE=<url> labels it.
#   base image  <- mmdebstrap rootfs tar, cached per base tag, imported only when podman lacks it
#   wheelhouse  <- `pip download` of requirements.lock on the host, cached; the build runs offline
#   app wheel   <- `pip wheel` of a copy of the sources (a stale build/ dir can never leak into it)
# Prints the image reference, sizes, digests and the time taken.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${ROLECALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rolecall}/image
out=$repo/.testbed/image
pip=$repo/.venv/bin/pip
export CONTAINERS_CONF=$repo/hack/image/containers.conf
log() { printf '[image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
now() { date +%s.%N; }
since() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f} s")' "$1" "$(now)"; }

[[ -x $pip ]] || { echo "error: $pip is missing; run 'make venv'" >&2; exit 1; }
version=$("$repo/.venv/bin/python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")
image=localhost/rolecall/operator:$version
archive=$out/rolecall-operator-$version.oci.tar
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$repo" status --porcelain 2>/dev/null) ]] && revision+=-dirty
mkdir -p "$cache/wheelhouse" "$out"
work=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(now)

# --- base image: a Debian bookworm rootfs, unless the caller names another base ---
build_base() {  # build_base TAG
  local tag=$1 tar
  tar=$cache/base-${tag##*:}.tar
  if podman image exists "$tag"; then log "base $tag present in podman storage"; return; fi
  if [[ ! -f $tar ]]; then
    log "base: mmdebstrap bookworm into $tar (apt sources from the host)"
    local t0; t0=$(now)
    # minbase + what a venv needs. merged-usr hook: without it usrmerge pulls perl in (+100 MB).
    # path-excludes drop man pages, docs (keeping copyright files) and translations. The host's
    # resolv.conf and hostname are emptied: podman mounts its own. mmdebstrap 1.3.5 writes device
    # nodes into the tar, which `podman import` cannot take: mmtarfilter drops /dev's entries.
    mmdebstrap --quiet --variant=minbase --format=tar --include=python3,python3-venv,ca-certificates \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --customize-hook='for f in etc/resolv.conf etc/hostname; do : > "$1/$f"; done' \
      bookworm - /etc/apt/sources.list.d/debian.sources 2>"$work/mmdebstrap.log" \
      | mmtarfilter --path-exclude='/dev/?*' > "$tar.part" || { cat "$work/mmdebstrap.log" >&2; exit 1; }
    mv "$tar.part" "$tar"
    log "base: rootfs $(du -m "$tar" | cut -f1) MB in $(since "$t0")"
  fi
  log "base: podman import $tar as $tag"
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/usr/bin/python3"]' \
    "$tar" "$tag" >/dev/null
}
base=${BASE:-}
if [[ -z $base ]]; then
  base=$(sed -n 's/^ARG BASE=//p' "$repo/Containerfile")
  build_base "$base"
fi

# --- build context: Containerfile, lock, wheelhouse, app wheel; nothing else (no .venv, no .testbed) ---
ctx=$work/context
mkdir -p "$ctx/wheelhouse" "$ctx/dist"
cp "$repo/Containerfile" "$repo/requirements.lock" "$ctx/"
# Wheels for the image's interpreter, not the host's: CPython 3.11, the manylinux tags the lock was
# compiled for (hack/check-lock.sh). --no-deps: the lock is complete.
wheel_args=(--quiet --no-deps --require-hashes --only-binary=:all: --implementation cp --python-version 3.11
            --abi cp311 -r "$repo/requirements.lock")
for minor in $(seq 28 -1 17); do wheel_args+=(--platform "manylinux_2_${minor}_x86_64"); done
wheel_args+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
# Copies the locked wheels from the cache into the context; fails if one is missing there.
from_cache() { "$pip" download "${wheel_args[@]}" --no-index --find-links "$cache/wheelhouse" -d "$ctx/wheelhouse"; }
if ! from_cache 2>/dev/null; then
  log "wheelhouse: downloading what $cache/wheelhouse lacks"
  "$pip" download "${wheel_args[@]}" -d "$cache/wheelhouse"
  from_cache
fi
log "wheelhouse: $(find "$ctx/wheelhouse" -name '*.whl' | wc -l) wheels"

# SOURCE_DATE_EPOCH fixes the wheel's zip timestamps: unchanged code gives the same wheel bytes, so
# podman's cache reuses even the app layer; a real change rebuilds only that layer.
mkdir -p "$work/src"
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/operator" "$work/src/"
rm -rf "$work/src/operator/"*.egg-info
SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 315532800) \
  "$pip" wheel --quiet --no-deps -w "$ctx/dist" "$work/src"

# --- build (RUN steps get no network: everything they install is in the context) ---
log "podman build $image from $base"
t0=$(now)
podman build --quiet --layers --network none -f "$ctx/Containerfile" -t "$image" \
  --build-arg "BASE=$base" --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  ${SOURCE:+--build-arg "SOURCE=$SOURCE"} "$ctx" >/dev/null
build_time=$(since "$t0")
id=$(podman image inspect --format '{{.Id}}' "$image")
manifest() { skopeo inspect --raw "oci-archive:$archive"; }
t0=$(now)
# An unchanged image (same config digest) keeps its archive: podman save re-compresses ~300 MB.
if [[ ! -f $archive ]] || [[ $(manifest | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])') != "sha256:$id" ]]; then
  rm -f "$archive"
  podman save --quiet --format oci-archive -o "$archive" "$image"
  save_time="podman save $(since "$t0")"
else
  save_time="archive up to date"
fi

size=$(podman image inspect --format '{{.Size}}' "$image")
read -r archive_digest layers_gz < <(manifest | python3 -c '
import hashlib, json, sys
raw = sys.stdin.buffer.read()
print("sha256:" + hashlib.sha256(raw).hexdigest(), sum(layer["size"] for layer in json.loads(raw)["layers"]))')
mb() { python3 -c 'import sys; print(f"{int(sys.argv[1]) / 1e6:.1f} MB")' "$1"; }
cat <<EOF
image:          $image
base:           $base
image id:       sha256:$id  (config digest, same in storage and archive)
archive:        ${archive#"$repo"/}  (manifest digest $archive_digest)
size:           $(mb "$size") uncompressed, $(mb "$layers_gz") compressed layers, archive $(mb "$(stat -c %s "$archive")")
time:           $(since "$start") total (podman build $build_time, $save_time)
EOF
