#!/usr/bin/env bash
# Builds the module with nginx's own build system, as a packager would (`config` at the
# repository root, see README "With nginx's build system"), and checks the result.
#
#   scripts/nginx-build.sh vendored   nginx 1.28.3 (the nginx-src crate's copy):
#                                     ./configure --with-compat ... --add-dynamic-module=<repo>,
#                                     make (nginx and the module), nginx -t with load_module,
#                                     then the integration suite with that nginx and .so
#   scripts/nginx-build.sh debian     Debian's nginx 1.22.1 (/usr/share/nginx/src of nginx-dev):
#                                     ./configure with Debian's arguments --add-dynamic-module,
#                                     make modules, nginx -t with /usr/sbin/nginx, then the
#                                     integration suite with /usr/sbin/nginx and that .so
#   scripts/nginx-build.sh static     nginx 1.28.3 with the module built in (--add-module):
#                                     make, nginx -t, one request answered by the module
#   scripts/nginx-build.sh            all three (CI)
#
# SUITE=quick runs only the packaging, examples and core tests instead of the whole suite.
#
# Each build lives in target/nginx-build/<name>/ (a copy of the nginx source, configured there);
# the module is target/nginx-build/<name>/objs/ngx_http_phantom_token_module.so and cargo's
# target directory objs/ngx_phantom_token/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$root/target/nginx-build
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
so_name=ngx_http_phantom_token_module.so
jobs=$(nproc)

step() { echo "-- $*"; }
elapsed() { echo "   ($(($(date +%s) - $1)) s)"; }

# Runs a command with its output in a log file; shows the end of the log if it fails.
logged() {
  local log=$1
  shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "failed: $* (log: $log)" >&2
    return 1
  fi
}

# The nginx source of the nginx-src crate that Cargo.lock pins.
vendored_source() {
  local ver dir
  ver=$(sed -n '/^name = "nginx-src"$/{n;s/^version = "\(.*\)"$/\1/p;}' Cargo.lock)
  [ -n "$ver" ] || { echo "nginx-src is not in Cargo.lock" >&2; return 1; }
  dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"nginx-src-$ver"/nginx 2>/dev/null | head -n 1)
  if [ -z "$dir" ]; then
    cargo fetch --locked >/dev/null
    dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"nginx-src-$ver"/nginx | head -n 1)
  fi
  echo "$dir"
}

# Copies nginx source $1 to a fresh tree $2.
fresh_tree() {
  rm -rf "$2"
  mkdir -p "$(dirname "$2")"
  cp -r "$1" "$2"
}

# nginx -t of a configuration using the module's directives. Args: nginx binary, prefix,
# load_module line (empty for a static build). Also checks the version notice.
check_config() {
  local nginx=$1 prefix=$2 load=$3
  rm -rf "$prefix"
  mkdir -p "$prefix/logs"
  cat >"$prefix/nginx.conf" <<EOF
$load
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log notice;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $prefix/cb; proxy_temp_path $prefix/px; fastcgi_temp_path $prefix/fc;
    uwsgi_temp_path $prefix/uw; scgi_temp_path $prefix/sc;
    phantom_token_cache_zone tokens:1m;
    server {
        listen 127.0.0.1:$PHANTOM_CHECK_PORT;
        location / {
            phantom_token on;
            phantom_token_introspection_endpoint /_introspect;
            phantom_token_cache tokens;
            root $prefix;
        }
        location = /_introspect { internal; proxy_pass http://127.0.0.1:9; }
    }
}
EOF
  "$nginx" -t -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log"
  local version
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
  grep -q "\[notice\].*ngx_phantom_token $version" "$prefix/logs/error.log" || {
    echo "no version notice in $prefix/logs/error.log" >&2
    return 1
  }
}

# The module built by nginx's makefile must carry nginx's name and export only the module table.
check_module() {
  local so=$1
  [ -f "$so" ] || { echo "missing: $so" >&2; return 1; }
  local exports
  exports=$(nm -D --defined-only "$so" | awk '{print $3}' | sort | tr '\n' ' ')
  [ "$exports" = "ngx_module_names ngx_module_order ngx_modules " ] || {
    echo "$so exports more than the module table: $exports" >&2
    return 1
  }
  echo "   $so ($(du -h "$so" | cut -f1)), exports: $exports"
}

