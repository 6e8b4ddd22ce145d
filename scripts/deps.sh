#!/usr/bin/env bash
# Installs the Debian packages the build and tests need, if any is missing.
# Usage: scripts/deps.sh [extra-package ...]
# (redis-tools: redis-cli, which makes the Redis Cluster of tests/fleet_cluster.rs.)
set -euo pipefail
pkgs=(libclang-dev libssl-dev libpcre2-dev zlib1g-dev curl pkg-config wrk openssl redis-server redis-tools "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
# Packages with services (nginx) must not start them: a test machine may have no init system.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  $sudo sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
