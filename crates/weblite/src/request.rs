//! Request bodies for `POST /v2/weblite/sql`.

use serde::Serialize;
use serde::ser::Serializer;

use crate::inline::{BuildError, inline_batch_statement};
use crate::value::{Statement, Value};

/// The path of the SQL endpoint, under the database origin.
pub const SQL_PATH: &str = "/v2/weblite/sql";

/// The `Content-Type` of every request body built here.
pub const CONTENT_TYPE: &str = "application/json";

#[derive(Serialize)]
struct SqlRequest<'a> {
    sql: &'a str,
    database: &'a str,
    /// Omitted when empty: whether the gateway treats `"bind": []` like no
    /// bind is unknown, and leaving it out is the documented plain form.
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    bind: &'a [Value],
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Integer(n) => serializer.serialize_i64(*n),
            Value::Real(x) => serializer.serialize_f64(*x),
            Value::Text(s) => serializer.serialize_str(s),
        }
    }
}

fn to_json(request: &SqlRequest<'_>) -> Vec<u8> {
    // Serialising plain strings and finite numbers cannot fail; fall back to an
    // empty body (which the gateway rejects) rather than panicking.
    serde_json::to_vec(request).unwrap_or_default()
}

/// The body for one statement with documented positional binds:
/// `{"sql": ..., "database": ..., "bind": [...]}`. Fails only on a NaN or
/// infinite REAL parameter, which JSON cannot carry.
pub fn single_request_body(database: &str, statement: &Statement) -> Result<Vec<u8>, BuildError> {
    if let Some(index) = statement
        .params
        .iter()
        .position(|v| matches!(v, Value::Real(x) if !x.is_finite()))
    {
        return Err(BuildError::NonFiniteReal { index });
    }
    Ok(to_json(&SqlRequest {
        sql: &statement.sql,
        database,
        bind: &statement.params,
    }))
}

/// The SQL text of a batch: `BEGIN; s1; s2; ...; COMMIT;` followed by the
/// optional trailing query, each statement's parameters inlined.
pub fn batch_sql(
    statements: &[Statement],
    trailing_query: Option<&Statement>,
) -> Result<String, BuildError> {
    if statements.is_empty() && trailing_query.is_none() {
        return Err(BuildError::EmptyBatch);
    }
    let mut sql = String::from("BEGIN;");
    for (index, statement) in statements.iter().enumerate() {
        let inlined =
            inline_batch_statement(&statement.sql, &statement.params).map_err(|source| {
                BuildError::InBatchStatement {
                    index,
                    source: Box::new(source),
                }
            })?;
        sql.push(' ');
        sql.push_str(&inlined);
        sql.push(';');
    }
    sql.push_str(" COMMIT;");
    if let Some(query) = trailing_query {
        let inlined = inline_batch_statement(&query.sql, &query.params).map_err(|source| {
            BuildError::InTrailingQuery {
                source: Box::new(source),
            }
        })?;
        sql.push(' ');
        sql.push_str(&inlined);
        sql.push(';');
    }
    Ok(sql)
}

