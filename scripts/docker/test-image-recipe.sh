#!/usr/bin/env bash
# Runs the Dockerfile's build steps on this machine (no container engine needed), using the
# vendored nginx source offline, and checks that the built module loads into an nginx built
# from the same source with --with-compat, with the image's example configuration.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/phantom-docker.XXXXXX)
trap 'rm -rf "$work"' EXIT
src_dir=$(ls -d ~/.cargo/registry/src/*/nginx-src-*/nginx | sort | tail -n 1)
version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$src_dir/src/core/nginx.h")
scripts/docker/install-build-deps.sh
NGINX_SOURCE_DIR="$src_dir" scripts/docker/fetch-nginx-source.sh "$version" "$work/nginx"
scripts/docker/configure-nginx.sh "$work/nginx"
scripts/docker/build-module.sh "$work/nginx" "$work/out"
# Stand-in for the official image: the same source built --with-compat.
make -C "$work/nginx" -j"$(nproc)" >"$work/make.log" 2>&1
mkdir -p "$work/prefix/logs"
sed -e "s#/usr/lib/nginx/modules/ngx_http_phantom_token_module.so#$work/out/ngx_http_phantom_token_module.so#" \
    -e "s#/var/run/nginx.pid#$work/prefix/nginx.pid#" \
    nginx-conf/docker.conf >"$work/prefix/nginx.conf"
"$work/nginx/objs/nginx" -t -p "$work/prefix" -c "$work/prefix/nginx.conf" -e "$work/prefix/logs/error.log"
echo "image recipe OK: module for nginx $version loads with nginx-conf/docker.conf"
