//! `latch migrate`: apply the ordered SQL files of `migrations/` to the
//! embedded `default` database of `latch up`, another SQLite file, or SQLite
//! Cloud over HTTP; and the start-up migration of `latch up`.
//!
//! The credential of a database URL is never printed: targets are shown with
//! `DatabaseUrl::redacted()`, and every error message is scrubbed of it
//! before it leaves this module.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use latch_migrate::{
    HttpResponse, HttpTarget, MigrationFile, Progress, SqliteTarget, State, StatusEntry, Target,
    load_dir, migrate, migration_status,
};
use latch_weblite::DatabaseUrl;

/// The `latch up` database label that migrations apply to.
const DEFAULT_LABEL: &str = "default";

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The application manifest: migrations default to `migrations/` beside it.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// The directory of `NNNN_name.sql` files [default: migrations/ beside the manifest].
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
    /// SQLite Cloud: sqlitecloud://HOST[:PORT]/DATABASE?apikey=KEY (or ?token=TOKEN),
    /// https://HOST/DATABASE?apikey=KEY, or http://127.0.0.1:PORT/DATABASE?apikey=KEY
    /// (loopback only, e.g. the stand-in). Without this flag, --database or --data-dir:
    /// $DATABASE_URL, then $SPIN_VARIABLE_DATABASE_URL, when set and not empty.
    #[arg(long, value_name = "URL", conflicts_with_all = ["database", "data_dir"])]
    pub database_url: Option<String>,
    /// An embedded SQLite file (created when missing).
    #[arg(long, value_name = "PATH", conflicts_with = "data_dir")]
    pub database: Option<PathBuf>,
    /// The data directory of `latch up`: the default target is its `default`
    /// database, DATA_DIR/sqlite/default.db [default: .latch].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// List applied and pending migrations; apply nothing.
    #[arg(long)]
    pub status: bool,
    /// Timeout of one HTTP request to SQLite Cloud, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    /// Stray arguments (e.g. a URL without --database-url), caught here so
    /// the error does not echo them: they may hold a credential.
    #[arg(hide = true)]
    pub stray: Vec<String>,
}

/// Where migrations go.
enum Destination {
    Cloud {
        url: DatabaseUrl,
        /// The flag or variable the URL came from.
        source: &'static str,
    },
    File(PathBuf),
}

