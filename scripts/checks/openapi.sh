#!/usr/bin/env bash
# The OpenAPI contract against real responses, run by CI after the workspace and the
# components are built (target/debug/latch, target/wasm32-wasip2/wasm/*.wasm).
#
#   1. docs/openapi.yaml is a valid OpenAPI 3.1 document (openapi-spec-validator)
#   2. four `latch up` instances on free loopback ports, each with its own empty
#      database: development with cookie_secure=false (no email webhook: the recovery and
#      verification links land in its log; TOTP secrets sealed with the key development
#      derives); production (behind_tls=true) with a signing key, an older verification
#      key, tokens_in_body=true, require_verified_email=true, an email webhook that the
#      flow receives, an mfa_encryption_key and 5-second sign-in challenges; production
#      without a signing key or webhook; production with a signing key and no
#      mfa_encryption_key
#   3. a scripted flow through every route and every error case a client can cause
#      (scripts/checks/openapi_flow.py), the admin API and the second factor included (the
#      flow computes TOTP codes itself, RFC 6238): each response's status
#      must be documented for its operation, and its content type, required headers and
#      body must match;
#      cookies, security headers, problem members and token signatures are checked too,
#      and every webhook delivery's Standard Webhooks signature
#   4. schemathesis against the development instance, authenticated with a fresh access
#      token, with a fixed seed and a bounded number of examples per operation; the admin
#      operations with the token of an admin the flow made (`latch admin grant`), every
#      `{id}` a user made for it (never the admin itself)
#
# Every step runs even when an earlier one failed; the last line says PASS or FAIL.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/common.sh
source "$SCRIPT_DIR/../lib/common.sh"

usage() {
  cat <<'EOF'
Usage: scripts/checks/openapi.sh [--max-examples N] [--seed N] [--work-dir DIR] [--help]

Checks docs/openapi.yaml against the responses of a running Latch (see the header of
this script). Needs the built binaries: cargo build -p latch, and the components with
cargo build --target wasm32-wasip2 --profile wasm -p route-... (scripts/test.sh does both).

Options:
  --max-examples N  schemathesis test cases per operation and phase (default 60)
  --seed N          schemathesis seed (default 20261125)
  --work-dir DIR    keep the instances' data, logs and reports in DIR (default: a temp dir)
  --help            this text

Environment:
  LATCH_CHECKS_CACHE  cache for the venv
                      (default: ${XDG_CACHE_HOME:-~/.cache}/latch-openapi-checks)
  PYTHON              the Python 3.11+ to build the venv with (default: python3)
EOF
}

MAX_EXAMPLES=60
SEED=20261125
WORK_DIR=''
while (($#)); do
  case "$1" in
    --max-examples)
      need_value "$@"
      positive_int --max-examples "$2"
      MAX_EXAMPLES="$2"
      shift 2
      ;;
    --seed)
      need_value "$@"
      positive_int --seed "$2"
      SEED="$2"
      shift 2
      ;;
    --work-dir)
      need_value "$@"
      WORK_DIR="$2"
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

cd "$LATCH_ROOT"
SPEC="$LATCH_ROOT/docs/openapi.yaml"
LATCH="$LATCH_ROOT/target/debug/latch"
CACHE_DIR="${LATCH_CHECKS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/latch-openapi-checks}"
PYTHON="${PYTHON:-python3}"
# What schemathesis checks on every response: the four the contract needs, plus required
# response headers, and 405 with a correct Allow header for the methods a path lacks.
SCHEMATHESIS_CHECKS=not_a_server_error,status_code_conformance,content_type_conformance
SCHEMATHESIS_CHECKS+=,response_schema_conformance,response_headers_conformance
SCHEMATHESIS_CHECKS+=,unsupported_method,allow_header_conformance
# The production instance's mfa_challenge_ttl_seconds: short, so the flow can let one
# expire (it waits this long plus a second).
PROD_CHALLENGE_TTL=5
# Wall-clock bound on an instance becoming healthy (a cold component cache compiles
# every component first).
START_TIMEOUT=180

# ------------------------------------------------------------------- preconditions

# abort MESSAGE: nothing can be checked; say why, and end with the verdict line.
abort() {
  printf '%serror:%s %s\n' "$_c_red" "$_c_off" "$*" >&2
  printf 'openapi check: FAIL (%s)\n' "$*"
  exit 1
}

[[ -x "$LATCH" ]] || abort "$LATCH is missing: build it first (cargo build -p latch)"
missing=()
while read -r source; do
  [[ -f "$source" ]] || missing+=("$source")