/// The body for several statements run in one request, in one transaction:
/// `BEGIN; s1; s2; ...; COMMIT;` then optionally one read statement. The
/// gateway answers with the LAST statement's result only: the trailing
/// query's rows, or COMMIT's (empty) result without one. A failing statement
/// stops execution before COMMIT, and the transaction is rolled back when the
/// gateway closes the request's connection.
///
/// Binds across several statements are unconfirmed upstream, so the body has
/// no `bind`: parameters are inlined with [`crate::inline_params`]. Each
/// statement must be one statement (a trailing `;` is fine). Values never put
/// a `;` into the SQL text, but a `;` written in a statement's own string
/// literals would reach a gateway that splits naively: pass such text as a
/// parameter.
pub fn batch_request_body(
    database: &str,
    statements: &[Statement],
    trailing_query: Option<&Statement>,
) -> Result<Vec<u8>, BuildError> {
    let sql = batch_sql(statements, trailing_query)?;
    Ok(to_json(&SqlRequest {
        sql: &sql,
        database,
        bind: &[],
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: &[u8]) -> serde_json::Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn single_body_with_binds() {
        let statement = Statement::new("SELECT * FROM users WHERE email = ? AND n > ?")
            .bind("a@b.c")
            .bind(3)
            .bind(1.5)
            .bind(None::<i64>);
        let body = single_request_body("auth", &statement).unwrap();
        assert_eq!(
            parse(&body),
            json!({
                "sql": "SELECT * FROM users WHERE email = ? AND n > ?",
                "database": "auth",
                "bind": ["a@b.c", 3, 1.5, null],
            })
        );
    }

    #[test]
    fn single_body_without_binds_has_no_bind_key() {
        let body = single_request_body("auth", &Statement::new("SELECT 1")).unwrap();
        assert_eq!(parse(&body), json!({"sql": "SELECT 1", "database": "auth"}));
    }

    #[test]
    fn single_body_refuses_non_finite() {
        let statement = Statement::new("SELECT ?").bind(f64::INFINITY);
        assert_eq!(
            single_request_body("auth", &statement),
            Err(BuildError::NonFiniteReal { index: 0 })
        );
    }

    #[test]
    fn batch_body_inlines_and_wraps() {
        let statements = [
            Statement::new("INSERT INTO users (id, email) VALUES (?, ?);")
                .bind("u1")
                .bind("a@b.c"),
            Statement::new("UPDATE counters SET n = n + ? -- bump").bind(1),
        ];
        let query = Statement::new("SELECT id FROM users WHERE id = ?").bind("u1");
        let body = batch_request_body("auth", &statements, Some(&query)).unwrap();
        let json = parse(&body);
        assert_eq!(json["database"], "auth");
        assert!(json.get("bind").is_none());
        assert_eq!(
            json["sql"],
            "BEGIN; INSERT INTO users (id, email) VALUES ( CAST(X'7531' AS TEXT) ,  CAST(X'6140622E63' AS TEXT) ); \
             UPDATE counters SET n = n +  1; COMMIT; SELECT id FROM users WHERE id =  CAST(X'7531' AS TEXT);"
        );
    }

    #[test]
    fn batch_errors_name_the_statement() {
        let statements = [
            Statement::new("SELECT 1"),
            Statement::new("SELECT ?, ?").bind(1),
        ];
        let err = batch_request_body("db", &statements, None).unwrap_err();
        assert!(matches!(err, BuildError::InBatchStatement { index: 1, .. }));
        assert!(
            err.to_string().contains("2 `?` placeholders but 1"),
            "{err}"
        );

        let err =
            batch_request_body("db", &[], Some(&Statement::new("SELECT 1; SELECT 2"))).unwrap_err();
        assert!(matches!(err, BuildError::InTrailingQuery { .. }));
        assert_eq!(
            batch_request_body("db", &[], None),
            Err(BuildError::EmptyBatch)
        );
    }

    #[test]
    fn batch_sql_without_trailing_query() {
        let sql = batch_sql(&[Statement::new("DELETE FROM t")], None).unwrap();
        assert_eq!(sql, "BEGIN; DELETE FROM t; COMMIT;");
    }

    /// The batch text runs as intended in a real SQLite, and a failing
    /// statement leaves nothing behind once the connection closes.
    #[test]
    fn batch_sql_runs_in_sqlite() {
        let dir = std::env::temp_dir().join(format!("weblite-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.sqlite");
        let _ = std::fs::remove_file(&path);
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER)")
                .unwrap();
            let ok = batch_sql(
                &[
                    Statement::new("INSERT INTO t VALUES (?, ?)")
                        .bind("a;b")
                        .bind(1),
                    Statement::new("INSERT INTO t VALUES (?, ?)")
                        .bind("c'd")
                        .bind(2),
                ],
                Some(&Statement::new("SELECT count(*) FROM t")),
            )
            .unwrap();
            conn.execute_batch(&ok).unwrap();
            let failing = batch_sql(
                &[
                    Statement::new("INSERT INTO t VALUES (?, ?)")
                        .bind("new")
                        .bind(3),
                    Statement::new("INSERT INTO t VALUES (?, ?)")
                        .bind("a;b")
                        .bind(4),
                ],
                None,
            )
            .unwrap();
            assert!(conn.execute_batch(&failing).is_err());
        }
        let conn = rusqlite::Connection::open(&path).unwrap();
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM t ORDER BY n")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, ["a;b", "c'd"]);
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
