#!/usr/bin/env bash
# Prints the nginx binary the vendored build produced for a profile (default: release).
set -euo pipefail
profile="${1:-release}"
cd "$(dirname "$0")/.."
ls -t target/"$profile"/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -n 1
