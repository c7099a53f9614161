#!/usr/bin/env bash
# Drives a bounded HTTP load at the local cluster's ingress with `hey` (Debian package
# `hey`) and prints every HPA's replicas and utilisation every 10 s while it runs, then
# keeps watching for --watch-after to show the scale-down. Ends by itself.
# Local clusters only: the target must be a loopback address (the kind ingress is on
# localhost:8080). Never point a load test at production.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

MAX_RATE=2000
MAX_DURATION_S=1800

usage() {
  cat <<EOF
Usage: scripts/load-test-hpa.sh [options]

  --duration DUR      how long to send load (default 3m; at most $((MAX_DURATION_S / 60))m)
  --rate N            requests per second in total (default 100; at most $MAX_RATE)
  --concurrency N     parallel connections (default 20; capped at --rate)
  --url URL           base URL, loopback only (default http://localhost:8080, the kind ingress)
  --path PATH         request path (default /health: cheap per request, so CPU follows rate)
  --method M          GET (default) or POST
  --body JSON         request body for POST (sent as application/json)
  --watch-after DUR   keep printing replicas after the load stops (default 0; the HPA
                      waits 300 s before scaling down, so use 7m to watch it)
  --context NAME      kubectl context (default: kind-latch)
  --dry-run           print the commands instead of running them
  --help              this text

Install the load generator with: apt-get install hey
EOF
}

DURATION="3m"
RATE=100
CONCURRENCY=20
URL="http://localhost:8080"
REQ_PATH="/health"
METHOD="GET"
BODY=""
WATCH_AFTER="0"
export KUBE_CONTEXT="kind-latch"
while (($#)); do
  case "$1" in
    --duration | --rate | --concurrency | --url | --path | --method | --body | --watch-after | --context)
      need_value "$@"
      case "$1" in
        --duration) DURATION="$2" ;;
        --rate) RATE="$2" ;;
        --concurrency) CONCURRENCY="$2" ;;
        --url) URL="$2" ;;
        --path) REQ_PATH="$2" ;;
        --method) METHOD="$2" ;;
        --body) BODY="$2" ;;
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
positive_int --concurrency "$CONCURRENCY"
((DURATION_S > 0 && DURATION_S <= MAX_DURATION_S)) || die "--duration must be between 1s and $((MAX_DURATION_S / 60))m"
((RATE <= MAX_RATE)) || die "--rate is capped at $MAX_RATE requests/s"
[[ "$URL" =~ ^http://(localhost|127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\])(:[0-9]+)?$ ]] ||
  die "--url must be a loopback http://host[:port] (this script is for the local cluster)"
[[ "$REQ_PATH" == /* ]] || die "--path must start with /"
[[ "$METHOD" == GET || "$METHOD" == POST ]] || die "--method must be GET or POST"
[[ -z "$BODY" || "$METHOD" == POST ]] || die "--body needs --method POST"
((CONCURRENCY <= RATE)) || CONCURRENCY="$RATE"
# hey's -q is per connection: spread the total rate over the connections, then trim the
# connections so connections x per-connection rate does not overshoot --rate.
PER_WORKER_QPS=$(((RATE + CONCURRENCY - 1) / CONCURRENCY))
CONCURRENCY=$((RATE / PER_WORKER_QPS))

require_tool hey "Install it: apt-get install hey (Debian/Ubuntu), or brew install hey."
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

info "load: $METHOD $URL$REQ_PATH at $((CONCURRENCY * PER_WORKER_QPS)) req/s ($CONCURRENCY connections x $PER_WORKER_QPS/s) for ${DURATION_S}s"
hey_args=(-z "${DURATION_S}s" -c "$CONCURRENCY" -q "$PER_WORKER_QPS" -t 20 -m "$METHOD")
[[ -n "$BODY" ]] && hey_args+=(-T application/json -d "$BODY")
if ((DRY_RUN)); then
  run kube -n "$NS" get hpa
  run hey "${hey_args[@]}" "$URL$REQ_PATH"
  printf '[dry-run] every 10 s for %ss: kubectl -n %s get hpa (replicas, desired, cpu%%, mem%%)\n' \
    "$((DURATION_S + WATCH_AFTER_S))" "$NS"
  exit 0
fi

kube -n "$NS" get hpa >/dev/null || die "no HPA readable in namespace $NS (context $KUBE_CONTEXT)"
print_hpas
watch_replicas "$((DURATION_S + 5))" &
watcher=$!
on_exit kill "$watcher"
run hey "${hey_args[@]}" "$URL$REQ_PATH" | sed -n '/^Summary:/,/^Latency distribution:/p;/^Status code distribution:/,/^$/p'
wait "$watcher" 2>/dev/null || true
if ((WATCH_AFTER_S > 0)); then
  info "load stopped; watching the scale-down for ${WATCH_AFTER_S}s (stabilisation window 300 s)"
  watch_replicas "$WATCH_AFTER_S"
fi
print_hpas
info "done"
