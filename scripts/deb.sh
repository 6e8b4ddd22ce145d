#!/usr/bin/env bash
# Builds the Debian package of the module for Debian's nginx (bookworm: 1.22.1) with cargo-deb,
# from scripts/debian.sh's build; with `test`, installs it and checks it on this machine (root).
#
#   scripts/deb.sh        -> target/deb/libnginx-mod-http-phantom-token_<version>_<arch>.deb
#   scripts/deb.sh test   -> also: lintian; `apt-get install ./<file>.deb`; `nginx -t` with Debian's
#                            /etc/nginx; one request through /usr/sbin/nginx (a test site in
#                            /etc/nginx/conf.d, the development identity server and echo API of
#                            scripts/demo.sh) that must reach the API with a JWT; `apt-get remove`,
#                            which must leave no modules-enabled link; `nginx -t` again.
#
# The package's metadata is `[package.metadata.deb]` in Cargo.toml; its maintainer scripts, the
# load_module snippet and the copyright file are in packaging/deb/. cargo-deb is installed once,
# pinned, with `cargo install --locked` into $CARGO_DEB_HOME (default: a cache folder outside
# the repository, kept between runs); later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$SECONDS
version=3.8.0
home="${CARGO_DEB_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ngx-phantom-token/cargo-deb-$version}"
pkg=libnginx-mod-http-phantom-token
snippet=/usr/share/nginx/modules-available/mod-http-phantom-token.conf
link=/etc/nginx/modules-enabled/50-mod-http-phantom-token.conf
module=/usr/lib/nginx/modules/ngx_http_phantom_token_module.so

fail() { echo "deb.sh: $*" >&2; exit 1; }

# dpkg-dev: dpkg-shlibdeps (the libc6 dependency) and strip, which cargo-deb runs.
scripts/deps.sh dpkg-dev
if [ "$("$home/bin/cargo-deb" --version 2>/dev/null || true)" != "cargo-deb $version" ]; then
  echo "Installing cargo-deb $version into $home"
  cargo install --locked --quiet --force --root "$home" "cargo-deb@$version"
fi

# The module, built against the installed nginx's headers (target/debian/release/).
scripts/debian.sh