done < <(sed -n 's/^source = "\(.*\)"$/\1/p' spin.toml)
((${#missing[@]} == 0)) ||
  abort "components not built: ${missing[*]} (cargo build --target wasm32-wasip2 --profile wasm -p route-...)"
have curl || abort "curl is required"

if [[ -z "$WORK_DIR" ]]; then
  make_private_dir
  WORK_DIR="$MADE_DIR"
fi
mkdir -p "$WORK_DIR"
WORK_DIR="$(cd "$WORK_DIR" && pwd)"

STARTED=$SECONDS

# ------------------------------------------------------------------- tools

# The pinned Python tools (sets VENV).
tools_venv() { setup_venv "$SCRIPT_DIR/requirements-openapi.txt" "$CACHE_DIR"; }

# ------------------------------------------------------------------- instances

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_instance NAME VAR=VALUE...: `latch up` with only the given Spin variables on a free
# port and its own empty database; killed on exit. Sets BASE_URL.
start_instance() {
  local name="$1" port pid
  shift
  port="$(free_port)"
  mkdir -p "$WORK_DIR/$name"
  (
    # Nothing from the caller's environment may change the instance: no stray
    # SPIN_VARIABLE_* values, no telemetry export. Values go through the environment,
    # as SpinKube passes them, never through argv.
    while read -r var; do
      unset "$var"
    done < <(compgen -e | grep -E '^(SPIN_VARIABLE_|OTEL_)' || true)
    # Schemathesis signs up far more than the 10 an hour one address may.
    export SPIN_VARIABLE_SIGNUP_MAX_PER_WINDOW=1000000
    for assignment in "$@"; do
      export "${assignment?}"
    done
    exec "$LATCH" up --listen "127.0.0.1:$port" --data-dir "$WORK_DIR/$name/data" \
      --cache-dir "$LATCH_ROOT/target/e2e-cache" --no-watch
  ) >"$WORK_DIR/$name/latch.log" 2>&1 &
  pid=$!
  on_exit stop_instance "$pid"
  BASE_URL="http://127.0.0.1:$port"
  INSTANCE_PIDS+=("$pid")
  INSTANCE_NAMES+=("$name")
  INSTANCE_URLS+=("$BASE_URL")
}

stop_instance() {
  kill "$1" 2>/dev/null || return 0
  local i
  for ((i = 0; i < 50; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$1" 2>/dev/null || true
}

# wait_healthy: every instance started since the last call answers GET /health, within
# START_TIMEOUT seconds.
wait_healthy() {
  local deadline=$((SECONDS + START_TIMEOUT)) i
  for ((i = HEALTHY; i < ${#INSTANCE_PIDS[@]}; i++)); do
    until curl -fsS -o /dev/null --max-time 2 "${INSTANCE_URLS[i]}/health" 2>/dev/null; do
      if ! kill -0 "${INSTANCE_PIDS[i]}" 2>/dev/null; then
        warn "instance ${INSTANCE_NAMES[i]} exited; the end of its log:"
        tail -n 30 "$WORK_DIR/${INSTANCE_NAMES[i]}/latch.log" >&2
        return 1
      fi
      if ((SECONDS >= deadline)); then
        warn "instance ${INSTANCE_NAMES[i]} not healthy after ${START_TIMEOUT}s; the end of its log:"
        tail -n 30 "$WORK_DIR/${INSTANCE_NAMES[i]}/latch.log" >&2
        return 1
      fi
      sleep 0.2
    done
    printf '     %s: %s\n' "${INSTANCE_NAMES[i]}" "${INSTANCE_URLS[i]}"
    HEALTHY=$((i + 1))
  done
}

start_instances() {
  INSTANCE_PIDS=() INSTANCE_NAMES=() INSTANCE_URLS=() HEALTHY=0
  # A signing key and an older, still-accepted public key, the email webhook's secret
  # and the key sealing TOTP secrets, made for this run only.
  local keys signing verification mfa_key
  keys="$("$VENV/bin/python" - <<'PY'
import base64, os
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
current, previous = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
seed = current.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())
public = previous.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
print(f"current:{b64(seed)} previous:{b64(public)} whsec_{base64.b64encode(os.urandom(32)).decode()} "
      f"{b64(os.urandom(32))}")
PY
)" || return 1
  read -r signing verification WEBHOOK_SECRET mfa_key <<<"$keys"
  # The flow receives the production instance's email webhook on this port.
  WEBHOOK_PORT="$(free_port)"
  mkdir -p "$LATCH_ROOT/target/e2e-cache"
  # The first instance fills the compiled-component cache (on a cold cache that is the
  # slow part); the others then load from it instead of compiling the same again.
  start_instance dev SPIN_VARIABLE_COOKIE_SECURE=false
  DEV_URL="$BASE_URL"
  wait_healthy || return 1
  start_instance prod SPIN_VARIABLE_ENVIRONMENT=production SPIN_VARIABLE_SIGNING_KEY="$signing" \
    SPIN_VARIABLE_VERIFICATION_KEYS="$verification" SPIN_VARIABLE_TOKENS_IN_BODY=true \
    SPIN_VARIABLE_BEHIND_TLS=true SPIN_VARIABLE_REQUIRE_VERIFIED_EMAIL=true \
    SPIN_VARIABLE_EMAIL_WEBHOOK_URL="http://127.0.0.1:$WEBHOOK_PORT/webhook" \
    SPIN_VARIABLE_EMAIL_WEBHOOK_ORIGIN="http://127.0.0.1:$WEBHOOK_PORT" \
    SPIN_VARIABLE_EMAIL_WEBHOOK_SECRET="$WEBHOOK_SECRET" SPIN_VARIABLE_PUBLIC_URL=https://app.example.test \
    SPIN_VARIABLE_MFA_ENCRYPTION_KEY="$mfa_key" SPIN_VARIABLE_MFA_CHALLENGE_TTL_SECONDS="$PROD_CHALLENGE_TTL"
  PROD_URL="$BASE_URL"
  start_instance nokey SPIN_VARIABLE_ENVIRONMENT=production SPIN_VARIABLE_BEHIND_TLS=true
  NOKEY_URL="$BASE_URL"
  start_instance nomfa SPIN_VARIABLE_ENVIRONMENT=production SPIN_VARIABLE_BEHIND_TLS=true \
    SPIN_VARIABLE_SIGNING_KEY="$signing"
  NOMFA_URL="$BASE_URL"
  wait_healthy || return 1
  INSTANCES_UP=1
}

# ------------------------------------------------------------------- checks

validate_spec() {
  "$VENV/bin/openapi-spec-validator" "$SPEC"
}

run_flow() {
  local status
  "$VENV/bin/python" "$SCRIPT_DIR/openapi_flow.py" --spec "$SPEC" --dev "$DEV_URL" --prod "$PROD_URL" \
    --prod-kids current,previous --nokey "$NOKEY_URL" --tokens-out "$WORK_DIR/tokens.json" \
    --dev-log "$WORK_DIR/dev/latch.log" --webhook-port "$WEBHOOK_PORT" --webhook-secret "$WEBHOOK_SECRET" \
    --dev-data-dir "$WORK_DIR/dev/data" --latch "$LATCH" --nomfa "$NOMFA_URL" \
    --prod-challenge-ttl "$PROD_CHALLENGE_TTL" \
    >"$WORK_DIR/flow.log" 2>&1 && status=0 || status=$?
  # The requests themselves are in flow.log; the verdict and every failure here.
  sed -n '/^ *FAIL /p; /documented (operation, status) pairs/,$p' "$WORK_DIR/flow.log"
  return "$status"
}

# token NAME: a token the flow left for schemathesis (tokens.json).
token() {
  "$VENV/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' \
    "$WORK_DIR/tokens.json" "$1" 2>/dev/null || true
}

# schemathesis_pass NAME URL HEADER OPERATION-ID...: one schemathesis run over the given
# operations, sending HEADER with every request. Output in the work dir; the verdict here.
# With PASS_CONFIG set, that schemathesis.toml too (fixed parameter values).
schemathesis_pass() {
  local name="$1" url="$2" header="$3" status op
  local -a config=()
  shift 3
  if [[ -n "${PASS_CONFIG:-}" ]]; then
    config=(--config-file "$PASS_CONFIG")
  fi
  if [[ "$header" == *": " ]]; then
    warn "no token from the scripted flow for '$header': its operations would only be tested unauthenticated"
    return 1
  fi
  local -a include=()
  for op in "$@"; do
    include+=(--include-operation-id "$op")
  done
  # From the work dir: hypothesis keeps its files in the current directory. Security
  # parameters are not generated: a generated `token` cookie would win over the header.
  (
    cd "$WORK_DIR"
    "$VENV/bin/schemathesis" "${config[@]}" run "$SPEC" --url "$url" --header "$header" \
      --checks "$SCHEMATHESIS_CHECKS" \
      --phases examples,coverage,fuzzing --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
      --generation-database none --generation-with-security-parameters false \
      --request-timeout 10 --no-color --output-truncate false \
      --report junit --report-junit-path "$WORK_DIR/schemathesis-$name.xml" "${include[@]}"
  ) >"$WORK_DIR/schemathesis-$name.log" 2>&1 && status=0 || status=$?
  sed -n '/^Test cases:/,/^$/p' "$WORK_DIR/schemathesis-$name.log" | grep -v '^$' || true
  if ((status != 0)); then
    sed -n '/^=* FAILURES/,$p' "$WORK_DIR/schemathesis-$name.log" | head -n 200
  fi
  return "$status"
}

# admin_pass: the admin operations with an admin's token. Every `{id}` is one ordinary
# user the flow made (dev_admin_target), never the admin: generated requests may disable
# that user, change its roles, unlock it and revoke its sessions without ending the
# admin's own session (an admin disabling or demoting themselves is refused by design,
# 403 self_demotion, but revoking their own sessions would end the token's).
admin_pass() {
  local target
  target="$(token dev_admin_target)"
  if [[ -z "$target" ]]; then
    warn "no admin target user from the scripted flow"
    return 1
  fi
  printf '[parameters]\n"path.id" = "%s"\n' "$target" >"$WORK_DIR/schemathesis-admin.toml"
  PASS_CONFIG="$WORK_DIR/schemathesis-admin.toml" schemathesis_pass dev-admin "$DEV_URL" \
    "Authorization: Bearer $(token dev_admin)" \
    listUsers getUser updateUser unlockUser revokeUserSessions listAudit
}

# ------------------------------------------------------------------- main

step "install the pinned Python tools" tools_venv
if [[ ! -f "${VENV:-/nonexistent}/.complete" ]]; then
  abort "the tools could not be installed; nothing else can run"
fi
step "docs/openapi.yaml is valid OpenAPI 3.1" validate_spec
INSTANCES_UP=0
step "start four latch up instances (dev, prod with tokens in body, prod without key, prod without MFA key)" \
  start_instances
if ((INSTANCES_UP)); then
  step "scripted flow: every route and error case against the spec" run_flow
  # Each pass with a token of its own session; the operations that end the session last.
  # The production instance's webhook receiver ends with the flow: its deliveries during
  # schemathesis fail after the answers are out, which changes none of them.
  step "schemathesis (dev): every operation but sign-out and session revocation" schemathesis_pass \
    dev "$DEV_URL" "Authorization: Bearer $(token dev_access)" \
    signUp signIn changePassword listSessions getProfile updateProfile getJwks health ready \
    forgotPassword resetPassword verifyEmail resendVerification \
    enrollTotp confirmTotp removeTotp regenerateRecoveryCodes verifyMfa
  step "schemathesis (dev): refresh with a live refresh token" schemathesis_pass \
    dev-refresh "$DEV_URL" "Cookie: refreshToken=$(token dev_refresh)" refresh
  step "schemathesis (dev, admin token): the admin operations, acting on one user" admin_pass
  step "schemathesis (dev): session revocation and sign-out" schemathesis_pass \
    dev-ending "$DEV_URL" "Authorization: Bearer $(token dev_access)" revokeSession signOut
  step "schemathesis (prod, tokens in body): every operation but sign-out and session revocation" \
    schemathesis_pass prod "$PROD_URL" "Authorization: Bearer $(token prod_access)" \
    signUp signIn refresh changePassword listSessions getProfile updateProfile getJwks health ready \
    forgotPassword resetPassword verifyEmail resendVerification \
    enrollTotp confirmTotp removeTotp regenerateRecoveryCodes verifyMfa
fi

if [[ "$WORK_DIR" == "${MADE_DIR:-}" ]]; then
  printf '\nopenapi checks took %ds (--work-dir DIR keeps the logs and reports)\n' "$((SECONDS - STARTED))"
else
  printf '\nopenapi checks took %ds (logs and reports in %s)\n' "$((SECONDS - STARTED))" "$WORK_DIR"
fi
if ((FAILED)); then
  printf 'failed: %s\n' "${FAILED_STEPS[@]}"
fi
if ((FAILED == 0)); then
  printf 'openapi check: PASS (%d steps passed)\n' "$PASSED"
else
  printf 'openapi check: FAIL (%d passed, %d failed)\n' "$PASSED" "$FAILED"
fi
((FAILED == 0))
