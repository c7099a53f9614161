#!/usr/bin/env bash
# Benchmarks for docs/performance.md, each comparison measured side by side in
# one run on this machine (release builds, wrk on the same cores):
#   1. runner overhead: the health component through `latch up` vs a native
#      hyper server answering the same body;
#   2. argon2id inside a component vs the same parameters natively;
#   3. the service under `latch up` and, when a `spin` binary is given, under
#      the real Spin 3.6.3, both serving at once and measured in alternating
#      rounds (two each; the table shows both, the ratio their means): sequential
#      kept-alive /health and profile (the latency tail a Nagle stall makes),
#      /health at 1 and 10 connections, profile and sign-in at 10 connections
#      on the embedded database, then profile over the SQLite Cloud stand-in at
#      0 and 20 ms added latency and sign-in over it; the serving process's RSS
#      idle and at its peak (Spin: its `spin trigger http` child, not `spin up`);
#   4. the database round trips each route makes on the stand-in.
# Usage: bash scripts/bench.sh [--duration SECONDS] [--spin PATH]
#   --duration  seconds per wrk run (default 10)
#   --spin      a Spin 3.6.3 binary for the Spin column (default: $SPIN, if set)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=10
spin=${SPIN:-}
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --spin) spin="$2"; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ -n $spin && ! -x $spin ]]; then
  echo "--spin $spin is not an executable" >&2
  exit 2
fi
# With RUST_BACKTRACE set, every wasmtime error value (one is made internally
# on each request) captures a backtrace: measure what production runs.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*" >&2; }
# shellcheck source=lib/serve.sh
source scripts/lib/serve.sh

