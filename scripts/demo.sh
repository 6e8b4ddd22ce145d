#!/usr/bin/env bash
# Builds everything and starts a working demo on 127.0.0.1:
#   nginx + module on :8080, development identity server on :8443, echo API on :9000.
# Then prints curl commands to try (Bearer tokens, then DPoP-bound ones under /dpop/).
# `scripts/demo.sh stop` stops it.
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
   curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/hello; echo

4. Call again: X-Cache-Status shows HIT (no introspection). An unknown token is 401 invalid_token:
   curl -si -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/hello | grep -i x-cache
   curl -si -H "Authorization: Bearer nope" http://127.0.0.1:8080/api/hello | grep -i www-auth

5. The metrics page: requests by outcome, introspections, latency, cache hits, zone fill:
   curl -s http://127.0.0.1:8080/metrics | grep -v '^#'

6. DPoP (RFC 9449, location /dpop/): the client proves on each request that it holds the key
   the token is bound to. A shell function that makes proofs with a key kept in
   demo-run/dpop.key (an ES256 key, created on first use):
TXT
printf '   dpop() { %q dpop-proof --key %q "$@"; }\n' \
  "$root/target/release/phantom-devsvr" "$run/dpop.key"
cat <<'TXT'

7. Get a DPoP-bound token with a proof for POST http://127.0.0.1:8080/oauth/token: the answer
   says "token_type":"DPoP", and the token's JWT carries cnf.jkt, the key's thumbprint:
   RESP=$(curl -s -u gateway:secret -d grant_type=client_credentials -d scope=read \
     -H "DPoP: $(dpop --htm POST --htu http://127.0.0.1:8080/oauth/token)" \
     http://127.0.0.1:8080/oauth/token); echo "$RESP"
   DTOKEN=$(echo "$RESP" | sed -E 's/.*"access_token":"([^"]+)".*/\1/'); echo $DTOKEN; dpop --jkt

8. Call /dpop/hello with "Authorization: DPoP" and a fresh proof for this request and token;
   the echo API shows the JWT it received as "Bearer" in "authorization":
   curl -s -H "Authorization: DPoP $DTOKEN" \
     -H "DPoP: $(dpop --htm GET --htu http://127.0.0.1:8080/dpop/hello --token "$DTOKEN")" \
     http://127.0.0.1:8080/dpop/hello; echo

9. The same token as Bearer is refused with a DPoP challenge, and a proof cannot be used twice
   (200, then 401):
   curl -si -H "Authorization: Bearer $DTOKEN" http://127.0.0.1:8080/dpop/hello | grep -i www-auth
   P=$(dpop --htm GET --htu http://127.0.0.1:8080/dpop/hello --token "$DTOKEN")
   for i in 1 2; do curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: DPoP $DTOKEN" \
     -H "DPoP: $P" http://127.0.0.1:8080/dpop/hello; done

Stop it with: scripts/demo.sh stop
TXT