build_vendored() {
  local t0 tree
  t0=$(date +%s)
  tree=$work/vendored-1.28.3
  step "nginx 1.28.3: configure --add-dynamic-module, make"
  fresh_tree "$(vendored_source)" "$tree"
  (cd "$tree" && logged configure.log auto/configure --with-compat --with-http_ssl_module \
    --with-http_v2_module --with-threads --add-dynamic-module="$root")
  logged "$tree/make.log" make -C "$tree" -j"$jobs"
  check_module "$tree/objs/$so_name"
  elapsed "$t0"
  step "nginx 1.28.3: nginx -t with load_module"
  check_config "$tree/objs/nginx" "$work/vendored-prefix" "load_module $tree/objs/$so_name;"
  step "nginx 1.28.3: integration tests ${suite[*]:-(all)} with the configure-built module"
  t0=$(date +%s)
  # The test binaries of the vendored cargo build (nginx 1.28.3, as scripts/test.sh builds
  # them) run against the configure-built nginx and module.
  TEST_NGINX_BINARY="$tree/objs/nginx" TEST_PHANTOM_MODULE="$tree/objs/$so_name" \
    cargo test --release -p ngx-phantom-token "${suite[@]}" -- --test-threads "${TEST_THREADS:-4}"
  elapsed "$t0"
}

build_debian() {
  local t0 tree
  t0=$(date +%s)
  tree=$work/debian-1.22.1
  scripts/deps.sh nginx nginx-dev
  step "Debian nginx $(/usr/sbin/nginx -v 2>&1 | sed 's#.*/##'): configure (Debian's arguments) --add-dynamic-module, make modules"
  fresh_tree /usr/share/nginx/src "$tree"
  # shellcheck disable=SC1091
  (cd "$tree" && . ./conf_flags && logged configure.log ./configure "${NGX_CONF_FLAGS[@]}" \
    --add-dynamic-module="$root")
  # Debian's copy has no top-level Makefile; its own packaging runs objs/Makefile the same way.
  (cd "$tree" && logged make.log make -f objs/Makefile -j"$jobs" modules)
  check_module "$tree/objs/$so_name"
  elapsed "$t0"
  step "Debian nginx: nginx -t of /usr/sbin/nginx with load_module"
  check_config /usr/sbin/nginx "$work/debian-prefix" "load_module $tree/objs/$so_name;"
  step "Debian nginx: integration tests ${suite[*]:-(all)} with the configure-built module"
  t0=$(date +%s)
  TEST_PHANTOM_MODULE="$tree/objs/$so_name" scripts/debian.sh test "${suite[@]}"
  elapsed "$t0"
}

build_static() {
  local t0 tree prefix pid status
  t0=$(date +%s)
  tree=$work/static-1.28.3
  prefix=$work/static-prefix
  step "nginx 1.28.3: configure --add-module (built in), make"
  fresh_tree "$(vendored_source)" "$tree"
  (cd "$tree" && logged configure.log auto/configure --with-compat --with-http_ssl_module \
    --with-threads --add-module="$root")
  logged "$tree/make.log" make -C "$tree" -j"$jobs"
  "$tree/objs/nginx" -V 2>&1 | grep -q "add-module=$root" || {
    echo "objs/nginx was not configured with the module" >&2
    return 1
  }
  elapsed "$t0"
  step "static nginx: nginx -t, and a request without a token gets the module's 401"
  check_config "$tree/objs/nginx" "$prefix" ""
  "$tree/objs/nginx" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log"
  pid=$(cat "$prefix/nginx.pid")
  status=$(curl -s -o "$prefix/body" -w '%{http_code}' --retry 5 --retry-connrefused \
    "http://127.0.0.1:$PHANTOM_CHECK_PORT/" || true)
  kill -QUIT "$pid"
  if [ "$status" != 401 ] || ! grep -q unauthorized_request "$prefix/body"; then
    echo "expected the module's 401, got $status: $(cat "$prefix/body")" >&2
    return 1
  fi
  echo "   401 $(cat "$prefix/body")"
}

# The port the checks' configuration listens on (only the static build really serves on it).
PHANTOM_CHECK_PORT=${PHANTOM_CHECK_PORT:-$(python3 -c \
  'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
suite=()
[ "${SUITE:-full}" = full ] || suite=(--test packaging --test examples --test core)
mkdir -p "$work"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(vendored debian static)
scripts/deps.sh
for t in "${targets[@]}"; do
  case "$t" in
    vendored) build_vendored ;;
    debian) build_debian ;;
    static) build_static ;;
    *) echo "unknown build: $t (vendored, debian, static)" >&2; exit 2 ;;
  esac
done
echo "nginx build system: ${targets[*]} OK"
