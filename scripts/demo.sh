#!/usr/bin/env bash
# Builds everything and starts a working demo on 127.0.0.1:
#   nginx + module on :8080 (gateway A), development identity server on :8443, echo API on :9000,
#   and for the fleet part a second gateway B on :8081 and a Redis on :6390 that A and B share,
#   over TLS (a CA and a certificate for "localhost" made here with openssl, in demo-run/tls/).
# Then prints curl commands to try (Bearer tokens, DPoP-bound ones under /dpop/, then the fleet:
# a token introspected by A is served by B from Redis; a revocation purges it on both).
# `scripts/demo.sh stop` stops it. PHANTOM_DEMO_REDIS_PORT picks another Redis port.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
run="$root/demo-run"
redis_port="${PHANTOM_DEMO_REDIS_PORT:-6390}"

stop() {
  local pids=() f
  for f in "$run/nginx.pid" "$run/b/nginx.pid"; do
    { [ -f "$f" ] && kill -QUIT "$(cat "$f")" 2>/dev/null && pids+=("$(cat "$f")"); } || true
  done
  for p in idsvr echo redis; do
    f="$run/$p.pid"
    { [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null && pids+=("$(cat "$f")"); } || true
    rm -f "$f"
  done
  # Wait (up to 5 s) until they are gone and their ports are free.
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
}

# nginx-conf/demo.conf for one gateway of the fleet: the module, its prefix and port, and the
# fleet tier added (see nginx-conf/fleet.conf): the Redis upstream, the redis= parameters of
# the cache zone, and a /purge location for the identity server.
render() { # <prefix> <port>
  sed -e "s#__MODULE__#$root/target/release/libngx_phantom_token.so#" \
      -e "s#__PREFIX__#$1#g" \
      -e "s#listen 127.0.0.1:8080;#listen 127.0.0.1:$2;#" \
      -e "s#^\( *\)\(phantom_token_cache_zone [^;]*\);#\1upstream phantom_redis { server 127.0.0.1:$redis_port; }\n\1\2 redis=phantom_redis redis_key=$run/phantom-redis.key redis_timeout=200ms redis_lock=3s\n\1    redis_ssl=on redis_ssl_trusted_certificate=$run/tls/ca.crt redis_ssl_name=localhost;#" \
      -e "s#^\( *\)location = /metrics {#\1location = /purge { allow 127.0.0.1; deny all; phantom_token_purge phantom_tokens; }\n\n&#" \
      nginx-conf/demo.conf >"$1/nginx.conf"
  grep -q "redis=phantom_redis" "$1/nginx.conf" && grep -q "phantom_token_purge" "$1/nginx.conf" \
    || { echo "demo.sh: cannot add the fleet tier to nginx-conf/demo.conf" >&2; exit 1; }
}

if [ "${1:-}" = "stop" ]; then stop; echo "demo stopped"; exit 0; fi

scripts/deps.sh
cargo build --release --workspace
nginx_bin=$(scripts/nginx-bin.sh release)
stop
mkdir -p "$run/b"

# The fleet's Redis speaks TLS only, as managed services do: its CA and its certificate for
# "localhost" are made once here (the gateways verify it: redis_ssl_trusted_certificate=).
tls="$run/tls"
if [ ! -s "$tls/redis.crt" ]; then
  mkdir -p "$tls"
  (umask 077
   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
     -subj "/CN=ngx-phantom-token demo CA" -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
   openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
     -keyout "$tls/redis.key" -out "$tls/redis.csr" 2>/dev/null
   openssl x509 -req -in "$tls/redis.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
     -CAcreateserial -days 365 -extfile <(printf 'subjectAltName=DNS:localhost') \
     -out "$tls/redis.crt" 2>/dev/null)
fi
rcli=(redis-cli --tls --cacert "$tls/ca.crt" --sni localhost -p "$redis_port")
# In memory only, stopped by `demo.sh stop`.
redis-server --bind 127.0.0.1 --port 0 --tls-port "$redis_port" --tls-cert-file "$tls/redis.crt" \
  --tls-key-file "$tls/redis.key" --tls-ca-cert-file "$tls/ca.crt" --tls-auth-clients no \
  --save "" --appendonly no \
  --daemonize yes --pidfile "$run/redis.pid" --logfile "$run/redis.log" --dir "$run"
for _ in $(seq 50); do "${rcli[@]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
"${rcli[@]}" ping >/dev/null 2>&1 \
  || { echo "demo.sh: Redis did not start on port $redis_port (see $run/redis.log)" >&2; exit 1; }

# The fleet's key file, shared by both gateways: names Redis keys and seals the values.
if [ ! -s "$run/phantom-redis.key" ]; then
  (umask 077
   { echo "name v1 $(head -c 32 /dev/urandom | basenc --base64url | tr -d '=')"
     echo "seal k1 $(head -c 32 /dev/urandom | basenc --base64url | tr -d '=')"
   } >"$run/phantom-redis.key")
fi

# On revocation the identity server purges the token on both gateways.
nohup target/release/phantom-devsvr idsvr --listen 127.0.0.1:8443 \
  --purge-url http://127.0.0.1:8080/purge --purge-url http://127.0.0.1:8081/purge \
  >"$run/idsvr.log" 2>&1 &
echo $! >"$run/idsvr.pid"
nohup target/release/phantom-devsvr echo --listen 127.0.0.1:9000 >"$run/echo.log" 2>&1 &
echo $! >"$run/echo.pid"

# Gateway A (:8080, prefix demo-run/) and gateway B (:8081, prefix demo-run/b/).
render "$run" 8080
render "$run/b" 8081
"$nginx_bin" -p "$run" -c "$run/nginx.conf" -e "$run/error.log"
"$nginx_bin" -p "$run/b" -c "$run/b/nginx.conf" -e "$run/b/error.log"

for port in 8080 8081; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

cat <<'TXT'

ngx-phantom-token demo is running (logs and config in demo-run/, gateway B's in demo-run/b/).

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
TXT
printf '\nThe fleet: gateway B on :8081 runs the same configuration as A; both share the Redis on :%s,\n' \
  "$redis_port"
printf 'over TLS (redis_ssl=on; its CA: demo-run/tls/ca.crt; redis-cli --tls --cacert demo-run/tls/ca.crt -p %s).\n' \
  "$redis_port"
cat <<'TXT'
The identity server was started with --purge-url http://127.0.0.1:8080/purge and
--purge-url http://127.0.0.1:8081/purge.

10. A new token, through A, then B: A introspects it (MISS) and stores it in Redis; B serves it
    from Redis (HIT) without introspecting:
   FTOKEN=$(curl -s -u gateway:secret -d grant_type=client_credentials -d scope=read \
     http://127.0.0.1:8080/oauth/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/'); echo $FTOKEN
   for gw in 8080 8081; do curl -s -o /dev/null -H "Authorization: Bearer $FTOKEN" \
     -w "$gw %{http_code} X-Cache-Status: %header{x-cache-status}\n" http://127.0.0.1:$gw/api/hello; done

11. B's access log and metrics: cache=HIT with an empty introspection time, a hit at level
    "redis", no introspection, and B's TLS handshakes with Redis (one per worker that connected):
   grep 'GET /api/' demo-run/b/access.log | tail -n 1
   curl -s http://127.0.0.1:8081/metrics | grep -E '^phantom_token_(introspections|cache_hits|redis_tls_handshakes)_total'

12. Revoke the token at the identity server (RFC 7009; it then POSTs token=... to both /purge
    locations), and call A and B again: both answer 401 invalid_token:
   curl -s -o /dev/null -w '%{http_code}\n' -u gateway:secret -d token=$FTOKEN http://127.0.0.1:8443/oauth/revoke
   sleep 1; for gw in 8080 8081; do curl -s -o /dev/null -H "Authorization: Bearer $FTOKEN" \
     -w "$gw %{http_code} %header{www-authenticate}\n" http://127.0.0.1:$gw/api/hello; done

13. An operator's purge on one gateway reaches the other within a second through a Redis stream
    (the token stays valid: B introspects it again, MISS, and A then has it from Redis, HIT):
   FTOKEN=$(curl -s -u gateway:secret -d grant_type=client_credentials -d scope=read \
     http://127.0.0.1:8080/oauth/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
   for gw in 8080 8081; do curl -s -o /dev/null -H "Authorization: Bearer $FTOKEN" \
     -w "$gw %{http_code} X-Cache-Status: %header{x-cache-status}\n" http://127.0.0.1:$gw/api/hello; done
   curl -s -d token=$FTOKEN http://127.0.0.1:8080/purge; echo
   sleep 1; for gw in 8081 8080; do curl -s -o /dev/null -H "Authorization: Bearer $FTOKEN" \
     -w "$gw %{http_code} X-Cache-Status: %header{x-cache-status}\n" http://127.0.0.1:$gw/api/hello; done

Stop it with: scripts/demo.sh stop
TXT
