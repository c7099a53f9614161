//! `spin:sqlite/sqlite@3.0.0` on embedded SQLite files (rusqlite), one file per
//! database label under the data directory. A component may open only the
//! labels in its `sqlite_databases`; anything else is `access-denied`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use wasmtime::component::{HasSelf, Linker, Resource};

use super::InstanceState;
use crate::manifest::{ComponentDecl, Manifest};
use crate::telemetry::{InstanceTelemetry, SQLITE_OPEN};

mod bindings {
    wasmtime::component::bindgen!({
        inline: "package latch:host; world sqlite-host { import spin:sqlite/sqlite@3.0.0; }",
        path: "../../wit/deps/spin-sqlite",
        with: { "spin:sqlite/sqlite.connection": super::Connection },
        imports: { default: trappable },
    });
}

use bindings::spin::sqlite::sqlite::{self as wit, Error, QueryResult, RowResult, Value};

pub fn link(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
    wit::add_to_linker::<InstanceState, HasSelf<SqliteState>>(linker, |s| &mut s.sqlite)?;
    Ok(())
}

/// How long a statement waits for another writer before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept per database.
const MAX_IDLE: usize = 64;

/// The database files of an application, each with a pool of connections.
#[derive(Debug, Clone, Default)]
pub struct Databases {
    pools: HashMap<String, Arc<Pool>>,
}

impl Databases {
    /// Opens (creating if needed) every database label the manifest uses.
    pub fn open(data_dir: &Path, manifest: &Manifest) -> anyhow::Result<Databases> {
        let labels: BTreeSet<&str> = manifest
            .components
            .values()
            .flat_map(|c| c.sqlite_databases.iter().map(String::as_str))
            .collect();
        let mut pools = HashMap::new();
        for label in labels {
            let pool = Pool::open(database_path(data_dir, label))?;
            pools.insert(label.to_string(), Arc::new(pool));
        }
        Ok(Databases { pools })
    }

    pub fn path(&self, label: &str) -> Option<&Path> {
        self.pools.get(label).map(|p| p.path.as_path())
    }
}

/// Where a label's file lives: `<data-dir>/sqlite/<label>.db`.
pub fn database_path(data_dir: &Path, label: &str) -> PathBuf {
    data_dir.join("sqlite").join(format!("{label}.db"))
}

#[derive(Debug)]
pub struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Pool {
    fn open(path: PathBuf) -> anyhow::Result<Pool> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let pool = Pool {
            path,
            idle: Mutex::new(Vec::new()),
        };
        // Open once now so a bad path fails at start-up, not on the first request.
        let first = pool.connect()?;
        pool.release(first);
        Ok(pool)
    }

    fn connect(&self) -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(&self.path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets readers proceed while one request writes.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Without the query planner stability guarantee SQLite marks any
        // statement with a join for re-preparation whenever a bound value
        // changes, so the statement cache would parse and plan every query
        // again on every request. A plan that would have used a bound value
        // (a LIKE prefix, STAT4 samples) is only less specialised; results
        // are the same.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    fn acquire(self: &Arc<Self>) -> rusqlite::Result<PooledConnection> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        Ok(PooledConnection {
            conn: Some(conn),
            pool: self.clone(),
        })
    }

    fn release(&self, conn: rusqlite::Connection) {
        // A guest that trapped mid-transaction must not leave it open for the next one.
        if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }
}

/// A connection borrowed from a pool for the life of one guest resource.
pub struct Connection {
    conn: Option<rusqlite::Connection>,
    pool: Arc<Pool>,
}

type PooledConnection = Connection;

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.release(conn);
        }
    }
}

/// Per-component access: the labels it lists, and their pools.
pub struct SqliteConfig {
    allowed: Arc<HashMap<String, Arc<Pool>>>,
}

impl SqliteConfig {
    pub fn configure(databases: &Databases, decl: &ComponentDecl) -> anyhow::Result<SqliteConfig> {
        let mut allowed = HashMap::new();
        for label in &decl.sqlite_databases {
            let pool = databases
                .pools
                .get(label)
                .ok_or_else(|| anyhow::anyhow!("database `{label}` was not opened"))?;
            allowed.insert(label.clone(), pool.clone());
        }
        Ok(SqliteConfig {
            allowed: Arc::new(allowed),
        })
    }

    pub fn instance_state(&self, telemetry: &InstanceTelemetry) -> SqliteState {
        SqliteState {
            allowed: self.allowed.clone(),
            table: wasmtime::component::ResourceTable::new(),
            telemetry: telemetry.clone(),
        }
    }
}

/// The SQLite state of one instance: its open connections.
pub struct SqliteState {
    allowed: Arc<HashMap<String, Arc<Pool>>>,
    table: wasmtime::component::ResourceTable,
    /// Spin's `spin_sqlite.open` / `spin_sqlite.execute` client spans.
    telemetry: InstanceTelemetry,
}

impl SqliteState {
    fn connection(
        &mut self,
        handle: &Resource<Connection>,
    ) -> Result<&rusqlite::Connection, Error> {
        self.table
            .get(handle)
            .ok()
            .and_then(|c| c.conn.as_ref())
            .ok_or(Error::InvalidConnection)
    }
}

impl wit::Host for SqliteState {}

