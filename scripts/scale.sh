#!/usr/bin/env bash
# Scale figures (see docs/performance.md):
#   density   cached 1 KiB JWTs per MiB of zone (a 10m zone flooded with distinct tokens)
#   growth    CPU per hit with 1 thousand and with 1 million distinct cached tokens, wrk
#             picking tokens at random (so the 1M case is served from the zone, not L1)
#   metrics   CPU per hit with `phantom_token_status` configured (counting on) and without
#   purge     a purge by subject of 10 tokens in the zone of the growth run (1M entries): how
#             long the request takes, and when a second instance stops serving them
#   fleet     Redis memory per cached 1 KiB JWT (`redis=`), and how long a purge by subject
#             takes over a zone of that many entries
#   cluster   the same memory on a Redis Cluster of three primaries (`redis_cluster=on`), and
#             how long a purge by subject of 20,000 tokens takes across the three shards
# Every CPU figure is the gateway worker's CPU time per request, as a ratio to plain
# proxy_pass measured in the same gateway. Needs about 1.5 GB of RAM for the 1M zone.
#
# Usage: scripts/scale.sh [seconds-per-run] [distinct-tokens]   (defaults 10, 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
many="${2:-1000000}"
. scripts/lib/bench-common.sh
. scripts/lib/bench-fleet.sh
prepare scale
trap 'stop "$dir/gw"; stop "$dir/gwb"; stop "$dir/be"; stop_redis' EXIT
declare -A rps cpu

cat >"$dir/fill.lua" <<'LUA'
local prefix, n, i = os.getenv("PREFIX"), tonumber(os.getenv("N")), tonumber(os.getenv("START"))
request = function()
  i = i % n + 1
  return wrk.format(nil, "/hit", { Authorization = "Bearer " .. prefix .. i })
end
LUA
cat >"$dir/random.lua" <<'LUA'
local prefix, n = os.getenv("PREFIX"), tonumber(os.getenv("N"))
math.randomseed(os.time())
request = function()
  return wrk.format(nil, "/hit", { Authorization = "Bearer " .. prefix .. math.random(1, n) })
end
LUA

url=http://127.0.0.1:19100
hit='location /hit { phantom_token on; phantom_token_introspection_endpoint /_i;
                     phantom_token_cache z; proxy_pass http://api; }'
plain='location /plain { proxy_pass http://api; }'
status='location = /metrics { phantom_token_status; }'
entries() { curl -s "$url/metrics" | awk -v z="$1" '$1 == "phantom_token_zone_entries{zone=\"" z "\"}" {print $2}'; }

# fill <prefix> <n> <zone>: requests the n tokens, each round going on where the zone's count
# stands, until the zone holds them all.
fill() {
  local rounds=0 base held=0
  base=$(entries "$3")
  while [ "$held" -lt "$2" ] && [ $rounds -lt 100 ]; do
    START=$held PREFIX=$1 N=$2 taskset -c 1 wrk -t1 -c32 -d5s -s "$dir/fill.lua" "$url" >/dev/null
    rounds=$((rounds + 1))
    held=$(($(entries "$3") - base))
  done
}

# Tokens introspected at /other (the locations /ten) belong to the subject "ten".
backend "$dir/be" "$(jwt_of_size 1024)" "$(JWT_SUB=ten jwt_of_size 1024)"

echo "== metrics: hit path without and with phantom_token_status"
gateway "$dir/gw" "phantom_token_cache_zone z:10m;" "$plain $hit"
measure plain_off "$secs" "$url/plain"
measure hit_off "$secs" -H "Authorization: Bearer one" "$url/hit"
stop "$dir/gw"
gateway "$dir/gw" "phantom_token_cache_zone z:10m;" "$plain $hit $status"
measure plain_on "$secs" "$url/plain"
measure hit_on "$secs" -H "Authorization: Bearer one" "$url/hit"
stop "$dir/gw"

