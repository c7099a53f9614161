//! The processes under test: the service (`latch up`, or the real Spin's
//! `spin up` when `SPIN` names a binary) and the SQLite Cloud stand-in, each
//! owned by a guard that kills it when dropped.

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{Call, Client, Reply, Secrets, raw_exchange};
use crate::webhook::{ReceiverLink, WebhookReceiver, secret_forms};
use crate::{Account, Backend, Tokens, unique_email, unique_password};

/// How long `latch up` may take to listen. Long, because the first start
/// of a run compiles every component (later starts load them from
/// `target/e2e-cache`).
const SERVICE_START_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the stand-in may take to listen.
const STANDIN_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `latch migrate` may take.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `/health` may take to answer 200 once the service listens.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);

/// The stand-in's API key (it appears in the service's `database_url`, so
/// the log checks look for it too).
pub const STANDIN_API_KEY: &str = "e2e-standin-key-5c1f0a93";
/// The database the SQLite Cloud backend uses on the stand-in.
pub const STANDIN_DATABASE: &str = "latch";

const BUILD_HELP: &str = "build first (scripts/e2e.sh does):\n  \
     cargo build -p latch -p sqlitecloud-standin\n  \
     cargo build --target wasm32-wasip2 --profile wasm -p route-<name> (every components/<name>)";

/// The repository root (holding `spin.toml`).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Where `latch up` keeps compiled components: shared by every service of
/// the run (entries are keyed by content hash), `target/e2e-cache` unless
/// `LATCH_E2E_CACHE_DIR` says otherwise.
fn cache_dir() -> PathBuf {
    std::env::var_os("LATCH_E2E_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/e2e-cache"))
}

/// `target/<profile>` of the running test executable (`.../deps/<test>`).
fn profile_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| repo_root().join("target/debug"))
}

fn binary(variable: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX)));
    assert!(
        path.is_file(),
        "{} not found (set {variable} to use another); {BUILD_HELP}",
        path.display()
    );
    path
}

/// The `latch` binary.
pub fn latch_binary() -> PathBuf {
    binary("LATCH_BIN", "latch")
}

/// The stand-in binary.
pub fn standin_binary() -> PathBuf {
    binary("STANDIN_BIN", "sqlitecloud-standin")
}

/// Panics with the build commands unless the components are built.
fn check_components() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let dir = repo_root().join("target/wasm32-wasip2/wasm");
        let sources = repo_root().join("components");
        let components: Vec<String> = std::fs::read_dir(&sources)
            .unwrap_or_else(|e| panic!("reading {}: {e}", sources.display()))
            .flatten()
            .filter(|entry| entry.path().join("Cargo.toml").is_file())
            // Cargo names `components/admin-users` `route_admin_users.wasm`.
            .map(|entry| {
                format!(
                    "route_{}",
                    entry.file_name().to_string_lossy().replace('-', "_")
                )
            })
            .collect();
        let missing: Vec<&String> = components
            .iter()
            .filter(|c| !dir.join(format!("{c}.wasm")).is_file())
            .collect();
        assert!(
            missing.is_empty(),
            "components not built in {}: {missing:?}; {BUILD_HELP}",
            dir.display()
        );
    });
}

/// Which runtime serves the components under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `latch up`, this project's runner (the default).
    Latch,
    /// The real Spin, `spin up` (SpinKube's shim embeds the same trigger):
    /// chosen by setting `SPIN` to a `spin` binary.
    Spin,
}

/// The runtime this test run uses: [`Runtime::Spin`] when `SPIN` names a binary.
pub fn runtime() -> Runtime {
    if spin_binary().is_some() {
        Runtime::Spin
    } else {
        Runtime::Latch
    }
}

fn spin_binary() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("SPIN").filter(|v| !v.is_empty())?);
    assert!(
        path.is_file(),
        "SPIN={} is not a file (build Spin 3.6.3 as docs/local.md says)",
        path.display()
    );
    Some(path)
}

/// A child process, killed and reaped when dropped. With `group`, the child
/// leads its own process group and the whole group is killed: `spin up` runs
/// the server as a child process (`spin trigger http`) that would outlive it.
struct ChildGuard {
    child: Child,
    group: bool,
}

impl ChildGuard {
    fn new(child: Child) -> ChildGuard {
        ChildGuard {
            child,
            group: false,
        }
    }

