#!/usr/bin/env bash
# Prove the dashboards against real data: every service query (all panels and variables
# except the Kubernetes-only ones) must return data from the metrics a running Latch
# exposes.
#
#   bash scripts/checks/observability-live.sh --metrics http://127.0.0.1:PORT/metrics \
#       [--wait SECONDS] [--settle SECONDS] [--allow-missing-label LABEL]...
#
# Starts a real Prometheus (Debian package) on a free loopback port that scrapes the
# given address every second, waits until the target is up and has been scraped a few
# times, then runs every query (Grafana variables substituted: multi-value variables
# become .*, $__rate_interval 1m, $__range 1h) through the HTTP API. Fails, listing
# them, on queries that return no data, and on labels a query relies on (a matcher that
# cannot match an empty value, or a `by (...)` label) that no scraped series carries.
#
# --allow-missing-label: a label the configured backend cannot produce, e.g.
#   server_address with the embedded SQLite backend, db_system with SQLite Cloud.
#
# Drive traffic before calling it: every route, a failed sign-in (4xx), a lock-out, a
# refresh-token reuse, a sign-up, so that every series exists (docs/observability.md,
# "Proving the dashboards").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

metrics=""
wait_s=30
settle_s=5
allow=()
while [ $# -gt 0 ]; do
  case "$1" in
    --metrics) metrics=$2; shift 2 ;;
    --metrics=*) metrics=${1#*=}; shift ;;
    --wait) wait_s=$2; shift 2 ;;
    --settle) settle_s=$2; shift 2 ;;
    --allow-missing-label) allow+=(--allow-missing-label "$2"); shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [ -z "${metrics}" ]; then
  echo "usage: $0 --metrics http://127.0.0.1:PORT/metrics [--wait S] [--allow-missing-label L]..." >&2
  exit 2
fi

read -r scheme hostport path < <(python3 - "${metrics}" <<'EOF'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
if u.scheme not in ("http", "https") or not u.netloc:
    sys.exit(f"not an http(s) URL: {sys.argv[1]}")
print(u.scheme, u.netloc, (u.path or "/metrics") + (("?" + u.query) if u.query else ""))
EOF
)

if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
  else
    echo "prometheus is required: apt-get install prometheus" >&2
    exit 1
  fi
fi

tmp=$(mktemp -d)
prom_pid=""
cleanup() {
  if [ -n "${prom_pid}" ] && kill -0 "${prom_pid}" 2>/dev/null; then
    kill "${prom_pid}" 2>/dev/null || true
    wait "${prom_pid}" 2>/dev/null || true
  fi
  rm -rf "${tmp}"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"${tmp}/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: latch
    scheme: ${scheme}
    metrics_path: "${path%%\?*}"
    static_configs:
      - targets: ["${hostport}"]
EOF
prometheus --config.file="${tmp}/prometheus.yml" --storage.tsdb.path="${tmp}/data" \
  --web.listen-address="127.0.0.1:${port}" --log.level=warn >"${tmp}/prometheus.log" 2>&1 &
prom_pid=$!
prom="http://127.0.0.1:${port}"
echo "Prometheus ${prom} scraping ${metrics} every second"

query() { # query EXPR -> prints the first sample value, or nothing
  python3 - "${prom}" "$1" <<'EOF'
import json, sys, urllib.parse, urllib.request
try:
    url = sys.argv[1] + "/api/v1/query?" + urllib.parse.urlencode({"query": sys.argv[2]})
    res = json.load(urllib.request.urlopen(url, timeout=2))
    r = res["data"]["result"]
    print(r[0]["value"][1] if r else "")
except Exception:
    print("")
EOF
}

# Prometheus itself first (TSDB start-up takes a few seconds), then the target.
for _ in $(seq 1 150); do
  python3 -c "import urllib.request; urllib.request.urlopen('${prom}/-/ready', timeout=1)" 2>/dev/null && break
  kill -0 "${prom_pid}" 2>/dev/null || break
  sleep 0.2
done

deadline=$(($(date +%s) + wait_s))
state="starting"
while :; do
  if ! kill -0 "${prom_pid}" 2>/dev/null; then
    echo "Prometheus exited:" >&2
    cat "${tmp}/prometheus.log" >&2
    exit 1
  fi
  up=$(query 'up{job="latch"}')
  scrapes=$(query 'count_over_time(up{job="latch"}[5m])')
  samples=$(query 'scrape_samples_scraped{job="latch"}')
  if [ "${up}" = "1" ] && [ -n "${samples}" ] && [ "${samples%.*}" -gt 0 ] && [ "${scrapes%.*}" -ge 3 ]; then
    state="ready"
    break
  fi
  if [ "$(date +%s)" -ge "${deadline}" ]; then
    break
  fi
  sleep 0.5
done
if [ "${state}" != "ready" ]; then
  echo "target ${metrics} not up with data after ${wait_s}s (up=${up:-none}, samples=${samples:-none}, scrapes=${scrapes:-0})" >&2
  python3 - "${prom}" <<'EOF' >&2 || true
import json, sys, urllib.request
t = json.load(urllib.request.urlopen(sys.argv[1] + "/api/v1/targets", timeout=2))
for a in t["data"]["activeTargets"]:
    print(f"  {a['scrapeUrl']}: health={a['health']} lastError={a['lastError']!r}")
EOF
  exit 1
fi
echo "target up, ${samples%.*} samples per scrape; letting ${settle_s}s of samples accumulate"
sleep "${settle_s}"

python3 scripts/checks/observability.py live --prometheus "${prom}" "${allow[@]}"
