#!/usr/bin/env bash
# Installs oidc-provider, the certified OpenID provider of the interoperability tests
# (tests/interop.rs), at the version pinned in tests/oidc/package.json and package-lock.json,
# into tests/oidc/node_modules (git-ignored). Does nothing when that version is already there.
# Installs Node.js and npm with apt when `node` is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=tests/oidc
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  scripts/deps.sh nodejs npm
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "oidc-provider needs Node.js 20 or later; found $(node -v)" >&2
  exit 1
fi
want=$(node -p "require('./$dir/package.json').dependencies['oidc-provider']")
have=$(node -p "try { require('./$dir/node_modules/oidc-provider/package.json').version } catch { '' }")
[ "$want" = "$have" ] && exit 0
echo "Installing oidc-provider $want into $dir/node_modules"
npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
