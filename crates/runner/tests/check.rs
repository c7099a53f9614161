//! `latch check`'s logic against real components: the fixtures pass, a
//! component importing what the world does not allow is reported, and so is
//! one that does not export the HTTP handler.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::Arc;

use latch_runner::check::{WorldContract, check_component};
use latch_runner::engine::{ComponentCache, EngineOptions, Runtime, build_engine};
use latch_runner::host::InstanceState;
use latch_runner::wasmtime::component::Linker;

fn runtime() -> (Runtime, Linker<InstanceState>) {
    let engine = build_engine(&EngineOptions::default()).unwrap();
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures/cache");
    let runtime = Runtime {
        cache: Arc::new(ComponentCache::new(&engine, Some(cache))),
        engine,
    };
    let mut linker = Linker::new(&runtime.engine);
    latch_runner::host::link(&mut linker).unwrap();
    (runtime, linker)
}

fn world() -> WorldContract {
    WorldContract::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit")).unwrap()
}

#[test]
fn fixture_components_conform() {
    let (runtime, linker) = runtime();
    let world = world();
    for path in [&support::fixtures().probe, &support::fixtures().other] {
        let report = check_component(&runtime, &linker, &world, &std::fs::read(path).unwrap());
        assert!(
            report.problems.is_empty(),
            "{}: {:?}",
            path.display(),
            report.problems
        );
        assert!(
            report
                .exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler@0.2"))
        );
    }
}

#[test]
fn foreign_imports_and_missing_exports_are_reported() {
    let (runtime, linker) = runtime();
    let world = world();
    let foreign = br#"(component (import "acme:missing/thing@1.0.0" (instance)))"#;
    let report = check_component(&runtime, &linker, &world, foreign);
    let problems = report.problems.join("\n");
    assert!(
        problems.contains("imports `acme:missing/thing@1.0.0`"),
        "{problems}"
    );
    assert!(
        problems.contains("does not export `wasi:http/incoming-handler@0.2.0`"),
        "{problems}"
    );
    assert!(problems.contains("does not link"), "{problems}");

    let garbage = check_component(&runtime, &linker, &world, b"not wasm");
    assert!(
        garbage.problems[0].starts_with("does not compile"),
        "{:?}",
        garbage.problems
    );
}
