//! A running stand-in for integration tests: spawns the built binary on a free
//! loopback port in its own temporary directory, talks to it over real HTTP
//! with bounded timeouts, and stops it (and removes the directory) on drop.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use latch_weblite::{
    DatabaseUrl, QueryResult, Statement, WebliteError, batch_request_body, decode_response,
    single_request_body,
};
use serde_json::Value as Json;

pub const API_KEY: &str = "test-key-0123456789";
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

pub struct StandIn {
    child: Child,
    pub port: u16,
    pub base: String,
    pub dir: PathBuf,
    pub agent: ureq::Agent,
}

pub fn agent_with_timeout(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

impl StandIn {
    pub fn start() -> StandIn {
        Self::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> StandIn {
        let dir = std::env::temp_dir().join(format!(
            "standin-it-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sqlitecloud-standin"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--api-key", API_KEY])
            .args(extra_args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawning the stand-in");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
                panic!("the stand-in did not start: {other:?}\n{log}");
            }
        };
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        StandIn {
            child,
            port,
            base,
            dir,
            agent: agent_with_timeout(HTTP_TIMEOUT),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn database_url(&self, database: &str) -> DatabaseUrl {
        DatabaseUrl::parse(&format!(
            "http://127.0.0.1:{}/{database}?apikey={API_KEY}",
            self.port
        ))
        .unwrap()
    }

    /// Posts a raw body to the SQL endpoint with the right key.
    pub fn post_sql_raw(&self, body: &[u8]) -> (u16, Vec<u8>) {
        self.post_sql_raw_with(&self.agent, body, Some(&format!("Bearer {API_KEY}")))
    }

    pub fn post_sql_raw_with(
        &self,
        agent: &ureq::Agent,
        body: &[u8],
        authorization: Option<&str>,
    ) -> (u16, Vec<u8>) {
        let mut request = agent
            .post(self.url("/v2/weblite/sql"))
            .header("Content-Type", "application/json");
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let mut response = request.send(body).expect("HTTP request failed");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_vec().expect("reading the body");
        (status, body)
    }

    /// Sends one statement with binds, the way the service does, and decodes.
    pub fn run(&self, database: &str, statement: &Statement) -> Result<QueryResult, WebliteError> {
        let url = self.database_url(database);
        let body = single_request_body(url.database(), statement).unwrap();
        self.send(&url, &body)
    }

    /// Sends a batch, the way the service does, and decodes.
    pub fn run_batch(
        &self,
        database: &str,
        statements: &[Statement],
        trailing_query: Option<&Statement>,
    ) -> Result<QueryResult, WebliteError> {
        let url = self.database_url(database);
        let body = batch_request_body(url.database(), statements, trailing_query).unwrap();
        self.send(&url, &body)
    }

    /// POSTs a body built by the client, mapping transport failures the way a
    /// caller would.
    pub fn send(&self, url: &DatabaseUrl, body: &[u8]) -> Result<QueryResult, WebliteError> {
        send_with(&self.agent, url, body)
    }

    /// Runs SQL text without binds (several statements allowed).
    pub fn exec(&self, database: &str, sql: &str) -> Result<QueryResult, WebliteError> {
        self.run(database, &Statement::new(sql))
    }

    pub fn create_database(&self, database: &str) {
        let (status, body) = self.call("POST", &format!("/v2/weblite/{database}"), Some(API_KEY));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// A request without a body (GET/DELETE/empty POST) to a /v2 path.
    pub fn call(&self, method: &str, path: &str, api_key: Option<&str>) -> (u16, Vec<u8>) {
        let url = self.url(path);
        let auth = api_key.map(|k| format!("Bearer {k}"));
        let mut response = match method {
            "GET" => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            "DELETE" => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            "POST" => {
                let mut r = self.agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send_empty()
            }
            other => panic!("unsupported method {other}"),
        }
        .expect("HTTP request failed");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_vec().unwrap())
    }

    /// Calls the control API and returns its JSON answer (must be 200).
    pub fn control(&self, method: &str, path: &str, body: Option<Json>) -> Json {
        let url = self.url(path);
        let mut response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            ("POST", Some(body)) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string().as_bytes()),
            ("POST", None) => self.agent.post(&url).send_empty(),
            (other, _) => panic!("unsupported method {other}"),
        }
        .expect("control request failed");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        assert_eq!(status, 200, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    pub fn add_faults(&self, faults: Json) {
        self.control("POST", "/__standin/faults", Some(faults));
    }

    pub fn set_config(&self, config: Json) -> Json {
        self.control("POST", "/__standin/config", Some(config))
    }

    pub fn stats(&self) -> Json {
        self.control("GET", "/__standin/stats", None)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by pid and waits (bounded) for the exit status.
    pub fn stop_with_signal(mut self, signal: &str) -> std::process::ExitStatus {
        // The shell's builtin `kill`: no extra package needed.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {}", self.child.id()))
            .status()
            .expect("running kill");
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the stand-in did not exit after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

pub fn send_with(
    agent: &ureq::Agent,
    url: &DatabaseUrl,
    body: &[u8],
) -> Result<QueryResult, WebliteError> {
    let response = agent
        .post(url.sql_url())
        .header("Authorization", url.authorization_header())
        .header("Content-Type", latch_weblite::CONTENT_TYPE)
        .send(body);
    let mut response = response.map_err(|e| WebliteError::Transport(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_vec()
        .map_err(|e| WebliteError::Transport(e.to_string()))?;
    decode_response(status, &body)
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query component.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn text(s: &str) -> latch_weblite::Value {
    latch_weblite::Value::Text(s.to_owned())
}