impl wit::HostConnection for SqliteState {
    fn open(&mut self, database: String) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        let opened = self.telemetry.sqlite(SQLITE_OPEN, || {
            let pool = self.allowed.get(&database).ok_or(Error::AccessDenied)?;
            pool.acquire().map_err(|e| Error::Io(e.to_string()))
        });
        match opened {
            Ok(conn) => Ok(Ok(self.table.push(conn)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    fn execute(
        &mut self,
        handle: Resource<Connection>,
        statement: String,
        parameters: Vec<Value>,
    ) -> wasmtime::Result<Result<QueryResult, Error>> {
        // Spin names the span after the statement.
        let telemetry = self.telemetry.clone();
        Ok(telemetry.sqlite(&statement, || {
            let conn = self.connection(&handle)?;
            execute(conn, &statement, &parameters)
        }))
    }

    fn last_insert_rowid(&mut self, handle: Resource<Connection>) -> wasmtime::Result<i64> {
        Ok(self
            .connection(&handle)
            .map(|c| c.last_insert_rowid())
            .unwrap_or(0))
    }

    fn changes(&mut self, handle: Resource<Connection>) -> wasmtime::Result<u64> {
        Ok(self.connection(&handle).map(|c| c.changes()).unwrap_or(0))
    }

    fn drop(&mut self, handle: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

struct Param<'a>(&'a Value);

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

fn execute(conn: &rusqlite::Connection, sql: &str, params: &[Value]) -> Result<QueryResult, Error> {
    let mut stmt = conn.prepare_cached(sql).map_err(to_error)?;
    if may_wait(conn, &stmt, sql) {
        // It may wait up to the busy timeout: let tokio move this worker's
        // other tasks to another thread meanwhile. The hand-over costs
        // context switches, so reads, most statements, skip it.
        tokio::task::block_in_place(|| run(&mut stmt, params))
    } else {
        run(&mut stmt, params)
    }
}

/// Whether running `stmt` may wait on another connection's lock. In WAL mode
/// a read outside a transaction does not; a write, `BEGIN` (which SQLite
/// counts as read-only although `BEGIN IMMEDIATE` takes the write lock) and
/// anything inside a transaction (up to its COMMIT) may.
fn may_wait(conn: &rusqlite::Connection, stmt: &rusqlite::Statement<'_>, sql: &str) -> bool {
    let begins_transaction = sql
        .trim_start()
        .get(..5)
        .is_some_and(|word| word.eq_ignore_ascii_case("begin"));
    !conn.is_autocommit() || !stmt.readonly() || begins_transaction
}

fn run(stmt: &mut rusqlite::Statement<'_>, params: &[Value]) -> Result<QueryResult, Error> {
    let columns: Vec<String> = stmt.column_names().map(String::from).collect();
    let width = columns.len();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter().map(Param)))
        .map_err(to_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(to_error)? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(match row.get_ref(i).map_err(to_error)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        out.push(RowResult { values });
    }
    Ok(QueryResult { columns, rows: out })
}

fn to_error(e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => Error::DatabaseFull,
        _ => Error::Io(e.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    fn pool() -> (tempfile::TempDir, Arc<Pool>) {
        let dir = tempfile::tempdir().unwrap();
        let pool = Arc::new(Pool::open(dir.path().join("t.db")).unwrap());
        (dir, pool)
    }

    const JOIN: &str = "SELECT s.id, u.name FROM sessions s JOIN users u ON u.id = s.user_id \
                        WHERE s.id = ? AND s.expires_at > ?";

    #[test]
    fn a_cached_join_is_not_prepared_again_when_its_values_change() {
        let (_dir, pool) = pool();
        let conn = pool.acquire().unwrap();
        let conn = conn.conn.as_ref().unwrap();
        conn.execute_batch(
            "CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT);
             CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id TEXT, expires_at INTEGER);
             INSERT INTO users VALUES ('u1', 'Ada');
             INSERT INTO sessions VALUES ('s1', 'u1', 100), ('s2', 'u1', 200);",
        )
        .unwrap();
        for (session, now) in [("s1", 50), ("s2", 150), ("s1", 60)] {
            let result = execute(
                conn,
                JOIN,
                &[Value::Text(session.into()), Value::Integer(now)],
            )
            .unwrap();
            assert_eq!(result.rows.len(), 1);
        }
        let stmt = conn.prepare_cached(JOIN).unwrap();
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
    }

    #[test]
    fn only_reads_outside_a_transaction_run_without_hand_over() {
        let (_dir, pool) = pool();
        let conn = pool.acquire().unwrap();
        let conn = conn.conn.as_ref().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let waits = |sql: &str| may_wait(conn, &conn.prepare(sql).unwrap(), sql);
        assert!(!waits("SELECT x FROM t"));
        assert!(!waits("  with c AS (SELECT 1) SELECT * FROM c"));
        assert!(waits("INSERT INTO t VALUES (1)"));
        assert!(waits("UPDATE t SET x = 2"));
        assert!(waits("BEGIN IMMEDIATE"));
        assert!(waits(" begin"));
        conn.execute_batch("BEGIN").unwrap();
        assert!(waits("SELECT x FROM t"));
        assert!(waits("COMMIT"));
        conn.execute_batch("COMMIT").unwrap();
    }
}
