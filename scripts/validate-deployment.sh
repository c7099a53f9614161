#!/usr/bin/env bash
# Checks a deployed Latch end to end: every SpinApp Available, its pods Ready, its HPA
# present and reporting CPU, the Ingress certificate issued (and, given the
# public host, HTTPS answering with it and HTTP redirecting to it), /health and /ready
# on every SpinApp, then a sign-up -> sign-in -> profile flow through
# `kubectl port-forward` with a cookie jar.
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
  --timeout DUR       wait for readiness, HPA metrics and the certificate at most this long
                      (default 3m)
  --host HOST         public host of the Ingress (or LATCH_HOST): also check that
                      https://HOST/health answers 200 with a certificate curl verifies, and
                      that http://HOST/health redirects to HTTPS. Without it, only the
                      Certificate's Ready condition is checked.
  --http-port N       the Ingress's HTTP port (default 80; the kind cluster: 8080)
  --https-port N      the Ingress's HTTPS port (default 443; the kind cluster: 8443)
  --dry-run           print the commands instead of running them
  --help              this text

The certificate is verified against the system's CAs, or against the ca.crt of Secret
latch-tls when cert-manager wrote one (the kind cluster's self-signed issuer does).

Environment:
  LATCH_SMOKE_EMAIL / LATCH_SMOKE_PASSWORD
      a fixed smoke-test account (e.g. in production, so deploys do not pile up users):
      sign-up may then answer 409 (exists). Default: a new random user, sign-up must be 201.
EOF
}

APPS=()
TIMEOUT="3m"
HOST="${LATCH_HOST:-}"
HTTP_PORT=80
HTTPS_PORT=443
# Certificate and Secret of the Ingress (k8s/base/common/certificate.yaml).
TLS_CERTIFICATE="latch-tls"
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
    --host)
      need_value "$@"
      HOST="$2"
      shift 2
      ;;
    --http-port | --https-port)
      need_value "$@"
      positive_int "$1" "$2"
      if [[ "$1" == --http-port ]]; then HTTP_PORT="$2"; else HTTPS_PORT="$2"; fi
      shift 2
      ;;
    --dry-run) DRY_RUN=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
TIMEOUT_S="$(duration_seconds "$TIMEOUT")"
[[ -z "$HOST" || "$HOST" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ ]] ||
  die "not a DNS host name: $HOST"
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

# The HPA must exist and show current CPU utilisation (its only metric, see
# docs/hpa-testing.md). A missing figure means metrics-server is missing or the shim
# runs without SystemdCgroup = true.
check_hpa() {
  local app="$1" hpa metrics i
  info "$app: HorizontalPodAutoscaler present and reporting CPU"
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
    if [[ "$metrics" =~ cpu=[0-9]+ ]]; then
      info "$app: hpa/$hpa sees $metrics(replicas $(kube -n "$NS" get hpa "$hpa" -o 'jsonpath={.status.currentReplicas}'))"
      return 0
    fi
    sleep 10
  done
  kube -n "$NS" describe hpa "$hpa" >&2 || true
  fail "hpa/$hpa reports no CPU utilisation after $TIMEOUT; check metrics-server and the \
shim's SystemdCgroup = true (docs/hpa-testing.md)"
}

# ------------------------------------------------------------------- TLS at the edge

# url_with_port SCHEME PORT PATH: the public URL, with the port only when not default.
url_with_port() {
  local scheme="$1" port="$2" default=80
  [[ "$scheme" == https ]] && default=443
  if ((port == default)); then
    printf '%s://%s%s' "$scheme" "$HOST" "$3"
  else
    printf '%s://%s:%s%s' "$scheme" "$HOST" "$port" "$3"
  fi
}

# The Certificate must be issued (an unissued one leaves nginx on its self-signed
# default certificate); with --host, HTTPS must answer with it and HTTP must redirect.
check_tls() {
  info "Certificate $TLS_CERTIFICATE issued (cert-manager condition Ready)"
  if ! run kube -n "$NS" wait "certificate/$TLS_CERTIFICATE" --for=condition=Ready --timeout="${TIMEOUT_S}s"; then
    kube -n "$NS" describe "certificate/$TLS_CERTIFICATE" >&2 || true
    kube -n "$NS" get certificaterequests,orders,challenges >&2 || true
    fail "Certificate $TLS_CERTIFICATE is not Ready (ACME: see the challenges above and docs/k8s-deployment.md, \"TLS\")"
  fi
  if [[ -z "$HOST" ]]; then
    info "no --host (LATCH_HOST): the public HTTPS and redirect checks are skipped"
    return 0
  fi
  local https_url http_url ca_args=() code location
  https_url="$(url_with_port https "$HTTPS_PORT" /health)"
  http_url="$(url_with_port http "$HTTP_PORT" /health)"
  if ((DRY_RUN)); then
    run kube -n "$NS" get secret "$TLS_CERTIFICATE" -o 'jsonpath={.data.ca\.crt}'
    run curl --silent --show-error --max-time 20 "$https_url"
    run curl --silent --show-error --max-time 20 -o /dev/null -w '%{http_code} %{redirect_url}' "$http_url"
    return 0
  fi
  # Only the public certificate (ca.crt) is read, never tls.key.
  kube -n "$NS" get secret "$TLS_CERTIFICATE" -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$WORK/ca.crt" 2>/dev/null || true
  local trust="the system CAs"
  if [[ -s "$WORK/ca.crt" ]]; then
    ca_args=(--cacert "$WORK/ca.crt")
    trust="ca.crt of Secret $TLS_CERTIFICATE"
  fi
  info "GET $https_url (certificate verified against $trust)"
  code="$(curl --silent --show-error --max-time 20 "${ca_args[@]}" -o "$WORK/body" -w '%{http_code}' \
    "$https_url" 2>"$WORK/curl.err" || true)"
  expect "$code" "GET $https_url" 200
  info "GET $http_url redirects to HTTPS"
  read -r code location < <(curl --silent --show-error --max-time 20 -o /dev/null \
    -w '%{http_code} %{redirect_url}\n' "$http_url" 2>"$WORK/curl.err" || true) || true
  [[ "$code" == 301 || "$code" == 308 ]] && [[ "$location" == "https://$HOST"* ]] ||
    fail "GET $http_url answered ${code:-nothing} ${location:+-> $location}, expected a redirect to https://$HOST"
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
check_tls
smoke_flow
if ((DRY_RUN)); then
  info "dry run: nothing was checked"
else
  info "deployment valid: ${APPS[*]} ready, autoscaled, certificate issued, serving the auth flow"
fi
