//! SQLite Cloud over its HTTP API (Weblite), through an injected transport.
//!
//! Each request is its own connection upstream, so a migration is ONE
//! request: `BEGIN; <file>; INSERT INTO schema_migrations ...; COMMIT;`
//! followed by a read of the row just written, which confirms that the whole
//! text ran (only the last statement's result comes back). A failing
//! statement stops execution before COMMIT and the gateway's connection
//! closes, rolling the transaction back. The INSERT's values are inlined as
//! literals (binds across several statements are unconfirmed upstream).

use latch_weblite::{
    CONTENT_TYPE, DatabaseUrl, QueryResult, Statement, Value, WebliteError, decode_response,
    inline_params, single_request_body,
};

use crate::error::TargetError;
use crate::files::MigrationFile;
use crate::plan::AppliedMigration;
use crate::target::{
    CREATE_SCHEMA_MIGRATIONS, INSERT_APPLIED, SCHEMA_MIGRATIONS_EXISTS, SELECT_APPLIED, Target,
    applied_row,
};

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one POST. Any closure
/// `FnMut(url, headers, body) -> Result<HttpResponse, String>` is one.
pub trait Transport {
    /// POSTs `body` to `url` with `headers` and returns the status and body
    /// whatever the status. `Err` means no complete answer (timeout, refused
    /// or dropped connection); its message must not contain header values.
    fn post(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, String>;
}

impl<F> Transport for F
where
    F: FnMut(&str, &[(&str, &str)], &[u8]) -> Result<HttpResponse, String>,
{
    fn post(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, String> {
        self(url, headers, body)
    }
}

/// A SQLite Cloud database reached over HTTP.
pub struct HttpTarget<T> {
    url: DatabaseUrl,
    transport: T,
}

impl<T: Transport> HttpTarget<T> {
    pub fn new(url: DatabaseUrl, transport: T) -> HttpTarget<T> {
        HttpTarget { url, transport }
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Sends the text of a request (one statement, or a whole migration or
    /// batch whose values are already inlined) and decodes the answer: the
    /// last statement's result. Also how `latch admin` writes.
    pub fn send(&mut self, statement: &Statement) -> Result<QueryResult, TargetError> {
        let body = single_request_body(self.url.database(), statement)?;
        let authorization = self.url.authorization_header();
        let headers = [
            ("Authorization", authorization.as_str()),
            ("Content-Type", CONTENT_TYPE),
        ];
        let response = self
            .transport
            .post(&self.url.sql_url(), &headers, &body)
            .map_err(WebliteError::Transport)?;
        Ok(decode_response(response.status, &response.body)?)
    }
}

/// The SQL text of the one request that applies `migration`:
/// `BEGIN; <file>; INSERT INTO schema_migrations ...; COMMIT;` then a read of
/// the row written. The file's trailing `;`s and comments are dropped so
/// nothing empty or commented-out follows it; the statements inside are left
/// for the database to split.
pub fn migration_request_sql(
    migration: &MigrationFile,
    applied_at: i64,
) -> Result<String, TargetError> {
    let insert = inline_params(
        INSERT_APPLIED,
        &[
            Value::Integer(i64::from(migration.version)),
            Value::Text(migration.name.clone()),
            Value::Text(migration.checksum.clone()),
            Value::Integer(applied_at),
        ],
    )?;
    let confirm = inline_params(
        "SELECT version, checksum FROM schema_migrations WHERE version = ?",
        &[Value::Integer(i64::from(migration.version))],
    )?;
    let body = crate::sql::trim_tail(&migration.sql);
    let mut sql = String::with_capacity(body.len() + insert.len() + confirm.len() + 32);
    sql.push_str("BEGIN;\n");
    if !body.is_empty() {
        sql.push_str(body);
        sql.push_str(";\n");
    }
    sql.push_str(insert.trim());
    sql.push_str(";\nCOMMIT;\n");
    sql.push_str(confirm.trim());
    sql.push(';');
    Ok(sql)
}

fn integer(result: &QueryResult, row: usize, column: &str) -> Result<i64, TargetError> {
    match result.get(row, column) {
        Some(Value::Integer(n)) => Ok(*n),
        // A gateway may print an integral number as 2.0.
        Some(Value::Real(x)) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(*x as i64),
        Some(other) => Err(TargetError::BadRow(format!(
            "column {column} is {}, expected INTEGER",
            other.type_name()
        ))),
        None => Err(TargetError::BadRow(format!("no column {column}"))),
    }
}

fn text(result: &QueryResult, row: usize, column: &str) -> Result<String, TargetError> {
    match result.get(row, column) {
        Some(Value::Text(s)) => Ok(s.clone()),
        Some(other) => Err(TargetError::BadRow(format!(
            "column {column} is {}, expected TEXT",
            other.type_name()
        ))),
        None => Err(TargetError::BadRow(format!("no column {column}"))),
    }
}

impl<T: Transport> Target for HttpTarget<T> {
    fn describe(&self) -> String {
        self.url.redacted()
    }

    fn ensure_schema_migrations(&mut self) -> Result<(), TargetError> {
        self.send(&Statement::new(CREATE_SCHEMA_MIGRATIONS))?;
        Ok(())
    }

    fn applied(&mut self) -> Result<Vec<AppliedMigration>, TargetError> {
        let exists = self.send(&Statement::new(SCHEMA_MIGRATIONS_EXISTS))?;
        if integer(&exists, 0, "n")? == 0 {
            return Ok(Vec::new());
        }
        let result = self.send(&Statement::new(SELECT_APPLIED))?;
        (0..result.rows.len())
            .map(|row| {
                applied_row(
                    integer(&result, row, "version")?,
                    text(&result, row, "name")?,
                    text(&result, row, "checksum")?,
                    integer(&result, row, "applied_at")?,
                )
            })
            .collect()
    }

    fn apply(&mut self, migration: &MigrationFile, applied_at: i64) -> Result<(), TargetError> {
        let sql = migration_request_sql(migration, applied_at)?;
        let result = self.send(&Statement::new(sql))?;
        let confirmed = result.rows.len() == 1
            && integer(&result, 0, "version").ok() == Some(i64::from(migration.version))
            && text(&result, 0, "checksum").ok().as_deref() == Some(migration.checksum.as_str());
        if confirmed {
            Ok(())
        } else {
            Err(TargetError::Unconfirmed {
                version: migration.version,
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn migration(sql: &str) -> MigrationFile {
        MigrationFile::from_bytes("0007_x.sql", "0007_x.sql", sql.as_bytes()).unwrap()
    }

    #[test]
    fn request_text() {
        let m = migration("CREATE TABLE t (x TEXT); -- done\n");
        let sql = migration_request_sql(&m, 1_700_000_000).unwrap();
        let name_hex: String = "0007_x.sql".bytes().map(|b| format!("{b:02X}")).collect();
        assert_eq!(
            sql,
            format!(
                "BEGIN;\nCREATE TABLE t (x TEXT);\n\
                 INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ( 7 ,  CAST(X'{name_hex}' AS TEXT) ,  CAST(X'{}' AS TEXT) ,  1700000000 );\n\
                 COMMIT;\nSELECT version, checksum FROM schema_migrations WHERE version =  7;",
                m.checksum
                    .bytes()
                    .map(|b| format!("{b:02X}"))
                    .collect::<String>()
            )
        );
        let empty = migration("-- nothing yet\n");
        let sql = migration_request_sql(&empty, 0).unwrap();
        assert!(sql.starts_with("BEGIN;\nINSERT INTO"), "{sql}");
    }

    /// The request text runs in a real SQLite as one transaction, trigger
    /// included, and a failure leaves nothing behind.
    #[test]
    fn request_text_runs_in_sqlite() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(CREATE_SCHEMA_MIGRATIONS).unwrap();
        let initial = MigrationFile::from_bytes(
            "0001_initial.sql",
            "0001_initial.sql",
            include_bytes!("../../../migrations/0001_initial.sql"),
        )
        .unwrap();
        conn.execute_batch(&migration_request_sql(&initial, 5).unwrap())
            .unwrap();
        assert!(conn.is_autocommit());
        let n: i64 = conn
            .query_row("SELECT count(*) FROM roles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);

        let bad = migration("CREATE TABLE half (x); SELEC 1;");
        assert!(
            conn.execute_batch(&migration_request_sql(&bad, 6).unwrap())
                .is_err()
        );
        // Over HTTP the connection closes; here, roll back the same way.
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK").unwrap();
        }
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'half'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!((tables, rows), (0, 1));
    }

    /// A fake gateway: answers each request from a list, recording them.
    /// Each request: URL, headers, body.
    type Seen = std::rc::Rc<std::cell::RefCell<Vec<(String, Vec<(String, String)>, String)>>>;

    fn fake(answers: Vec<Result<HttpResponse, String>>) -> (impl Transport, Seen) {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let log = seen.clone();
        let mut answers = answers.into_iter();
        let transport = move |url: &str, headers: &[(&str, &str)], body: &[u8]| {
            log.borrow_mut().push((
                url.to_owned(),
                headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                String::from_utf8(body.to_vec()).unwrap(),
            ));
            answers
                .next()
                .unwrap_or_else(|| Err("no more answers".into()))
        };
        (transport, seen)
    }

    fn ok(body: &str) -> Result<HttpResponse, String> {
        Ok(HttpResponse {
            status: 200,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn reads_applied_rows_in_either_row_shape() {
        let url = DatabaseUrl::parse("https://h.example.sqlite.cloud/auth?apikey=SECRET").unwrap();
        let (transport, seen) = fake(vec![
            ok(r#"{"data": [{"n": 1}]}"#),
            ok(
                r#"{"data": [[1, "0001_a.sql", "abc", 17]], "metadata": {"columns": [{"name": "version"}, {"name": "name"}, {"name": "checksum"}, {"name": "applied_at"}]}}"#,
            ),
            ok(r#"{"data": [{"n": 0}]}"#),
        ]);
        let mut target = HttpTarget::new(url, transport);
        let rows = target.applied().unwrap();
        assert_eq!(
            rows,
            [AppliedMigration {
                version: 1,
                name: "0001_a.sql".into(),
                checksum: "abc".into(),
                applied_at: 17
            }]
        );
        assert!(target.applied().unwrap().is_empty());
        let seen = seen.borrow();
        assert_eq!(seen.len(), 3);
        let (url, headers, body) = &seen[0];
        assert_eq!(url, "https://h.example.sqlite.cloud/v2/weblite/sql");
        assert!(headers.contains(&("Authorization".into(), "Bearer SECRET".into())));
        assert!(headers.contains(&("Content-Type".into(), "application/json".into())));
        assert!(body.contains(r#""database":"auth""#), "{body}");
        assert!(!target.describe().contains("SECRET"));
    }

    #[test]
    fn apply_needs_the_confirming_row() {
        let url = DatabaseUrl::parse("https://h.example.sqlite.cloud/auth?apikey=SECRET").unwrap();
        let m = migration("CREATE TABLE t (x);");
        let good = format!(
            r#"{{"data": [{{"version": 7, "checksum": "{}"}}]}}"#,
            m.checksum
        );
        let (transport, seen) = fake(vec![
            ok(&good),
            ok(r#"{"data": {"changes": 0}}"#),
            Err("timed out".into()),
            Ok(HttpResponse {
                status: 400,
                body: br#"{"error": {"detail": "table t already exists", "errorCode": 1}}"#
                    .to_vec(),
            }),
        ]);
        let mut target = HttpTarget::new(url, transport);
        target.apply(&m, 1).unwrap();
        assert!(matches!(
            target.apply(&m, 1),
            Err(TargetError::Unconfirmed { version: 7 })
        ));
        assert!(matches!(
            target.apply(&m, 1),
            Err(TargetError::Weblite(WebliteError::Transport(_)))
        ));
        let err = target.apply(&m, 1).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let body: serde_json::Value = serde_json::from_str(&seen.borrow()[0].2).unwrap();
        let sql = body["sql"].as_str().unwrap();
        assert!(
            sql.starts_with("BEGIN;\nCREATE TABLE t (x);\nINSERT INTO schema_migrations"),
            "{sql}"
        );
        assert!(body.get("bind").is_none());
    }
}
