#!/usr/bin/env bash
# Builds everything and starts a working demo on 127.0.0.1:
#   nginx + module on :8080, development identity server on :8443, echo API on :9000.
# Then prints curl commands to try. `scripts/demo.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
run="$root/demo-run"

stop() {
  [ -f "$run/nginx.pid" ] && kill -QUIT "$(cat "$run/nginx.pid")" 2>/dev/null || true
  for p in idsvr echo; do
    [ -f "$run/$p.pid" ] && kill "$(cat "$run/$p.pid")" 2>/dev/null || true
    rm -f "$run/$p.pid"
  done
  sleep 0.3
}

if [ "${1:-}" = "stop" ]; then stop; echo "demo stopped"; exit 0; fi

scripts/deps.sh
cargo build --release --workspace
nginx_bin=$(scripts/nginx-bin.sh release)
stop
mkdir -p "$run"

nohup target/release/phantom-devsvr idsvr --listen 127.0.0.1:8443 >"$run/idsvr.log" 2>&1 &
echo $! >"$run/idsvr.pid"
nohup target/release/phantom-devsvr echo --listen 127.0.0.1:9000 >"$run/echo.log" 2>&1 &
echo $! >"$run/echo.pid"

sed -e "s#__MODULE__#$root/target/release/libngx_phantom_token.so#" \
    -e "s#__PREFIX__#$run#g" nginx-conf/demo.conf >"$run/nginx.conf"
"$nginx_bin" -p "$run" -c "$run/nginx.conf" -e "$run/error.log"

for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8080/ && break; sleep 0.1; done

cat <<'TXT'

ngx-phantom-token demo is running (logs and config in demo-run/).

1. Without a token, the API answers 401 with a WWW-Authenticate challenge:
   curl -i http://127.0.0.1:8080/api/hello

2. Get an opaque access token from the development identity server (client gateway:secret):
   TOKEN=$(curl -s -u gateway:secret -d grant_type=client_credentials -d scope=read \
     http://127.0.0.1:8080/oauth/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/'); echo $TOKEN

3. Call the API with it; the echo API shows the JWT it received in "authorization":
   curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/hello

4. Call again: X-Cache-Status shows HIT (no introspection). An unknown token is 401 invalid_token:
   curl -si -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/hello | grep -i x-cache
   curl -si -H "Authorization: Bearer nope" http://127.0.0.1:8080/api/hello | grep -i www-auth

5. The metrics page: requests by outcome, introspections, latency, cache hits, zone fill:
   curl -s http://127.0.0.1:8080/metrics | grep -v '^#'

Stop it with: scripts/demo.sh stop
TXT
