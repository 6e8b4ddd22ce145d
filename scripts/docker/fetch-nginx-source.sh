#!/usr/bin/env bash
# Build stage: puts the nginx source of VERSION into DEST.
# Downloads from nginx.org, or copies NGINX_SOURCE_DIR when set (used by the offline test).
# Usage: fetch-nginx-source.sh VERSION DEST
set -euo pipefail
version="$1" dest="$2"
rm -rf "$dest"
mkdir -p "$dest"
if [ -n "${NGINX_SOURCE_DIR:-}" ]; then
  cp -r "$NGINX_SOURCE_DIR"/. "$dest"/
else
  curl -fsSL "https://nginx.org/download/nginx-${version}.tar.gz" | tar -xz --strip-components=1 -C "$dest"
fi
actual=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$dest/src/core/nginx.h")
[ "$actual" = "$version" ] || { echo "nginx source is $actual, expected $version" >&2; exit 1; }
