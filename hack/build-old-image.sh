#!/usr/bin/env bash
# Builds the operator image of an older commit, for the upgrade test: localhost/rolecall/operator:<rev>, from
# that commit's own sources, lock and build script (`git archive`, so it needs the repository's history).
# The build is skipped when podman already has that image. The one change made to the old sources: the
# image name, so the old build does not take the current build's tag.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:?usage: build-old-image.sh <commit>}
image=localhost/rolecall/operator:$rev
export CONTAINERS_CONF=$repo/hack/image/containers.conf
# The old sources (the upgrade test installs their chart), extracted every time: a fresh clone has none.
src=$repo/.testbed/old/$rev
rm -rf "$src" && mkdir -p "$src"
git -C "$repo" archive "$rev" | tar -x -C "$src"
if podman image exists "$image"; then
  echo "image:          $image (present); sources in ${src#"$repo"/}"
  exit 0
fi
ln -s "$repo/.venv" "$src/.venv"  # the old script uses the venv's pip and python to download and build wheels
sed -i "s|^image=localhost/rolecall/operator:\$version$|image=$image|" "$src/hack/build-image.sh"
grep -q "^image=$image$" "$src/hack/build-image.sh" || { echo "error: $rev's build-image.sh names its image differently" >&2; exit 1; }
bash "$src/hack/build-image.sh"
