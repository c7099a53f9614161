//! Helpers for the `latch migrate` tests: the SQLite Cloud stand-in (built
//! with cargo into this test's target directory, a no-op when up to date)
//! and running `latch` with a time limit.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const API_KEY: &str = "cli-test-secret-4b1d9e";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
const LATCH_TIMEOUT: Duration = Duration::from_secs(60);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn repo_migrations() -> PathBuf {
    repo_root().join("migrations")
}

/// The result of one `latch` run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Asserts that the run succeeded and printed each of `texts` on stdout.
    #[track_caller]
    pub fn succeeded_with(&self, texts: &[&str]) -> &Run {
        assert!(self.ok(), "{self:?}");
        for text in texts {
            assert!(
                self.stdout.contains(text),
                "no {text:?} in:\n{}",
                self.stdout
            );
        }
        self
    }

    /// Asserts that the run failed and printed each of `texts` on stderr.
    #[track_caller]
    pub fn failed_with(&self, texts: &[&str]) -> &Run {
        assert!(!self.ok(), "{self:?}");
        for text in texts {
            assert!(
                self.stderr.contains(text),
                "no {text:?} in:\n{}",
                self.stderr
            );
        }
        self
    }
}

/// Runs `latch ARGS` in `cwd` with `envs`, without any inherited database
/// URL, killed after a minute.
pub fn latch(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latch"));
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("SPIN_VARIABLE_DATABASE_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawning latch");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + LATCH_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("latch {args:?} did not finish within {LATCH_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The stand-in binary: `$STANDIN_BIN`, else `cargo build -p sqlitecloud-standin`
/// into the target directory holding this test.
pub fn standin_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("STANDIN_BIN") {
                return PathBuf::from(path);
            }
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
            let target_dir = profile_dir.parent().unwrap();
            let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
                "debug" => "dev".to_owned(),
                other => other.to_owned(),
            };
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let output = Command::new(cargo)
                .current_dir(repo_root())
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
    agent: ureq::Agent,
}

impl StandIn {
    pub fn start() -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut child = Command::new(standin_binary())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--api-key", API_KEY])
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
                panic!("the stand-in did not start: {other:?}");
            }
        };
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .build()
            .into();
        StandIn {
            child,
            port,
            base,
            dir,
            agent,
        }
    }

    pub fn url(&self, database: &str, key: &str) -> String {
        format!("http://127.0.0.1:{}/{database}?apikey={key}", self.port)
    }

    fn post(&self, path: &str, auth: bool, body: Option<&str>) -> (u16, String) {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if auth {
            request = request.header("Authorization", format!("Bearer {API_KEY}"));
        }
        let mut response = match body {
            Some(body) => request.send(body.as_bytes()),
            None => request.send_empty(),
        }
        .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    pub fn create_database(&self, database: &str) {
        let (status, body) = self.post(&format!("/v2/weblite/{database}"), true, None);
        assert_eq!(status, 200, "{body}");
    }

    pub fn add_faults(&self, faults: &str) {
        let (status, body) = self.post("/__standin/faults", false, Some(faults));
        assert_eq!(status, 200, "{body}");
    }

    /// Runs one SQL statement and returns the raw JSON answer.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let body = format!(
            "{{\"sql\": {}, \"database\": \"{database}\"}}",
            json_string(sql)
        );
        let (status, text) = self.post("/v2/weblite/sql", true, Some(&body));
        assert_eq!(status, 200, "{text}");
        text
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
