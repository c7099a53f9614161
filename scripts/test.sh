#!/usr/bin/env bash
# The whole test suite, as CI runs it (the README's second command).
#
#   bash scripts/test.sh            everything
#   bash scripts/test.sh --quick    Rust only: format, lints, build, tests (no static checks)
#
# Steps: format and lint; build the native binaries and the wasm components;
# `latch check` on the project's own components; every Rust test (unit tests,
# the runner's fixture tests, the black-box API and fault tests on both
# database backends), and the black-box tests again under the real Spin when
# a Spin 3.6 binary is on the machine (SPIN=path or on PATH); then the static checks of the deployment manifests,
# the dashboards and alerts (with a real Prometheus), and the OpenAPI contract; a
# 30-second k6 smoke run of the load scenario (scripts/load/) with its thresholds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  -h | --help)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  "") ;;
  *)
    echo "unknown option: $1 (try --help)" >&2
    exit 2
    ;;
esac

started=$SECONDS
step() { printf '\n\033[1m==> %s\033[0m (%ss)\n' "$*" "$((SECONDS - started))"; }

components=()
for dir in components/*/; do
  components+=(-p "route-$(basename "$dir")")
done

step "format"
cargo fmt --all --check

step "lints (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "supply chain: cargo deny check bans licenses sources (deny.toml)"
echo "advisories: NOT checked (the RustSec database is on github.com, which CI cannot reach);" \
  "with network access run: cargo deny --locked check advisories"
cargo deny --locked check --hide-inclusion-graph bans licenses sources

step "build: latch, the SQLite Cloud stand-in, and the wasm32-wasip2 components"
# latch-runner's wasi-test-run too (the wasm domain tests below), built here so
# that it shares these packages' features; built alone it rebuilds wasmtime.
cargo build --locked -p latch -p sqlitecloud-standin -p latch-runner
cargo build --locked --target wasm32-wasip2 --profile wasm "${components[@]}"
# The tests use this stand-in; without it, crates/cli's tests would run
# `cargo build -p sqlitecloud-standin` alone, whose different feature set
# rebuilds its dependencies (70 s here).
export STANDIN_BIN="$PWD/target/debug/sqlitecloud-standin"

step "latch check: manifest and components against the runner and wit/"
./target/debug/latch check --data-dir target/e2e-cache-check

step "Rust tests (unit, runner fixtures, API end to end on both backends, faults)"
env -u SPIN cargo test --locked

# The domain as components run it: argon2 on WebAssembly SIMD lanes
# (crates/domain/src/password/argon2_lanes.rs) differs from the native build.
# Optimised, as components are built; run by the runner's wasmtime.
step "domain tests inside WebAssembly (wasm32-wasip2 on wasmtime)"
cargo clippy --locked --target wasm32-wasip2 -p latch-domain --all-targets -- -D warnings
CARGO_TARGET_WASM32_WASIP2_RUNNER="$PWD/target/debug/wasi-test-run" \
  cargo test --locked --release --target wasm32-wasip2 -p latch-domain -- --test-threads=1

# Production runs Spin 3.6.3, which CI cannot build: the black-box suite runs a
# second time under the real Spin when one is on this machine (SPIN=path, or
# `spin` 3.6 on PATH; docs/local.md), and says so plainly when it is not.
step "API end to end under the real Spin 3.6.3"
spin_bin=${SPIN:-$(command -v spin || true)}
if [[ -n $spin_bin ]] && "$spin_bin" --version 2>/dev/null | grep -q '^spin 3\.6\.'; then
  echo "using $spin_bin ($("$spin_bin" --version))"
  SPIN=$spin_bin cargo test --locked -p latch-e2e
else
  echo "NOT RUN: no Spin 3.6 binary on this machine (set SPIN=/path/to/spin, docs/local.md);"
  echo "the black-box suite above ran under latch up only."
fi

if ((quick)); then
  step "done (quick)"
  exit 0
fi

step "load smoke: the k6 load scenario for 30 s against latch up (embedded), with its thresholds"
LATCH_CACHE_DIR=target/e2e-cache bash scripts/load/run.sh --scenario smoke --bin target/debug \
  --out target/load/smoke

step "deployment manifests and scripts (kustomize, kubernetes-validate, checkov, shellcheck, yamllint)"
bash scripts/checks/k8s.sh

step "dashboards and alerts (promtool, PromQL parse)"
bash scripts/checks/observability.sh

step "ASVS table: every named test exists (docs/security.md)"
python3 scripts/checks/asvs.py

step "dashboards against live data: latch up + a real Prometheus"
bash scripts/checks/observability-e2e.sh

step "OpenAPI contract against real responses"
bash scripts/checks/openapi.sh

step "all passed"
