#!/usr/bin/env bash
# Checks a deployed Latch end to end: every SpinApp Available, its pods Ready, its HPA
# present and reporting CPU and memory, /health and /ready on every SpinApp, then a
# sign-up -> sign-in -> profile flow through `kubectl port-forward` with a cookie jar.
# Exits non-zero on the first failure; the port-forwards it starts are stopped on exit.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

usage() {
  cat <<'EOF'
Usage: scripts/validate-deployment.sh [options]

  --context NAME      kubectl context (default: the current one)
  --app NAME          SpinApp to check (repeatable; default: every SpinApp in the namespace)
  --timeout DUR       wait for readiness and HPA metrics at most this long (default 3m)
  --dry-run           print the commands instead of running them
  --help              this text

Environment:
  LATCH_SMOKE_EMAIL / LATCH_SMOKE_PASSWORD
      a fixed smoke-test account (e.g. in production, so deploys do not pile up users):
      sign-up may then answer 409 (exists). Default: a new random user, sign-up must be 201.
EOF
}

APPS=()
TIMEOUT="3m"
while (($#)); do
  case "$1" in
    --context)
      need_value "$@"
      export KUBE_CONTEXT="$2"
      shift 2
      ;;
    --app)
      need_value "$@"
      APPS+=("$2")
      shift 2
      ;;
    --timeout)
      need_value "$@"
      TIMEOUT="$2"
      shift 2
      ;;
    --dry-run) DRY_RUN=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
TIMEOUT_S="$(duration_seconds "$TIMEOUT")"
NS="$LATCH_NAMESPACE"
require_tool "$(kubectl_cmd)" "Install kubectl (https://kubernetes.io/docs/tasks/tools/)."
require_tool curl "Install curl."

make_private_dir
WORK="$MADE_DIR"
JAR="$WORK/cookies.txt"

fail() { die "validation failed: $*"; }

# ------------------------------------------------------------------- cluster state