    fn kill(&mut self) {
        if self.group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which stream a captured line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

type Lines = Arc<Mutex<Vec<(Stream, String)>>>;

fn lock(lines: &Lines) -> std::sync::MutexGuard<'_, Vec<(Stream, String)>> {
    lines.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Copies a child's stream into `lines`; calls `on_line` on each line.
fn capture(
    stream: impl Read + Send + 'static,
    which: Stream,
    lines: Lines,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            on_line(&line);
            lock(&lines).push((which, line));
        }
    })
}

/// Runs a command to completion, killed after `timeout`; returns
/// (success, stdout, stderr).
fn run_bounded(mut command: Command, timeout: Duration) -> (bool, String, String) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => panic!("spawning {command:?}: {e}"),
    };
    let read_all = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_string(&mut text);
            }
            text
        })
    };
    let out = read_all(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = read_all(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let mut guard = ChildGuard::new(child);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match guard.child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    drop(guard);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(status) => (status.success(), stdout, stderr),
        None => panic!("{command:?} did not finish within {timeout:?}:\n{stdout}\n{stderr}"),
    }
}

/// A command with a clean environment: no inherited Spin variables,
/// database URLs, log filters or telemetry settings.
fn clean_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    for keep in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Some(value) = std::env::var_os(keep) {
            command.env(keep, value);
        }
    }
    command
}

/// The SQLite Cloud stand-in (`sqlitecloud-standin`) with database `latch`.
pub struct StandIn {
    _guard: ChildGuard,
    base: String,
    port: u16,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
    lines: Lines,
}

impl StandIn {
    /// Starts the stand-in and creates the `latch` database (empty).
    pub fn start() -> StandIn {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("creating a temporary directory: {e}"),
        };
        let mut command = clean_command(&standin_binary());
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--api-key", STANDIN_API_KEY])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("spawning the stand-in: {e}"),
        };
        let lines: Lines = Arc::default();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let guard = ChildGuard::new(child);
        if let Some(stdout) = stdout {
            let mut tx = Some(tx);
            capture(stdout, Stream::Stdout, lines.clone(), move |line| {
                if let Some(base) = line.strip_prefix("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(base.to_string());
                }
            });
        }
        if let Some(stderr) = stderr {
            capture(stderr, Stream::Stderr, lines.clone(), |_| {});
        }
        let base = match rx.recv_timeout(STANDIN_START_TIMEOUT) {
            Ok(base) => base,
            Err(_) => panic!(
                "the stand-in did not start within {STANDIN_START_TIMEOUT:?}:\n{}",
                joined(&lines)
            ),
        };
        let port = base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {base:?}"));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .build()
            .into();
        let standin = StandIn {
            _guard: guard,
            base,
            port,
            dir,
            agent,
            lines,
        };
        let (status, body) = standin.post(&format!("/v2/weblite/{STANDIN_DATABASE}"), None, true);
        assert_eq!(status, 200, "creating the database: {body}");
        standin
    }

    /// Applies the repository's migrations with `latch migrate`.
    pub fn migrate(&self) {
        let mut command = clean_command(&latch_binary());
        command
            .current_dir(repo_root())
            .arg("migrate")
            .arg("--from")
            .arg(repo_root().join("spin.toml"))
            .arg("--database-url")
            .arg(self.database_url());
        let (ok, stdout, stderr) = run_bounded(command, MIGRATE_TIMEOUT);
        assert!(ok, "latch migrate failed:\n{stdout}\n{stderr}");
    }

    /// `http://127.0.0.1:PORT/latch?apikey=KEY`.
    pub fn database_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/{STANDIN_DATABASE}?apikey={STANDIN_API_KEY}",
            self.port
        )
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The database file behind the `latch` database.
    pub fn db_path(&self) -> PathBuf {
        self.dir
            .path()
            .join("data")
            .join(format!("{STANDIN_DATABASE}.sqlite"))
    }

    fn post(&self, path: &str, body: Option<&str>, auth: bool) -> (u16, String) {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if auth {
            request = request.header("authorization", format!("Bearer {STANDIN_API_KEY}"));
        }
        let result = match body {
            Some(body) => request.send(body.as_bytes()),
            None => request.send_empty(),
        };
        match result {
            Ok(mut response) => (
                response.status().as_u16(),
                response.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => panic!("stand-in POST {path}: {e}"),
        }
    }

    fn control(&self, method: &str, path: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.base);
        let result = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.post(&url).send_empty(),
        };
        let text = match result {
            Ok(mut response) => response.body_mut().read_to_string().unwrap_or_default(),
            Err(e) => panic!("stand-in {method} {path}: {e}"),
        };
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stand-in {path}: {e}: {text}"))
    }

    /// SQL requests received since the last [`StandIn::reset_stats`].
    pub fn sql_requests(&self) -> u64 {
        let stats = self.control("GET", "/__standin/stats");
        stats["sql_requests"]
            .as_u64()
            .unwrap_or_else(|| panic!("no sql_requests in {stats}"))
    }

    /// Resets the request counters (not the faults).
    pub fn reset_stats(&self) {
        self.control("POST", "/__standin/stats/reset");
    }

    /// Queues faults (one fault object or a list), applying to the SQL
    /// requests that arrive from now on (see the stand-in's docs).
    pub fn add_faults(&self, faults: &serde_json::Value) {
        let (status, body) = self.post("/__standin/faults", Some(&faults.to_string()), false);
        assert_eq!(status, 200, "queueing faults {faults}: {body}");
    }

    /// Changes the stand-in's settings (`POST /__standin/config`), e.g.
    /// `{"commit_gap_ms": 20}`.
    pub fn configure(&self, settings: &serde_json::Value) {
        let (status, body) = self.post("/__standin/config", Some(&settings.to_string()), false);
        assert_eq!(status, 200, "configuring {settings}: {body}");
    }

    /// Drops every pending fault.
    pub fn clear_faults(&self) {
        self.control("DELETE", "/__standin/faults");
    }

    /// How many faults are still waiting for their requests.
    pub fn pending_faults(&self) -> usize {
        let pending = self.control("GET", "/__standin/faults");
        pending["pending"].as_array().map_or(0, Vec::len)
    }

    /// Everything the stand-in printed.
    pub fn output(&self) -> String {
        joined(&self.lines)
    }
}