# The package depends on the exact ABI of the nginx it was built for: the `nginx-abi-*` that
# the installed nginx package provides must be the one Cargo.toml names.
abi=$(dpkg-query -W -f='${Provides}' nginx | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p')
[ -n "$abi" ] || fail "the installed nginx package provides no nginx-abi-*"
out=target/deb
rm -rf "$out"
mkdir -p "$out"
# target/release/ in the assets stands for cargo's target directory: scripts/debian.sh's.
CARGO_TARGET_DIR=target/debian "$home/bin/cargo-deb" deb --no-build --locked --quiet -o "$out/"
deb=$(ls "$out"/*.deb)
depends=$(dpkg-deb -f "$deb" Depends)
case ", $depends," in
  *", $abi,"*) ;;
  *) rm -f "$deb"
     fail "the installed nginx provides $abi but the package would depend on: $depends
(update depends in Cargo.toml [package.metadata.deb] and rebuild the module)" ;;
esac
echo "package for $(/usr/sbin/nginx -v 2>&1) ($abi): $deb"
[ "${1:-}" = "test" ] || exit 0

# ---- test: install, nginx -t, one request, remove --------------------------------------------
[ "$(id -u)" -eq 0 ] || fail "'test' installs the package: run it as root"
status() { dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true; }
case "$(status)" in
  "" | *not-installed) ;;
  *) fail "$pkg is on this machine ($(status)); remove it first (apt-get purge $pkg)" ;;
esac
[ ! -e "$link" ] && [ ! -L "$link" ] || fail "$link exists before the package is installed"

echo "== lintian"
# Debian's package checker; initial-upload-closes-no-bugs is for uploads to Debian's archive.
scripts/deps.sh lintian
if ! lintian --fail-on error,warning --suppress-tags initial-upload-closes-no-bugs "$deb" \
  >"$out/lintian.txt" 2>&1; then
  cat "$out/lintian.txt"
  fail "lintian finds errors or warnings in $deb"
fi

# The development servers of scripts/demo.sh, built with the module's target directory.
cargo build --release --locked --quiet --target-dir target/debian -p devsvr --bin phantom-devsvr
devsvr="$root/target/debian/release/phantom-devsvr"

run=$(mktemp -d)
site=/etc/nginx/conf.d/phantom-token-deb-test.conf
installed=0
pids=()
cleanup() {
  local rc=$? p
  if [ -s "$run/nginx.pid" ]; then
    p=$(cat "$run/nginx.pid")
    kill -QUIT "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -f "$site"
  if [ "$installed" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq -o DPkg::Lock::Timeout=300 "$pkg" \
      >/dev/null || true
  fi
  [ "$rc" = 0 ] || { echo "--- $run/error.log"; cat "$run/error.log" 2>/dev/null || true; }
  rm -rf "$run"
}
trap cleanup EXIT

echo "== apt-get install ./$deb"
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  -o DPkg::Lock::Timeout=300 "$root/$deb"
[ "$(status)" = "install ok installed" ] || fail "$pkg is not installed: $(status)"
[ -f "$module" ] || fail "no $module"
[ "$(readlink "$link")" = "$snippet" ] || fail "$link does not point to $snippet"
grep -qx "load_module modules/ngx_http_phantom_token_module.so;" "$snippet" \
  || fail "$snippet does not load the module"
for f in README.md copyright examples/production.conf; do
  [ -f "/usr/share/doc/$pkg/$f" ] || fail "no /usr/share/doc/$pkg/$f"
done

echo "== nginx -t (Debian's /etc/nginx, the module enabled)"
/usr/sbin/nginx -t
/usr/sbin/nginx -T >"$run/nginx-T.txt" 2>&1 || fail "nginx -T: $(cat "$run/nginx-T.txt")"
grep -q "^load_module modules/ngx_http_phantom_token_module.so;" "$run/nginx-T.txt" \
  || fail "nginx -T does not show the module's load_module"
grep -q "ngx_phantom_token [0-9]" "$run/nginx-T.txt" \
  || fail "nginx did not log the module's version"

echo "== one request through /usr/sbin/nginx"
for name in idsvr echo; do
  "$devsvr" "$name" --listen 127.0.0.1:0 >"$run/$name.out" 2>"$run/$name.err" &
  pids+=($!)
done
devsvr_port() { # <name>: the port it listens on (it prints "listening on <address>")
  for _ in $(seq 50); do
    grep -q "^listening on " "$run/$1.out" 2>/dev/null && break
    sleep 0.1
  done
  sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$run/$1.out" | grep . \
    || fail "phantom-devsvr $1 did not start: $(cat "$run/$1.err")"
}
idsvr_port=$(devsvr_port idsvr)
echo_port=$(devsvr_port echo)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
cat >"$site" <<CONF
# Written by scripts/deb.sh test, which removes it when it ends.
phantom_token_cache_zone phantom_deb_test:1m;

server {
    listen 127.0.0.1:$port;

    location /api/ {
        phantom_token on;
        phantom_token_introspection_endpoint /_introspect;
        phantom_token_cache phantom_deb_test;
        add_header X-Cache-Status \$phantom_token_cache_status always;
        proxy_pass http://127.0.0.1:$echo_port;
    }

    location = /_introspect {
        internal;
        proxy_pass_request_headers off;
        proxy_set_header Accept "application/jwt";
        proxy_set_header Content-Type "application/x-www-form-urlencoded";
        proxy_set_header Authorization "Basic Z2F0ZXdheTpzZWNyZXQ=";   # gateway:secret
        proxy_pass http://127.0.0.1:$idsvr_port/oauth/introspect;
    }
}
CONF
/usr/sbin/nginx -t -q || fail "nginx -t fails with the test site"

# Debian's nginx.conf as it is, except its pid and error log (here in $run) and without
# sites-enabled (Debian's default site listens on port 80, which may be taken on this machine):
# the module comes from modules-enabled, the test site from conf.d.
sed -e "s#^pid .*#pid $run/nginx.pid;#" -e "s#^error_log .*#error_log $run/error.log;#" \
  -e '\#^\s*include /etc/nginx/sites-enabled/#d' /etc/nginx/nginx.conf >"$run/nginx.conf"
grep -q "^pid $run/nginx.pid;" "$run/nginx.conf" && ! grep -q "sites-enabled/" "$run/nginx.conf" \
  && grep -q "^include /etc/nginx/modules-enabled/\*.conf;" "$run/nginx.conf" \
  || fail "cannot derive a test configuration from /etc/nginx/nginx.conf"
/usr/sbin/nginx -c "$run/nginx.conf" -e "$run/error.log"
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

token=$(curl -sf -u gateway:secret -d grant_type=client_credentials -d scope=read \
  "http://127.0.0.1:$idsvr_port/oauth/token" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
[ -n "$token" ] || fail "no token from the identity server"
code=$(curl -s -o "$run/body" -w '%{http_code}' -H "Authorization: Bearer $token" \
  "http://127.0.0.1:$port/api/hello")
[ "$code" = 200 ] || fail "GET /api/hello: $code, expected 200: $(cat "$run/body")"
python3 - "$run/body" "$token" <<'PY' || fail "the API did not receive a JWT: $(cat "$run/body")"
import json, sys
body = json.load(open(sys.argv[1]))
auth = [v for k, v in body["headers"] if k.lower() == "authorization"]
assert len(auth) == 1, auth
scheme, jwt = auth[0].split(" ", 1)
assert scheme == "Bearer" and jwt.count(".") == 2 and jwt.startswith("eyJ"), auth
assert sys.argv[2] not in auth[0], "the opaque token reached the API"
PY
echo "200 with a JWT upstream (nginx $(/usr/sbin/nginx -v 2>&1 | sed 's#.*/##'), port $port)"
p=$(cat "$run/nginx.pid")
kill -QUIT "$p"
for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$p" 2>/dev/null || fail "nginx ($p) did not stop"
rm -f "$run/nginx.pid" "$site"

echo "== apt-get remove $pkg"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q -o DPkg::Lock::Timeout=300 "$pkg"
installed=0
# No conffiles and no postrm: dpkg purges it on removal (no config-files state left).
case "$(status)" in
  "" | *not-installed) ;;
  *) fail "$pkg after apt-get remove: $(status)" ;;
esac
left=$(find /etc/nginx/modules-enabled -name '*phantom-token*' -o -lname "$snippet")
[ -z "$left" ] || fail "left behind in /etc/nginx/modules-enabled: $left"
[ ! -e "$module" ] || fail "$module is still there"
/usr/sbin/nginx -t
echo "deb.sh test: passed in $((SECONDS - started)) s"
