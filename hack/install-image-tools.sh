#!/usr/bin/env bash
# Installs what `make image` needs to build and run the operator image without a Docker engine or a
# registry (Debian packages): podman with runc (crun fails on this machine's hybrid cgroups), its
# network stack, mmdebstrap for the base rootfs and skopeo to inspect the OCI archive.
set -euo pipefail
pkgs=(podman runc netavark aardvark-dns iptables mmdebstrap skopeo)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && { echo "image tools: all installed"; exit 0; }
if [[ $(id -u) -ne 0 ]]; then
  echo "error: missing Debian packages: ${missing[*]}; run 'sudo $0' once" >&2
  exit 1
fi
echo "image tools: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "image tools: installed"
