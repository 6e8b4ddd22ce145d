#!/usr/bin/env bash
# Build stage: system packages needed to configure nginx and build the module.
set -euo pipefail
pkgs=(build-essential libclang-dev libssl-dev libpcre2-dev zlib1g-dev curl ca-certificates pkg-config)
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
