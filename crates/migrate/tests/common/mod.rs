//! The SQLite Cloud stand-in for integration tests: built with cargo (a
//! no-op when it is up to date) into this test's own target directory,
//! spawned on a free loopback port in a temporary directory, stopped on drop.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use latch_migrate::{HttpResponse, HttpTarget};
use latch_weblite::DatabaseUrl;

pub const API_KEY: &str = "standin-secret-key-7f3a9c";
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// The workspace's `migrations/` directory.
pub fn repo_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations")
}

/// The stand-in binary: `$STANDIN_BIN` if set, else built with
/// `cargo build -p sqlitecloud-standin` into the target directory that holds
/// this test executable.
pub fn standin_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("STANDIN_BIN") {
                return PathBuf::from(path);
            }
            // <target>/<profile>/deps/<test executable>
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
            let target_dir = profile_dir.parent().unwrap();
            let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
                "debug" => "dev".to_owned(),
                other => other.to_owned(),
            };
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let output = Command::new(cargo)
                .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
                .args(["build", "--quiet", "-p", "sqlitecloud-standin", "--profile"])
                .arg(&profile)
                .env("CARGO_TARGET_DIR", target_dir)
                .stdin(Stdio::null())
                .output()
                .expect("running cargo build -p sqlitecloud-standin");
            assert!(
                output.status.success(),
                "cargo build -p sqlitecloud-standin failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let binary = profile_dir.join(format!(
                "sqlitecloud-standin{}",
                std::env::consts::EXE_SUFFIX
            ));
            assert!(binary.is_file(), "{} was not built", binary.display());
            binary
        })
        .clone()
}

pub struct StandIn {
    child: Child,
    pub port: u16,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub agent: ureq::Agent,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into()
}

impl StandIn {
    pub fn start(extra_args: &[&str]) -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut child = Command::new(standin_binary())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--api-key", API_KEY])
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawning the stand-in");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
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
            agent: agent(),
        }
    }

    pub fn url_text(&self, database: &str) -> String {
        format!("http://127.0.0.1:{}/{database}?apikey={API_KEY}", self.port)
    }

    pub fn database_url(&self, database: &str) -> DatabaseUrl {
        DatabaseUrl::parse(&self.url_text(database)).unwrap()
    }

    /// Creates an empty database (`POST /v2/weblite/<db>`).
    pub fn create_database(&self, database: &str) {
        let mut response = self
            .agent
            .post(format!("{}/v2/weblite/{database}", self.base))
            .header("Authorization", format!("Bearer {API_KEY}"))
            .send_empty()
            .unwrap();
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap();
        assert_eq!(status, 200, "{body}");
    }

    /// A migration target for `database` over real HTTP.
    pub fn target(&self, database: &str) -> HttpTarget<impl latch_migrate::Transport + use<>> {
        HttpTarget::new(self.database_url(database), ureq_transport(agent()))
    }

    /// Runs SQL on `database` and decodes the answer.
    pub fn exec(
        &self,
        database: &str,
        sql: &str,
    ) -> Result<latch_weblite::QueryResult, latch_weblite::WebliteError> {
        let url = self.database_url(database);
        let body =
            latch_weblite::single_request_body(url.database(), &latch_weblite::Statement::new(sql))
                .unwrap();
        let mut transport = ureq_transport(self.agent.clone());
        let response = latch_migrate::Transport::post(
            &mut transport,
            &url.sql_url(),
            &[
                ("Authorization", &url.authorization_header()),
                ("Content-Type", latch_weblite::CONTENT_TYPE),
            ],
            &body,
        )
        .map_err(latch_weblite::WebliteError::Transport)?;
        latch_weblite::decode_response(response.status, &response.body)
    }

    /// One integer from a query.
    pub fn scalar(&self, database: &str, sql: &str) -> i64 {
        let result = self.exec(database, sql).unwrap();
        result.rows[0][0].as_i64().unwrap()
    }

    /// Calls the control API (must answer 200).
    pub fn control(&self, path: &str, body: &str) {
        let mut response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        assert_eq!(status, 200, "{path}: {text}");
    }

    pub fn add_faults(&self, faults: &str) {
        self.control("/__standin/faults", faults);
    }

    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The transport the CLI uses, in miniature: ureq, statuses not errors.
pub fn ureq_transport(agent: ureq::Agent) -> impl latch_migrate::Transport {
    move |url: &str, headers: &[(&str, &str)], body: &[u8]| {
        let mut request = agent.post(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.send(body).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        Ok(HttpResponse { status, body })
    }
}