impl Destination {
    fn choose(args: &MigrateArgs) -> anyhow::Result<Destination> {
        if let Some(text) = &args.database_url {
            return Self::cloud(text, "--database-url");
        }
        if let Some(path) = &args.database {
            return Ok(Destination::File(path.clone()));
        }
        if let Some(dir) = &args.data_dir {
            return Ok(Destination::File(default_database(dir)));
        }
        for variable in ["DATABASE_URL", "SPIN_VARIABLE_DATABASE_URL"] {
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
}

/// `<data-dir>/sqlite/default.db`, named by the runner's own function.
fn default_database(data_dir: &Path) -> PathBuf {
    latch_runner::host::sqlite::database_path(data_dir, DEFAULT_LABEL)
}

/// `--migrations`, else `migrations/` beside the manifest.
fn migrations_dir(manifest: &Path, migrations: Option<&Path>) -> PathBuf {
    match migrations {
        Some(dir) => dir.to_path_buf(),
        None => manifest
            .parent()
            .unwrap_or_else(|| Path::new(""))
            .join("migrations"),
    }
}

pub fn run(args: &MigrateArgs) -> anyhow::Result<()> {
    if !args.stray.is_empty() {
        bail!(
            "unexpected argument (not shown: it may hold a credential); `latch migrate` takes no \
             positional arguments: give a database URL with --database-url URL"
        );
    }
    let destination = Destination::choose(args)?;
    let secret = destination.secret();
    let result = run_on(args, &destination);
    // Defence in depth: whatever produced the message, the key never shows.
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

fn run_on(args: &MigrateArgs, destination: &Destination) -> anyhow::Result<()> {
    let dir = migrations_dir(&args.manifest, args.migrations.as_deref());
    let files = load_dir(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "migrations: {} ({} file{})",
        dir.display(),
        files.len(),
        plural(files.len())
    );
    match destination {
        Destination::Cloud { url, source } => {
            println!("database: {} (from {source})", url.redacted());
            let mut target = HttpTarget::new(
                url.clone(),
                ureq_transport(Duration::from_secs(args.timeout.max(1))),
            );
            if args.status {
                print_status(&mut target, &files)
            } else {
                apply_all(&mut target, &files)
            }
        }
        Destination::File(path) => {
            println!("database: {}", path.display());
            if args.status {
                if !path.exists() {
                    println!("(the database file does not exist yet)");
                    return print_entries(&latch_migrate::status(&[], &files));
                }
                let mut target =
                    SqliteTarget::open_existing(path).map_err(|e| anyhow::anyhow!("{e}"))?;
                print_status(&mut target, &files)
            } else {
                let mut target = SqliteTarget::open(path).map_err(|e| anyhow::anyhow!("{e}"))?;
                apply_all(&mut target, &files)
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Applies everything pending, printing `applying NAME ... ok (N ms)`.
fn apply_all(target: &mut dyn Target, files: &[MigrationFile]) -> anyhow::Result<()> {
    let report = migrate(target, files, &mut |progress| {
        let mut out = std::io::stdout().lock();
        let _ = match progress {
            Progress::Applying(m) => write!(out, "applying {} ... ", m.name),
            Progress::Applied { elapsed, .. } => writeln!(out, "ok ({} ms)", elapsed.as_millis()),
            Progress::Failed { elapsed, .. } => {
                writeln!(out, "FAILED ({} ms)", elapsed.as_millis())
            }
        };
        let _ = out.flush();
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if report.applied.is_empty() {
        println!(
            "nothing to apply: {} migration{} already applied",
            report.already_applied,
            plural(report.already_applied)
        );
    } else {
        println!(
            "{} migration{} applied ({} already applied before)",
            report.applied.len(),
            plural(report.applied.len()),
            report.already_applied
        );
    }
    Ok(())
}

fn print_status(target: &mut dyn Target, files: &[MigrationFile]) -> anyhow::Result<()> {
    let entries = migration_status(target, files).map_err(|e| anyhow::anyhow!("{e}"))?;
    print_entries(&entries)
}

/// One line per version, a summary, and an error when a problem would stop
/// `latch migrate`.
fn print_entries(entries: &[StatusEntry]) -> anyhow::Result<()> {
    let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    let (mut applied, mut pending) = (0, 0);
    for entry in entries {
        let state = match &entry.state {
            State::Applied { applied_at } => {
                applied += 1;
                format!("applied {}", format_unix_utc(*applied_at))
            }
            State::Pending => {
                pending += 1;
                "pending".to_owned()
            }
            State::Changed { applied_at, .. } => {
                applied += 1;
                format!(
                    "CHANGED since it was applied {}",
                    format_unix_utc(*applied_at)
                )
            }
            State::MissingFile { applied_at } => {
                applied += 1;
                format!("applied {}, FILE MISSING", format_unix_utc(*applied_at))
            }
            State::OutOfOrder { highest_applied } => {
                format!("OUT OF ORDER: not applied, but version {highest_applied} is")
            }
        };
        println!("{:<width$}  {state}", entry.name);
    }
    println!("{applied} applied, {pending} pending");
    let problems: Vec<String> = entries
        .iter()
        .filter_map(StatusEntry::problem)
        .map(|e| e.to_string())
        .collect();
    match problems.as_slice() {
        [] => Ok(()),
        [one] => bail!("{one}"),
        many => bail!(
            "{} problems stop `latch migrate`:\n  {}",
            many.len(),
            many.join("\n  ")
        ),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` from unix seconds (proleptic Gregorian).
fn format_unix_utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// POSTs with ureq (rustls), a global timeout per request, and statuses
/// returned rather than turned into errors. ureq's error messages name
/// neither headers nor (here) a URL with a credential: the key travels in the
/// Authorization header only.
fn ureq_transport(timeout: Duration) -> impl latch_migrate::Transport {
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

/// The start-up migration of `latch up`: applies pending migrations to the
/// embedded `default` database when the manifest and the migrations
/// directory exist (an explicit `--migrations` must exist), logging each file. Any error (a
/// changed applied file, a failing migration) stops start-up.
pub fn before_up(
    manifest: &Path,
    migrations: Option<&Path>,
    data_dir: &Path,
    skip: bool,
) -> anyhow::Result<()> {
    if skip {
        tracing::info!("migrations: skipped (--no-migrate)");
        return Ok(());
    }
    if !manifest.is_file() {
        // Loading the app reports it; create no database for a missing app.
        return Ok(());
    }
    let dir = migrations_dir(manifest, migrations);
    if migrations.is_none() && !dir.is_dir() {
        tracing::debug!("migrations: no {} directory", dir.display());
        return Ok(());
    }
    let files = load_dir(&dir).map_err(|e| anyhow::anyhow!("migrations: {e}"))?;
    let path = default_database(data_dir);
    let mut target = SqliteTarget::open(&path).map_err(|e| anyhow::anyhow!("migrations: {e}"))?;
    let report = migrate(&mut target, &files, &mut |progress| match progress {
        Progress::Applying(_) => {}
        Progress::Applied { migration, elapsed } => tracing::info!(
            "migrations: applied {} to {} ({} ms)",
            migration.name,
            path.display(),
            elapsed.as_millis()
        ),
        Progress::Failed { migration, .. } => {
            tracing::error!("migrations: {} failed", migration.name);
        }
    })
    .map_err(|e| anyhow::anyhow!("migrating {}: {e}", path.display()))?;
    if report.applied.is_empty() {
        tracing::info!(
            "migrations: {} up to date ({} applied)",
            path.display(),
            report.already_applied
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_unix_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_unix_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_unix_utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn migrations_dir_is_beside_the_manifest() {
        assert_eq!(
            migrations_dir(Path::new("spin.toml"), None),
            PathBuf::from("migrations")
        );
        assert_eq!(
            migrations_dir(Path::new("/app/spin.toml"), None),
            PathBuf::from("/app/migrations")
        );
        assert_eq!(
            migrations_dir(Path::new("/app/spin.toml"), Some(Path::new("db"))),
            PathBuf::from("db")
        );
    }
}
