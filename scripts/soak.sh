#!/usr/bin/env bash
# Soak: sustained load for SECONDS (default 120) mixing cache hits, new tokens (introspection,
# insertion, eviction in a small zone) and rejected requests; prints the gateway workers' RSS
# every 10 seconds. A flat RSS means no per-request leak.
#
# Usage: scripts/soak.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-120}"
scripts/deps.sh wrk
cargo build --release -q
nginx_bin=$(scripts/nginx-bin.sh release)
module="$(pwd)/target/release/libngx_phantom_token.so"
dir=$(mktemp -d /tmp/phantom-soak.XXXXXX)
chmod 755 "$dir"
trap 'kill -QUIT "$(cat "$dir/nginx.pid")" 2>/dev/null || true' EXIT

b64() { printf '%s' "$1" | base64 -w0 | tr '+/' '-_' | tr -d '='; }
jwt="$(b64 '{"alg":"RS256"}').$(b64 '{"sub":"soak","scope":"read","exp":4102444800}').$(b64 sig)"
user=""; [ "$(id -u)" -eq 0 ] && user="user root;"
cat >"$dir/nginx.conf" <<EOF
load_module $module;
$user
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/cb; proxy_temp_path $dir/px; fastcgi_temp_path $dir/fc;
  uwsgi_temp_path $dir/uw; scgi_temp_path $dir/sc;
  phantom_token_cache_zone soak:256k negative_ttl=2s;
  server {
    listen 127.0.0.1:19200;
    location / { phantom_token on; phantom_token_introspection_endpoint /_i;
                 phantom_token_cache soak; proxy_pass http://127.0.0.1:19201; }
    location = /_i { internal; proxy_pass http://127.0.0.1:19201/introspect; }
  }
  server {
    listen 127.0.0.1:19201;
    location = /introspect { default_type application/jwt; add_header Cache-Control "max-age=30";
                             return 200 '$jwt'; }
    location / { return 200 'ok'; }
  }
}
EOF
cat >"$dir/mix.lua" <<'EOF'
local n = 0
request = function()
  n = n + 1
  local r = math.random(100)
  local h = {}
  if r <= 70 then h["Authorization"] = "Bearer hot-" .. math.random(50)
  elseif r <= 90 then h["Authorization"] = "Bearer new-" .. n .. "-" .. math.random(1e9)
  elseif r <= 95 then h["Authorization"] = "Bearer bad token"
  end
  return wrk.format("GET", "/", h)
end
EOF
"$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
sleep 0.5
rss() { for p in $(pgrep -P "$(cat "$dir/nginx.pid")"); do awk '/VmRSS/ {printf "%s ", $2}' "/proc/$p/status"; done; }
wrk -t2 -c32 -d"${secs}s" -s "$dir/mix.lua" http://127.0.0.1:19200/ >"$dir/wrk.txt" &
wrk_pid=$!
for ((t = 0; t <= secs; t += 10)); do
  echo "t=${t}s worker RSS (kB): $(rss)"
  sleep 10
done
wait $wrk_pid
grep -E "requests in|Requests/sec|Non-2xx|Socket" "$dir/wrk.txt"
if grep -E "\[(alert|crit|emerg)\]|exited on signal" "$dir/error.log"; then
  echo "soak: errors in the log" >&2
  exit 1
fi
