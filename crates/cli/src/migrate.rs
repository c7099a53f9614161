//! `latch migrate`: apply the ordered SQL files of `migrations/` to the
//! embedded `default` database of `latch up`, another SQLite file, or SQLite
//! Cloud over HTTP; and the start-up migration of `latch up`.
//!
//! The credential of a database URL is never printed: the destination
//! ([`crate::database`]) shows it redacted and scrubs every error message of
//! it before it leaves this module.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::bail;
use latch_migrate::{
    HttpTarget, MigrationFile, Progress, SqliteTarget, State, StatusEntry, Target, load_dir,
    migrate, migration_status,
};

use crate::database::{DatabaseArgs, Destination, default_database, refuse_stray, ureq_transport};

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The application manifest: migrations default to `migrations/` beside it.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// The directory of `NNNN_name.sql` files [default: migrations/ beside the manifest].
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
    /// Where migrations go; an embedded file is created when missing.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// List applied and pending migrations; apply nothing.
    #[arg(long)]
    pub status: bool,
    /// Stray arguments (e.g. a URL without --database-url), caught here so
    /// the error does not echo them: they may hold a credential.
    #[arg(hide = true)]
    pub stray: Vec<String>,
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
    refuse_stray(&args.stray, "`latch migrate` takes no positional arguments")?;
    let destination = Destination::choose(&args.database)?;
    destination.scrub(run_on(args, &destination))
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
    println!("{}", destination.describe());
    match destination {
        Destination::Cloud { url, .. } => {
            let mut target =
                HttpTarget::new(url.clone(), ureq_transport(args.database.request_timeout()));
            if args.status {
                print_status(&mut target, &files)
            } else {
                apply_all(&mut target, &files)
            }
        }
        Destination::File(path) => {
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
