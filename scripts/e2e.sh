#!/usr/bin/env bash
# Black-box API tests of Latch (crates/e2e): builds what they run (the `latch`
# runner, the SQLite Cloud stand-in and the route components), then runs
# every test file against real processes on loopback: the components under
# `latch up`, or under the real Spin when SPIN names a `spin` 3.6.3 binary
# (docs/local.md). Extra arguments go to `cargo test`, e.g.:
#
#   bash scripts/e2e.sh                          # the whole suite
#   SPIN=/path/to/spin bash scripts/e2e.sh       # the whole suite under Spin
#   bash scripts/e2e.sh --test faults            # one file
#   bash scripts/e2e.sh --test routes -- refresh # matching tests of one file
#
# Afterwards target/e2e/round-trips.md holds the measured database round trips
# per route (printed at the end when the round_trips test ran).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build -p latch -p sqlitecloud-standin
components=()
for dir in components/*/; do
  components+=(-p "route-$(basename "$dir")")
done
cargo build --target wasm32-wasip2 --profile wasm "${components[@]}"
if [[ -n ${SPIN:-} ]]; then
  echo "running under the real Spin: $SPIN ($("$SPIN" --version))"
fi

rm -f target/e2e/round-trips.md
status=0
cargo test -p latch-e2e --no-fail-fast "$@" || status=$?

if [[ -f target/e2e/round-trips.md ]]; then
  echo
  echo "Database round trips per API call (SQLite Cloud backend):"
  cat target/e2e/round-trips.md
fi
exit "$status"
