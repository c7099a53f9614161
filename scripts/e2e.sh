#!/usr/bin/env bash
# Black-box API tests of Latch (crates/e2e): builds what they run (the `latch`
# runner, the SQLite Cloud stand-in and the ten route components), then runs
# every test file against real processes on loopback. Extra arguments go to
# `cargo test`, e.g.:
#
#   bash scripts/e2e.sh                          # the whole suite
#   bash scripts/e2e.sh --test faults            # one file
#   bash scripts/e2e.sh --test routes -- refresh # matching tests of one file
#
# Afterwards target/e2e/round-trips.md holds the measured database round trips
# per route (printed at the end when the round_trips test ran).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build -p latch -p sqlitecloud-standin
cargo build --target wasm32-wasip2 --profile wasm \
  -p route-health -p route-ready -p route-signup -p route-signin -p route-refresh \
  -p route-signout -p route-password -p route-sessions -p route-profile -p route-jwks

rm -f target/e2e/round-trips.md
status=0
cargo test -p latch-e2e --no-fail-fast "$@" || status=$?

if [[ -f target/e2e/round-trips.md ]]; then
  echo
  echo "Database round trips per API call (SQLite Cloud backend):"
  cat target/e2e/round-trips.md
fi
exit "$status"