discover_apps() {
  ((${#APPS[@]})) && return 0
  if ((DRY_RUN)); then
    run kube -n "$NS" get spinapps -o 'jsonpath={.items[*].metadata.name}'
    APPS=(latch)
    return 0
  fi
  read -r -a APPS <<<"$(kube -n "$NS" get spinapps -o 'jsonpath={.items[*].metadata.name}')"
  ((${#APPS[@]})) || fail "no SpinApp in namespace $NS"
}

# components APP: the components a SpinApp runs ("" = all of them).
components() {
  ((DRY_RUN)) && return 0
  kube -n "$NS" get spinapp "$1" -o 'jsonpath={.spec.components[*]}'
}

check_app_ready() {
  local app="$1"
  info "$app: SpinApp Available, Deployment rolled out, pods Ready"
  run kube -n "$NS" wait "spinapp/$app" --for=condition=Available --timeout="${TIMEOUT_S}s" ||
    fail "SpinApp $app is not Available"
  run kube -n "$NS" rollout status "deployment/$app" --timeout="${TIMEOUT_S}s" ||
    fail "deployment/$app did not roll out"
  run kube -n "$NS" wait pod --selector "app.kubernetes.io/instance=$app" \
    --for=condition=Ready --timeout="${TIMEOUT_S}s" || fail "pods of $app are not Ready"
}

# The HPA must exist and show current CPU and memory utilisation. Flat or missing
# metrics mean metrics-server is missing or the shim runs without SystemdCgroup = true.
check_hpa() {
  local app="$1" hpa metrics i
  info "$app: HorizontalPodAutoscaler present and reporting CPU and memory"
  if ((DRY_RUN)); then
    run kube -n "$NS" get hpa -o "jsonpath={.items[?(@.spec.scaleTargetRef.name==\"$app\")].metadata.name}"
    run kube -n "$NS" get hpa "$app" -o 'jsonpath={.status.currentMetrics}'
    return 0
  fi
  hpa="$(kube -n "$NS" get hpa -o "jsonpath={.items[?(@.spec.scaleTargetRef.name==\"$app\")].metadata.name}")"
  [[ -n "$hpa" ]] || fail "no HPA targets deployment/$app"
  for ((i = 0; i <= TIMEOUT_S; i += 10)); do
    metrics="$(kube -n "$NS" get hpa "$hpa" -o \
      'jsonpath={range .status.currentMetrics[*]}{.resource.name}={.resource.current.averageUtilization}{" "}{end}')"
    if [[ "$metrics" =~ cpu=[0-9]+ && "$metrics" =~ memory=[0-9]+ ]]; then
      info "$app: hpa/$hpa sees $metrics(replicas $(kube -n "$NS" get hpa "$hpa" -o 'jsonpath={.status.currentReplicas}'))"
      return 0
    fi
    sleep 10
  done
  kube -n "$NS" describe hpa "$hpa" >&2 || true
  fail "hpa/$hpa reports no CPU/memory utilisation after $TIMEOUT; check metrics-server and the \
shim's SystemdCgroup = true (docs/hpa-testing.md)"
}

# ------------------------------------------------------------------- HTTP

# port_forward APP: forward a free local port to the Service of APP; sets PF_PORT.
port_forward() {
  local app="$1" log="$WORK/pf-$1.log" i pid
  if ((DRY_RUN)); then
    run kube -n "$NS" port-forward "service/$app" ":80"
    PF_PORT=8089
    return 0
  fi
  kube -n "$NS" port-forward "service/$app" ":80" >"$log" 2>&1 &
  pid=$!
  on_exit kill "$pid"
  for ((i = 0; i < 50; i++)); do
    if PF_PORT="$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$log" | head -n1)" && [[ -n "$PF_PORT" ]]; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  cat "$log" >&2
  fail "port-forward to service/$app did not start"
}

# http METHOD URL [JSON]: prints the status code; body in $WORK/body. `localhost`, not
# 127.0.0.1: curl treats localhost as a secure origin, so Secure cookies round-trip.
http() {
  local method="$1" url="$2" data="${3:-}"
  local -a args=(--silent --show-error --max-time 20 -o "$WORK/body" -w '%{http_code}'
    -c "$JAR" -b "$JAR" -X "$method" "$url")
  [[ -n "$data" ]] && args+=(-H 'Content-Type: application/json' --data-binary "@$WORK/request.json")
  if ((DRY_RUN)); then
    # To stderr: stdout is the status code the caller captures. The body is not shown:
    # it may carry a password.
    printf '%s[dry-run]%s curl -X %s %s%s\n' "$_c_dim" "$_c_off" "$method" "$url" \
      "${data:+ --data-binary @request.json}" >&2
    printf '200'
    return 0
  fi
  [[ -n "$data" ]] && printf '%s' "$data" >"$WORK/request.json"
  # -w prints 000 when the connection fails; curl's own error goes to curl.err.
  curl "${args[@]}" 2>"$WORK/curl.err" || true
}

json_string() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "$s"
}

expect() {
  local got="$1" what="$2"
  shift 2
  local want
  ((DRY_RUN)) && return 0
  for want in "$@"; do
    [[ "$got" == "$want" ]] && return 0
  done
  { head -c 400 "$WORK/body" 2>/dev/null || cat "$WORK/curl.err" 2>/dev/null || true; } >&2
  echo >&2
  fail "$what answered $got, expected $*"
}

has_cookie() {
  ((DRY_RUN)) && return 0
  awk -v name="$1" '$0 !~ /^# / && $6 == name { found = 1 } END { exit !found }' "$JAR"
}

smoke_flow() {
  local app comps base_signin="" base_profile="" code email password fixed=0
  declare -A base
  for app in "${APPS[@]}"; do
    port_forward "$app"
    base[$app]="http://localhost:$PF_PORT"
    info "$app: GET /health and /ready through the port-forward"
    code="$(http GET "${base[$app]}/health")"
    expect "$code" "GET /health on $app" 200
    if ! ((DRY_RUN)) && ! grep -Eq '"status"[[:space:]]*:[[:space:]]*"ok"' "$WORK/body"; then
      fail "/health on $app did not report status ok"
    fi
    code="$(http GET "${base[$app]}/ready")"
    expect "$code" "GET /ready on $app" 200
    comps=" $(components "$app") "
    [[ "$comps" == "  " || "$comps" == *" signin "* ]] && [[ -z "$base_signin" ]] && base_signin="${base[$app]}"
    [[ "$comps" == "  " || "$comps" == *" profile "* ]] && [[ -z "$base_profile" ]] && base_profile="${base[$app]}"
  done
  [[ -n "$base_signin" && -n "$base_profile" ]] || fail "no SpinApp runs the signin/profile components"

  if [[ -n "${LATCH_SMOKE_EMAIL:-}" ]]; then
    [[ -n "${LATCH_SMOKE_PASSWORD:-}" ]] || fail "LATCH_SMOKE_EMAIL is set but LATCH_SMOKE_PASSWORD is not"
    email="$LATCH_SMOKE_EMAIL" password="$LATCH_SMOKE_PASSWORD" fixed=1
  else
    email="smoke+$(date -u +%Y%m%d%H%M%S)-$RANDOM$RANDOM@example.com"
    password="Sm0ke-$(head -c 18 /dev/urandom | base64 | tr -d '/+=\n')"
  fi
  local credentials
  credentials="{\"email\":$(json_string "$email"),\"password\":$(json_string "$password")"
  info "sign-up, sign-in and profile as $email"
  code="$(http POST "$base_signin/auth/signup" "$credentials,\"fullName\":\"Smoke Test\"}")"
  if ((fixed)); then
    expect "$code" "POST /auth/signup" 201 409
  else
    expect "$code" "POST /auth/signup" 201
  fi
  code="$(http POST "$base_signin/auth/signin" "$credentials}")"
  expect "$code" "POST /auth/signin" 200
  has_cookie token || fail "sign-in set no token cookie"
  has_cookie refreshToken || fail "sign-in set no refreshToken cookie"
  code="$(http GET "$base_profile/user/profile")"
  expect "$code" "GET /user/profile with the sign-in cookies" 200
  if ! ((DRY_RUN)) && ! grep -qF "\"$email\"" "$WORK/body"; then
    fail "GET /user/profile did not return the signed-in user"
  fi
}

discover_apps
info "namespace $NS, SpinApps: ${APPS[*]}"
for app in "${APPS[@]}"; do
  check_app_ready "$app"
  check_hpa "$app"
done
smoke_flow
if ((DRY_RUN)); then
  info "dry run: nothing was checked"
else
  info "deployment valid: ${APPS[*]} ready, autoscaled, serving the auth flow"
fi
