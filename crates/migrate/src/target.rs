//! Where migrations are applied: one small trait, two implementations.

use crate::error::TargetError;
use crate::files::MigrationFile;
use crate::plan::AppliedMigration;

/// The bookkeeping table, created when missing.
pub const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
version INTEGER PRIMARY KEY, \
name TEXT NOT NULL, \
checksum TEXT NOT NULL, \
applied_at INTEGER NOT NULL)";

pub(crate) const SCHEMA_MIGRATIONS_EXISTS: &str = "SELECT count(*) AS n FROM sqlite_master \
WHERE type = 'table' AND name = 'schema_migrations'";

pub(crate) const SELECT_APPLIED: &str =
    "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version";

/// A plain INSERT: the PRIMARY KEY on `version` makes a second attempt at the
/// same version (two deployers at once) fail, and its transaction with it.
pub(crate) const INSERT_APPLIED: &str =
    "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)";

/// A database that migrations are applied to.
pub trait Target {
    /// What is migrated, for messages: a file path, or a redacted URL.
    fn describe(&self) -> String;

    /// Creates `schema_migrations` when it does not exist.
    fn ensure_schema_migrations(&mut self) -> Result<(), TargetError>;

    /// The rows of `schema_migrations` by version; none when the table does
    /// not exist (nothing is created).
    fn applied(&mut self) -> Result<Vec<AppliedMigration>, TargetError>;

    /// Runs the migration's SQL and inserts its `schema_migrations` row in
    /// one transaction: on error nothing of it is kept.
    fn apply(&mut self, migration: &MigrationFile, applied_at: i64) -> Result<(), TargetError>;
}

impl<T: Target + ?Sized> Target for &mut T {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn ensure_schema_migrations(&mut self) -> Result<(), TargetError> {
        (**self).ensure_schema_migrations()
    }
    fn applied(&mut self) -> Result<Vec<AppliedMigration>, TargetError> {
        (**self).applied()
    }
    fn apply(&mut self, migration: &MigrationFile, applied_at: i64) -> Result<(), TargetError> {
        (**self).apply(migration, applied_at)
    }
}

/// A `schema_migrations` row from its four values.
pub(crate) fn applied_row(
    version: i64,
    name: String,
    checksum: String,
    applied_at: i64,
) -> Result<AppliedMigration, TargetError> {
    let version = u32::try_from(version)
        .map_err(|_| TargetError::BadRow(format!("version {version} is out of range")))?;
    Ok(AppliedMigration {
        version,
        name,
        checksum,
        applied_at,
    })
}
