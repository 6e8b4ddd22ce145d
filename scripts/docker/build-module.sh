#!/usr/bin/env bash
# Build stage: builds the module against the configured nginx tree SRC and copies it to OUT.
# Usage: build-module.sh SRC OUT   (run from the repository root)
set -euo pipefail
src=$(cd "$1" && pwd) out="$2"
NGINX_BUILD_DIR="$src/objs" cargo build --release --locked \
  --no-default-features --features export-modules --target-dir "${MODULE_TARGET_DIR:-target/docker}"
mkdir -p "$out"
cp "${MODULE_TARGET_DIR:-target/docker}/release/libngx_phantom_token.so" "$out/ngx_http_phantom_token_module.so"