components=()
for dir in components/*/; do components+=(-p "route-$(basename "$dir")"); done
say "building (release)"
cargo build --release --locked -p latch -p latch-bench -p sqlitecloud-standin >&2
cargo build --locked --target wasm32-wasip2 --profile wasm "${components[@]}" -p bench-argon2 >&2
bin=target/release

# Results of section 3, for the table at the end: results[<row>|<runtime>].
declare -A results
rows=()
record() { # ROW RUNTIME VALUE
  [[ " ${rows[*]} " == *" $1 "* ]] || rows+=("$1")
  results["$1|$2"]=$3
}

# wrk_run NAME URL CONNECTIONS [wrk args...]: prints "NAME rps p50 p99";
# sets wrk_rps and wrk_p99.
wrk_run() {
  local name=$1 url=$2 connections=$3
  shift 3
  local out p50 errors
  out=$(wrk -t"$((connections < 2 ? connections : 2))" -c"$connections" -d"${duration}s" --latency "$@" "$url")
  wrk_rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  wrk_p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
  printf '%-52s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$name" "$wrk_rps" "$p50" "$wrk_p99" "${errors:-0}"
}

# sequential NAME ADDR PATH [HEADER]: 200 requests on one kept-alive connection.
sequential() {
  local name=$1 address=$2 path=$3
  shift 3
  local out
  out=$("$bin/sequential" "$address" "$path" 200 "$@")
  printf '%-52s %s\n' "$name" "$out"
  seq_summary=$(sed -E 's/.*p50=([^ ]*) .*p99=([^ ]*) max=([^ ]*) over20ms=([0-9]*)/p50 \1, p99 \2, max \3, over 20 ms: \4/' <<<"$out")
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
# Native and component in alternating rounds of 10 hashes (the machine's speed
# drifts); the ratio is the component's median over the argon2 crate's, natively.
for _ in 1 2 3 4; do
  "$bin/native-argon2" 10
  for _ in $(seq 1 10); do
    curl -fs "http://127.0.0.1:$bench_port/argon2" | head -n1
  done | sort -n | awk '{a[NR]=$1/1000; s+=$1/1000} END {printf "argon2id in component: %d hashes, mean %.2f ms, median %.2f ms\n", NR, s/NR, a[int((NR+1)/2)]}'
done | tee "$work/argon2.txt"
awk '/native, argon2 crate/ {n[++i]=$(NF-1)} /in component/ {c[++j]=$(NF-1)}
  END {for (k=1; k<=j; k++) printf "round %d: component %.2f ms / native argon2 crate %.2f ms = %.2fx\n", k, c[k], n[k], c[k]/n[k]}' "$work/argon2.txt"
wrk_run "latch argon2 component (c=1)" "http://127.0.0.1:$bench_port/argon2" 1
kill "$serving_pid" 2>/dev/null || true

# The production form of the key, its public key carried (scripts/lib/keys.sh).
signing_key=$(new_signing_key bench)
# Every benchmark client signs up from 127.0.0.1: lift the per-address sign-up limit.
common_env=(RUST_LOG=warn SPIN_VARIABLE_SIGNING_KEY="$signing_key" SPIN_VARIABLE_COOKIE_SECURE=false
  SPIN_VARIABLE_SIGNUP_MAX_PER_WINDOW=1000000)

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

start_service() { # RUNTIME NAME PORT [env...]
  local runtime=$1 name=$2 port=$3
  shift 3
  if [[ $runtime == latch ]]; then
    start_latch "$name" spin.toml "$port" "$@"
  else
    start_spin "$spin" "$name" "$port" "$@"
  fi
}

runtimes=(latch)
[[ -n $spin ]] && runtimes+=(spin)

# Both runtimes serve at once (an idle server costs nothing) and each figure is
# taken in alternating rounds, latch then Spin then latch..., so a drift of the
# machine's speed during the run falls on both columns alike.
rounds=2
declare -A port_of pid_of token_of
compare() { # LABEL KIND ARGS...: each runtime, `rounds` times, alternating; KIND wrk|seq
  local label=$1 kind=$2 round runtime values
  shift 2
  declare -A got=()
  for round in $(seq 1 "$rounds"); do
    for runtime in "${runtimes[@]}"; do
      local base="http://127.0.0.1:${port_of[$runtime]}" address="127.0.0.1:${port_of[$runtime]}"
      local args=("${@//@TOKEN@/${token_of[$runtime]}}")
      if [[ $kind == wrk ]]; then
        wrk_run "$runtime: $label (round $round)" "$base${args[0]}" "${args[@]:1}"
        got[$runtime]+="${got[$runtime]:+ / }$wrk_rps"
      else
        sequential "$runtime: $label (round $round)" "$address" "${args[@]}"
        got[$runtime]+="${got[$runtime]:+ / }$seq_summary"
      fi
    done
  done
  for runtime in "${runtimes[@]}"; do
    values=${got[$runtime]}
    record "$label" "$runtime" "$values"
  done
}

start_both() { # KIND ENV...: starts every runtime; KIND embedded|cloud
  local kind=$1 runtime
  shift
  for runtime in "${runtimes[@]}"; do
    port_of[$runtime]=$(free_port)
    start_service "$runtime" "$kind-$runtime" "${port_of[$runtime]}" "$@"
    pid_of[$runtime]=$serving_pid
  done
}

say "3a. ${runtimes[*]}: embedded SQLite"
start_both embedded "${common_env[@]}"
for runtime in "${runtimes[@]}"; do
  record "RSS idle after start (MiB)" "$runtime" "$(status_mib "${pid_of[$runtime]}" VmRSS)"
  token_of[$runtime]=$(prepare_users "http://127.0.0.1:${port_of[$runtime]}")
done
compare "/health, 200 sequential kept-alive" seq /health
compare "/health c=1 (req/s)" wrk /health 1
compare "/health c=10 (req/s)" wrk /health 10
compare "profile embedded, 200 sequential kept-alive" seq /user/profile "authorization: Bearer @TOKEN@"
compare "profile embedded c=10 (req/s)" wrk /user/profile 10 -H "Authorization: Bearer @TOKEN@"
compare "sign-in embedded c=10 (req/s)" wrk /auth/signin 10 -s scripts/bench/signin.lua
for runtime in "${runtimes[@]}"; do
  record "RSS after the embedded load (MiB)" "$runtime" "$(status_mib "${pid_of[$runtime]}" VmRSS)"
  record "RSS peak (MiB)" "$runtime" "$(status_mib "${pid_of[$runtime]}" VmHWM)"
  kill "${pid_of[$runtime]}" 2>/dev/null || true
done

say "3b. ${runtimes[*]}: SQLite Cloud stand-in"
start_standin benchkey
set_latency() {
  curl -fs -X POST "http://127.0.0.1:$standin_port/__standin/config" -H 'content-type: application/json' \
    -d "{\"latency_ms\": $1}" >/dev/null
}
set_latency 0
mapfile -t cloud_env < <(standin_env)
start_both cloud "${common_env[@]}" "${cloud_env[@]}"
# One database for both runtimes: the second sign-up of each account answers 409,
# which is fine; the tokens are each runtime's own.
for runtime in "${runtimes[@]}"; do
  token_of[$runtime]=$(prepare_users "http://127.0.0.1:${port_of[$runtime]}")
done
compare "profile stand-in, 200 sequential kept-alive" seq /user/profile "authorization: Bearer @TOKEN@"
for latency in 0 20; do
  set_latency "$latency"
  compare "profile stand-in ${latency} ms c=10 (req/s)" wrk /user/profile 10 -H "Authorization: Bearer @TOKEN@"
done
set_latency 0
compare "sign-in stand-in c=10 (req/s)" wrk /auth/signin 10 -s scripts/bench/signin.lua
cloud_port=${port_of[latch]}

say "4. database round trips per route (stand-in, latch up)"
set_latency 0
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
# Requests a load run left in flight still reach the database after wrk stops
# (a sign-in under way when wrk stopped): wait until the count holds still.
settled=$(requests)
for _ in $(seq 50); do
  sleep 0.2
  now=$(requests)
  [[ $now == "$settled" ]] && break
  settled=$now
done
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

say "summary (section 3; markdown)"
if [[ -n $spin ]]; then
  printf '| What | latch up | Spin 3.6.3 | Spin / latch |\n|---|---|---|---|\n'
else
  printf '| What | latch up |\n|---|---|\n'
fi
for row in "${rows[@]}"; do
  l=${results["$row|latch"]:-}
  if [[ -n $spin ]]; then
    s=${results["$row|spin"]:-}
    ratio=$(awk -v a="$l" -v b="$s" 'function mean(t,  n, i, x, sum) { n = split(t, x, " / "); for (i = 1; i <= n; i++) { if (x[i] !~ /^[0-9.]+$/) return -1; sum += x[i] } return sum / n }
      BEGIN { ma = mean(a); mb = mean(b); if (ma > 0 && mb > 0) printf "%.2fx", mb / ma; else print "" }')
    printf '| %s | %s | %s | %s |\n' "$row" "$l" "$s" "$ratio"
  else
    printf '| %s | %s |\n' "$row" "$l"
  fi
done
