//! One wasmtime `Engine` for the whole runner: pooling allocator, epoch
//! interruption for timeouts, and compiled components cached on disk by hash.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; request deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Released instance slots kept warm (with their resident memory) for reuse:
/// one for each of the service's ten routes and a few for concurrency.
const MAX_UNUSED_WARM_SLOTS: u32 = 16;

/// Default of [`EngineOptions::keep_resident`], in MiB (`latch up
/// --keep-resident-mib`): argon2id's 19 MiB block fits.
pub const DEFAULT_KEEP_RESIDENT_MIB: usize = 32;

/// Engine sizing.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Instances that may exist at once (requests in flight).
    pub max_instances: u32,
    /// Largest linear memory of one instance, in bytes.
    pub memory_limit: usize,
    /// Linear memory an instance slot keeps resident when it is released:
    /// the pages the instance dirtied are reset in place (found with Linux's
    /// PAGEMAP_SCAN where the kernel has it), so the next instance in the slot
    /// takes no page faults and the release needs no `madvise` (whose TLB
    /// shootdowns dominated a profile under load). Above this, memory is
    /// returned to the kernel.
    pub keep_resident: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_instances: 256,
            memory_limit: 128 << 20,
            keep_resident: DEFAULT_KEEP_RESIDENT_MIB << 20,
        }
    }
}

/// Builds the engine. Start [`spawn_epoch_ticker`] for it before serving.
pub fn build_engine(options: &EngineOptions) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    let instances = options.max_instances;
    // A Rust wasip2 component holds a few core instances (the program plus the
    // shims the component tooling adds), one memory and a few tables.
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_core_instances_per_component(16)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_memory_size(options.memory_limit)
        .linear_memory_keep_resident(options.keep_resident)
        .table_keep_resident(64 << 10)
        // Warm slots keep their resident memory for good; with wasmtime's
        // default (100) a burst spreads over many slots and the process keeps
        // them all resident.
        .max_unused_warm_slots(MAX_UNUSED_WARM_SLOTS)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("configuring the wasmtime engine")
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread,
/// so stores can be given deadlines in ticks.
pub fn spawn_epoch_ticker(engine: &Engine) -> anyhow::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("latch-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .context("starting the epoch thread")?;
    Ok(())
}

/// Where compiled components are kept, keyed by the wasm's SHA-256 and the
/// engine's compatibility hash (a different wasmtime or configuration simply
/// misses the cache).
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_tag: String,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFrom {
    Compiled,
    Cache,
}

impl ComponentCache {
    /// A cache under `dir`, or none.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> ComponentCache {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine_tag: format!("{:016x}", hasher.finish()),
        }
    }

    /// Compiles the component in `bytes`, or loads its compiled form from the cache.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> anyhow::Result<(Component, WasmDigest, LoadedFrom)> {
        let digest = WasmDigest::of(bytes);
        let cached = self
            .dir
            .as_ref()
            .map(|dir| dir.join(format!("{}-{}.cwasm", digest.hex(), self.engine_tag)));
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: the file is one this runner serialized into its own cache
            // directory, named by the source's hash and this engine's
            // compatibility hash; wasmtime still checks its header and refuses
            // an incompatible artefact, in which case we recompile below.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => return Ok((component, digest, LoadedFrom::Cache)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e:#}")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Some(path) = &cached
            && let Err(e) = store_atomically(path, &component.serialize()?)
        {
            tracing::warn!(path = %path.display(), "cannot write compile cache: {e:#}");
        }
        Ok((component, digest, LoadedFrom::Compiled))
    }
}

fn store_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("cache path has no directory")?;
    std::fs::create_dir_all(dir)?;
    // Unique per writer: several threads or processes may fill the same entry.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// SHA-256 of a component's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WasmDigest([u8; 32]);

impl WasmDigest {
    pub fn of(bytes: &[u8]) -> WasmDigest {
        WasmDigest(Sha256::digest(bytes).into())
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

/// Shared handle to the engine and its cache.
#[derive(Clone)]
pub struct Runtime {
    pub engine: Engine,
    pub cache: Arc<ComponentCache>,
}
