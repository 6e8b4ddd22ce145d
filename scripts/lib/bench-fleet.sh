# The fleet tier's part of scripts/bench.sh (sourced after bench-common.sh): a throwaway
# redis-server, a key file, the module's counters, and the introspections the identity server
# on :19103 received.

# free_port: a TCP port nothing listens on at 127.0.0.1 (from 20000 up).
free_port() {
  local p
  for p in $(seq 20000 20999); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo "no free port in 20000-20999" >&2
  return 1
}

# start_redis <dir>: redis-server on a free port, without persistence, in the foreground of a
# background job; sets redis_port and redis_pid (stop it with stop_redis). The same server
# also serves TLS on redis_tls_port, with a certificate for "localhost" signed by
# <dir>/redis-ca.crt (made here with openssl).
start_redis() {
  redis_port=$(free_port)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$1/redis-ca.key" -out "$1/redis-ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$1/redis.key" -out "$1/redis.csr" 2>/dev/null
  openssl x509 -req -in "$1/redis.csr" -CA "$1/redis-ca.crt" -CAkey "$1/redis-ca.key" \
    -CAcreateserial -days 2 -extfile <(printf 'subjectAltName=DNS:localhost') \
    -out "$1/redis.crt" 2>/dev/null
  redis_tls_port=$(( redis_port + 1 ))
  /usr/bin/redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --tls-port "$redis_tls_port" --tls-cert-file "$1/redis.crt" --tls-key-file "$1/redis.key" \
    --tls-ca-cert-file "$1/redis-ca.crt" --tls-auth-clients no \
    --daemonize no --dir "$1" --logfile "$1/redis.log" &
  redis_pid=$!
  local i
  for i in $(seq 50); do
    [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && return
    sleep 0.1
  done
  echo "redis-server did not start on :$redis_port (see $1/redis.log)" >&2
  return 1
}

stop_redis() {
  [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  redis_pid=""
  local p
  for p in ${cluster_pids[@]+"${cluster_pids[@]}"}; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  cluster_pids=()
}

# start_cluster <dir>: a Redis Cluster of three primaries on free ports (no replicas), made
# with redis-cli --cluster create; sets cluster_ports (stopped by stop_redis).
start_cluster() {
  cluster_ports=(); cluster_pids=()
  local i port d free=()
  # Six distinct free ports at once (three nodes and their bus ports): free_port would give
  # the same one again until a server listens on it.
  for port in $(seq 21000 21999); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || free+=("$port")
    [ "${#free[@]}" -ge 6 ] && break
  done
  for i in 0 1 2; do
    port=${free[$i]}; d="$1/cluster-$i"; mkdir -p "$d"
    /usr/bin/redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-port "${free[$((i + 3))]}" \
      --daemonize no --dir "$d" --logfile "$d/redis.log" &
    cluster_pids+=($!); cluster_ports+=("$port")
  done
  for port in "${cluster_ports[@]}"; do
    for i in $(seq 50); do
      [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
      sleep 0.1
    done
  done
  redis-cli --cluster create "${cluster_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 \
    --cluster-yes >"$1/cluster-create.log" 2>&1 || { cat "$1/cluster-create.log" >&2; return 1; }
  for i in $(seq 100); do
    redis-cli -p "${cluster_ports[0]}" cluster info | grep -q 'cluster_state:ok' && return
    sleep 0.1
  done
  echo "the cluster is not ok (see $1/cluster-*/redis.log)" >&2
  return 1
}

# fleet_key <file>: a key file (name key and seal key, 32 random bytes each), mode 0600.
fleet_key() {
  local k
  k() { head -c 32 /dev/urandom | basenc --base64url | tr -d '='; }
  (umask 077; printf 'name v1 %s\nseal k1 %s\n' "$(k)" "$(k)" >"$1")
}

# metric <port> <sample>: a counter from the gateway's /_status (0 when absent), e.g.
#   metric 19100 'phantom_token_cache_hits_total{level="redis"}'
metric() {
  curl -s "http://127.0.0.1:$1/_status" |
    awk -v s="$2" 'index($0, s " ") == 1 {v = $2} END {print v + 0}'
}

# introspections <be-dir>: requests the logging identity server (:19103) has received so far.
introspections() { [ -f "$1/introspections.log" ] && wc -l <"$1/introspections.log" || echo 0; }

# tokens.lua: one new token per request, "<prefix><n>" for n = 1, 2, ... The prefix is $TOKENS
# or, without it, one of its own per wrk run (so measure's warm-up run never reuses the timed
# run's tokens). With $LAST, the run stops once token LAST has been sent.
tokens_lua() {
  cat >"$1" <<'LUA'
local prefix = os.getenv("TOKENS") or ("n" .. os.time() .. "x" .. math.floor(os.clock() * 1e6) .. "-")
local last = tonumber(os.getenv("LAST") or "0")
local path = os.getenv("URLPATH")
local n = 0
request = function()
  if last == 0 or n < last then n = n + 1 end
  return wrk.format("GET", path, { Authorization = "Bearer " .. prefix .. n })
end
response = function()
  if last > 0 and n >= last then wrk.thread:stop() end
end
LUA
}
