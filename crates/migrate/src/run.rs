//! Applying a plan, with progress reporting.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::MigrateError;
use crate::files::MigrationFile;
use crate::plan::{StatusEntry, plan, status};
use crate::target::Target;

/// What [`migrate`] reports while it works.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// About to apply this migration.
    Applying(&'a MigrationFile),
    /// Applied and recorded.
    Applied {
        migration: &'a MigrationFile,
        elapsed: Duration,
    },
    /// Failed; nothing of it was kept. The error is what [`migrate`] returns.
    Failed {
        migration: &'a MigrationFile,
        elapsed: Duration,
    },
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// File names applied now, in order.
    pub applied: Vec<String>,
    /// How many were applied before this run.
    pub already_applied: usize,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Creates `schema_migrations` if missing, plans, then applies each pending
/// migration in its own transaction, in version order, stopping at the first
/// failure (migrations applied before it stay applied).
///
/// When a migration fails, `schema_migrations` is read again: if its version
/// is recorded now, someone else applied it at the same moment and the
/// error is [`MigrateError::AppliedConcurrently`].
pub fn migrate<T: Target + ?Sized>(
    target: &mut T,
    migrations: &[MigrationFile],
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Report, MigrateError> {
    target.ensure_schema_migrations()?;
    let applied = target.applied()?;
    let pending = plan(&applied, migrations)?;
    let mut report = Report {
        applied: Vec::new(),
        already_applied: applied.len(),
    };
    for migration in &pending {
        progress(Progress::Applying(migration));
        let started = Instant::now();
        let result = target.apply(migration, unix_now());
        let elapsed = started.elapsed();
        if let Err(source) = result {
            progress(Progress::Failed { migration, elapsed });
            let recorded_now = target
                .applied()
                .is_ok_and(|rows| rows.iter().any(|r| r.version == migration.version));
            return Err(if recorded_now {
                MigrateError::AppliedConcurrently {
                    version: migration.version,
                    name: migration.name.clone(),
                    source,
                }
            } else {
                MigrateError::Apply {
                    name: migration.name.clone(),
                    source,
                }
            });
        }
        progress(Progress::Applied { migration, elapsed });
        report.applied.push(migration.name.clone());
    }
    Ok(report)
}

/// The state of every version, without changing anything (not even creating
/// `schema_migrations`).
pub fn migration_status<T: Target + ?Sized>(
    target: &mut T,
    migrations: &[MigrationFile],
) -> Result<Vec<StatusEntry>, MigrateError> {
    let applied = target.applied()?;
    Ok(status(&applied, migrations))
}
