#!/usr/bin/env bash
# Installs the npm packages of the interoperability tests (tests/interop.rs) at the versions
# pinned in tests/oidc/package.json and package-lock.json, into tests/oidc/node_modules
# (git-ignored): oidc-provider, the certified OpenID provider, and dpop, the DPoP (RFC 9449)
# client library of tests/oidc/dpop-client.mjs. Does nothing when those versions are there.
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
# The dependencies whose installed version is not the pinned one ("" when all are).
missing=$(cd "$dir" && node -e '
  const { createRequire } = require("node:module");
  const req = createRequire(process.cwd() + "/");
  const deps = require("./package.json").dependencies;
  const bad = Object.entries(deps).filter(([name, want]) => {
    try { return req(name + "/package.json").version !== want; } catch { return true; }
  });
  console.log(bad.map(([name, want]) => name + "@" + want).join(" "));
')
[ -z "$missing" ] && exit 0
echo "Installing $missing into $dir/node_modules"
npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
