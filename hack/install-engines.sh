#!/usr/bin/env bash
# Installs the real engine servers that stand in for pod containers (Debian packages), with service
# starts denied so nginx/apache do not grab *:80 and collide with the pods' 127.x addresses.
set -euo pipefail
pkgs=(memcached redis-server postgresql postgresql-client nginx-light apache2 sqlite3 openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && { echo "engines: all installed"; exit 0; }
if [[ $(id -u) -ne 0 ]]; then
  echo "error: missing Debian packages: ${missing[*]}; run 'sudo $0' once" >&2
  exit 1
fi
echo "engines: installing ${missing[*]}"
policy=/usr/sbin/policy-rc.d
had_policy=0; [[ -e $policy ]] && had_policy=1
if [[ $had_policy -eq 0 ]]; then
  printf '#!/bin/sh\n# rolecall: deny service starts during package install\nexit 101\n' > "$policy"
  chmod +x "$policy"
fi
trap '[[ $had_policy -eq 0 ]] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Stop anything a package started regardless (e.g. when a policy was already present and allowed it).
for svc in nginx apache2 memcached redis-server postgresql; do
  service "$svc" stop >/dev/null 2>&1 || true
done
echo "engines: installed"
