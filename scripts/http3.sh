#!/usr/bin/env bash
# Builds the vendored nginx 1.28.3 a second time, with the HTTP/3 module
# (--with-http_v3_module through nginx-src's NGX_CONFIGURE_ARGS; on OpenSSL 3.0 nginx uses its
# QUIC compatibility layer), and the module against it, in a target directory of its own so
# that neither build undoes the other; with `test`, runs the HTTP/3 tests (tests/http3.rs,
# with the aioquic client that scripts/py-deps.sh installs) and `nginx -t` of the example
# configurations (tests/examples.rs; the README's HTTP/3 one needs this nginx).
# TEST_HTTP3=1 makes the HTTP/3 tests fail, not skip, if this nginx had no HTTP/3.
#
#   scripts/http3.sh               -> target/http3/release/libngx_phantom_token.so and its nginx
#   scripts/http3.sh test          -> also runs tests/http3.rs and tests/examples.rs
#   scripts/http3.sh test --test core   -> other tests against this nginx (arguments go to cargo test)
#
# HTTP3_TARGET_DIR overrides the target directory (default target/http3).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export NGX_CONFIGURE_ARGS="${NGX_CONFIGURE_ARGS:+$NGX_CONFIGURE_ARGS }--with-http_v3_module"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
flags=(--release --target-dir "${HTTP3_TARGET_DIR:-target/http3}")
cargo build "${flags[@]}"
nginx=$(ls -t "${HTTP3_TARGET_DIR:-target/http3}"/release/build/nginx-sys-*/out/objs/nginx | head -n 1)
"$nginx" -V 2>&1 | grep -q -- --with-http_v3_module || {
  echo "$nginx was built without --with-http_v3_module" >&2
  exit 1
}
echo "module for $("$nginx" -v 2>&1) with HTTP/3: ${HTTP3_TARGET_DIR:-target/http3}/release/libngx_phantom_token.so"
echo "nginx: $nginx"
if [ "${1:-}" = "test" ]; then
  shift
  scripts/py-deps.sh
  # tests/examples.rs: nginx -t of every example, the README's `listen ... quic` one included.
  [ $# -eq 0 ] && set -- --test http3 --test examples
  TEST_HTTP3=1 cargo test "${flags[@]}" "$@" -- --test-threads "${TEST_THREADS:-4}"
fi
