#!/usr/bin/env bash
# Installs the Python packages the tests use (tests/py/requirements.txt: the Prometheus text
# parser of tests/operate.rs, the HTTP/3 client aioquic of tests/http3.rs) into tests/py/site
# (git-ignored), every one pinned; does nothing when that list is what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
site=tests/py/site
list=tests/py/requirements.txt
# Tests call this too, several at once: one installs, the others wait for it.
mkdir -p tests/py
exec 9>tests/py/.install.lock
flock 9
if cmp -s "$list" "$site/.installed-requirements" && [ -n "$(ls "$site")" ]; then
  exit 0
fi
command -v python3 >/dev/null || scripts/deps.sh python3 python3-pip
echo "Installing $list into $site"
rm -rf "$site"
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
  --target "$site" -r "$list"
cp "$list" "$site/.installed-requirements"
