#!/usr/bin/env bash
# Benchmark: cache-hit and cache-miss paths against plain proxy_pass, in one run.
#
# The gateway nginx (one worker, pinned to CPU 0) serves three locations:
#   /plain  proxy_pass only, no module             (the baseline)
#   /hit    phantom_token + cache (always a hit after the first request)
#   /miss   phantom_token without cache (every request introspects)
# The API and the "identity server" are a second nginx answering with fixed responses; it and
# wrk share CPU 1. The figure that matters is the gateway worker's CPU time per request,
# read from /proc, reported as a ratio to /plain.
#
# Usage: scripts/bench.sh [seconds-per-run]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
scripts/deps.sh wrk
[ -z "${PHANTOM_MODULE:-}" ] && cargo build --release -q
nginx_bin=$(scripts/nginx-bin.sh release)
module="${PHANTOM_MODULE:-$(pwd)/target/release/libngx_phantom_token.so}"
dir=$(mktemp -d /tmp/phantom-bench.XXXXXX)
chmod 755 "$dir"
trap 'for p in gw be; do [ -f "$dir/$p/nginx.pid" ] && kill -QUIT "$(cat "$dir/$p/nginx.pid")" 2>/dev/null; done' EXIT

# A realistic ~900-byte JWT (exp in 2100) from the "identity server".
b64() { printf '%s' "$1" | base64 -w0 | tr '+/' '-_' | tr -d '='; }
pad=$(head -c 600 /dev/zero | tr '\0' 'x')
jwt="$(b64 '{"alg":"RS256","typ":"at+jwt","kid":"k1"}').$(b64 "{\"sub\":\"bench\",\"scope\":\"read\",\"exp\":4102444800,\"pad\":\"$pad\"}").$(b64 signature-bytes-signature-bytes)"

common() {
  cat <<EOF
daemon on;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}
temps() {
  echo "client_body_temp_path $1/cb; proxy_temp_path $1/px; fastcgi_temp_path $1/fc; uwsgi_temp_path $1/uw; scgi_temp_path $1/sc; access_log off;"
}

mkdir -p "$dir/be" "$dir/gw"
cat >"$dir/be/nginx.conf" <<EOF
$(common "$dir/be")
worker_processes 1;
worker_cpu_affinity 10;
http {
  $(temps "$dir/be")
  server { listen 127.0.0.1:19101; location / { default_type application/json; return 200 '{"ok":true}'; } }
  server { listen 127.0.0.1:19102; location / {
    default_type application/jwt; add_header Cache-Control "max-age=300"; return 200 '$jwt'; } }
}
EOF
cat >"$dir/gw/nginx.conf" <<EOF
load_module $module;
$(common "$dir/gw")
worker_processes 1;
worker_cpu_affinity 01;
http {
  $(temps "$dir/gw")
  phantom_token_cache_zone bench:10m;
  upstream api { server 127.0.0.1:19101; keepalive 64; }
  upstream ids { server 127.0.0.1:19102; keepalive 64; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  server {
    listen 127.0.0.1:19100;
    location /plain { proxy_pass http://api; }
    location /hit  { phantom_token on; phantom_token_introspection_endpoint /_i;
                     phantom_token_cache bench; proxy_pass http://api; }
    location /miss { phantom_token on; phantom_token_introspection_endpoint /_i; proxy_pass http://api; }
    location = /_i { internal; proxy_pass_request_headers off;
                     proxy_set_header Accept application/jwt;
                     proxy_set_header Content-Type application/x-www-form-urlencoded;
                     proxy_pass http://ids/introspect; }
  }
}
EOF
for p in be gw; do "$nginx_bin" -p "$dir/$p" -c "$dir/$p/nginx.conf" -e "$dir/$p/error.log"; done
sleep 0.5
worker=$(pgrep -P "$(cat "$dir/gw/nginx.pid")" | head -n 1)
hz=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$worker/stat"; }

declare -A rps cpu
for path in plain hit miss; do
  curl -s -o /dev/null -H "Authorization: Bearer bench-token" "http://127.0.0.1:19100/$path"
  taskset -c 1 wrk -t1 -c16 -d2s -H "Authorization: Bearer bench-token" "http://127.0.0.1:19100/$path" >/dev/null
  before=$(cpu_ticks)
  out=$(taskset -c 1 wrk -t1 -c16 -d"${secs}s" -H "Authorization: Bearer bench-token" "http://127.0.0.1:19100/$path")
  after=$(cpu_ticks)
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [ -n "$non2xx" ] && { echo "/$path: $non2xx non-2xx responses" >&2; exit 1; }
  rps[$path]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  cpu[$path]=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
done

printf '\n%-8s %12s %16s %10s\n' path "req/s" "CPU us/request" "CPU ratio"
for path in plain hit miss; do
  ratio=$(awk -v a="${cpu[$path]}" -v b="${cpu[plain]}" 'BEGIN {printf "%.3f", a / b}')
  printf '%-8s %12s %16s %10s\n' "/$path" "${rps[$path]}" "${cpu[$path]}" "${ratio}x"
done
echo
echo "(gateway: 1 worker on CPU 0; wrk -c16 and the backend on CPU 1; ${secs}s per path; nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///'))"
