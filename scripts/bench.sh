#!/usr/bin/env bash
# Benchmarks for docs/performance.md, each comparison measured side by side in
# one run on this machine (release builds, wrk on the same cores):
#   1. runner overhead: the health component through `latch up` vs a native
#      hyper server answering the same body;
#   2. argon2id inside a component vs the same parameters natively;
#   3. GET /user/profile (10 connections) and POST /auth/signin throughput on
#      the embedded database;
#   4. the same through the SQLite Cloud stand-in with 0 ms and 20 ms latency,
#      and the database round trips each route makes there.
# Usage: bash scripts/bench.sh [--duration SECONDS]   (default 10)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=10
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
# With RUST_BACKTRACE set, every wasmtime error value (one is made internally
# on each request) captures a backtrace: measure what production runs.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*" >&2; }

components=()
for dir in components/*/; do components+=(-p "route-$(basename "$dir")"); done
say "building (release)"
cargo build --release --locked -p latch -p latch-bench -p sqlitecloud-standin >&2
cargo build --locked --target wasm32-wasip2 --profile wasm "${components[@]}" -p bench-argon2 >&2
bin=target/release

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() {
  for _ in $(seq 1 300); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "no answer from $1" >&2
  return 1
}

# wrk_run NAME URL CONNECTIONS [wrk args...]: prints "NAME rps p50 p99".
wrk_run() {
  local name=$1 url=$2 connections=$3
  shift 3
  local out
  out=$(wrk -t"$((connections < 2 ? connections : 2))" -c"$connections" -d"${duration}s" --latency "$@" "$url")
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
  printf '%-44s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "${errors:-0}"
}

start_latch() { # NAME MANIFEST PORT [env...]: starts latch up, waits for /health
  local name=$1 manifest=$2 port=$3
  shift 3
  env "$@" "$bin/latch" --log-format json up --from "$manifest" --listen "127.0.0.1:$port" \
    --data-dir "$work/$name" --cache-dir target/bench-cache --no-watch \
    >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/health"
}

say "1. runner overhead: health component vs native hyper"
native_port=$(free_port)
"$bin/native-health" "127.0.0.1:$native_port" >/dev/null &
pids+=($!)
wait_http "http://127.0.0.1:$native_port/health"
bench_port=$(free_port)
start_latch bench crates/bench/spin.toml "$bench_port" RUST_LOG=warn
for round in 1 2; do
  wrk_run "native hyper /health (c=10, round $round)" "http://127.0.0.1:$native_port/health" 10
  wrk_run "latch health component (c=10, round $round)" "http://127.0.0.1:$bench_port/health" 10
done
native_c1=$(wrk_run "native hyper /health (c=1)" "http://127.0.0.1:$native_port/health" 1)
latch_c1=$(wrk_run "latch health component (c=1)" "http://127.0.0.1:$bench_port/health" 1)
printf '%s\n%s\n' "$native_c1" "$latch_c1"
# One connection, one request at a time: the difference of the mean times per
# request is what the runner adds (instantiate, route, guest, copy the body).
awk -v n="$(awk '{print $(NF-7)}' <<<"$native_c1")" -v l="$(awk '{print $(NF-7)}' <<<"$latch_c1")" \
  'BEGIN {printf "runner overhead per request (c=1): %.1f us (native %.1f us, latch %.1f us, ratio %.2fx)\n", 1e6/l - 1e6/n, 1e6/n, 1e6/l, n/l}'

say "2. argon2id: component vs native"
"$bin/native-argon2" 40
for _ in $(seq 1 40); do
  curl -fs "http://127.0.0.1:$bench_port/argon2" | head -n1
done | sort -n | awk '{a[NR]=$1/1000; s+=$1/1000} END {printf "argon2id in component: %d hashes, mean %.2f ms, median %.2f ms\n", NR, s/NR, a[int((NR+1)/2)]}'
wrk_run "latch argon2 component (c=1)" "http://127.0.0.1:$bench_port/argon2" 1

signing_key="bench:$(python3 -c 'import base64; print(base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("="))')"
common_env=(RUST_LOG=warn SPIN_VARIABLE_SIGNING_KEY="$signing_key" SPIN_VARIABLE_COOKIE_SECURE=false)

prepare_users() { # BASE: signs up bench0..bench19, prints an access token of bench0
  local base=$1 i
  for i in $(seq 0 19); do
    curl -fs -X POST "$base/auth/signup" -H 'content-type: application/json' \
      -d "{\"email\":\"bench$i@example.com\",\"password\":\"correct horse battery\",\"fullName\":\"Bench User\"}" >/dev/null
  done
  curl -fs -X POST "$base/auth/signin" -H 'content-type: application/json' \
    -d '{"email":"bench0@example.com","password":"correct horse battery"}' -o /dev/null -D - |
    sed -n 's/^set-cookie: token=\([^;]*\);.*/\1/Ip'
}

