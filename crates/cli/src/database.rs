//! Which database a command works on, for `latch migrate` and `latch admin`:
//! the embedded `default` database of `latch up`, another SQLite file, or
//! SQLite Cloud over HTTP; and the HTTP client that reaches SQLite Cloud.
//!
//! The credential of a database URL is never printed: a destination is shown
//! with `DatabaseUrl::redacted()`, and [`Destination::scrub`] removes the key
//! from every error message before it leaves the command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use latch_migrate::HttpResponse;
use latch_weblite::DatabaseUrl;

/// The `latch up` database label that migrations and admin changes apply to.
const DEFAULT_LABEL: &str = "default";

/// The variables a database URL is read from, in order, when no flag names
/// a database.
const URL_VARIABLES: [&str; 2] = ["DATABASE_URL", "SPIN_VARIABLE_DATABASE_URL"];

/// The flags that choose a database, shared by every command that needs one.
#[derive(clap::Args)]
pub struct DatabaseArgs {
    /// SQLite Cloud: sqlitecloud://HOST[:PORT]/DATABASE?apikey=KEY (or ?token=TOKEN),
    /// https://HOST/DATABASE?apikey=KEY, or http://127.0.0.1:PORT/DATABASE?apikey=KEY
    /// (loopback only, e.g. the stand-in). Without this flag, --database or --data-dir:
    /// $DATABASE_URL, then $SPIN_VARIABLE_DATABASE_URL, when set and not empty.
    #[arg(long, value_name = "URL", conflicts_with_all = ["database", "data_dir"])]
    pub database_url: Option<String>,
    /// An embedded SQLite file (`latch migrate` creates it when missing).
    #[arg(long, value_name = "PATH", conflicts_with = "data_dir")]
    pub database: Option<PathBuf>,
    /// The data directory of `latch up`: the default target is its `default`
    /// database, DATA_DIR/sqlite/default.db [default: .latch].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Timeout of one HTTP request to SQLite Cloud, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
}

impl DatabaseArgs {
    /// The timeout of one HTTP request, at least a second.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }
}

/// The database a command works on.
pub enum Destination {
    Cloud {
        url: DatabaseUrl,
        /// The flag or variable the URL came from.
        source: &'static str,
    },
    File(PathBuf),
}

impl Destination {
    /// `--database-url`, `--database`, `--data-dir`, then `$DATABASE_URL` and
    /// `$SPIN_VARIABLE_DATABASE_URL`, else the `default` database of `.latch`.
    pub fn choose(args: &DatabaseArgs) -> anyhow::Result<Destination> {
        if let Some(text) = &args.database_url {
            return Self::cloud(text, "--database-url");
        }
        if let Some(path) = &args.database {
            return Ok(Destination::File(path.clone()));
        }
        if let Some(dir) = &args.data_dir {
            return Ok(Destination::File(default_database(dir)));
        }
        for variable in URL_VARIABLES {
            if let Some(text) = std::env::var_os(variable) {
                let Some(text) = text.to_str() else {
                    bail!("${variable} is not valid UTF-8");
                };
                if !text.trim().is_empty() {
                    return Self::cloud(text, variable);
                }
            }
        }
        Ok(Destination::File(default_database(Path::new(".latch"))))
    }

    fn cloud(text: &str, source: &'static str) -> anyhow::Result<Destination> {
        // UrlError messages never carry the credential.
        let url = DatabaseUrl::parse(text)
            .map_err(|e| anyhow::anyhow!("invalid database URL in {source}: {e}"))?;
        Ok(Destination::Cloud { url, source })
    }

    /// How the destination is shown: `database: PATH` or
    /// `database: REDACTED-URL (from SOURCE)`.
    pub fn describe(&self) -> String {
        match self {
            Destination::Cloud { url, source } => {
                format!("database: {} (from {source})", url.redacted())
            }
            Destination::File(path) => format!("database: {}", path.display()),
        }
    }

    /// The credential, to scrub from messages.
    fn secret(&self) -> Option<String> {
        match self {
            Destination::Cloud { url, .. } => url
                .authorization_header()
                .strip_prefix("Bearer ")
                .map(str::to_owned),
            Destination::File(_) => None,
        }
    }

    /// Defence in depth: whatever produced an error's message, the key never
    /// shows. The error's chain is flattened into one message.
    pub fn scrub<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        let secret = self.secret();
        result.map_err(|e| {
            let message = format!("{e:#}");
            match secret.as_deref() {
                Some(secret) if message.contains(secret) => {
                    anyhow::anyhow!("{}", message.replace(secret, "REDACTED"))
                }
                _ => anyhow::anyhow!("{message}"),
            }
        })
    }
}

/// Refuses stray positional arguments (e.g. a URL without --database-url)
/// without echoing them: they may hold a credential. `usage` says what the
/// command takes, e.g. "`latch migrate` takes no positional arguments".
pub fn refuse_stray(stray: &[String], usage: &str) -> anyhow::Result<()> {
    if stray.is_empty() {
        return Ok(());
    }
    bail!(
        "unexpected argument (not shown: it may hold a credential); {usage}: give a database \
         URL with --database-url URL"
    )
}

/// `<data-dir>/sqlite/default.db`, named by the runner's own function.
pub fn default_database(data_dir: &Path) -> PathBuf {
    latch_runner::host::sqlite::database_path(data_dir, DEFAULT_LABEL)
}

/// POSTs with ureq (rustls), a global timeout per request, and statuses
/// returned rather than turned into errors. ureq's error messages name
/// neither headers nor (here) a URL with a credential: the key travels in the
/// Authorization header only.
pub fn ureq_transport(timeout: Duration) -> impl latch_migrate::Transport {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn args(url: Option<&str>) -> DatabaseArgs {
        DatabaseArgs {
            database_url: url.map(str::to_owned),
            database: None,
            data_dir: None,
            timeout: 0,
        }
    }

    #[test]
    fn a_cloud_destination_never_shows_its_key() {
        let destination =
            Destination::choose(&args(Some("http://127.0.0.1:1/auth?apikey=SeCrEt"))).unwrap();
        let shown = destination.describe();
        assert_eq!(
            shown,
            "database: http://127.0.0.1:1/auth?apikey=REDACTED (from --database-url)"
        );
        let scrubbed = destination
            .scrub::<()>(Err(anyhow::anyhow!("it said SeCrEt")))
            .unwrap_err();
        assert_eq!(scrubbed.to_string(), "it said REDACTED");
        assert_eq!(args(None).request_timeout(), Duration::from_secs(1));
    }

    #[test]
    fn an_invalid_url_is_refused_without_echoing_it() {
        let Err(err) = Destination::choose(&args(Some("ftp://h/db?apikey=SeCrEt"))) else {
            panic!("accepted")
        };
        let message = format!("{err:#}");
        assert!(message.contains("--database-url"), "{message}");
        assert!(!message.contains("SeCrEt"), "{message}");
    }

    #[test]
    fn stray_arguments_are_not_echoed() {
        refuse_stray(&[], "`latch migrate` takes none").unwrap();
        let err = refuse_stray(
            &["sqlitecloud://h/db?apikey=SeCrEt".into()],
            "`latch migrate` takes none",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("SeCrEt"), "{err}");
    }
}
