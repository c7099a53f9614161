//! One wasmtime `Engine` for the whole runner: pooling allocator, epoch
//! interruption for timeouts, and compiled components cached on disk by hash.
//! Compiling happens on a short-lived engine of its own, so that the serving
//! process does not keep the compiler's memory (see
//! [`ComponentCache::compile_missing`] and [`ComponentCache::load`]).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; request deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

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
    let memories = instances.saturating_mul(2);
    // A Rust wasip2 component holds a few core instances (the program plus the
    // shims the component tooling adds), one memory and a few tables.
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(memories)
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_core_instances_per_component(16)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_memory_size(options.memory_limit)
        .linear_memory_keep_resident(options.keep_resident)
        .table_keep_resident(64 << 10)
        // A released memory slot stays warm for good: resident up to
        // `keep_resident`, and affine to its component. A component that finds
        // none of its own slots free takes a never-used one while fewer than
        // this many are warm, and otherwise evicts another component's least
        // recently used warm slot, which keeps what that component left there.
        // With 16, `passwords`' argon2-sized slots (19.5 MiB) were evicted into
        // other routes between bursts and `passwords` then filled new ones, so
        // their number grew burst after burst. With no eviction while unused
        // slots remain, each component keeps as many slots as it had instances
        // at once: `passwords` one per hash that ran at the same time, the
        // routes a few hundred KiB each.
        .max_unused_warm_slots(memories)
        .pagemap_scan(Enabled::Auto);

    let mut config = code_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("configuring the wasmtime engine")
}

/// The settings that decide what compiled code looks like. The serving engine
/// and [`build_compiler`]'s share them, so each loads what the other compiles
/// (the cache key and wasmtime's own header check both depend on them).
fn code_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
}

/// An engine that only compiles, on the calling thread, and is dropped after
/// one component. Cranelift keeps its scratch state (about 40 MiB once it has
/// compiled this service's components) for as long as its engine lives, and
/// rayon's worker threads (`parallel_compilation`) would keep their glibc
/// arenas for as long as the process; the runner instead compiles one
/// component per thread ([`ComponentCache::compile_missing`]).
fn build_compiler() -> anyhow::Result<Engine> {
    let mut config = code_config();
    config.parallel_compilation(false);
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("configuring the compiling engine")
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

    /// Where the compiled form of the component with `digest` is kept, if
    /// anywhere.
    fn entry(&self, digest: &WasmDigest) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{}-{}.cwasm", digest.hex(), self.engine_tag)))
    }

    /// Compiles into the cache each of `components` it lacks, one component
    /// per thread up to the number of cores, without loading any; `load` then
    /// maps the entries. Start-up does this before loading anything, so that
    /// what the compiler frees and what the loaded components keep do not
    /// share pages of the heap (which would keep those pages resident), and so
    /// that no thread that compiled stays. Without a cache directory it does
    /// nothing. Failures are left to `load`, which compiles again and reports
    /// them. Returns the digests of the components it compiled.
    pub fn compile_missing(&self, components: &[&[u8]]) -> Vec<WasmDigest> {
        let mut missing: Vec<(&[u8], WasmDigest, PathBuf)> = Vec::new();
        for bytes in components {
            let digest = WasmDigest::of(bytes);
            let Some(path) = self.entry(&digest) else {
                // No cache directory: nothing to fill.
                break;
            };
            // Two components built from the same wasm share one entry.
            if !path.exists() && !missing.iter().any(|(_, known, _)| *known == digest) {
                missing.push((bytes, digest, path));
            }
        }
        if missing.is_empty() {
            return Vec::new();
        }
        let next = AtomicUsize::new(0);
        let compiled = std::sync::Mutex::new(Vec::new());
        let work = || {
            while let Some((bytes, digest, path)) =
                missing.get(next.fetch_add(1, Ordering::Relaxed))
            {
                let stored = build_compiler().and_then(|compiler| {
                    let compiled = compiler.precompile_component(bytes)?;
                    store_atomically(path, &compiled)
                });
                match stored {
                    Ok(()) => compiled
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(*digest),
                    Err(e) => {
                        tracing::debug!(path = %path.display(), "not compiled ahead: {e:#}")
                    }
                }
            }
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(missing.len());
        heap::compiling(|| {
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    // A thread that cannot start leaves its share to the
                    // others, or to `load`.
                    if let Err(e) = std::thread::Builder::new()
                        .name("latch-compile".into())
                        .spawn_scoped(scope, work)
                    {
                        tracing::debug!("cannot start a compiling thread: {e}");
                        break;
                    }
                }
            })
        });
        compiled
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Compiles the component in `bytes`, or loads its compiled form from the cache.
    ///
    /// A miss compiles on the calling thread, writes the cache entry and then
    /// maps that entry, as a hit does: the code is then file pages (shared,
    /// reclaimable, resident only where it runs) rather than a private copy.
    /// What the compiler allocated is handed back to the kernel before this
    /// returns.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> anyhow::Result<(Component, WasmDigest, LoadedFrom)> {
        let digest = WasmDigest::of(bytes);
        let cached = self.entry(&digest);
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
        let component = heap::compiling(|| compile(engine, bytes, cached.as_deref()))?;
        Ok((component, digest, LoadedFrom::Compiled))
    }
}