say "3. embedded SQLite: profile and sign-in"
app_port=$(free_port)
start_latch embedded spin.toml "$app_port" "${common_env[@]}"
embedded_pid=${pids[-1]}
status_mib() { awk -v field="$2:" '$1 == field {printf "%.0f MiB", $2/1024}' "/proc/$1/status"; } # PID FIELD
echo "latch up (all components, embedded), idle after start: RSS $(status_mib "$embedded_pid" VmRSS)"
token=$(prepare_users "http://127.0.0.1:$app_port")
wrk_run "GET /user/profile, embedded (c=10)" "http://127.0.0.1:$app_port/user/profile" 10 -H "Authorization: Bearer $token"
wrk_run "POST /auth/signin, embedded (c=10)" "http://127.0.0.1:$app_port/auth/signin" 10 -s scripts/bench/signin.lua
echo "latch up (all components, embedded), after the load above: RSS $(status_mib "$embedded_pid" VmRSS), peak $(status_mib "$embedded_pid" VmHWM)"

say "4. SQLite Cloud stand-in: round trips, profile and sign-in at 0 and 20 ms"
standin_port=$(free_port)
"$bin/sqlitecloud-standin" --listen "127.0.0.1:$standin_port" --data-dir "$work/standin" --api-key benchkey >/dev/null 2>"$work/standin.log" &
pids+=($!)
wait_http "http://127.0.0.1:$standin_port/v2/health"
curl -fs -X POST -H 'authorization: Bearer benchkey' "http://127.0.0.1:$standin_port/v2/weblite/latch" >/dev/null
url="http://127.0.0.1:$standin_port/latch?apikey=benchkey"
"$bin/latch" migrate --database-url "$url" >&2
cloud_port=$(free_port)
start_latch cloud spin.toml "$cloud_port" "${common_env[@]}" SPIN_VARIABLE_DB_TYPE=sqlitecloud \
  SPIN_VARIABLE_DATABASE_URL="$url" SPIN_VARIABLE_DATABASE_ORIGIN="http://127.0.0.1:$standin_port"
base="http://127.0.0.1:$cloud_port"
requests() { curl -fs "http://127.0.0.1:$standin_port/__standin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sql_requests"])'; }
count() { # LABEL CURL-ARGS...: HTTP round trips to the database for one request
  local label=$1 before after
  shift
  before=$(requests)
  curl -s -o /dev/null "$@"
  after=$(requests)
  printf '%-36s %s\n' "$label" "$((after - before))"
}
token=$(prepare_users "$base")
json=(-H 'content-type: application/json')
printf '%-36s %s\n' "route" "database round trips"
count "POST /auth/signup" -X POST "$base/auth/signup" "${json[@]}" -d '{"email":"rt@example.com","password":"correct horse battery","fullName":"Round Trip"}'
count "POST /auth/signin" -c "$work/jar" -X POST "$base/auth/signin" "${json[@]}" -d '{"email":"rt@example.com","password":"correct horse battery"}'
count "POST /auth/signin (wrong password)" -X POST "$base/auth/signin" "${json[@]}" -d '{"email":"rt@example.com","password":"wrong password!"}'
count "GET /user/profile" -b "$work/jar" "$base/user/profile"
count "PUT /user/profile" -b "$work/jar" -X PUT "$base/user/profile" "${json[@]}" -d '{"fullName":"Round Trip 2"}'
count "GET /auth/sessions" -b "$work/jar" "$base/auth/sessions"
count "POST /auth/refresh" -b "$work/jar" -c "$work/jar" -X POST "$base/auth/refresh"
count "POST /auth/password" -b "$work/jar" -X POST "$base/auth/password" "${json[@]}" -d '{"currentPassword":"correct horse battery","newPassword":"another good phrase"}'
count "POST /auth/signout" -b "$work/jar" -X POST "$base/auth/signout"
count "GET /.well-known/jwks.json" "$base/.well-known/jwks.json"
count "GET /ready" "$base/ready"
count "GET /health" "$base/health"
for latency in 0 20; do
  curl -fs -X POST "http://127.0.0.1:$standin_port/__standin/config" -H 'content-type: application/json' -d "{\"latency_ms\": $latency}" >/dev/null
  wrk_run "GET /user/profile, stand-in ${latency} ms (c=10)" "$base/user/profile" 10 -H "Authorization: Bearer $token"
  wrk_run "POST /auth/signin, stand-in ${latency} ms (c=10)" "$base/auth/signin" 10 -s scripts/bench/signin.lua
done
