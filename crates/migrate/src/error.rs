//! What can go wrong. Messages name files and checksums, never credentials:
//! database errors come from rusqlite or from `latch-weblite`, whose messages
//! carry neither keys nor parameter values.

use std::path::PathBuf;

use latch_weblite::{BuildError, WebliteError};

/// A migration run failed. Each message is complete on its own (sources are
/// part of it), so print it with `to_string()`.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot read the migrations directory {}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a migration file: {reason}", path.display())]
    BadFileName { path: PathBuf, reason: &'static str },
    #[error("{}: not valid UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    #[error(
        "{name}: holds a {keyword} statement; remove it: each migration already runs in a transaction of its own"
    )]
    TransactionControl { name: String, keyword: String },
    #[error("{first} and {second} have the same version {version}")]
    DuplicateVersion {
        version: u32,
        first: String,
        second: String,
    },
    #[error(
        "{name} has changed since it was applied (applied checksum {applied_checksum}, file checksum {file_checksum}): an applied migration must never change; restore the file and add a new migration instead"
    )]
    Changed {
        version: u32,
        name: String,
        applied_checksum: String,
        file_checksum: String,
    },
    #[error(
        "version {version} ({name}) is recorded as applied but no migration file has that version: restore the file"
    )]
    MissingFile { version: u32, name: String },
    #[error(
        "{name} (version {version}) is not applied but a later version ({highest_applied}) is: migrations apply in order; renumber it above {highest_applied}"
    )]
    OutOfOrder {
        version: u32,
        name: String,
        highest_applied: u32,
    },
    /// Reading or creating `schema_migrations`.
    #[error("{0}")]
    Database(#[from] TargetError),
    /// The migration failed and nothing of it was kept.
    #[error("{name} failed, nothing of it was applied: {source}")]
    Apply { name: String, source: TargetError },
    /// The migration failed here, but its version is recorded as applied now:
    /// someone else applied it at the same moment (the PRIMARY KEY on
    /// `schema_migrations.version` made this attempt fail and roll back), or
    /// this attempt committed and its answer was lost.
    #[error(
        "{name} failed here, but version {version} is now recorded as applied: another deployer applied it at the same time (or the answer to this attempt was lost); run the migration again to check and continue (this attempt's error: {source})"
    )]
    AppliedConcurrently {
        version: u32,
        name: String,
        source: TargetError,
    },
}

/// An error of a [`crate::Target`].
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Weblite(#[from] WebliteError),
    #[error("cannot build the request: {0}")]
    Build(#[from] BuildError),
    #[error("cannot create the directory {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// `schema_migrations` holds something this tool did not write.
    #[error("unexpected row in schema_migrations: {0}")]
    BadRow(String),
    /// The request returned without error but without the row it must have
    /// written either.
    #[error(
        "the database answered without error but did not confirm the schema_migrations row of version {version}"
    )]
    Unconfirmed { version: u32 },
    /// The migration ended the transaction it was running in.
    #[error("the migration ended its transaction itself (COMMIT, END or ROLLBACK)")]
    TransactionEnded,
}