fn joined(lines: &Lines) -> String {
    lock(lines)
        .iter()
        .map(|(_, line)| line.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// How to start a service.
#[derive(Debug, Clone)]
pub struct Options {
    backend: Backend,
    vars: Vec<(String, String)>,
    no_migrate: bool,
    webhooks: Vec<ReceiverLink>,
    /// SQLite Cloud: another service's stand-in (URL, origin) instead of a new one.
    shared_database: Option<(String, String)>,
}

/// The sign-up limit per client address the tests run with: every test
/// signs its accounts up from 127.0.0.1, far more than the manifest's 10 an
/// hour. The sign-up throttle's own tests restore the manifest's default
/// ([`Options::manifest_signup_limit`]).
pub const E2E_SIGNUP_LIMIT: &str = "1000000";

impl Options {
    /// The manifest's defaults (development, secure cookies) on `backend`,
    /// but for the sign-up limit ([`E2E_SIGNUP_LIMIT`]).
    pub fn new(backend: Backend) -> Options {
        Options {
            backend,
            vars: vec![(
                "signup_max_per_window".to_string(),
                E2E_SIGNUP_LIMIT.to_string(),
            )],
            no_migrate: false,
            webhooks: Vec::new(),
            shared_database: None,
        }
    }

    /// The manifest's own sign-up limit per client address (10 an hour).
    pub fn manifest_signup_limit(mut self) -> Options {
        self.vars
            .retain(|(name, _)| name != "signup_max_per_window");
        self
    }

    /// SQLite Cloud: uses the stand-in of `other` (a second service on one
    /// database, as replicas share SQLite Cloud) instead of starting one.
    pub fn on_database_of(mut self, other: &Service) -> Options {
        let standin = other.standin();
        self.shared_database = Some((standin.database_url(), standin.origin()));
        self
    }

    /// Sets a Spin variable (`SPIN_VARIABLE_<NAME>`); the last setting wins.
    pub fn var(mut self, name: &str, value: &str) -> Options {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    /// `environment = production` with the test signing key
    /// ([`crate::test_signing_key`]).
    pub fn production(self) -> Options {
        self.var("environment", "production")
            .var("signing_key", &crate::test_signing_key())
    }

    /// `environment = production` and no signing key.
    pub fn production_without_key(self) -> Options {
        self.var("environment", "production")
    }

    /// Sends the email webhook to `receiver`: `email_webhook_url`,
    /// `email_webhook_secret` (its secret) and `email_webhook_origin`. The
    /// tokens it receives join what the service's log must not hold.
    pub fn webhook(mut self, receiver: &WebhookReceiver) -> Options {
        self.webhooks.push(receiver.link());
        self.var("email_webhook_url", &receiver.url())
            .var("email_webhook_secret", receiver.secret())
            .var("email_webhook_origin", &receiver.origin())
    }

    /// `require_verified_email = true`: sign-in refuses unverified addresses.
    pub fn require_verified_email(self) -> Options {
        self.var("require_verified_email", "true")
    }

    /// Starts without applying migrations (`--no-migrate`; for SQLite
    /// Cloud, the database is created but not migrated).
    pub fn no_migrate(mut self) -> Options {
        self.no_migrate = true;
        self
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Starts the service (and for SQLite Cloud the stand-in first).
    pub fn start(self) -> Service {
        Service::start(self)
    }
}

/// A running service (`latch up` or `spin up`, and its stand-in), with a client for it.
///
/// Every password, full email address and token its client sends or
/// receives is remembered; when the service is dropped (at the end of a
/// test that did not fail otherwise) its whole output is checked for them,
/// so every test doubles as a log-leak test.
pub struct Service {
    guard: ChildGuard,
    capture_threads: Vec<JoinHandle<()>>,
    secrets: Secrets,
    client: Client,
    address: String,
    data_dir: tempfile::TempDir,
    lines: Lines,
    standin: Option<StandIn>,
    backend: Backend,
    runtime: Runtime,
    secure_cookies: bool,
}

impl Service {
    /// The manifest's defaults on `backend`.
    pub fn start_default(backend: Backend) -> Service {
        Options::new(backend).start()
    }

    fn start(mut options: Options) -> Service {
        check_components();
        let standin = match (options.backend, options.shared_database.clone()) {
            (Backend::Embedded, _) => None,
            (Backend::Cloud, Some((url, origin))) => {
                options = options
                    .var("db_type", "sqlitecloud")
                    .var("database_url", &url)
                    .var("database_origin", &origin);
                None
            }
            (Backend::Cloud, None) => {
                let standin = StandIn::start();
                if !options.no_migrate {
                    standin.migrate();
                }
                let timeout = options
                    .value("database_timeout_ms")
                    .unwrap_or("5000")
                    .to_string();
                options = options
                    .var("db_type", "sqlitecloud")
                    .var("database_url", &standin.database_url())
                    .var("database_origin", &standin.origin())
                    .var("database_timeout_ms", &timeout);
                Some(standin)
            }
        };
        let secure_cookies = options.value("cookie_secure") != Some("false");
        let data_dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("creating a temporary directory: {e}"),
        };
        let runtime = runtime();
        let mut command = match runtime {
            Runtime::Latch => latch_command(&options, data_dir.path()),
            Runtime::Spin => spin_command(&options, data_dir.path()),
        };
        for (name, value) in &options.vars {
            command.env(
                format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
                value,
            );
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());

        // The first start of a test process may compile the components into
        // the shared cache: let it finish before the others start.
        static WARM: AtomicBool = AtomicBool::new(false);
        static COLD_START: Mutex<()> = Mutex::new(());
        let _cold = (!WARM.load(Ordering::Acquire))
            .then(|| COLD_START.lock().unwrap_or_else(PoisonError::into_inner));

        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!("spawning {command:?}: {e}"),
        };
        let lines: Lines = Arc::default();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let guard = ChildGuard {
            child,
            group: runtime == Runtime::Spin,
        };
        // The sender lives in the capture threads: when the service exits
        // early, the channel closes and the wait below ends at once.
        let (tx, rx) = mpsc::channel::<u16>();
        let announce = |tx: mpsc::Sender<u16>| {
            let mut tx = Some(tx);
            move |line: &str| {
                if tx.is_some()
                    && let Some(port) = serving_port(line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        };
        let mut capture_threads = Vec::new();
        if let Some(stdout) = stdout {
            let on_line = announce(tx.clone());
            capture_threads.push(capture(stdout, Stream::Stdout, lines.clone(), on_line));
        }
        if let Some(stderr) = stderr {
            let on_line = announce(tx);
            capture_threads.push(capture(stderr, Stream::Stderr, lines.clone(), on_line));
        }
        let port = match rx.recv_timeout(SERVICE_START_TIMEOUT) {
            Ok(port) => port,
            _ => panic!(
                "the service ({runtime:?}) did not start serving within {SERVICE_START_TIMEOUT:?}:\n{}",
                joined(&lines)
            ),
        };
        let address = format!("127.0.0.1:{port}");
        let secrets = Secrets::default();
        if standin.is_some() || options.shared_database.is_some() {
            lock_secrets(&secrets).insert(STANDIN_API_KEY.to_string());
        }
        if let Some(secret) = options.value("email_webhook_secret") {
            lock_secrets(&secrets).extend(secret_forms(secret));
        }
        for receiver in &options.webhooks {
            receiver.attach(&secrets);
        }
        let service = Service {
            guard,
            capture_threads,
            secrets: secrets.clone(),
            client: Client::new(format!("http://{address}"), secrets),
            address,
            data_dir,
            lines,
            standin,
            backend: options.backend,
            runtime,
            secure_cookies,
        };
        service.wait_healthy();
        WARM.store(true, Ordering::Release);
        service
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            match self.get("/health").try_send() {
                Ok(reply) if reply.status == 200 => return,
                other if Instant::now() > deadline => panic!(
                    "/health did not answer 200 within {HEALTH_TIMEOUT:?}: {other:?}\n{}",
                    self.output()
                ),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The runtime serving the components.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// Whether cookies are expected to carry `Secure` (`cookie_secure`).
    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        self.client.base()
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The process id of the service (`spin up`'s own, not its trigger child's).
    pub fn pid(&self) -> u32 {
        self.guard.child.id()
    }

    /// A request to the service.
    pub fn call(&self, method: &str, path: &str) -> Call {
        self.client.call(method, path)
    }

    pub fn get(&self, path: &str) -> Call {
        self.call("GET", path)
    }

    pub fn post(&self, path: &str) -> Call {
        self.call("POST", path)
    }

    pub fn put(&self, path: &str) -> Call {
        self.call("PUT", path)
    }

    pub fn delete(&self, path: &str) -> Call {
        self.call("DELETE", path)
    }

    /// Raw bytes on a new connection: (status, whole answer).
    pub fn raw(&self, request: &[u8]) -> (u16, String) {
        raw_exchange(&self.address, request)
    }

    /// The stand-in (SQLite Cloud backend only).
    pub fn standin(&self) -> &StandIn {
        match &self.standin {
            Some(standin) => standin,
            None => panic!("this service runs on the embedded backend: no stand-in"),
        }
    }

    /// The database file the service's data is in.
    pub fn db_path(&self) -> PathBuf {
        match (&self.standin, self.runtime) {
            (Some(standin), _) => standin.db_path(),
            (None, Runtime::Latch) => self.data_dir.path().join("data/sqlite/default.db"),
            (None, Runtime::Spin) => spin_database(self.data_dir.path()),
        }
    }

    /// A connection to the service's database file.
    pub fn db(&self) -> rusqlite::Connection {
        crate::data::open_database(&self.db_path())
    }

    /// Everything the service printed so far, stdout and stderr, in arrival
    /// order (under Spin: the components' output too, as `spin up` follows it).
    pub fn output(&self) -> String {
        joined(&self.lines)
    }

    /// The secrets this service's client has seen so far.
    pub fn secrets(&self) -> Vec<String> {
        lock_secrets(&self.secrets).iter().cloned().collect()
    }

    /// The secrets seen so far that appear in the service's output
    /// (emails compared case-insensitively).
    pub fn leaked_secrets(&self) -> Vec<String> {
        let output = self.output();
        let lower = output.to_lowercase();
        lock_secrets(&self.secrets)
            .iter()
            .filter(|s| {
                if s.contains('@') {
                    lower.contains(&s.to_lowercase())
                } else {
                    output.contains(s.as_str())
                }
            })
            .cloned()
            .collect()
    }

    /// Lines the service printed on one stream.
    pub fn lines(&self, stream: Stream) -> Vec<String> {
        lock(&self.lines)
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// The JSON lines the components wrote to their stdout (audit events and
    /// warnings). `latch up` logs each guest line as a log record on its
    /// stderr (`target: latch::guest`, `stream: stdout`, message
    /// `[<component>] <line>`); lines on the service's own stdout count too.
    /// `spin up` copies both of a component's streams to its own stderr,
    /// unmarked, so under Spin the lines come from its per-component log
    /// files (`<state-dir>/logs/<component>_stdout.txt`).
    pub fn guest_json_lines(&self) -> Vec<serde_json::Value> {
        if self.runtime == Runtime::Spin {
            return spin_guest_stdout(self.data_dir.path())
                .iter()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect();
        }
        let mut found = Vec::new();
        for (stream, line) in lock(&self.lines).iter() {
            let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let guest_line = match stream {
                Stream::Stdout => Some(line.as_str()),
                Stream::Stderr => (record["target"] == "latch::guest"
                    && record["stream"] == "stdout")
                    .then(|| record["message"].as_str())
                    .flatten()
                    .and_then(|m| m.split_once("] "))
                    .map(|(_, rest)| rest),
            };
            if let Some(value) = guest_line.and_then(|l| serde_json::from_str(l).ok()) {
                found.push(value);
            }
        }
        found
    }

    /// The audit lines logged so far (guest JSON lines with an `audit_id`).
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        self.guest_json_lines()
            .into_iter()
            .filter(|line| line["audit_id"].is_string())
            .collect()
    }

    /// Waits (at most 5 s) until `predicate` holds for the audit lines.
    pub fn wait_for_audit(
        &self,
        what: &str,
        predicate: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.audit_lines();
            if predicate(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "no audit line for {what}; audit lines: {lines:#?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    // --- the API's common steps -------------------------------------------------

    /// `POST /auth/signup`.
    pub fn signup(&self, email: &str, password: &str, full_name: &str) -> Reply {
        self.post("/auth/signup")
            .json(&serde_json::json!({"email": email, "password": password, "fullName": full_name}))
            .send()
    }

    /// Signs up a fresh account (panics unless 201).
    pub fn create_account(&self) -> Account {
        let email = unique_email("user");
        let password = unique_password();
        let full_name = format!("Test User {}", crate::next_number());
        let reply = self.signup(&email, &password, &full_name);
        reply.expect_status(201);
        let id = reply.json()["userId"]
            .as_str()
            .unwrap_or_else(|| panic!("no userId: {reply}"))
            .to_string();
        Account {
            id,
            email,
            password,
            full_name,
        }
    }

    /// Gives the user `user_id` the `admin` role: inserts its `user_roles`
    /// row (`role-admin`) straight into the service's database, on either
    /// backend (the stand-in's file for SQLite Cloud). Panics unless a row
    /// was added. Tokens issued before keep the roles they carry: sign in
    /// again for a token with the role.
    pub fn grant_admin(&self, user_id: &str) {
        let added = self.db().execute(
            "INSERT INTO user_roles (user_id, role_id, created_at) VALUES (?1, 'role-admin', 0) \
             ON CONFLICT (user_id, role_id) DO NOTHING",
            [user_id],
        );
        match added {
            Ok(1) => {}
            Ok(n) => panic!("granting admin to {user_id}: {n} rows added (already an admin?)"),
            Err(e) => panic!("granting admin to {user_id}: {e}"),
        }
    }

    /// A fresh admin: signs up an account ([`Service::create_account`]),
    /// grants it the `admin` role ([`Service::grant_admin`]) and signs it in.
    /// The access token carries the role (checked); the admin API answers it.
    pub fn create_admin(&self) -> (Account, Tokens) {
        let account = self.create_account();
        self.grant_admin(&account.id);
        let tokens = self.sign_in(&account);
        let roles = crate::jwt_parts(&tokens.access)
            .map(|(_, payload)| payload["roles"].clone())
            .unwrap_or_default();
        assert!(
            roles
                .as_array()
                .is_some_and(|roles| roles.iter().any(|r| r == "admin")),
            "the new admin's access token carries no admin role: {roles}"
        );
        (account, tokens)
    }

    /// `POST /auth/signin`.
    pub fn signin(&self, email: &str, password: &str) -> Reply {
        self.post("/auth/signin")
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
    }

    /// Signs in (panics unless 200) and returns the cookies' tokens.
    pub fn sign_in(&self, account: &Account) -> Tokens {
        let reply = self.signin(&account.email, &account.password);
        reply.expect_status(200);
        tokens_of(&reply)
    }

    /// `POST /auth/refresh` with the refresh cookie.
    pub fn refresh(&self, refresh_token: &str) -> Reply {
        self.post("/auth/refresh")
            .refresh_cookie(refresh_token)
            .send()
    }

    /// `GET /user/profile` with the access cookie.
    pub fn profile(&self, access_token: &str) -> Reply {
        self.get("/user/profile").access_cookie(access_token).send()
    }
}

/// The tokens in a reply's `token` and `refreshToken` cookies.
pub fn tokens_of(reply: &Reply) -> Tokens {
    Tokens {
        access: reply.set_cookie("token").value,
        refresh: reply.set_cookie("refreshToken").value,
    }
}

/// The port of `latch up`'s `serving http://127.0.0.1:PORT` line (JSON or
/// text), or of `spin up`'s `Serving http://127.0.0.1:PORT`.
fn serving_port(line: &str) -> Option<u16> {
    const ANNOUNCED: &str = "erving http://127.0.0.1:";
    let rest = &line[line.find(ANNOUNCED)? + ANNOUNCED.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn lock_secrets(
    secrets: &Secrets,
) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
    secrets.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `latch up` serving the repository's manifest from `data_dir`.
fn latch_command(options: &Options, data_dir: &Path) -> Command {
    let mut command = clean_command(&latch_binary());
    command
        .current_dir(data_dir)
        .args(["--log-format", "json", "up", "--from"])
        .arg(repo_root().join("spin.toml"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.join("data"))
        .arg("--cache-dir")
        .arg(cache_dir())
        .arg("--no-watch");
    if options.no_migrate {
        command.arg("--no-migrate");
    }
    command
}

/// Spin's state directory of a service.
fn spin_state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("spin")
}

/// Spin's default SQLite database (`<state-dir>/sqlite_db.db`).
fn spin_database(data_dir: &Path) -> PathBuf {
    spin_state_dir(data_dir).join("sqlite_db.db")
}

/// Every line the components wrote to stdout under Spin (its log files).
fn spin_guest_stdout(data_dir: &Path) -> Vec<String> {
    let dir = spin_state_dir(data_dir).join("logs");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with("_stdout.txt")
            && let Ok(text) = std::fs::read_to_string(entry.path())
        {
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines
}

/// `spin up` serving the repository's manifest, its state in `data_dir`.
/// Spin applies no migrations: on the embedded backend `latch migrate`
/// prepares its default database first, as docs/local.md tells users to.
fn spin_command(options: &Options, data_dir: &Path) -> Command {
    let Some(spin) = spin_binary() else {
        panic!("SPIN is not set")
    };
    let state = spin_state_dir(data_dir);
    if let Err(e) = std::fs::create_dir_all(&state) {
        panic!("creating {}: {e}", state.display());
    }
    if options.backend == Backend::Embedded && !options.no_migrate {
        let mut migrate = clean_command(&latch_binary());
        migrate
            .current_dir(repo_root())
            .arg("migrate")
            .arg("--from")
            .arg(repo_root().join("spin.toml"))
            .arg("--database")
            .arg(spin_database(data_dir));
        let (ok, stdout, stderr) = run_bounded(migrate, MIGRATE_TIMEOUT);
        assert!(ok, "latch migrate failed:\n{stdout}\n{stderr}");
    }
    let mut command = clean_command(&spin);
    command
        .current_dir(data_dir)
        .arg("up")
        .arg("-f")
        .arg(repo_root().join("spin.toml"))
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
}

impl Drop for Service {
    fn drop(&mut self) {
        // Stop the service and collect every line it printed.
        self.guard.kill();
        for thread in self.capture_threads.drain(..) {
            let _ = thread.join();
        }
        if !std::thread::panicking() {
            let leaked = self.leaked_secrets();
            assert!(
                leaked.is_empty(),
                "the service's output holds secrets its client sent or received: {leaked:?}"
            );
        } else {
            let mut output = self.output();
            if let Some(standin) = &self.standin {
                output.push_str("\n--- stand-in ---\n");
                output.push_str(&standin.output());
            }
            let lines: Vec<&str> = output.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "--- last {} lines of the service's output ---\n{}\n---",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}
