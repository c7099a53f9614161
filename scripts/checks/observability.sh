#!/usr/bin/env bash
# Static checks of Latch's observability assets. No cluster, no Grafana, no data needed.
#
#   bash scripts/checks/observability.sh
#
# 1. dashboards/*.json are what dashboards/src/generate.py produces
# 2. promtool check rules   dashboards/alerts/*.yaml
# 3. promtool test rules    dashboards/alerts/tests/*.yaml
# 4. every dashboard: valid JSON, datasource variables, every panel and target on a
#    datasource variable, unique panel ids, descriptions and units; every alert: for,
#    severity, summary/description, runbook_url to an existing anchor of
#    docs/operations.md, a promtool test where it fires and one where it stays silent;
#    every metric and label in the contract (dashboards/metric-contract.txt) or in the
#    Kubernetes allow-list (dashboards/kubernetes-metrics.txt); label values checked
#    against spin.toml (components, routes) and the span/auth vocabularies;
#    k8s/collector: pipelines reference defined components, spanmetrics and count
#    connectors exactly as the contract says, RBAC, hardening, pinned image
# 5. every PromQL query of every panel and variable (Grafana variables substituted)
#    sent to a throw-away Prometheus with an empty TSDB: status success = it parses
#
# Needs prometheus and promtool (Debian package `prometheus`, installed here when
# missing and running as root), python3 with PyYAML.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
started=$(date +%s)
passed=0
failed=0

step() { # step NAME COMMAND...
  local name=$1
  shift
  echo "--- ${name}"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: ${name}"
  fi
}

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "--- installing the Debian package prometheus (promtool, prometheus)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
  else
    echo "prometheus and promtool are required: apt-get install prometheus" >&2
    exit 1
  fi
fi
python3 -c 'import yaml' 2>/dev/null || { echo "python3 with PyYAML is required (python3-yaml)" >&2; exit 1; }

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

shopt -s nullglob
rule_files=(dashboards/alerts/*.yaml dashboards/alerts/*.yml)
test_files=(dashboards/alerts/tests/*.yaml dashboards/alerts/tests/*.yml)
shopt -u nullglob

step "dashboards match dashboards/src/generate.py" python3 dashboards/src/generate.py --check
step "promtool check rules" promtool check rules "${rule_files[@]}"
step "promtool test rules" promtool test rules "${test_files[@]}"

# A throw-away Prometheus on a free loopback port with an empty TSDB: it parses every query.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"${tmp}/prometheus.yml" <<EOF
global:
  scrape_interval: 1m
scrape_configs: []
EOF
prometheus --config.file="${tmp}/prometheus.yml" --storage.tsdb.path="${tmp}/data" \
  --web.listen-address="127.0.0.1:${port}" --log.level=error >"${tmp}/prometheus.log" 2>&1 &
prom_pid=$!
ready=""
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:${port}/-/ready', timeout=1)" 2>/dev/null; then
    ready=yes
    break
  fi
  kill -0 "${prom_pid}" 2>/dev/null || break
  sleep 0.2
done
if [ -z "${ready}" ]; then
  echo "the throw-away Prometheus did not start:" >&2
  cat "${tmp}/prometheus.log" >&2
  exit 1
fi

step "dashboards, rules, names, collector; every query parsed by Prometheus" \
  python3 scripts/checks/observability.py static --prometheus "http://127.0.0.1:${port}"

if command -v kubectl >/dev/null 2>&1; then
  step "kustomize renders k8s/collector" bash -c 'kubectl kustomize k8s/collector >/dev/null'
fi

echo "--- took $(($(date +%s) - started)) s"
echo "observability: ${passed} passed, ${failed} failed"
[ "${failed}" -eq 0 ]