echo "== density: 1 KiB JWTs in a 10 MiB zone"
gateway "$dir/gw" "phantom_token_cache_zone z:10m;" "$hit $status"
START=0 PREFIX=d N=40000 taskset -c 1 wrk -t1 -c32 -d6s -s "$dir/fill.lua" "$url" >/dev/null
dense=$(entries z)
stop "$dir/gw"

echo "== fleet: Redis memory per token, purge by subject over the zone"
start_redis "$dir"
fleet_key "$dir/fleet.key"
redis_upstream="upstream phantom_redis { server 127.0.0.1:$redis_port; }"
redis_mem() { redis-cli -p "$redis_port" INFO memory | awk -F: '/^used_memory:/ {print $2 + 0}'; }
gateway "$dir/gw" "$redis_upstream
  phantom_token_cache_zone z:64m l1=0 redis=phantom_redis redis_key=$dir/fleet.key;" \
  "$hit $status location = /purge { phantom_token_purge z; }"
mem0=$(redis_mem)
fill f 20000 z
sleep 1
mem1=$(redis_mem)
in_redis=$(redis-cli -p "$redis_port" --scan --pattern 'pt:v2:t:*' | wc -l)
zone_held=$(entries z)
purge() { curl -s -o /dev/null -w '%{time_total}' -X POST -d "$1" "$url/purge"; }
purge token=nothing >/dev/null
purge_tok=$(purge token=nothing)
purge_s=$(purge sub=nobody)
stop "$dir/gw"

echo "== cluster: Redis memory per token on three primaries, purge by subject across them"
start_cluster "$dir"
cluster_mem() {
  local p total=0
  for p in "${cluster_ports[@]}"; do
    total=$((total + $(redis-cli -p "$p" INFO memory | awk -F: '/^used_memory:/ {print $2 + 0}')))
  done
  echo "$total"
}
cluster_entries() {
  local p total=0
  for p in "${cluster_ports[@]}"; do
    total=$((total + $(redis-cli -p "$p" --scan --pattern 'pt:v2:t:*' | wc -l)))
  done
  echo "$total"
}
gateway "$dir/gw" "upstream phantom_cluster { $(printf 'server 127.0.0.1:%s; ' "${cluster_ports[@]}")}
  phantom_token_cache_zone z:64m l1=0 redis=phantom_cluster redis_cluster=on redis_key=$dir/fleet.key;" \
  "$hit $status location = /purge { phantom_token_purge z; }"
sleep 1
cmem0=$(cluster_mem)
fill c 20000 z
sleep 1
cmem1=$(cluster_mem)
in_cluster=$(cluster_entries)
# Every token of the bench has the subject "bench": the purge removes all of them, from the
# zone and from the three primaries (batches of 500, one UNLINK per slot, grouped by node).
purge_c=$(purge sub=bench)
left_cluster=$(cluster_entries)
stop "$dir/gw"

