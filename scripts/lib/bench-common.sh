# Shared by scripts/bench.sh and scripts/scale.sh (sourced): a backend nginx acting as API and
# identity server on CPU 1, a gateway nginx with one worker on CPU 0, and the measurement of
# the gateway worker's CPU time per request from /proc.

# prepare <name>: wrk, the module (PHANTOM_MODULE, else a release build), the nginx binary,
# and a scratch directory $dir.
prepare() {
  scripts/deps.sh wrk
  [ -n "${PHANTOM_MODULE:-}" ] || cargo build --release -q
  # The build's output follows CARGO_TARGET_DIR (scripts/nginx-bin.sh assumes ./target).
  local target
  target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
  nginx_bin=$(ls -t "$target"/release/build/nginx-sys-*/out/objs/nginx 2>/dev/null | head -n 1)
  module="${PHANTOM_MODULE:-$target/release/libngx_phantom_token.so}"
  dir=$(mktemp -d "/tmp/phantom-$1.XXXXXX")
  chmod 755 "$dir"
}

b64() { printf '%s' "$1" | base64 -w0 | tr '+/' '-_' | tr -d '='; }

# A JWT (subject $JWT_SUB or "bench", exp in 2100, scope "read", plus the JSON members in $2)
# of exactly $1 bytes.
jwt_of_size() {
  local want=$1 extra=${2:-} head sig body jwt pad=""
  head=$(b64 '{"alg":"RS256","typ":"at+jwt","kid":"k1"}')
  sig=$(b64 signature-bytes-signature-bytes-signature)
  while :; do
    body=$(b64 "{\"sub\":\"${JWT_SUB:-bench}\",\"scope\":\"read\",\"exp\":4102444800,$extra\"pad\":\"$pad\"}")
    jwt="$head.$body.$sig"
    [ ${#jwt} -ge "$want" ] && break
    pad="${pad}x"
  done
  printf '%s' "${jwt:0:$want}"
}

common() {
  printf 'daemon on;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\nevents { worker_connections 4096; }\n' "$1" "$1"
}

temps() {
  echo "client_body_temp_path $1/cb; proxy_temp_path $1/px; fastcgi_temp_path $1/fc; uwsgi_temp_path $1/uw; scgi_temp_path $1/sc; access_log off;"
}

# backend <dir> <jwt> [jwt2]: API on :19101, identity server on :19102 (any token -> the JWT;
# at /other, jwt2), and the same identity server on :19103 logging each request to
# <dir>/introspections.log (for counting introspections; :19102 logs nothing, so the timed
# paths pay no log write).
backend() {
  mkdir -p "$1"
  {
    common "$1"
    echo "worker_processes 1; worker_cpu_affinity 10;"
    echo "http { $(temps "$1")"
    echo "  server { listen 127.0.0.1:19101; location / { default_type application/json; return 200 '{\"ok\":true}'; } }"
    echo "  server { listen 127.0.0.1:19102; location / { default_type application/jwt;"
    echo "    add_header Cache-Control \"max-age=86400\"; return 200 '$2'; }"
    echo "    location = /other { default_type application/jwt;"
    echo "    add_header Cache-Control \"max-age=86400\"; return 200 '${3:-$2}'; } }"
    echo "  server { listen 127.0.0.1:19103; access_log $1/introspections.log;"
    echo "    location / { default_type application/jwt;"
    echo "    add_header Cache-Control \"max-age=86400\"; return 200 '$2'; } }"
    echo "}"
  } >"$1/nginx.conf"
  "$nginx_bin" -p "$1" -c "$1/nginx.conf" -e "$1/error.log"
}

# gateway <dir> <http-lines> <server-lines> [port] [cpu-mask]: one worker (on CPU 0 unless
# cpu-mask says otherwise), listening on :19100 (or port), with upstreams `api` and `ids` and
# the introspection location /_i. Sets $worker, the worker's pid.
gateway() {
  local port=${4:-19100} cpus=${5:-01}
  mkdir -p "$1"
  {
    echo "load_module $module;"
    common "$1"
    echo "worker_processes 1; worker_cpu_affinity $cpus;"
    echo "http { $(temps "$1")"
    echo "  upstream api { server 127.0.0.1:19101; keepalive 64; }"
    echo "  upstream ids { server 127.0.0.1:19102; keepalive 64; }"
    echo "  proxy_http_version 1.1; proxy_set_header Connection \"\";"
    echo "  $2"
    echo "  server { listen 127.0.0.1:$port;"
    # proxy_set_header here replaces the http block's list: Connection "" again, or nginx
    # sends "Connection: close" and every introspection opens a new connection.
    echo "    location = /_i { internal; proxy_pass_request_headers off;"
    echo "      proxy_set_header Connection \"\"; proxy_set_header Accept application/jwt;"
    echo "      proxy_set_header Content-Type application/x-www-form-urlencoded;"
    echo "      proxy_pass http://ids/introspect; }"
    echo "    $3"
    echo "  }"
    echo "}"
  } >"$1/nginx.conf"
  "$nginx_bin" -p "$1" -c "$1/nginx.conf" -e "$1/error.log"
  sleep 0.5
  worker=$(pgrep -P "$(cat "$1/nginx.pid")" | head -n 1)
}

stop() {
  [ -f "$1/nginx.pid" ] && kill -QUIT "$(cat "$1/nginx.pid")" 2>/dev/null
  sleep 0.3
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$worker/stat"; }

# measure <name> <secs> <wrk args...>: sets rps[name] and cpu[name] (gateway CPU µs/request),
# and nreq[name] (requests completed in the timed run).
declare -A nreq
measure() {
  local name=$1 secs=$2 before after out reqs non2xx
  shift 2
  [ "${WARMUP:-1}" = 1 ] && taskset -c 1 wrk -t1 -c16 -d2s "$@" >/dev/null
  before=$(cpu_ticks)
  # PERF="<name> ...": record a profile of the gateway worker while these runs go.
  local perf=""
  if [[ " ${PERF:-} " == *" $name "* ]]; then
    perf record -q -g -p "$worker" -o "$dir/perf-$name.data" -- sleep "$secs" 2>/dev/null &
    perf=$!
  fi
  out=$(taskset -c 1 wrk -t1 -c16 -d"${secs}s" "$@")
  after=$(cpu_ticks)
  if [ -n "$perf" ]; then wait "$perf"; echo "profile: $dir/perf-$name.data" >&2; fi
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  if [ -n "$non2xx" ]; then echo "$name: $non2xx non-2xx responses" >&2; exit 1; fi
  nreq[$name]=$reqs
  rps[$name]=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  cpu[$name]=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
}

ratio() { awk -v a="${cpu[$1]}" -v b="${cpu[$2]}" 'BEGIN {printf "%.3f", a / b}'; }

row() { printf '%-28s %12s %16s %10s\n' "$1" "${rps[$2]}" "${cpu[$2]}" "$(ratio "$2" "$3")x"; }
