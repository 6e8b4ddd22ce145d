#!/usr/bin/env bash
# Build stage: configures the nginx source so the module's ABI matches the official image,
# which is built --with-compat (only the version and the compat signature must match).
# Usage: configure-nginx.sh SRC   (a release tarball has ./configure, a repository auto/configure)
set -euo pipefail
cd "$1"
configure=./configure
[ -x "$configure" ] || configure=auto/configure
"$configure" --with-compat --with-http_ssl_module --with-http_v2_module --with-threads >configure.log