echo "== growth: 1 thousand and $many distinct cached tokens; a purge by subject among them"
# The zone shares Redis (hits never reach it), so that a purge also reaches a second
# instance through the stream: B, with a small zone of its own, holds the subject's tokens.
redis-cli -p "$redis_port" FLUSHALL >/dev/null
mib=$(( many * 1300 / 1048576 + 16 ))
fleet_z="redis=phantom_redis redis_key=$dir/fleet.key"
ten='location = /_iten { internal; proxy_pass_request_headers off;
      proxy_set_header Connection ""; proxy_set_header Accept application/jwt;
      proxy_set_header Content-Type application/x-www-form-urlencoded;
      proxy_pass http://ids/other; }
    location = /ten { phantom_token on; phantom_token_introspection_endpoint /_iten;
                      phantom_token_cache z; add_header X-Cache $phantom_token_cache_status always;
                      proxy_pass http://api; }
    location = /purge { phantom_token_purge z; }'
gateway "$dir/gw" "$redis_upstream
  phantom_token_cache_zone z:${mib}m $fleet_z;" "$plain $hit $status $ten"
fill k 1000 z
PREFIX=k N=1000 measure hit_1k "$secs" -s "$dir/random.lua" "$url"
fill m "$many" z
PREFIX=m N=$many measure hit_many "$secs" -s "$dir/random.lua" "$url"
measure plain_growth "$secs" "$url/plain"
held=$(entries z)
# cache_status <port> <token>: X-Cache of one request for the token at /ten.
cache_status() {
  curl -s -o /dev/null -D - -H "Authorization: Bearer $2" "http://127.0.0.1:$1/ten" |
    awk 'tolower($1) == "x-cache:" {print $2}' | tr -d '\r'
}
gateway "$dir/gwb" "$redis_upstream
  phantom_token_cache_zone z:16m $fleet_z;" "$status $ten" 19104 10
for i in $(seq 10); do cache_status 19100 "ten-$i" >/dev/null; done
for i in $(seq 10); do cache_status 19104 "ten-$i" >/dev/null; done
b_before=$(for i in $(seq 10); do cache_status 19104 "ten-$i"; done | sort | uniq -c | xargs)
a_before=$(entries z)
t0=$(date +%s%N)
purge_ten=$(purge sub=ten)
# A's count, read without asking for the tokens (a request for one would introspect it again
# and put it back into Redis, where the other instance would find it).
a_after=$(entries z)
# B: ten-1 is asked until it is no longer a hit, then the other nine must miss too.
while [ "$(cache_status 19104 ten-1)" = HIT ] && [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 5000 ]; do :; done
purge_b_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
b_after=$(for i in $(seq 2 10); do cache_status 19104 "ten-$i"; done | sort | uniq -c | xargs)
others=$(for i in 1 2 3; do curl -s -o /dev/null -w '%{http_code} ' -H "Authorization: Bearer m$i" "$url/hit"; done)
stop "$dir/gwb"
stop "$dir/gw"

printf '\n%-28s %12s %16s %10s\n' run "req/s" "CPU us/request" "CPU ratio"
row "plain (no status)" plain_off plain_off
row "hit, counting off" hit_off plain_off
row "plain (status on)" plain_on plain_on
row "hit, counting on" hit_on plain_on
row "plain (growth run)" plain_growth plain_growth
row "hit, 1k tokens" hit_1k plain_growth
row "hit, $many tokens" hit_many plain_growth
echo
echo "counting on vs off (hit/plain ratios): $(awk -v a="$(ratio hit_on plain_on)" -v b="$(ratio hit_off plain_off)" 'BEGIN {printf "%.3f", a / b}')x"
echo "hit with $many vs 1k tokens: $(ratio hit_many hit_1k)x ($held entries held)"
echo "redis: $in_redis entries take $((mem1 - mem0)) bytes = $(( (mem1 - mem0) / (in_redis > 0 ? in_redis : 1) )) bytes per token (1024-byte JWT, one subject index membership each)"
echo "purge by subject over $zone_held zone entries: ${purge_s}s (a subject with no entry: its chain, not the zone, is walked; by token: ${purge_tok}s)"
echo "cluster: $in_cluster entries take $((cmem1 - cmem0)) bytes on three primaries = $(( (cmem1 - cmem0) / (in_cluster > 0 ? in_cluster : 1) )) bytes per token"
echo "purge by subject of $in_cluster tokens across three shards: ${purge_c}s ($left_cluster entries left)"
echo "purge by subject of 10 tokens in a zone of $held entries: ${purge_ten}s for the request (the zone, shared by the instance's workers, went from $a_before to $a_after entries; other subjects' tokens afterwards: $others)"
echo "the same purge on a second instance, through the stream: ten-1 no longer a hit after $purge_b_ms ms (B's 10 tokens before: $b_before; the other nine after: $b_after)"
echo "density: $dense entries of a 1024-byte JWT in 10 MiB = $(awk -v e="$dense" 'BEGIN {printf "%.0f", e / 10}') per MiB"
echo "(gateway: 1 worker on CPU 0; wrk and the backend on CPU 1; ${secs}s per run; nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///'))"
