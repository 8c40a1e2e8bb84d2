#!/usr/bin/env bash
# requirements.lock pins, with hashes, the runtime dependencies ([project].dependencies) that the
# container image installs offline. `hack/check-lock.sh` fails when the lock no longer matches
# pyproject.toml (part of `make lint`); `hack/check-lock.sh --update` rewrites it (`make lock`).
#
# The check re-compiles with the current lock as uv's preferences, so it keeps every pin that still
# satisfies pyproject.toml: it fails on a changed dependency list, not on new upstream releases.
# It first tries uv's cache alone (--offline) and only asks the index when that does not reproduce
# the lock, so a pass never rests on stale cached data alone being different from the index.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
uv=${UV:-$repo/.venv/bin/uv}
lock=$repo/requirements.lock
[[ -x $uv ]] || { echo "error: $uv is missing; run 'make venv' (uv is in the dev extras)" >&2; exit 1; }

# The image runs Debian bookworm's CPython 3.11 on x86_64 (glibc 2.36, so manylinux_2_28 wheels fit).
# --native-tls: use the system CA store, as pip does here (a TLS-intercepting proxy may sit in between).
compile() {  # compile OUT [extra uv args...]
  local out=$1; shift
  (cd "$repo" && "$uv" pip compile pyproject.toml --quiet --native-tls --generate-hashes \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command 'make lock' -o "$out" "$@")
}

if [[ ${1:-} == --update ]]; then
  compile "$lock"
  echo "lock: wrote requirements.lock"
  exit 0
fi

[[ -f $lock ]] || { echo "error: requirements.lock is missing; run 'make lock'" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for mode in --offline ""; do
  cp "$lock" "$tmp/requirements.lock"   # the existing pins are uv's preferences
  if compile "$tmp/requirements.lock" $mode 2>"$tmp/err" && cmp -s "$lock" "$tmp/requirements.lock"; then
    echo "lock: requirements.lock matches pyproject.toml"
    exit 0
  fi
done
[[ -s $tmp/err ]] && cat "$tmp/err" >&2
echo "error: requirements.lock does not match pyproject.toml's [project].dependencies; run 'make lock' and commit it:" >&2
diff -u "$lock" "$tmp/requirements.lock" >&2 || true
exit 1
