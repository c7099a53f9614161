//! `latch up`: serve the manifest's HTTP trigger.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use latch_runner::{App, EngineOptions, GuestLog, LoadOptions, ServeOptions};

#[derive(clap::Args)]
pub struct UpArgs {
    /// The application manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Where databases and compiled components are kept.
    #[arg(long, default_value = ".latch")]
    pub data_dir: PathBuf,
    /// Where compiled components are cached [default: <data-dir>/cache].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Migrations applied to the embedded `default` database before serving [default: migrations/ beside the manifest, if it exists].
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
    /// Do not apply migrations at start-up.
    #[arg(long)]
    pub no_migrate: bool,
    /// Run `latch build` first.
    #[arg(long)]
    pub build: bool,
    /// Do not swap components when their .wasm changes.
    #[arg(long)]
    pub no_watch: bool,
    /// Wall-clock limit of one request, in seconds.
    #[arg(long, default_value_t = 30)]
    pub request_timeout: u64,
    /// Largest request body, in bytes (larger ones get 413).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Linear memory limit of one instance, in MiB (SpinKube's invocationLimits.memory).
    #[arg(long, default_value_t = 128)]
    pub memory_limit_mib: usize,
    /// Instances that may run at once.
    #[arg(long, default_value_t = 256)]
    pub max_instances: u32,
    /// Linear memory, in MiB, an instance slot keeps resident for the next
    /// request (only the pages the last one touched are reset). Saves the page
    /// faults of every request; argon2id's 19 MiB block fits in the default.
    #[arg(long, default_value_t = latch_runner::engine::DEFAULT_KEEP_RESIDENT_MIB)]
    pub keep_resident_mib: usize,
    /// Seconds to wait for requests in flight at shutdown.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Faster than Spin, for benchmarks only: set TCP_NODELAY on served and
    /// outbound connections. Spin 3.6.3 leaves Nagle's algorithm on, so this
    /// hides the stalls a component that writes its answer in pieces causes in
    /// production.
    #[arg(long)]
    pub bench_tcp_nodelay: bool,
    /// Serve the dashboards' metrics as Prometheus text on this address (GET /metrics).
    /// OTLP export is set with Spin's OTEL_* variables (docs/observability.md).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    if args.build {
        crate::build::run(&crate::build::BuildArgs {
            manifest: args.manifest.clone(),
            components: Vec::new(),
        })?;
    }
    crate::migrate::before_up(
        &args.manifest,
        args.migrations.as_deref(),
        &args.data_dir,
        args.no_migrate,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: UpArgs) -> anyhow::Result<()> {
    let engine = EngineOptions {
        max_instances: args.max_instances,
        memory_limit: args.memory_limit_mib << 20,
        keep_resident: args.keep_resident_mib << 20,
    };
    let load = LoadOptions {
        data_dir: args.data_dir.clone(),
        engine,
        guest_log: GuestLog::tracing(),
        cache_dir: Some(
            args.cache_dir
                .clone()
                .unwrap_or_else(|| args.data_dir.join("cache")),
        ),
        telemetry: latch_runner::TelemetryConfig::from_env(
            |k| std::env::var(k).ok(),
            args.metrics_listen.is_some(),
        )?,
        tcp_nodelay: args.bench_tcp_nodelay,
    };
    let manifest_path = args.manifest.clone();
    let app = tokio::task::spawn_blocking(move || App::load(&manifest_path, &load))
        .await
        .context("loading task")??;
    let app = Arc::new(app);

    let _watcher = if args.no_watch {
        None
    } else {
        Some(latch_runner::swap::watch(app.clone())?)
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    tracing::info!("serving http://{address}");
    for (pattern, slot) in app.router.routes() {
        tracing::info!("  {}: http://{address}{}", slot.id, pattern.raw());
    }
    if let Some(metrics) = args.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(metrics)
            .await
            .with_context(|| format!("listening on {metrics} (--metrics-listen)"))?;
        tracing::info!("metrics: http://{}/metrics", metrics.local_addr()?);
        tokio::spawn(latch_runner::serve_metrics(
            app.telemetry.clone(),
            metrics,
            std::future::pending(),
        ));
    }
    let options = ServeOptions {
        request_timeout: Duration::from_secs(args.request_timeout),
        max_body_bytes: args.max_body_bytes,
        max_instances: args.max_instances as usize,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
    };
    let telemetry = app.telemetry.clone();
    let served = latch_runner::serve(app, listener, options, shutdown_signal()).await;
    // Export what is still buffered: the last spans, log records and metrics.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    served
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
