//! A loaded application: the manifest, one slot per component (its host
//! configuration and the pre-instantiated component currently serving), and
//! the router over those slots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::engine::{ComponentCache, EngineOptions, LoadedFrom, Runtime, WasmDigest};
use crate::host::outbound_http::{OutboundClient, ServiceChain};
use crate::host::sqlite::Databases;
use crate::host::stdio::GuestLog;
use crate::host::{self, ComponentHost, ConfigureContext, InstanceState, limits::LimitsConfig};
use crate::manifest::Manifest;
use crate::router::{RoutePattern, Router};
use crate::telemetry::{ComponentTelemetry, Telemetry, TelemetryConfig};
use crate::variables::AppVariables;

/// What loading needs besides the manifest.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Databases live under `<data_dir>/sqlite/`.
    pub data_dir: PathBuf,
    pub engine: EngineOptions,
    pub guest_log: GuestLog,
    /// Where compiled components are kept between runs (none: always compile).
    pub cache_dir: Option<PathBuf>,
    /// Spans, metrics and log records to produce (none by default).
    pub telemetry: TelemetryConfig,
    /// Set `TCP_NODELAY` on served and outbound connections. Spin 3.6.3 does
    /// not, so this hides the Nagle stalls production would show: for
    /// benchmarks only (`latch up --bench-tcp-nodelay`).
    pub tcp_nodelay: bool,
}

/// A component compiled, linked and pre-instantiated.
pub struct LoadedComponent {
    pub pre: ProxyPre<InstanceState>,
    pub digest: WasmDigest,
}

/// One component of the manifest and the version of it now serving.
pub struct ComponentSlot {
    pub id: String,
    pub source: PathBuf,
    pub host: ComponentHost,
    /// Whether start-up compiled the component or found it in the cache.
    pub loaded_from: LoadedFrom,
    /// Its metrics and span series, built once.
    pub telemetry: Arc<ComponentTelemetry>,
    current: RwLock<Arc<LoadedComponent>>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The file's content is what already serves.
    Unchanged,
    /// The new version serves from now on.
    Swapped { from: String, to: String },
}

impl ComponentSlot {
    /// The version serving now; requests keep it until they finish.
    pub fn current(&self) -> Arc<LoadedComponent> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, loaded: Arc<LoadedComponent>) {
        match self.current.write() {
            Ok(mut guard) => *guard = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
    }
}

/// The running application.
pub struct App {
    pub manifest: Manifest,
    pub runtime: Runtime,
    pub linker: Arc<Linker<InstanceState>>,
    pub router: Router<Arc<ComponentSlot>>,
    pub slots: BTreeMap<String, Arc<ComponentSlot>>,
    pub databases: Databases,
    /// Exporters and in-process series; call [`Telemetry::shutdown`] at exit
    /// to flush what is buffered.
    pub telemetry: Telemetry,
    /// See [`LoadOptions::tcp_nodelay`].
    pub tcp_nodelay: bool,
}

impl App {
    /// Loads the manifest at `path`: resolves variables, opens databases,
    /// compiles (or loads from cache) and pre-instantiates every component.
    pub fn load(path: &Path, options: &LoadOptions) -> anyhow::Result<App> {
        let manifest = Manifest::load(path)?;
        let variables = AppVariables::resolve(&manifest)?;
        Self::from_manifest(manifest, &variables, options)
    }

