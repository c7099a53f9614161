//! Baselines the benchmarks compare Latch against (see `scripts/bench.sh`
//! and `docs/performance.md`): nothing here is part of the service.
