//! Shared set-up for the runner's black-box tests: builds the fixture
//! components once, starts the runner on a random loopback port, and talks
//! to it over real HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use latch_runner::engine::EngineOptions;
use latch_runner::manifest::Manifest;
use latch_runner::variables::AppVariables;
use latch_runner::{App, GuestLog, LoadOptions, ServeOptions, TelemetryConfig};

pub struct Fixtures {
    pub probe: PathBuf,
    pub other: PathBuf,
    /// Sends messages whole with `latch_send` (bodies larger than the host's buffer).
    pub whole: PathBuf,
}

/// Builds the fixture components (once per test binary) into their own
/// target directory, so the nested cargo never waits on the outer one.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = root.join("target/fixtures");
        let status = Command::new(env!("CARGO"))
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .args([
                "build",
                "--quiet",
                "--target",
                "wasm32-wasip2",
                "--profile",
                "wasm",
                "-p",
                "fixture-probe",
                "-p",
                "fixture-other",
                "-p",
                "fixture-whole",
            ])
            .status()
            .expect("running cargo to build the fixtures");
        assert!(status.success(), "building the fixture components failed");
        let out = target.join("wasm32-wasip2/wasm");
        Fixtures {
            probe: out.join("fixture_probe.wasm"),
            other: out.join("fixture_other.wasm"),
            whole: out.join("fixture_whole.wasm"),
        }
    })
}

/// A runner serving a manifest on a random port, with its guest output captured.
pub struct TestApp {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub app: Arc<App>,
    pub guest_lines: Arc<Mutex<Vec<String>>>,
    /// `GET /metrics`, when `Options::metrics` asked for it.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _watcher: Option<latch_runner::swap::SwapWatcher>,
}

pub struct Options {
    pub env: HashMap<String, String>,
    pub serve: ServeOptions,
    pub engine: EngineOptions,
    pub watch: bool,
    pub data_dir: Option<PathBuf>,
    /// Compiled-component cache; shared by default (entries are keyed by hash).
    pub cache_dir: Option<PathBuf>,
    /// Telemetry (none by default); flushed when the server stops.
    pub telemetry: TelemetryConfig,
    /// Serve `GET /metrics` on a random loopback port too.
    pub metrics: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            env: HashMap::new(),
            serve: ServeOptions {
                request_timeout: Duration::from_secs(10),
                ..ServeOptions::default()
            },
            engine: EngineOptions {
                max_instances: 64,
                memory_limit: 64 << 20,
                ..EngineOptions::default()
            },
            watch: false,
            data_dir: None,
            cache_dir: None,
            telemetry: TelemetryConfig::default(),
            metrics: false,
        }
    }
}

/// Loads a manifest the way `latch up` does, but with variables from `env`.
pub fn load(
    dir: &Path,
    manifest_text: &str,
    options: &Options,
    log: GuestLog,
) -> anyhow::Result<App> {
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest_text)?;
    let manifest = Manifest::load(&path)?;
    let variables = AppVariables::resolve_with(&manifest, |key| options.env.get(key).cloned())?;
    App::from_manifest(
        manifest,
        &variables,
        &LoadOptions {
            data_dir: options
                .data_dir
                .clone()
                .unwrap_or_else(|| dir.join(".latch")),
            engine: options.engine.clone(),
            guest_log: log,
            cache_dir: Some(options.cache_dir.clone().unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures/cache")
            })),
            telemetry: options.telemetry.clone(),
            tcp_nodelay: false,
        },
    )
}

impl TestApp {
    pub fn start(manifest_text: &str) -> TestApp {
        Self::start_with(manifest_text, Options::default())
    }

    pub fn start_with(manifest_text: &str, options: Options) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, manifest_text, options)
    }

    pub fn start_in(dir: tempfile::TempDir, manifest_text: &str, options: Options) -> TestApp {
        let guest_lines = Arc::new(Mutex::new(Vec::new()));
        let lines = guest_lines.clone();
        let log = GuestLog::new(move |component, stream, line| {
            lines
                .lock()
                .unwrap()
                .push(format!("{component} {} {line}", stream.as_str()));
        });
        let app =
            Arc::new(load(dir.path(), manifest_text, &options, log).expect("loading the app"));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let serve_app = app.clone();
        let serve = options.serve.clone();
        let watch = options.watch;
        let metrics = options.metrics;
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let watcher = watch.then(|| latch_runner::swap::watch(serve_app.clone()).unwrap());
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let metrics_addr = if metrics {
                    let metrics_listener =
                        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = metrics_listener.local_addr().unwrap();
                    let telemetry = serve_app.telemetry.clone();
                    tokio::spawn(latch_runner::serve_metrics(
                        telemetry,
                        metrics_listener,
                        std::future::pending(),
                    ));
                    Some(addr)
                } else {
                    None
                };
                ready_tx
                    .send((listener.local_addr().unwrap(), metrics_addr, watcher))
                    .unwrap();
                let telemetry = serve_app.telemetry.clone();
                latch_runner::serve(serve_app, listener, serve, async {
                    let _ = shutdown_rx.await;
                })
                .await
                .unwrap();
                // As `latch up` does: export what is buffered before exiting.
                tokio::task::spawn_blocking(move || telemetry.shutdown())
                    .await
                    .unwrap();
            });
        });
        let (addr, metrics_addr, watcher) = ready_rx.recv().unwrap();
        TestApp {
            addr,
            dir,
            app,
            guest_lines,
            metrics_addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
            _watcher: watcher,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> Reply {
        get(&self.url(path))
    }

    /// Begins shutdown; returns the serving thread to join.
    pub fn shutdown(&mut self) -> std::thread::JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.thread.take().unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// `key=value` lines of the probe's echo.
    pub fn echoed(&self) -> HashMap<String, String> {
        self.body
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn read(response: ureq::http::Response<ureq::Body>) -> Reply {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.into_body().read_to_string().unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str) -> Reply {
    read(agent().get(url).call().expect("GET failed"))
}

pub fn post(url: &str, body: &[u8]) -> Reply {
    read(agent().post(url).send(body).expect("POST failed"))
}

/// A manifest with one probe component per route, sharing the probe wasm.
pub fn probe_manifest(routes: &[(&str, &str)], extra: &str) -> String {
    let probe = fixtures().probe.display().to_string();
    let mut text = String::from("spin_manifest_version = 2\n[application]\nname = \"test\"\n");
    text.push_str(extra);
    let mut seen = std::collections::BTreeSet::new();
    for (route, component) in routes {
        text.push_str(&format!(
            "\n[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{component}\"\n"
        ));
        seen.insert(*component);
    }
    for component in seen {
        if !extra.contains(&format!("[component.{component}]")) {
            text.push_str(&format!(
                "\n[component.{component}]\nsource = \"{probe}\"\n"
            ));
        }
    }
    text
}
