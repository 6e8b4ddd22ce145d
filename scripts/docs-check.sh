#!/usr/bin/env bash
# Lints the Markdown documents (README.md, ARCHITECTURE.md, CHANGELOG.md, SECURITY.md, docs/)
# with markdownlint-cli2 at the version pinned in scripts/markdownlint/package.json and
# package-lock.json, installed into scripts/markdownlint/node_modules (git-ignored) when that
# version is not there. Rules: .markdownlint-cli2.jsonc (line length 100 for prose, valid
# tables, in-file anchors). The directive reference, cross-file links and anchors, and the
# example configurations are checked by the Rust tests (tests/docs.rs, tests/examples.rs).
# Installs Node.js and npm with apt when `node` is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=scripts/markdownlint
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  scripts/deps.sh nodejs npm
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "markdownlint-cli2 needs Node.js 20 or later; found $(node -v)" >&2
  exit 1
fi
want=$(node -p "require('./$dir/package.json').dependencies['markdownlint-cli2']")
have=$(node -p "try { require('./$dir/node_modules/markdownlint-cli2/package.json').version } catch { '' }")
if [ "$have" != "$want" ]; then
  echo "Installing markdownlint-cli2@$want into $dir/node_modules"
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
fi
"$dir/node_modules/.bin/markdownlint-cli2" --config .markdownlint-cli2.jsonc
