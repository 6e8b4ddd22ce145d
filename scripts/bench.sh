#!/usr/bin/env bash
# Benchmark: cache-hit and cache-miss paths against plain proxy_pass, in one run.
#
# The gateway nginx (one worker, pinned to CPU 0) serves three locations:
#   /plain  proxy_pass only, no module             (the baseline)
#   /hit    phantom_token + cache (always a hit after the first request)
#   /miss   phantom_token without cache (every request introspects)
# The API and the "identity server" are a second nginx answering with fixed responses; it and
# wrk share CPU 1. The figure that matters is the gateway worker's CPU time per request,
# read from /proc, reported as a ratio to /plain. scripts/scale.sh gives the scale figures.
#
# Usage: scripts/bench.sh [seconds-per-run]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
. scripts/lib/bench-common.sh
prepare bench
trap 'stop "$dir/gw"; stop "$dir/be"' EXIT

# A realistic ~900-byte JWT from the "identity server", bound to a DPoP key made here.
proofs() {
  cargo run --release -q -p phantom-core --features test-signing --example dpop_proofs -- \
    "$1" http://127.0.0.1:19100/dpop bench-token "$dir/dpop.key"
}
jkt=$(proofs 0 | head -n 1)
backend "$dir/be" "$(jwt_of_size 900 "\"cnf\":{\"jkt\":\"$jkt\"},")"
gateway "$dir/gw" "phantom_token_cache_zone bench:10m; phantom_token_cache_zone dpop:512m;" '
    location /plain { proxy_pass http://api; }
    location /hit  { phantom_token on; phantom_token_introspection_endpoint /_i;
                     phantom_token_cache bench; proxy_pass http://api; }
    location /miss { phantom_token on; phantom_token_introspection_endpoint /_i; proxy_pass http://api; }
    location /dpop { phantom_token on; phantom_token_introspection_endpoint /_i;
                     phantom_token_cache dpop; phantom_token_dpop required; proxy_pass http://api; }'

declare -A rps cpu
for path in plain hit miss; do
  curl -s -o /dev/null -H "Authorization: Bearer bench-token" "http://127.0.0.1:19100/$path"
  measure "$path" "$secs" -H "Authorization: Bearer bench-token" "http://127.0.0.1:19100/$path"
done

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

printf '\n%-28s %12s %16s %10s\n' path "req/s" "CPU us/request" "CPU ratio"
for path in plain hit miss dpop; do row "/$path" "$path" plain; done
echo "DPoP hit - Bearer hit: $(awk -v a="${cpu[dpop]}" -v b="${cpu[hit]}" 'BEGIN {printf "%.1f", a - b}') us/request (one ES256 verification: cargo bench -p phantom-core --bench dpop)"
echo
echo "(gateway: 1 worker on CPU 0; wrk -c16 and the backend on CPU 1; ${secs}s per path; nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///'))"
