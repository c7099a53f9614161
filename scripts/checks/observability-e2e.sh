#!/usr/bin/env bash
# The dashboards proven against real data: starts `latch up` (embedded SQLite,
# the real components) with its Prometheus endpoint and an email webhook
# receiver, drives traffic through every route -- successes, validation
# failures, a lock-out, a refresh-token reuse, sessions, password change,
# sign-out, account recovery and email verification with delivered and failed
# messages, the admin API (reads, each kind of change, refusals), the second factor
# (enrolment, sign-ins with a code and a recovery code, wrong codes, new recovery
# codes, removal, a code lock-out) -- then runs scripts/checks/observability-live.sh, which scrapes it
# with a real Prometheus and runs every dashboard query. Needs
# `target/debug/latch` and the built components (scripts/test.sh builds them
# first).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

latch=${LATCH_BIN:-target/debug/latch}
[ -x "$latch" ] || { echo "missing $latch: run cargo build -p latch first" >&2; exit 1; }

work=$(mktemp -d)
latch_pid=""
hook_pid=""
cleanup() {
  [ -n "$latch_pid" ] && kill "$latch_pid" 2>/dev/null && wait "$latch_pid" 2>/dev/null
  # The receiver dies of the signal (status 143): not a failure of this script.
  [ -n "$hook_pid" ] && kill "$hook_pid" 2>/dev/null && { wait "$hook_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics_port=$(free_port)
hook_port=$(free_port)

# The email webhook receiver: keeps each message's body (one JSON line) and answers
# 204, or 500 for addresses starting with "bounce", so that both delivery outcomes
# happen. It does not check signatures (the API tests do, crates/e2e).
python3 - "$hook_port" "$work/messages.jsonl" <<'PY' >"$work/hook.log" 2>&1 &
import http.server, json, sys
port, out = int(sys.argv[1]), sys.argv[2]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        to = json.loads(body).get("data", {}).get("to", "")
        with open(out, "ab") as f:
            f.write(body.replace(b"\n", b"") + b"\n")
        self.send_response(500 if to.startswith("bounce") else 204)
        self.send_header("content-length", "0")
        self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", port), Hook).serve_forever()
PY
hook_pid=$!
: >"$work/messages.jsonl"
export SPIN_VARIABLE_EMAIL_WEBHOOK_URL="http://127.0.0.1:$hook_port/hook"
export SPIN_VARIABLE_EMAIL_WEBHOOK_ORIGIN="http://127.0.0.1:$hook_port"
SPIN_VARIABLE_EMAIL_WEBHOOK_SECRET="whsec_$(head -c 32 /dev/urandom | base64 -w0)"
export SPIN_VARIABLE_EMAIL_WEBHOOK_SECRET

SPIN_VARIABLE_COOKIE_SECURE=false SPIN_VARIABLE_SIGNUP_MAX_PER_WINDOW=1000000 RUST_LOG=warn "$latch" --log-format json up \
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
# token KIND EMAIL: the token of the newest message of that kind to that address, once
# the webhook has it (messages leave after the answer).
token() {
  python3 - "$work/messages.jsonl" "$1" "$2" <<'PY'
import json, sys, time
path, kind, to = sys.argv[1:]
for _ in range(150):
    found = [m["data"]["token"] for m in map(json.loads, open(path).read().splitlines())
             if m["data"]["kind"] == kind and m["data"]["to"] == to]
    if found:
        print(found[-1])
        sys.exit(0)
    time.sleep(0.1)
sys.exit(f"no {kind} message to {to} reached the webhook in 15 s")
PY
}
# totp SECRET STATE: a code of the TOTP secret (RFC 6238: SHA-1, 30 s, 6 digits) for a
# step after the last one used (kept in the file STATE): the service accepts one step
# either side of its clock and never a step twice. The step before now only while the
# current one has 5 s to go (the service reads its clock a moment later); waits for the
# next step when both now and the next are spent.
totp() {
  python3 - "$1" "$2" <<'PY'
import base64, hashlib, hmac, os, struct, sys, time
secret, state = sys.argv[1], sys.argv[2]
key = base64.b32decode(secret + "=" * (-len(secret) % 8))
last = int(open(state).read()) if os.path.exists(state) else -1
while True:
    now, into = divmod(int(time.time()), 30)
    step = max(last + 1, now - 1 if into < 25 else now)
    if step <= now + 1:
        break
    time.sleep(1)
open(state, "w").write(str(step))
digest = hmac.new(key, struct.pack(">q", step), hashlib.sha1).digest()
offset = digest[19] & 15
print(f"{(struct.unpack('>I', digest[offset:offset + 4])[0] & 0x7fffffff) % 1000000:06d}")
PY
}
# field NAME: the top-level member NAME of the JSON object on stdin ("" when absent);
# a list member prints one item a line.
field() {
  python3 -c '
import json, sys
value = json.load(sys.stdin).get(sys.argv[1], "")
print("\n".join(value) if isinstance(value, list) else value)' "$1"
}
# enrol JAR STATE: enrols and confirms a TOTP factor for the session in the cookie jar;
# prints the secret, then the ten recovery codes, one a line.
enrol() {
  local secret
  secret=$(curl -s -b "$1" -X POST "$base/auth/mfa/totp/enroll" | field secret)
  printf '%s\n' "$secret"
  curl -s -b "$1" -X POST "$base/auth/mfa/totp/confirm" "${json[@]}" -d "{\"code\":\"$(totp "$secret" "$2")\"}" |
    field recoveryCodes
}
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

  # Account recovery and email verification. Sign-up sent each account a verification
  # message; bounce@ gets 500 from the receiver (failed deliveries).
  call -X POST "$base/auth/signup" "${json[@]}" -d '{"email":"bounce@example.com","password":"correct horse battery","fullName":"Bo Unce"}'
  call -X POST "$base/auth/email/verify" "${json[@]}" -d "{\"token\":\"$(token verification obs@example.com)\"}"
  call -X POST "$base/auth/email/verify" "${json[@]}" -d '{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}'
  call -X POST "$base/auth/password/forgot" "${json[@]}" -d '{"email":"obs@example.com"}'
  call -X POST "$base/auth/password/forgot" "${json[@]}" -d '{"email":"nobody@example.com"}'
  call -X POST "$base/auth/password/forgot" "${json[@]}" -d '{"email":"bad"}'
  recovery=$(token recovery obs@example.com)
  call -X POST "$base/auth/password/reset" "${json[@]}" -d "{\"token\":\"$recovery\",\"newPassword\":\"a third good phrase\"}"
  call -X POST "$base/auth/password/reset" "${json[@]}" -d "{\"token\":\"$recovery\",\"newPassword\":\"a fourth good phrase\"}"
  call -c "$work/d" -X POST "$base/auth/signin" "${json[@]}" -d '{"email":"bounce@example.com","password":"correct horse battery"}'
  call -b "$work/d" -X POST "$base/auth/email/verify/resend"
  call -X POST "$base/auth/email/verify/resend"
  # Past the per-account recovery throttle (5 an hour): the sixth is denied, still 202.
  for _ in 1 2 3 4 5 6; do
    call -X POST "$base/auth/password/forgot" "${json[@]}" -d '{"email":"victim@example.com"}'
  done

  # The admin API (issue 15). The admin role is granted straight in the embedded
  # database, as crates/e2e does; the access token of the next sign-in carries it.
  admin_id=$(curl -s -X POST "$base/auth/signup" "${json[@]}" \
    -d '{"email":"admin@example.com","password":"correct horse battery","fullName":"Ad Min"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["userId"])')
  python3 - "$work/data/sqlite/default.db" "$admin_id" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
with db:
    added = db.execute("INSERT INTO user_roles (user_id, role_id, created_at) VALUES (?, 'role-admin', 0)",
                       (sys.argv[2],)).rowcount
sys.exit(0 if added == 1 else f"granting admin: {added} rows added")
PY
  call -c "$work/adm" -X POST "$base/auth/signin" "${json[@]}" -d '{"email":"admin@example.com","password":"correct horse battery"}'
  victim_id=$(curl -s -b "$work/adm" "$base/admin/users?query=victim" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["users"][0]["id"])')
  call -b "$work/adm" "$base/admin/users?limit=2"
  call -b "$work/adm" "$base/admin/users/$victim_id"
  # victim@ was locked out above: lift it, disable and re-enable the account, end its
  # sessions (admin_unlock, admin_user_updated, admin_sessions_revoked).
  call -b "$work/adm" -X POST "$base/admin/users/$victim_id/unlock"
  call -b "$work/adm" -X PATCH "$base/admin/users/$victim_id" "${json[@]}" -d '{"isActive":false}'
  call -b "$work/adm" -X PATCH "$base/admin/users/$victim_id" "${json[@]}" -d '{"isActive":true}'
  call -b "$work/adm" -X POST "$base/admin/users/$victim_id/sessions/revoke"
  call -b "$work/adm" "$base/admin/audit?kind=admin_user_updated&limit=5"
  # Refused: an admin demoting themselves (403), a user without the role (403), no token (401).
  call -b "$work/adm" -X PATCH "$base/admin/users/$admin_id" "${json[@]}" -d '{"roles":["user"]}'
  call -b "$work/c" "$base/admin/users"
  call "$base/admin/audit"

  # The second factor (issue 14): mfa@ enrols (mfa_enrolled), signs in with a wrong
  # code and then the right one (mfa_failed, mfa_verified), once with a recovery code
  # (recovery_code_used), replaces its recovery codes and removes the factor with one of
  # the new ones (recovery_codes_regenerated, mfa_removed); mfalock@ is locked out of its
  # codes by five wrong ones (lockout), and the sixth is refused (mfa_failed denied).
  call -X POST "$base/auth/signup" "${json[@]}" -d '{"email":"mfa@example.com","password":"correct horse battery","fullName":"Mf A"}'
  call -c "$work/m" -X POST "$base/auth/signin" "${json[@]}" -d '{"email":"mfa@example.com","password":"correct horse battery"}'
  call -X POST "$base/auth/mfa/totp/enroll"
  call -b "$work/m" -X POST "$base/auth/mfa/recovery-codes" "${json[@]}" -d '{"code":"123456"}'
  mapfile -t enrolled < <(enrol "$work/m" "$work/mfa.step")
  secret=${enrolled[0]}
  call -b "$work/m" -X POST "$base/auth/mfa/totp/enroll"
  call -b "$work/m" -X DELETE "$base/auth/mfa/totp" "${json[@]}" -d "{\"recoveryCode\":\"${enrolled[1]}\"}"
  signin_mfa() {
    curl -s -X POST "$base/auth/signin" "${json[@]}" -d "{\"email\":\"$1\",\"password\":\"correct horse battery\"}" |
      field challenge
  }
  challenge=$(signin_mfa mfa@example.com)
  call -X POST "$base/auth/mfa/verify" "${json[@]}" -d "{\"challenge\":\"$challenge\",\"code\":\"00000x\"}"
  call -c "$work/m2" -X POST "$base/auth/mfa/verify" "${json[@]}" \
    -d "{\"challenge\":\"$challenge\",\"code\":\"$(totp "$secret" "$work/mfa.step")\"}"
  call -X POST "$base/auth/mfa/verify" "${json[@]}" -d "{\"challenge\":\"$challenge\",\"code\":\"000000\"}"
  call -c "$work/m3" -X POST "$base/auth/mfa/verify" "${json[@]}" \
    -d "{\"challenge\":\"$(signin_mfa mfa@example.com)\",\"recoveryCode\":\"${enrolled[2]}\"}"
  mapfile -t renewed < <(curl -s -b "$work/m2" -X POST "$base/auth/mfa/recovery-codes" "${json[@]}" \
    -d "{\"code\":\"$(totp "$secret" "$work/mfa.step")\"}" | field recoveryCodes)
  call -b "$work/m2" -X DELETE "$base/auth/mfa/totp" "${json[@]}" -d "{\"recoveryCode\":\"${renewed[0]}\"}"
  call -b "$work/m2" -X DELETE "$base/auth/mfa/totp" "${json[@]}" -d "{\"recoveryCode\":\"${renewed[1]}\"}"
  call -X POST "$base/auth/signup" "${json[@]}" -d '{"email":"mfalock@example.com","password":"correct horse battery","fullName":"Mf Lock"}'
  call -c "$work/l" -X POST "$base/auth/signin" "${json[@]}" -d '{"email":"mfalock@example.com","password":"correct horse battery"}'
  enrol "$work/l" "$work/mfalock.step" >/dev/null
  challenge=$(signin_mfa mfalock@example.com)
  for wrong in 11111a 22222b 33333c 44444d 55555e 66666f; do
    call -X POST "$base/auth/mfa/verify" "${json[@]}" -d "{\"challenge\":\"$challenge\",\"code\":\"$wrong\"}"
  done

  # Let the last deliveries finish (they run after the answers).
  sleep 2
} >&2
echo >&2

bash scripts/checks/observability-live.sh --metrics "http://127.0.0.1:$metrics_port/metrics" \
  --allow-missing-label server_address
