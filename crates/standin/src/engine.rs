//! Running SQL the way the gateway documents it: one connection per request,
//! statements in order, stop at the first error, only the last result kept.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Batch, Connection, OpenFlags};

/// How long a request waits for another request's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLITE_RANGE: a bind index or count that does not fit the statement.
const SQLITE_RANGE: i32 = 25;
/// SQLITE_ERROR: the generic error.
const SQLITE_ERROR: i32 = 1;

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub declared_type: Option<String>,
}

/// The result of the last statement of a request.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Empty for statements without result columns (INSERT, DDL, COMMIT...).
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<SqlValue>>,
    pub changes: u64,
    pub total_changes: u64,
    pub last_insert_rowid: i64,
    pub connected: Duration,
    pub executed: Duration,
}

impl Outcome {
    pub fn has_result_columns(&self) -> bool {
        !self.columns.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An SQLite error, with its extended result code.
    #[error("{message}")]
    Sqlite {
        code: i32,
        message: String,
        offset: i32,
    },
    #[error("database not found")]
    UnknownDatabase,
    #[error(
        "bind is only supported with a single statement (binds across several statements are unconfirmed upstream)"
    )]
    BindWithSeveralStatements,
    #[error("no SQL statement to run")]
    NoStatement,
}

impl From<rusqlite::Error> for EngineError {
    fn from(err: rusqlite::Error) -> Self {
        match err {
            rusqlite::Error::SqliteFailure(error, message) => EngineError::Sqlite {
                code: error.extended_code,
                message: message.unwrap_or_else(|| error.to_string()),
                offset: -1,
            },
            rusqlite::Error::SqlInputError {
                error, msg, offset, ..
            } => EngineError::Sqlite {
                code: error.extended_code,
                message: msg,
                offset,
            },
            rusqlite::Error::InvalidParameterCount(given, expected) => EngineError::Sqlite {
                code: SQLITE_RANGE,
                message: format!("{given} values bound for {expected} parameters"),
                offset: -1,
            },
            other => EngineError::Sqlite {
                code: SQLITE_ERROR,
                message: other.to_string(),
                offset: -1,
            },
        }
    }
}

/// Database names map to files in the data directory: keep them to a safe
/// alphabet so no name can escape it.
pub fn database_path(data_dir: &Path, database: &str) -> Option<PathBuf> {
    let valid = !database.is_empty()
        && database.len() <= 128
        && !database.starts_with('.')
        && database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    valid.then(|| data_dir.join(format!("{database}.sqlite")))
}

/// Creates an empty database in WAL mode (WAL persists in the file, so every
/// later connection gets concurrent readers with one writer).
pub fn create_database(path: &Path) -> Result<bool, EngineError> {
    if path.exists() {
        return Ok(false);
    }
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    Ok(true)
}

