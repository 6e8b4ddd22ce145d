#!/usr/bin/env bash
# Benchmark: cache-hit and cache-miss paths against plain proxy_pass, in one run.
#
# The gateway nginx (one worker, pinned to CPU 0) serves these locations:
#   /plain  proxy_pass only, no module             (the baseline)
#   /plain-jwt  the same, sending upstream the same `Authorization: Bearer <JWT>` as a hit
#           (proxy_set_header): what the JWT's bytes cost, with no module work
#   /hit    phantom_token + cache (always a hit after the first request)
#   /fleet  the same with a zone that has redis= (a hit never reaches Redis)
#   /miss   phantom_token without cache (every request introspects)
#   /dpop   DPoP-bound token, cache hit (a fresh ES256 proof per request)
# and, with a new token in every request (wrk runs scripts/lib/bench-fleet.sh's tokens.lua):
#   /new        plain zone: zone miss, introspection, store
#   /new-fleet  zone with redis=: zone miss, Redis miss, introspection, stores in Redis too
#   /from-redis zone with redis=, same tokens as /new-fleet: zone miss, Redis hit (checked with
#               the module's counters: no introspection)
#   /from-redis-tls  the same over TLS (redis_ssl=on, the same server's TLS port)
#   /new-cluster, /from-cluster  the same on a Redis Cluster of three primaries
# A redis-server on a free port serves the fleet tier. Last, a second gateway (B, :19104, on
# CPU 1) and the first one each get the first request of 200 new tokens at the same moment
# (curl --parallel); the identity server counts the introspections: with plain zones each
# instance introspects (2 per token), with a shared redis= zone the fleet lock makes it 1.
# The API and the "identity server" are a second nginx answering with fixed responses; it and
# wrk share CPU 1. The figure that matters is the gateway worker's CPU time per request,
# read from /proc, reported as a ratio to /plain. scripts/scale.sh gives the scale figures.
#
# Usage: scripts/bench.sh [seconds-per-run]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
. scripts/lib/bench-common.sh
. scripts/lib/bench-fleet.sh
prepare bench
trap 'stop "$dir/gw"; stop "$dir/gwb"; stop "$dir/be"; stop_redis' EXIT
start_redis "$dir"
start_cluster "$dir"
fleet_key "$dir/fleet.key"

# A realistic ~900-byte JWT from the "identity server", bound to a DPoP key made here.
proofs() {
  cargo run --release -q -p dpop-sign --example dpop_proofs -- \
    "$1" http://127.0.0.1:19100/dpop bench-token "$dir/dpop.key"
}
jkt=$(proofs 0 | head -n 1)
jwt=$(jwt_of_size 900 "\"cnf\":{\"jkt\":\"$jkt\"},")
backend "$dir/be" "$jwt"
# What both gateways have: the Redis upstream, the zones of the two-instance count and their
# locations (introspecting through /_i2, the identity server that logs), and the counters.
fleet="redis=phantom_redis redis_key=$dir/fleet.key"
cluster="redis=phantom_cluster redis_cluster=on redis_key=$dir/fleet.key"
pair_http="upstream phantom_redis { server 127.0.0.1:$redis_port; }
  upstream phantom_cluster { $(printf 'server 127.0.0.1:%s; ' "${cluster_ports[@]}")}
  upstream ids2 { server 127.0.0.1:19103; keepalive 64; }
  phantom_token_cache_zone pair:10m; phantom_token_cache_zone pairf:10m $fleet;
  phantom_token_cache_zone pairc:10m $cluster;"
