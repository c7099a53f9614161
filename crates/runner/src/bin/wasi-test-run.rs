//! Runs a `wasm32-wasip2` command component on this runner's wasmtime, with
//! the caller's arguments, environment and standard streams: cargo's target
//! runner for tests built for the components' target, so code that differs
//! between native and WebAssembly (the domain's argon2 lanes) is tested as
//! components run it.
//!
//! Usage (scripts/test.sh):
//! `CARGO_TARGET_WASM32_WASIP2_RUNNER=target/debug/wasi-test-run cargo test --target wasm32-wasip2 -p latch-domain`
//!
//! No directory is preopened and no network is allowed. Exits with the
//! guest's exit code.

use std::process::ExitCode;

use anyhow::Context as _;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, OptLevel, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

struct State {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: wasi-test-run <component.wasm> [args...]")?;
    let mut config = Config::new();
    // The code generation `latch up` uses (engine.rs); WebAssembly SIMD is
    // on by default, as in Spin.
    config
        .wasm_component_model(true)
        .cranelift_opt_level(OptLevel::Speed);
    let engine = Engine::new(&config)?;
    let component = Component::from_file(&engine, &path)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("loading {path}"))?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;

    let guest_args: Vec<String> = std::iter::once(path.clone()).chain(args).collect();
    let ctx = WasiCtx::builder()
        .inherit_stdio()
        .inherit_env()
        .args(&guest_args)
        .build();
    let mut store = Store::new(
        &engine,
        State {
            ctx,
            table: ResourceTable::new(),
        },
    );
    let command = Command::instantiate(&mut store, &component, &linker)?;
    match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(())) => Ok(ExitCode::FAILURE),
        Err(error) => match error.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(ExitCode::from(u8::try_from(exit.0).unwrap_or(1))),
            None => Err(anyhow::Error::from(error).context(format!("running {path}"))),
        },
    }
}
