//! `latch check`: the manifest, then every built component against the
//! runner and the `wit/` world. Lists every mismatch; fails if there is one.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use latch_runner::check::{WorldContract, check_component};
use latch_runner::engine::{ComponentCache, EngineOptions, Runtime, build_engine};
use latch_runner::manifest::Manifest;
use latch_runner::variables::AppVariables;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The application manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// The WIT package holding the world components target (default: wit/ beside the manifest).
    #[arg(long)]
    pub wit: Option<PathBuf>,
    /// Where compiled components are cached.
    #[arg(long, default_value = ".latch")]
    pub data_dir: PathBuf,
}

pub fn run(args: &CheckArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    println!(
        "manifest {}: ok ({} components, {} routes)",
        args.manifest.display(),
        manifest.components.len(),
        manifest.http_triggers.len()
    );
    let mut problems = 0usize;
    if let Err(e) = AppVariables::resolve(&manifest) {
        println!("variables: {e} (set them before `latch up`)");
    }
    let wit_dir = args
        .wit
        .clone()
        .unwrap_or_else(|| manifest.base_dir.join("wit"));
    let world = WorldContract::load(&wit_dir)?;
    println!(
        "world {}: {} imports allowed, {} exports required",
        world.name,
        world.imports.len(),
        world.exports.len()
    );

    let engine = build_engine(&EngineOptions::default())?;
    let runtime = Runtime {
        cache: Arc::new(ComponentCache::new(
            &engine,
            Some(args.data_dir.join("cache")),
        )),
        engine,
    };
    let mut linker = wasmtime_linker(&runtime)?;
    linker.allow_shadowing(false);
    let sources: Vec<_> = manifest
        .components
        .values()
        .map(|component| (component, std::fs::read(&component.source)))
        .collect();
    // Compile what the cache lacks on every core first (the checks below then
    // load from it); a load that misses compiles on one thread.
    let readable: Vec<&[u8]> = sources
        .iter()
        .filter_map(|(_, bytes)| bytes.as_deref().ok())
        .collect();
    runtime.cache.compile_missing(&readable);
    for (component, bytes) in sources {
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(e) => {
                problems += 1;
                println!(
                    "component {}: cannot read {}: {e}",
                    component.id,
                    component.source.display()
                );
                continue;
            }
        };
        let report = check_component(&runtime, &linker, &world, &bytes);
        if report.problems.is_empty() {
            println!(
                "component {}: ok ({} imports)",
                component.id,
                report.imports.len()
            );
        } else {
            problems += report.problems.len();
            println!("component {}:", component.id);
            for problem in &report.problems {
                println!("  - {problem}");
            }
        }
    }
    if problems > 0 {
        bail!("{problems} problem(s) found");
    }
    Ok(())
}

fn wasmtime_linker(
    runtime: &Runtime,
) -> anyhow::Result<latch_runner::wasmtime::component::Linker<latch_runner::host::InstanceState>> {
    let mut linker = latch_runner::wasmtime::component::Linker::new(&runtime.engine);
    latch_runner::host::link(&mut linker).context("linking host interfaces")?;
    Ok(linker)
}