pub fn delete_database(path: &Path) -> Result<bool, std::io::Error> {
    if !path.exists() {
        return Ok(false);
    }
    std::fs::remove_file(path)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(PathBuf::from(side)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(true)
}

/// Runs `sql` (one or several `;`-separated statements) on a fresh connection
/// that is closed before returning, so an unfinished transaction is rolled
/// back and nothing spans two requests. Statements run one after another,
/// holding no lock between a `COMMIT` and the next statement; `commit_gap`
/// pauses there, so tests can let other requests in.
pub fn execute(
    path: &Path,
    sql: &str,
    binds: &[SqlValue],
    commit_gap: Duration,
) -> Result<Outcome, EngineError> {
    let started = Instant::now();
    if !path.is_file() {
        return Err(EngineError::UnknownDatabase);
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let connected = started.elapsed();

    let mut batch = Batch::new(&conn, sql);
    let mut last: Option<Outcome> = None;
    if binds.is_empty() {
        // Prepared one at a time, after the previous one ran: a statement
        // may use a table the previous one created.
        while let Some(mut statement) = batch.next()? {
            let in_transaction = !conn.is_autocommit();
            last = Some(run(&conn, &mut statement, &[])?);
            if in_transaction && conn.is_autocommit() && !commit_gap.is_zero() {
                std::thread::sleep(commit_gap);
            }
        }
    } else {
        let Some(mut statement) = batch.next()? else {
            return Err(EngineError::NoStatement);
        };
        // Any second statement, even one that fails to prepare, is refused.
        if !matches!(batch.next(), Ok(None)) {
            return Err(EngineError::BindWithSeveralStatements);
        }
        last = Some(run(&conn, &mut statement, binds)?);
    }
    let mut outcome = last.ok_or(EngineError::NoStatement)?;
    outcome.connected = connected;
    outcome.executed = started.elapsed().saturating_sub(connected);
    Ok(outcome)
}

fn run(
    conn: &Connection,
    statement: &mut rusqlite::Statement<'_>,
    binds: &[SqlValue],
) -> Result<Outcome, EngineError> {
    let expected = statement.parameter_count();
    if binds.len() != expected {
        return Err(EngineError::Sqlite {
            code: SQLITE_RANGE,
            message: format!("{} values bound for {expected} parameters", binds.len()),
            offset: -1,
        });
    }
    for (index, value) in binds.iter().enumerate() {
        statement.raw_bind_parameter(index + 1, value)?;
    }
    let columns: Vec<Column> = statement
        .columns()
        .map(|c| Column {
            name: c.name().to_owned(),
            declared_type: c.decl_type().map(str::to_owned),
        })
        .collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut cursor = statement.raw_query();
    while let Some(row) = cursor.next()? {
        let values = (0..width)
            .map(|i| row.get_ref(i).map(to_owned_value))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(values);
    }
    Ok(Outcome {
        columns,
        rows,
        changes: conn.changes(),
        total_changes: conn.total_changes(),
        last_insert_rowid: conn.last_insert_rowid(),
        ..Outcome::default()
    })
}

fn to_owned_value(value: ValueRef<'_>) -> SqlValue {
    match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(n) => SqlValue::Integer(n),
        ValueRef::Real(x) => SqlValue::Real(x),
        ValueRef::Text(bytes) => SqlValue::Text(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Blob(bytes) => SqlValue::Blob(bytes.to_vec()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Without a commit gap, as the server runs unless configured.
    fn execute(path: &Path, sql: &str, binds: &[SqlValue]) -> Result<Outcome, EngineError> {
        super::execute(path, sql, binds, Duration::ZERO)
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("standin-engine-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn setup(name: &str) -> (TempDir, PathBuf) {
        let dir = TempDir::new(name);
        let path = database_path(&dir.0, "db").unwrap();
        assert!(create_database(&path).unwrap());
        assert!(!create_database(&path).unwrap());
        (dir, path)
    }

    #[test]
    fn names_cannot_escape_the_data_dir() {
        let dir = Path::new("/data");
        assert!(database_path(dir, "auth.db-1_x").is_some());
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", "a\\b", "é"] {
            assert!(database_path(dir, bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn runs_statements_and_returns_the_last() {
        let (_dir, path) = setup("last");
        let out = execute(
            &path,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a;b'); SELECT id, v FROM t",
            &[],
        )
        .unwrap();
        assert_eq!(out.columns.len(), 2);
        assert_eq!(out.columns[1].declared_type.as_deref(), Some("TEXT"));
        assert_eq!(
            out.rows,
            [vec![SqlValue::Integer(1), SqlValue::Text("a;b".into())]]
        );
        let out = execute(
            &path,
            "INSERT INTO t (v) VALUES (?)",
            &[SqlValue::Text("c".into())],
        )
        .unwrap();
        assert!(!out.has_result_columns());
        assert_eq!((out.changes, out.last_insert_rowid), (1, 2));
    }

    #[test]
    fn stops_at_first_error_and_rolls_back_open_transactions() {
        let (_dir, path) = setup("rollback");
        execute(&path, "CREATE TABLE t (id INTEGER PRIMARY KEY)", &[]).unwrap();
        let err = execute(
            &path,
            "BEGIN; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1); COMMIT;",
            &[],
        )
        .unwrap_err();
        assert!(
            matches!(err, EngineError::Sqlite { code: 1555, .. }),
            "{err:?}"
        );
        let out = execute(&path, "SELECT count(*) FROM t", &[]).unwrap();
        assert_eq!(out.rows, [vec![SqlValue::Integer(0)]]);
    }

    #[test]
    fn binds_only_with_one_statement() {
        let (_dir, path) = setup("binds");
        let one = [SqlValue::Integer(1)];
        assert!(matches!(
            execute(&path, "SELECT ?; SELECT 2", &one),
            Err(EngineError::BindWithSeveralStatements)
        ));
        assert!(matches!(
            execute(&path, "SELECT ?; SELECT * FROM missing", &one),
            Err(EngineError::BindWithSeveralStatements)
        ));
        assert!(execute(&path, "SELECT ?; -- just a comment", &one).is_ok());
        assert!(matches!(
            execute(&path, "SELECT ?, ?", &one),
            Err(EngineError::Sqlite {
                code: SQLITE_RANGE,
                ..
            })
        ));
    }

    #[test]
    fn unknown_database_and_empty_sql() {
        let (dir, path) = setup("unknown");
        let other = database_path(&dir.0, "nope").unwrap();
        assert!(matches!(
            execute(&other, "SELECT 1", &[]),
            Err(EngineError::UnknownDatabase)
        ));
        assert!(!other.exists());
        assert!(matches!(
            execute(&path, " ; -- nothing", &[]),
            Err(EngineError::NoStatement)
        ));
    }

    #[test]
    fn syntax_errors_carry_the_offset() {
        let (_dir, path) = setup("syntax");
        let err = execute(&path, "SELEC 1", &[]).unwrap_err();
        let EngineError::Sqlite { code, offset, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!((code, offset), (1, 0));
    }
}
