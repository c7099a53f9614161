//! An embedded SQLite file (rusqlite).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use crate::error::TargetError;
use crate::files::MigrationFile;
use crate::plan::AppliedMigration;
use crate::target::{
    CREATE_SCHEMA_MIGRATIONS, INSERT_APPLIED, SCHEMA_MIGRATIONS_EXISTS, SELECT_APPLIED, Target,
    applied_row,
};

/// How long to wait for another writer (e.g. a running `latch up`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An embedded SQLite database. Each migration runs as `BEGIN IMMEDIATE;`,
/// the file through SQLite's own statement splitting (`execute_batch`), the
/// `schema_migrations` INSERT, then `COMMIT`, rolled back on any error.
pub struct SqliteTarget {
    conn: Connection,
    path: PathBuf,
}

impl SqliteTarget {
    /// Opens the file, creating it and its directory when missing.
    pub fn open(path: &Path) -> Result<SqliteTarget, TargetError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| TargetError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        // WAL is a property of the file: every later connection, Spin's own
        // included (it sets no journal mode), then lets readers proceed while
        // one request writes, as `latch up` does. In the default rollback
        // journal, a reader blocks a writer, and under load Spin answered
        // "database is locked" where latch (WAL) did not.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::from_connection(conn, path)
    }

    /// Opens an existing file without creating anything (for a status).
    pub fn open_existing(path: &Path) -> Result<SqliteTarget, TargetError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Self::from_connection(Connection::open_with_flags(path, flags)?, path)
    }

    /// Wraps an open connection; `path` is only for messages.
    pub fn from_connection(conn: Connection, path: &Path) -> Result<SqliteTarget, TargetError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(SqliteTarget {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn into_connection(self) -> Connection {
        self.conn
    }

    fn apply_in_transaction(
        &self,
        migration: &MigrationFile,
        applied_at: i64,
    ) -> Result<(), TargetError> {
        self.conn.execute_batch(&migration.sql)?;
        // The files are checked for COMMIT/END/ROLLBACK, but never commit
        // half a migration whatever the checker missed.
        if self.conn.is_autocommit() {
            return Err(TargetError::TransactionEnded);
        }
        self.conn.execute(
            INSERT_APPLIED,
            params![
                migration.version,
                migration.name,
                migration.checksum,
                applied_at
            ],
        )?;
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }
}

impl Target for SqliteTarget {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn ensure_schema_migrations(&mut self) -> Result<(), TargetError> {
        self.conn.execute_batch(CREATE_SCHEMA_MIGRATIONS)?;
        Ok(())
    }

    fn applied(&mut self) -> Result<Vec<AppliedMigration>, TargetError> {
        let exists: i64 = self
            .conn
            .query_row(SCHEMA_MIGRATIONS_EXISTS, [], |row| row.get(0))?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        let mut statement = self.conn.prepare(SELECT_APPLIED)?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })?;
        let mut applied = Vec::new();
        for row in rows {
            let (version, name, checksum, applied_at) = row?;
            applied.push(applied_row(version, name, checksum, applied_at)?);
        }
        Ok(applied)
    }

    fn apply(&mut self, migration: &MigrationFile, applied_at: i64) -> Result<(), TargetError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = self.apply_in_transaction(migration, applied_at);
        if result.is_err() && !self.conn.is_autocommit() {
            // The error to report is the migration's; a failed ROLLBACK
            // leaves the connection to be dropped, which rolls back too.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }
}