/// Compiles `bytes` for `engine`, through the cache entry at `entry` when
/// there is one.
fn compile(engine: &Engine, bytes: &[u8], entry: Option<&Path>) -> anyhow::Result<Component> {
    let compiled = build_compiler()?.precompile_component(bytes)?;
    if let Some(path) = entry {
        match store_atomically(path, &compiled) {
            // SAFETY: as for a cache hit; the entry was written just now from
            // `compiled`.
            #[allow(unsafe_code)]
            Ok(()) => match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot map the new cache entry: {e:#}")
                }
            },
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot write compile cache: {e:#}")
            }
        }
    }
    // SAFETY: `compiled` is what wasmtime produced just now with this engine's
    // code settings (`code_config`); wasmtime checks its header again.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    Ok(component)
}

/// Handing the heap a compilation freed back to the kernel.
mod heap {
    /// Runs `compile`, during which freed heap goes back to the kernel at
    /// once, then returns what is still free.
    ///
    /// glibc keeps what a thread frees in that thread's arena. `malloc_trim`
    /// returns the free chunks of every arena, but not the free top of a
    /// thread's arena: that shrinks only when a free finds it above
    /// `M_TRIM_THRESHOLD`, which glibc raises (up to 64 MiB) each time a large
    /// block is freed, as cranelift's are. So after start-up compiled the
    /// components, 15-30 MiB stayed resident even after `malloc_trim`. With
    /// the threshold at 0 while compiling, every large free shrinks its arena;
    /// afterwards the threshold goes to glibc's own ceiling, so that serving
    /// trims no more often than it would have.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    pub fn compiling<R>(compile: impl FnOnce() -> R) -> R {
        /// The most glibc's dynamic threshold reaches (2 × 32 MiB on 64-bit).
        const SERVING_TRIM_THRESHOLD: libc::c_int = 64 << 20;

        /// Puts the threshold back and trims, also if `compile` panics.
        struct Restore;
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: both only tune and trim glibc's allocator, which is
                // this process's allocator, under its own locks.
                #[allow(unsafe_code)]
                unsafe {
                    libc::malloc_trim(0);
                    libc::mallopt(libc::M_TRIM_THRESHOLD, SERVING_TRIM_THRESHOLD);
                }
            }
        }

        // The threshold is process-wide: one compilation window at a time, so
        // that none ends while another still frees.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // SAFETY: as in `Restore`.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 0);
        }
        let _restore = Restore;
        compile()
    }

    /// Other allocators return memory in their own way.
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    pub fn compiling<R>(compile: impl FnOnce() -> R) -> R {
        compile()
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn tag(engine: &Engine) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.finish()
    }

    /// Two small components in the text format (wasmtime's `wat` feature).
    const EMPTY: &[u8] = b"(component)";
    const WITH_MODULE: &[u8] = b"(component (core module (func (export \"f\"))))";

    #[test]
    fn the_compiler_makes_what_any_serving_engine_loads() {
        let compiler = build_compiler().unwrap();
        for options in [
            EngineOptions::default(),
            EngineOptions {
                max_instances: 4,
                memory_limit: 16 << 20,
                keep_resident: 0,
            },
        ] {
            assert_eq!(tag(&compiler), tag(&build_engine(&options).unwrap()));
        }
    }

    #[test]
    fn a_miss_compiles_into_the_cache_and_later_loads_map_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let engine = build_engine(&EngineOptions::default()).unwrap();
        let cache = ComponentCache::new(&engine, Some(dir.path().to_path_buf()));
        let (_, digest, from) = cache.load(&engine, WITH_MODULE).unwrap();
        assert_eq!(from, LoadedFrom::Compiled);
        assert!(cache.entry(&digest).unwrap().exists());
        let (component, _, from) = cache.load(&engine, WITH_MODULE).unwrap();
        assert_eq!(from, LoadedFrom::Cache);
        assert_eq!(component.component_type().imports(&engine).count(), 0);
    }

    #[test]
    fn compile_missing_fills_the_cache_and_leaves_failures_to_load() {
        let dir = tempfile::tempdir().unwrap();
        let engine = build_engine(&EngineOptions::default()).unwrap();
        let cache = ComponentCache::new(&engine, Some(dir.path().to_path_buf()));
        let broken: &[u8] = b"not a component";
        let mut compiled = cache.compile_missing(&[EMPTY, WITH_MODULE, broken, EMPTY]);
        compiled.sort_by_key(WasmDigest::hex);
        let mut expected = vec![WasmDigest::of(EMPTY), WasmDigest::of(WITH_MODULE)];
        expected.sort_by_key(WasmDigest::hex);
        assert_eq!(compiled, expected);
        for bytes in [EMPTY, WITH_MODULE] {
            assert!(cache.entry(&WasmDigest::of(bytes)).unwrap().exists());
            assert_eq!(cache.load(&engine, bytes).unwrap().2, LoadedFrom::Cache);
        }
        assert!(!cache.entry(&WasmDigest::of(broken)).unwrap().exists());
        assert!(cache.load(&engine, broken).is_err());
        // Nothing left to compile.
        assert!(cache.compile_missing(&[EMPTY, WITH_MODULE]).is_empty());
    }

    #[test]
    fn without_a_cache_every_load_compiles() {
        let engine = build_engine(&EngineOptions::default()).unwrap();
        let cache = ComponentCache::new(&engine, None);
        assert!(cache.compile_missing(&[EMPTY]).is_empty());
        for _ in 0..2 {
            assert_eq!(cache.load(&engine, EMPTY).unwrap().2, LoadedFrom::Compiled);
        }
    }
}