pair_server='location = /_i2 { internal; proxy_pass_request_headers off;
      proxy_set_header Connection ""; proxy_set_header Accept application/jwt;
      proxy_set_header Content-Type application/x-www-form-urlencoded;
      proxy_pass http://ids2/introspect; }
    location = /pair { phantom_token on; phantom_token_introspection_endpoint /_i2;
                       phantom_token_cache pair; proxy_pass http://api; }
    location = /pair-fleet { phantom_token on; phantom_token_introspection_endpoint /_i2;
                             phantom_token_cache pairf; proxy_pass http://api; }
    location = /pair-cluster { phantom_token on; phantom_token_introspection_endpoint /_i2;
                               phantom_token_cache pairc; proxy_pass http://api; }
    location = /_status { phantom_token_status; }'
gateway "$dir/gw" "phantom_token_cache_zone bench:10m; phantom_token_cache_zone dpop:512m;
  phantom_token_cache_zone fleet:10m $fleet;
  phantom_token_cache_zone new:64m l1=0; phantom_token_cache_zone newf:64m l1=0 $fleet;
  phantom_token_cache_zone fromredis:64m l1=0 $fleet;
  phantom_token_cache_zone fromredistls:64m l1=0 redis=127.0.0.1:$redis_tls_port
    redis_key=$dir/fleet.key redis_ssl=on redis_ssl_trusted_certificate=$dir/redis-ca.crt
    redis_ssl_name=localhost;
  phantom_token_cache_zone newc:64m l1=0 $cluster;
  phantom_token_cache_zone fromcluster:64m l1=0 $cluster;
  $pair_http" '
    location /plain { proxy_pass http://api; }
    location /plain-jwt { proxy_set_header Connection ""; proxy_set_header Authorization "Bearer '"$jwt"'";
                          proxy_pass http://api; }
    location /hit  { phantom_token on; phantom_token_introspection_endpoint /_i;
                     phantom_token_cache bench; proxy_pass http://api; }
    location /fleet { phantom_token on; phantom_token_introspection_endpoint /_i;
                      phantom_token_cache fleet; proxy_pass http://api; }
    location /miss { phantom_token on; phantom_token_introspection_endpoint /_i; proxy_pass http://api; }
    location /dpop { phantom_token on; phantom_token_introspection_endpoint /_i;
                     phantom_token_cache dpop; phantom_token_dpop required; proxy_pass http://api; }
    location = /new { phantom_token on; phantom_token_introspection_endpoint /_i;
                      phantom_token_cache new; proxy_pass http://api; }
    location = /new-fleet { phantom_token on; phantom_token_introspection_endpoint /_i;
                            phantom_token_cache newf; proxy_pass http://api; }
    location = /from-redis { phantom_token on; phantom_token_introspection_endpoint /_i;
                             phantom_token_cache fromredis; proxy_pass http://api; }
    location = /from-redis-tls { phantom_token on; phantom_token_introspection_endpoint /_i;
                                 phantom_token_cache fromredistls; proxy_pass http://api; }
    location = /new-cluster { phantom_token on; phantom_token_introspection_endpoint /_i;
                              phantom_token_cache newc; proxy_pass http://api; }
    location = /from-cluster { phantom_token on; phantom_token_introspection_endpoint /_i;
                               phantom_token_cache fromcluster; proxy_pass http://api; }
    '"$pair_server"

declare -A rps cpu
for path in plain plain-jwt hit fleet miss; do
  curl -s -o /dev/null -H "Authorization: Bearer bench-token" "http://127.0.0.1:19100/$path"
done
# /plain, /plain-jwt, /hit and /fleet are measured three times each, interleaved, and
# averaged, so that drift of this shared machine lands on none of them (/hit and /fleet
# differ only in redis=; /hit and /plain-jwt send the same upstream request).
for round in 1 2 3; do
  for path in plain plain-jwt hit fleet; do
    measure "${path}_$round" "$secs" -H "Authorization: Bearer bench-token" "http://127.0.0.1:19100/$path"
  done
done
mean3() { awk -v a="$1" -v b="$2" -v c="$3" 'BEGIN {printf "%.2f", (a + b + c) / 3}'; }
for path in plain plain-jwt hit fleet; do
  cpu[$path]=$(mean3 "${cpu[${path}_1]}" "${cpu[${path}_2]}" "${cpu[${path}_3]}")
  rps[$path]=$(mean3 "${rps[${path}_1]}" "${rps[${path}_2]}" "${rps[${path}_3]}")
done
measure miss "$secs" -H "Authorization: Bearer bench-token" "http://127.0.0.1:19100/miss"
delta() { awk -v a="${cpu[$1]}" -v b="${cpu[$2]}" 'BEGIN {printf "%+.2f", a - b}'; }
hit_line() {
  echo "hit - plain: $(delta hit plain) us/request ($(ratio hit plain)x; goal +0.6 us): the JWT's bytes upstream" \
    "(plain-jwt - plain) $(delta plain-jwt plain) us, the module's work (hit - plain-jwt) $(delta hit plain-jwt) us"
}
# HITS_ONLY=1: stop here (the hit path's figures, for profiling runs).
if [ "${HITS_ONLY:-}" = 1 ]; then
  for p in plain plain-jwt hit fleet miss; do row "/$p" "$p" plain; done
  hit_line
  exit 0
fi

# DPoP cache hits: every request brings a fresh ES256 proof (one signature verification);
# the proofs are made beforehand, one per request, and read by wrk in order.
cat >"$dir/dpop.lua" <<'LUA'
local f = io.open(os.getenv("PROOFS"))
f:read("*l")
request = function()
  return wrk.format("GET", "/dpop", { Authorization = "DPoP bench-token", DPoP = f:read("*l") })
end
LUA
proofs $((secs * 20000 + 20000)) >"$dir/proofs"
PROOFS="$dir/proofs" WARMUP=0 measure dpop "$secs" -s "$dir/dpop.lua" http://127.0.0.1:19100/dpop

# New tokens. /new and /new-fleet: every request introspects (each wrk run has tokens of its
# own). /new-fleet's tokens r-1, r-2, ... stay in Redis; /from-redis then asks for them again,
# each once (stopping short of the last ones, which may have been in flight), from a zone that
# has never seen them: every request is a Redis hit.
tokens_lua "$dir/tokens.lua"
URLPATH=/new measure new "$secs" -s "$dir/tokens.lua" http://127.0.0.1:19100/
TOKENS=r- URLPATH=/new-fleet WARMUP=0 measure newf "$secs" -s "$dir/tokens.lua" http://127.0.0.1:19100/
sleep 0.5
redis_hits='phantom_token_cache_hits_total{level="redis"}'
introspected='phantom_token_introspections_total{result="active"}'
declare -A check
# from_redis <name> <path> <token prefix> <tokens>: measures <path> on tokens already in Redis
# (from a zone that has never seen them) and checks that every request was a Redis hit with
# no introspection; sets check[name].
from_redis() {
  local h0 i0 h1 i1
  h0=$(metric 19100 "$redis_hits"); i0=$(metric 19100 "$introspected")
  TOKENS=$3 LAST=$4 URLPATH=$2 WARMUP=0 measure "$1" "$secs" -s "$dir/tokens.lua" http://127.0.0.1:19100/
  h1=$(metric 19100 "$redis_hits"); i1=$(metric 19100 "$introspected")
  check[$1]="$2: ${nreq[$1]} requests (of $4 tokens in Redis), $((h1 - h0)) Redis hits, $((i1 - i0)) introspections"
  if [ $((i1 - i0)) -gt 0 ] || [ $((h1 - h0)) -lt $((nreq[$1] * 99 / 100)) ]; then
    echo "${check[$1]}: not a Redis-hit measurement" >&2
    exit 1
  fi
}
from_redis fromredis /from-redis r- $((nreq[newf] - 100))
# The same tokens over TLS, from a zone that has not seen them either.
from_redis fromredistls /from-redis-tls r- $((nreq[newf] - 100))
# The same on a Redis Cluster of three primaries: /new-cluster stores tokens c-1, c-2, ...
# on the primaries that own their slots, /from-cluster asks for them again.
TOKENS=c- URLPATH=/new-cluster WARMUP=0 measure newc "$secs" -s "$dir/tokens.lua" http://127.0.0.1:19100/
sleep 0.5
from_redis fromcluster /from-cluster c- $((nreq[newc] - 100))

# Two instances sharing Redis: the first requests of new tokens reach both at once.
worker_a=$worker
gateway "$dir/gwb" "$pair_http" "$pair_server" 19104 10
worker=$worker_a
declare -A per_token
# pair <path> <token-prefix> <tokens>: sets per_token[path], introspections per token.
pair() {
  local before after i
  before=$(introspections "$dir/be")
  for i in $(seq "$3"); do
    curl -s --no-progress-meter -Z --parallel-immediate -o /dev/null -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $2$i" \
      "http://127.0.0.1:19100$1" "http://127.0.0.1:19104$1"
  done >"$dir/pair.codes"
  if grep -qv '^200$' "$dir/pair.codes"; then
    echo "$1: $(grep -cv '^200$' "$dir/pair.codes") non-200 responses" >&2
    exit 1
  fi
  sleep 0.2
  after=$(introspections "$dir/be")
  per_token[$1]=$(awk -v n=$((after - before)) -v t="$3" 'BEGIN {printf "%.2f", n / t}')
}
tokens=200
pair /pair p- "$tokens"
pair /pair-fleet f- "$tokens"
fleet_waits=$(($(metric 19100 'phantom_token_coalesced_waits_total{scope="fleet"}') + \
  $(metric 19104 'phantom_token_coalesced_waits_total{scope="fleet"}')))
pair /pair-cluster k- "$tokens"

printf '\n%-28s %12s %16s %10s\n' path "req/s" "CPU us/request" "CPU ratio"
row /plain plain plain
row "/plain-jwt (JWT upstream)" plain-jwt plain
row /hit hit plain
row "/fleet (zone with redis=)" fleet plain
row /miss miss plain
row /dpop dpop plain
row "/new (zone miss)" new plain
row "/new-fleet (Redis miss)" newf plain
row "/from-redis (Redis hit)" fromredis plain
row "/from-redis-tls (over TLS)" fromredistls plain
row "/new-cluster (cluster miss)" newc plain
row "/from-cluster (cluster hit)" fromcluster plain
echo "DPoP hit - Bearer hit: $(awk -v a="${cpu[dpop]}" -v b="${cpu[hit]}" 'BEGIN {printf "%.1f", a - b}') us/request (one ES256 verification: cargo bench -p phantom-core --bench dpop)"
hit_line
echo "hit with redis= configured / hit: $(ratio fleet hit)x (same code path; goal vs /plain: <= 1.05x)"
echo "Redis hit / introspection (new tokens): $(ratio fromredis new)x (goal <= 0.6x)"
echo "Redis miss / introspection (new tokens): $(ratio newf new)x"
echo "Redis hit over TLS / Redis hit over TCP: $(ratio fromredistls fromredis)x (goal <= 1.15x)"
echo "Redis hit on a cluster / on one primary: $(ratio fromcluster fromredis)x (goal <= 1.05x)"
echo "${check[fromredis]}"
echo "${check[fromredistls]}"
echo "${check[fromcluster]}"
echo "introspections per new token, 2 instances, first requests at once ($tokens tokens):" \
  "plain zones ${per_token[/pair]}, shared redis= zone ${per_token[/pair-fleet]}, on a cluster" \
  "${per_token[/pair-cluster]} (goal 1.00;" \
  "$fleet_waits requests waited for the other instance)"
echo
echo "(gateway: 1 worker on CPU 0; wrk -c16 and the backend on CPU 1; ${secs}s per path; nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///'))"
