#!/usr/bin/env bash
# The dashboards proven against real data: starts `latch up` (embedded SQLite,
# the real components) with its Prometheus endpoint, drives traffic through
# every route -- successes, validation failures, a lock-out, a refresh-token
# reuse, sessions, password change, sign-out -- then runs
# scripts/checks/observability-live.sh, which scrapes it with a real Prometheus
# and runs every dashboard query. Needs `target/debug/latch` and the built
# components (scripts/test.sh builds them first).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

latch=${LATCH_BIN:-target/debug/latch}
[ -x "$latch" ] || { echo "missing $latch: run cargo build -p latch first" >&2; exit 1; }

work=$(mktemp -d)
latch_pid=""
cleanup() {
  [ -n "$latch_pid" ] && kill "$latch_pid" 2>/dev/null && wait "$latch_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics_port=$(free_port)
SPIN_VARIABLE_COOKIE_SECURE=false RUST_LOG=warn "$latch" --log-format json up \
  --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" \
  --data-dir "$work/data" --cache-dir target/e2e-cache --no-watch >"$work/latch.log" 2>&1 &
latch_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  curl -fs "$base/health" >/dev/null 2>&1 && break
  kill -0 "$latch_pid" 2>/dev/null || { cat "$work/latch.log" >&2; exit 1; }
  sleep 0.2
done

json=(-H 'content-type: application/json')
call() { curl -s -o /dev/null -w '%{http_code} ' "$@"; }
echo "driving traffic through every route:" >&2
{
  call "$base/health"; call "$base/ready"; call "$base/.well-known/jwks.json"
  call -X POST "$base/auth/signup" "${json[@]}" -d '{"email":"obs@example.com","password":"correct horse battery","fullName":"Obs Erver"}'
  call -X POST "$base/auth/signup" "${json[@]}" -d '{"email":"obs@example.com","password":"correct horse battery","fullName":"Obs Erver"}'
  call -X POST "$base/auth/signup" "${json[@]}" -d '{"email":"bad","password":"x","fullName":""}'
  call -X POST "$base/auth/signup" "${json[@]}" -d '{"email":"victim@example.com","password":"correct horse battery","fullName":"Vic Tim"}'
  call -c "$work/a" -X POST "$base/auth/signin" "${json[@]}" -d '{"email":"obs@example.com","password":"correct horse battery"}'
  call -c "$work/b" -X POST "$base/auth/signin" "${json[@]}" -d '{"email":"obs@example.com","password":"correct horse battery"}'
  for _ in 1 2 3 4 5 6; do
    call -X POST "$base/auth/signin" "${json[@]}" -d '{"email":"victim@example.com","password":"not the password"}'
  done
  call -b "$work/a" "$base/user/profile"
  call -b "$work/a" -X PUT "$base/user/profile" "${json[@]}" -d '{"fullName":"Obs Erved"}'
  call -b "$work/a" "$base/auth/sessions"
  cp "$work/b" "$work/b-old"
  call -b "$work/b" -c "$work/b" -X POST "$base/auth/refresh"
  call -b "$work/b-old" -X POST "$base/auth/refresh"
  call -c "$work/c" -X POST "$base/auth/signin" "${json[@]}" -d '{"email":"obs@example.com","password":"correct horse battery"}'
  session=$(curl -s -b "$work/a" "$base/auth/sessions" | python3 -c 'import json,sys; print([s["id"] for s in json.load(sys.stdin)["sessions"] if not s["current"]][0])')
  call -b "$work/a" -X DELETE "$base/auth/sessions/$session"
  call -b "$work/a" -X POST "$base/auth/password" "${json[@]}" -d '{"currentPassword":"wrong one","newPassword":"another good phrase"}'
  call -b "$work/a" -X POST "$base/auth/password" "${json[@]}" -d '{"currentPassword":"correct horse battery","newPassword":"another good phrase"}'
  call -b "$work/a" -X POST "$base/auth/signout"
  call "$base/user/profile"
  call "$base/no/such/route"
} >&2
echo >&2

bash scripts/checks/observability-live.sh --metrics "http://127.0.0.1:$metrics_port/metrics" \
  --allow-missing-label server_address
