#!/usr/bin/env bash
# Builds the module for Debian's packaged nginx (bookworm: 1.22.1) and, with `test`, runs the
# integration suite against /usr/sbin/nginx.
#
#   scripts/debian.sh         -> target/debian/release/libngx_phantom_token.so
#   scripts/debian.sh test    -> also runs the whole test suite with Debian's nginx
#
# Then: load_module /path/to/libngx_phantom_token.so; in /etc/nginx/nginx.conf
# (or copy it to /usr/lib/nginx/modules/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh nginx nginx-dev
src=target/debian-nginx-src
if [ ! -f "$src/objs/Makefile" ]; then
  rm -rf "$src"
  mkdir -p target
  cp -r /usr/share/nginx/src "$src"
  (cd "$src" && . ./conf_flags && ./configure "${NGX_CONF_FLAGS[@]}" >configure.log)
fi
export NGINX_BUILD_DIR="$(pwd)/$src/objs"
flags=(--release --no-default-features --features export-modules --target-dir target/debian)
cargo build "${flags[@]}"
so=target/debian/release/libngx_phantom_token.so
echo "module for $(/usr/sbin/nginx -v 2>&1): $so"
if [ "${1:-}" = "test" ]; then
  TEST_NGINX_BINARY=/usr/sbin/nginx cargo test "${flags[@]}" --workspace -- --test-threads "${TEST_THREADS:-4}"
fi
