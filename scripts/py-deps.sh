#!/usr/bin/env bash
# Installs the Python packages the tests use (the Prometheus text parser of tests/operate.rs)
# into tests/py/site (git-ignored), at pinned versions; does nothing when they are there.
set -euo pipefail
cd "$(dirname "$0")/.."
site=tests/py/site
want=0.21.1
if [ -f "$site/prometheus_client-$want.dist-info/METADATA" ]; then
  exit 0
fi
command -v python3 >/dev/null || scripts/deps.sh python3 python3-pip
echo "Installing prometheus-client $want into $site"
python3 -m pip install -q --disable-pip-version-check --target "$site" "prometheus-client==$want"
