//! The embedded database: Spin's `spin:sqlite` (a file the runtime owns).

use spin_sdk::sqlite3::{self, Connection};

use crate::{Database, Rows, Statement, StoreError, Value};

/// A connection to a `spin:sqlite` database label.
pub struct Embedded {
    conn: Connection,
}

impl Embedded {
    /// Opens the database with this label (`default` unless configured).
    pub fn open(label: &str) -> Result<Embedded, StoreError> {
        Connection::open(label)
            .map(|conn| Embedded { conn })
            .map_err(|e| match e {
                sqlite3::Error::AccessDenied | sqlite3::Error::NoSuchDatabase => {
                    StoreError::Misconfigured(format!("cannot open database `{label}`: {e:?}"))
                }
                other => {
                    StoreError::Unavailable(format!("cannot open database `{label}`: {other:?}"))
                }
            })
    }

    fn run(&self, statement: &Statement) -> Result<Rows, StoreError> {
        let params: Vec<sqlite3::Value> = statement.params.iter().map(to_sqlite).collect();
        let result = self
            .conn
            .execute(&statement.sql, &params)
            .map_err(from_sqlite)?;
        let rows = result
            .rows
            .into_iter()
            .map(|row| row.values.into_iter().map(from_sqlite_value).collect())
            .collect();
        Ok(Rows {
            columns: result.columns,
            rows,
        })
    }

    fn exec(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.execute(sql, &[]).map(|_| ()).map_err(from_sqlite)
    }
}

impl Database for Embedded {
    async fn query(&self, statement: &Statement) -> Result<Rows, StoreError> {
        self.run(statement)
    }

    async fn batch(
        &self,
        writes: &[Statement],
        then: Option<&Statement>,
    ) -> Result<Rows, StoreError> {
        // IMMEDIATE takes the write lock up front: two writers never deadlock
        // upgrading read locks, one simply waits for the other.
        self.exec("BEGIN IMMEDIATE")?;
        let outcome = (|| {
            for statement in writes {
                self.run(statement)?;
            }
            match then {
                Some(read) => self.run(read),
                None => Ok(Rows::default()),
            }
        })();
        match outcome {
            Ok(rows) => {
                self.exec("COMMIT")?;
                Ok(rows)
            }
            Err(e) => {
                // The connection goes back to the runtime's pool: leave it clean.
                let _ = self.exec("ROLLBACK");
                Err(e)
            }
        }
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

fn to_sqlite(value: &Value) -> sqlite3::Value {
    match value {
        Value::Null => sqlite3::Value::Null,
        Value::Integer(i) => sqlite3::Value::Integer(*i),
        Value::Real(f) => sqlite3::Value::Real(*f),
        Value::Text(s) => sqlite3::Value::Text(s.clone()),
    }
}

fn from_sqlite_value(value: sqlite3::Value) -> Value {
    match value {
        sqlite3::Value::Null => Value::Null,
        sqlite3::Value::Integer(i) => Value::Integer(i),
        sqlite3::Value::Real(f) => Value::Real(f),
        sqlite3::Value::Text(s) => Value::Text(s),
        // The schema stores no blobs; keep the bytes readable if one appears.
        sqlite3::Value::Blob(b) => Value::Text(String::from_utf8_lossy(&b).into_owned()),
    }
}

fn from_sqlite(error: sqlite3::Error) -> StoreError {
    match error {
        sqlite3::Error::Io(message) => classify_message(message),
        sqlite3::Error::DatabaseFull => StoreError::Unavailable("database full".into()),
        other => StoreError::Unavailable(format!("{other:?}")),
    }
}

/// SQLite reports constraint violations and lock timeouts as text.
pub(crate) fn classify_message(message: String) -> StoreError {
    if message.contains("UNIQUE constraint failed") || message.contains("PRIMARY KEY constraint") {
        StoreError::Conflict(message)
    } else if message.contains("database is locked")
        || message.contains("database is busy")
        || message.contains("disk I/O error")
        || message.contains("unable to open")
        // The schema is not there yet (migrations not applied): not ready, not a defect.
        || message.contains("no such table")
    {
        StoreError::Unavailable(message)
    } else {
        StoreError::Query(message)
    }
}
