#!/usr/bin/env bash
# Builds the module for Debian's packaged nginx (bookworm: 1.22.1) and, with `test`, runs the
# integration suite against /usr/sbin/nginx.
#
#   scripts/debian.sh         -> target/debian/release/libngx_phantom_token.so
#   scripts/debian.sh test    -> also runs the whole test suite with Debian's nginx
#   scripts/debian.sh test --test core   -> only these tests (arguments go to cargo test)
#
# Debian's Lua module (libnginx-mod-http-lua) is installed too: tests/lua.rs loads it beside
# this module (TEST_LUA=1, set by .ci/run, makes its absence a failure there).
#
# Install it as nginx names modules:
#   cp target/debian/release/libngx_phantom_token.so /usr/lib/nginx/modules/ngx_http_phantom_token_module.so
# and add `load_module modules/ngx_http_phantom_token_module.so;` to /etc/nginx/nginx.conf.
# (scripts/nginx-build.sh debian builds the same module with nginx's build system.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh nginx nginx-dev libnginx-mod-http-lua
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
  shift
  TEST_NGINX_BINARY=/usr/sbin/nginx cargo test "${flags[@]}" --workspace "$@" -- --test-threads "${TEST_THREADS:-4}"
fi