    /// Loads an already-parsed manifest with resolved variables.
    pub fn from_manifest(
        manifest: Manifest,
        variables: &AppVariables,
        options: &LoadOptions,
    ) -> anyhow::Result<App> {
        let engine = crate::engine::build_engine(&options.engine)?;
        crate::engine::spawn_epoch_ticker(&engine)?;
        let cache_dir = options.cache_dir.clone();
        let runtime = Runtime {
            cache: Arc::new(ComponentCache::new(&engine, cache_dir)),
            engine,
        };
        let mut linker = Linker::new(&runtime.engine);
        host::link(&mut linker)?;
        let linker = Arc::new(linker);

        let databases =
            Databases::open(&options.data_dir, &manifest).context("opening SQLite databases")?;
        let telemetry = Telemetry::start(&options.telemetry, &manifest.application.name)
            .context("starting telemetry")?;
        let outbound = OutboundClient::new(options.tcp_nodelay);
        let chain = ServiceChain::new(runtime.engine.clone());
        let context = ConfigureContext {
            variables,
            databases: &databases,
            outbound: &outbound,
            chain: &chain,
            limits: LimitsConfig {
                memory_bytes: options.engine.memory_limit,
            },
            log: options.guest_log.clone(),
        };

        let compiled_now = compile_missing(&runtime.cache, &manifest);
        let mut slots = BTreeMap::new();
        for (id, decl) in &manifest.components {
            let host = ComponentHost::configure(&context, decl)
                .with_context(|| format!("configuring component `{id}`"))?;
            let (loaded, mut from) =
                load_component(&runtime, &linker, &decl.source).with_context(|| {
                    format!("loading component `{id}` from {}", decl.source.display())
                })?;
            if compiled_now.contains(&loaded.digest) {
                from = LoadedFrom::Compiled;
            }
            tracing::info!(
                component_id = %id,
                digest = %loaded.digest.short(),
                from = match from { LoadedFrom::Cache => "cache", LoadedFrom::Compiled => "compiled" },
                "component ready"
            );
            let routes = manifest
                .http_triggers
                .iter()
                .filter(|t| t.component == *id)
                .filter_map(|t| t.route.as_deref());
            slots.insert(
                id.clone(),
                Arc::new(ComponentSlot {
                    id: id.clone(),
                    source: decl.source.clone(),
                    host,
                    loaded_from: from,
                    telemetry: telemetry.component(id, routes),
                    current: RwLock::new(Arc::new(loaded)),
                }),
            );
        }

        let mut routes = Vec::new();
        for trigger in &manifest.http_triggers {
            // Private triggers are reached through service chaining only.
            let Some(route) = &trigger.route else {
                continue;
            };
            let pattern = RoutePattern::parse(route).map_err(anyhow::Error::msg)?;
            let slot = slots
                .get(&trigger.component)
                .with_context(|| {
                    format!("trigger names unknown component `{}`", trigger.component)
                })?
                .clone();
            routes.push((pattern, slot));
        }
        let router = Router::new(routes).map_err(anyhow::Error::msg)?;
        let triggered: std::collections::BTreeSet<&str> = manifest
            .http_triggers
            .iter()
            .map(|t| t.component.as_str())
            .collect();
        chain.set_targets(
            slots
                .values()
                .filter(|slot| triggered.contains(slot.id.as_str())),
        );

        Ok(App {
            manifest,
            runtime,
            linker,
            router,
            slots,
            databases,
            telemetry,
            tcp_nodelay: options.tcp_nodelay,
        })
    }

    /// Recompiles a component from its file and swaps it in if it changed.
    /// On any failure the serving version stays and the error is returned.
    pub fn reload(&self, slot: &ComponentSlot) -> anyhow::Result<Reload> {
        let bytes = std::fs::read(&slot.source)
            .with_context(|| format!("reading {}", slot.source.display()))?;
        let current = slot.current();
        if WasmDigest::of(&bytes) == current.digest {
            return Ok(Reload::Unchanged);
        }
        let loaded = link_component(&self.runtime, &self.linker, &bytes)?.0;
        let to = loaded.digest.short();
        slot.replace(Arc::new(loaded));
        Ok(Reload::Swapped {
            from: current.digest.short(),
            to,
        })
    }
}

/// Compiles into the cache, all at once, the components it lacks
/// (`ComponentCache::compile_missing`), and returns their digests; an
/// unreadable source is left to the load, which reports it.
fn compile_missing(cache: &ComponentCache, manifest: &Manifest) -> Vec<WasmDigest> {
    let sources: Vec<Vec<u8>> = manifest
        .components
        .values()
        .filter_map(|decl| std::fs::read(&decl.source).ok())
        .collect();
    let sources: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
    cache.compile_missing(&sources)
}

fn load_component(
    runtime: &Runtime,
    linker: &Linker<InstanceState>,
    path: &Path,
) -> anyhow::Result<(LoadedComponent, LoadedFrom)> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading {} (build the components first: `latch build`)",
            path.display()
        )
    })?;
    link_component(runtime, linker, &bytes)
}

/// Compiles (or loads from cache), links and pre-instantiates a component.
pub fn link_component(
    runtime: &Runtime,
    linker: &Linker<InstanceState>,
    bytes: &[u8],
) -> anyhow::Result<(LoadedComponent, LoadedFrom)> {
    let (component, digest, from) = runtime.cache.load(&runtime.engine, bytes)?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .context("linking the component's imports")?;
    let pre = ProxyPre::new(pre)
        .map_err(anyhow::Error::from)
        .context("the component does not export wasi:http/incoming-handler")?;
    Ok((LoadedComponent { pre, digest }, from))
}
