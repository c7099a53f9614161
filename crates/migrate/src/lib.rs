//! Ordered SQL migrations, for any SQLite: an embedded file, or SQLite Cloud
//! over HTTP. Knows nothing of the application: it applies `NNNN_name.sql`
//! files in version order and records each in `schema_migrations`.
//!
//! ```text
//! load_dir(dir) -> [MigrationFile]            (names checked, sorted, checksummed)
//! migrate(&mut target, &files, &mut progress)  (plan, then one transaction each)
//! migration_status(&mut target, &files)        (read-only)
//! ```
//!
//! - Files: `NNNN_name.sql`, ordered by the integer version. Any other entry
//!   ending in `.sql` is an error (a typo is never skipped silently), and so
//!   are duplicate versions. Checksum: lower-case hex SHA-256 of the bytes.
//! - Bookkeeping: `schema_migrations (version INTEGER PRIMARY KEY, name TEXT
//!   NOT NULL, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)`.
//! - Refused: an applied file that changed, an applied version without a
//!   file, an unapplied version below the highest applied one, and
//!   transaction-control statements in a file.
//! - Targets: [`SqliteTarget`] (rusqlite; `BEGIN IMMEDIATE`, the file through
//!   SQLite's own statement splitting, the INSERT, `COMMIT`) and
//!   [`HttpTarget`] (one Weblite request per migration, the HTTP client
//!   injected as a [`Transport`]).

#![forbid(unsafe_code)]

mod error;
mod files;
mod http;
mod plan;
mod run;
mod sql;
mod sqlite;
mod target;

pub use error::{MigrateError, TargetError};
pub use files::{MigrationFile, checksum, load_dir, parse_file_name, sort_and_check};
pub use http::{HttpResponse, HttpTarget, Transport, migration_request_sql};
pub use plan::{AppliedMigration, State, StatusEntry, plan, status};
pub use run::{Progress, Report, migrate, migration_status};
pub use sqlite::SqliteTarget;
pub use target::{CREATE_SCHEMA_MIGRATIONS, Target};
