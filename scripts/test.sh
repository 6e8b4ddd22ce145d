#!/usr/bin/env bash
# Runs the whole test suite: unit tests of the pure crates and the integration tests,
# which start the real nginx with the module, the development identity server and an echo API,
# and the interoperability tests against oidc-provider and the dpop client library (Node.js,
# installed by scripts/oidc-provider.sh), and the fleet tests on every Redis and Valkey version
# (tests/fleet_versions.rs: Debian's Redis 7.0, and Redis 6.2, Valkey 8.1 and 9.1 installed by
# scripts/redis-servers.sh; TEST_ALL_REDIS=1 makes a missing one a failure, not a skip).
# tests/http3.rs needs an nginx built with the HTTP/3 module and is skipped here with a note:
# scripts/http3.sh test builds one and runs it (CI does).
#
# Against another nginx (e.g. Debian's), set NGINX_BUILD_DIR to its configured objs
# directory and TEST_NGINX_BINARY to the binary (see README, "Debian's nginx").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/oidc-provider.sh
scripts/py-deps.sh
scripts/redis-servers.sh
export TEST_ALL_REDIS=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
features=()
[ -n "${NGINX_BUILD_DIR:-}" ] && features=(--no-default-features --features export-modules)
cargo build --release "${features[@]}"
cargo test --release --workspace "${features[@]}" -- --test-threads "${TEST_THREADS:-4}"
