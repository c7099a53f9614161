//! The stand-in's Weblite endpoints, driven by the real client code of
//! `latch-weblite` (request builders and `decode_response`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{API_KEY, StandIn, encode, text};
use latch_weblite::{ConstraintKind, QueryResult, Statement, Value, WebliteError, decode_response};
use serde_json::json;

const USERS_DDL: &str = "CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    logins INTEGER NOT NULL DEFAULT 0,
    score REAL
)";

fn with_users(standin: &StandIn, database: &str) {
    standin.create_database(database);
    standin.exec(database, USERS_DDL).unwrap();
}

fn insert_user(id: &str, email: &str) -> Statement {
    Statement::new("INSERT INTO users (id, email) VALUES (?, ?)")
        .bind(id)
        .bind(email)
}

fn count_users(standin: &StandIn, database: &str) -> i64 {
    let result = standin
        .exec(database, "SELECT count(*) AS n FROM users")
        .unwrap();
    result.get(0, "n").and_then(Value::as_i64).unwrap()
}

#[test]
fn health_needs_no_auth_but_everything_else_does() {
    let standin = StandIn::start();
    let (status, body) = standin.call("GET", "/v2/health", None);
    assert_eq!(status, 200);
    assert!(decode_response(status, &body).is_ok());

    standin.create_database("auth");
    for authorization in [None, Some("Bearer wrong-key"), Some("Basic dXNlcjpwYXNz")] {
        let (status, body) = standin.post_sql_raw_with(
            &standin.agent,
            br#"{"sql": "SELECT 1", "database": "auth"}"#,
            authorization,
        );
        assert_eq!(status, 401);
        let err = decode_response(status, &body).unwrap_err();
        assert_eq!(err, WebliteError::Unauthorized { status: 401 });
        assert!(err.is_unavailable());
    }
    // The connection string as the bearer value.
    let (status, body) = standin.post_sql_raw_with(
        &standin.agent,
        br#"{"sql": "SELECT 1 AS one", "database": "auth"}"#,
        Some(&format!(
            "Bearer sqlitecloud://127.0.0.1:8860?apikey={API_KEY}"
        )),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        decode_response(status, &body).unwrap().get(0, "one"),
        Some(&Value::Integer(1))
    );
    for (method, path) in [
        ("GET", "/v2/weblite/databases"),
        ("POST", "/v2/weblite/other"),
        ("DELETE", "/v2/weblite/auth"),
        ("GET", "/v2/info"),
    ] {
        let (status, _) = standin.call(method, path, None);
        assert_eq!(status, 401, "{method} {path}");
        let (status, _) = standin.call(method, path, Some("nope"));
        assert_eq!(status, 401, "{method} {path}");
    }
    // The new error format for 401 too.
    standin.set_config(json!({"errors": "new"}));
    let (status, body) = standin.call("GET", "/v2/weblite/databases", None);
    assert_eq!(status, 401);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(json["errors"][0]["meta"]["errorCode"].is_number(), "{json}");
    assert_eq!(
        decode_response(status, &body).unwrap_err(),
        WebliteError::Unauthorized { status: 401 }
    );
}

#[test]
fn database_lifecycle() {
    let standin = StandIn::start();
    standin.create_database("alpha");
    standin.create_database("beta.sqlite");
    let (status, body) = standin.call("POST", "/v2/weblite/alpha", Some(API_KEY));
    assert_eq!(status, 409);
    assert!(matches!(
        decode_response(status, &body),
        Err(WebliteError::Gateway {
            code: Some(10004),
            ..
        })
    ));

    let (status, body) = standin.call("GET", "/v2/weblite/databases", Some(API_KEY));
    let listed = decode_response(status, &body).unwrap();
    assert_eq!(listed.columns, ["name"]);
    assert_eq!(
        listed.rows,
        [vec![text("alpha")], vec![text("beta.sqlite")]]
    );

    // Unknown databases are an error, and are not created by accident.
    let err = standin.exec("gamma", "SELECT 1").unwrap_err();
    assert!(
        matches!(
            err,
            WebliteError::Gateway {
                code: Some(10002),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_unavailable());
    assert!(!standin.dir.join("data/gamma.sqlite").exists());

    let (status, _) = standin.call("POST", "/v2/weblite/..%2Fescape", Some(API_KEY));
    assert_eq!(status, 400);
    let (status, body) = standin.post_sql_raw(br#"{"sql": "SELECT 1", "database": "../x"}"#);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));

    let (status, _) = standin.call("DELETE", "/v2/weblite/alpha", Some(API_KEY));
    assert_eq!(status, 200);
    let (status, _) = standin.call("DELETE", "/v2/weblite/alpha", Some(API_KEY));
    assert_eq!(status, 404);
    assert!(standin.exec("alpha", "SELECT 1").is_err());
    let (status, body) = standin.call("GET", "/v2/weblite/databases", Some(API_KEY));
    assert_eq!(
        decode_response(status, &body).unwrap().rows,
        [vec![text("beta.sqlite")]]
    );
}

#[test]
fn single_statements_with_binds() {
    let standin = StandIn::start();
    with_users(&standin, "auth");
    let inserted = standin
        .run("auth", &insert_user("u1", "a@example.com"))
        .unwrap();
    assert!(inserted.rows.is_empty());
    assert_eq!(inserted.changes, Some(1));
    standin
        .run(
            "auth",
            &Statement::new("INSERT INTO users (id, email, logins, score) VALUES (?, ?, ?, ?)")
                .bind("u2")
                .bind("b@example.com")
                .bind(7)
                .bind(2.5),
        )
        .unwrap();

    let result = standin
        .run(
            "auth",
            &Statement::new(
                "SELECT id, email, logins, score FROM users WHERE logins >= ? ORDER BY id",
            )
            .bind(0),
        )
        .unwrap();
    assert_eq!(result.columns, ["id", "email", "logins", "score"]);
    assert_eq!(
        result.rows,
        [
            vec![
                text("u1"),
                text("a@example.com"),
                Value::Integer(0),
                Value::Null
            ],
            vec![
                text("u2"),
                text("b@example.com"),
                Value::Integer(7),
                Value::Real(2.5)
            ],
        ]
    );

    // RETURNING sidesteps the write-result shape question.
    let returned = standin
        .run(
            "auth",
            &Statement::new("UPDATE users SET logins = logins + 1 WHERE id = ? RETURNING logins")
                .bind("u2"),
        )
        .unwrap();
    assert_eq!(returned.rows, [vec![Value::Integer(8)]]);

    // Constraint violations, in both error formats.
    for format in ["old", "new"] {
        standin.set_config(json!({"errors": format}));
        let err = standin
            .run("auth", &insert_user("u3", "a@example.com"))
            .unwrap_err();
        assert!(err.is_unique_violation(), "{format}: {err:?}");
        assert!(!err.is_unavailable());
        let err = standin
            .run("auth", &insert_user("u1", "new@example.com"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                WebliteError::Constraint {
                    kind: ConstraintKind::PrimaryKey,
                    ..
                }
            ),
            "{format}: {err:?}"
        );
        let err = standin
            .run(
                "auth",
                &Statement::new("INSERT INTO users (id, email) VALUES (?, ?)")
                    .bind("u9")
                    .bind(None::<&str>),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                WebliteError::Constraint {
                    kind: ConstraintKind::NotNull,
                    ..
                }
            ),
            "{format}: {err:?}"
        );
        let err = standin.exec("auth", "SELEC nothing").unwrap_err();
        assert!(
            matches!(err, WebliteError::Sql { code: 1, .. }),
            "{format}: {err:?}"
        );
        let err = standin
            .exec("auth", "SELECT * FROM missing_table")
            .unwrap_err();
        assert!(
            matches!(err, WebliteError::Sql { code: 1, .. }),
            "{format}: {err:?}"
        );
        // A bind count that does not fit the statement.
        let err = standin
            .run("auth", &Statement::new("SELECT ?, ?").bind(1))
            .unwrap_err();
        assert!(
            matches!(err, WebliteError::Sql { code: 25, .. }),
            "{format}: {err:?}"
        );
    }
    assert_eq!(count_users(&standin, "auth"), 2);
}

#[test]
fn multi_statement_requests() {
    let standin = StandIn::start();
    with_users(&standin, "auth");

    // Several statements: only the last result comes back; `;` inside a
    // literal does not split.
    let result = standin
        .exec(
            "auth",
            "INSERT INTO users (id, email) VALUES ('a;1', 'x;y@example.com'); SELECT id, email FROM users; SELECT 'last;one' AS v",
        )
        .unwrap();
    assert_eq!(result.rows, [vec![text("last;one")]]);
    assert_eq!(count_users(&standin, "auth"), 1);

    // Execution stops at the first error: statements before it stay
    // (autocommit), statements after it never run.
    let err = standin
        .exec(
            "auth",
            "INSERT INTO users (id, email) VALUES ('b', 'b@example.com');
             INSERT INTO users (id, email) VALUES ('c', 'x;y@example.com');
             INSERT INTO users (id, email) VALUES ('d', 'd@example.com');",
        )
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err:?}");
    let ids = standin
        .exec("auth", "SELECT id FROM users ORDER BY id")
        .unwrap();
    assert_eq!(ids.rows, [vec![text("a;1")], vec![text("b")]]);

    // An unfinished BEGIN ... batch is rolled back when the request ends.
    let err = standin
        .exec(
            "auth",
            "BEGIN; INSERT INTO users (id, email) VALUES ('e', 'e@example.com');
             INSERT INTO users (id, email) VALUES ('f', 'b@example.com'); COMMIT;",
        )
        .unwrap_err();
    assert!(err.is_unique_violation());
    assert_eq!(count_users(&standin, "auth"), 2);
    // Even a batch that leaves a transaction open without an error.
    standin
        .exec(
            "auth",
            "BEGIN; INSERT INTO users (id, email) VALUES ('g', 'g@example.com')",
        )
        .unwrap();
    assert_eq!(count_users(&standin, "auth"), 2);
    // And the next request can write: no lock was left behind.
    standin
        .run("auth", &insert_user("h", "h@example.com"))
        .unwrap();
    assert_eq!(count_users(&standin, "auth"), 3);
}

#[test]
fn client_batches_with_inlined_parameters() {
    let standin = StandIn::start();
    with_users(&standin, "auth");
    let nasty = [
        "it's",
        "a\"b",
        "semi;colon; COMMIT; DROP TABLE users; --",
        "/* not a comment */",
        "-- not a comment",
        "?",
        "",
        "naïve 日本語 🦀",
        "line\nbreak\ttab",
    ];
    let statements: Vec<Statement> = nasty
        .iter()
        .enumerate()
        .map(|(i, value)| insert_user(&format!("n{i}"), value))
        .collect();
    let query = Statement::new("SELECT email FROM users WHERE id LIKE ? ORDER BY id").bind("n%");
    let result = standin
        .run_batch("auth", &statements, Some(&query))
        .unwrap();
    let emails: Vec<Value> = result.rows.into_iter().map(|mut r| r.remove(0)).collect();
    let expected: Vec<Value> = nasty.iter().map(|v| text(v)).collect();
    assert_eq!(emails, expected);

    // The same values through single-statement binds read back equal.
    for (i, value) in nasty.iter().enumerate() {
        let found = standin
            .run(
                "auth",
                &Statement::new("SELECT id FROM users WHERE email = ?").bind(*value),
            )
            .unwrap();
        assert_eq!(found.rows, [vec![text(&format!("n{i}"))]], "{value:?}");
    }

    // A failing batch commits nothing.
    let before = count_users(&standin, "auth");
    let err = standin
        .run_batch(
            "auth",
            &[
                insert_user("fresh", "fresh@example.com"),
                insert_user("dupe", "it's"),
            ],
            Some(&Statement::new("SELECT count(*) FROM users")),
        )
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err:?}");
    assert_eq!(count_users(&standin, "auth"), before);

    // Without a trailing query the answer is COMMIT's: success, no rows.
    let result = standin
        .run_batch(
            "auth",
            &[Statement::new("UPDATE users SET logins = logins + ?").bind(1)],
            None,
        )
        .unwrap();
    assert!(result.rows.is_empty());
}

#[test]
fn binds_are_refused_with_several_statements() {
    let standin = StandIn::start();
    with_users(&standin, "auth");
    let (status, body) = standin.post_sql_raw(
        br#"{"sql": "INSERT INTO users (id, email) VALUES (?, ?); SELECT 1", "database": "auth", "bind": ["x", "y"]}"#,
    );
    assert_eq!(status, 400);
    let err = decode_response(status, &body).unwrap_err();
    assert!(
        matches!(
            err,
            WebliteError::Gateway {
                code: Some(10003),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(count_users(&standin, "auth"), 0);
    // The client's inlining path runs the same work.
    let result = standin
        .run_batch(
            "auth",
            &[insert_user("x", "y")],
            Some(&Statement::new("SELECT 1 AS one")),
        )
        .unwrap();
    assert_eq!(result.rows, [vec![Value::Integer(1)]]);
    assert_eq!(count_users(&standin, "auth"), 1);
    // A trailing `;` or comment is still one statement.
    let (status, body) = standin
        .post_sql_raw(br#"{"sql": "SELECT ? AS v; -- done", "database": "auth", "bind": [5]}"#);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

/// Every response dialect the stand-in speaks is decoded to the same results.
#[test]
fn every_dialect_decodes_the_same() {
    let standin = StandIn::start();
    with_users(&standin, "auth");
    let mut n = 0;
    for rows in ["objects", "arrays"] {
        for write_shape in ["object", "row", "null", "missing", "empty"] {
            for errors in ["old", "new"] {
                let config = standin.set_config(
                    json!({"rows": rows, "write_shape": write_shape, "errors": errors}),
                );
                assert_eq!(config["rows"], rows);
                assert_eq!(config["write_shape"], write_shape);
                n += 1;
                let id = format!("u{n}");
                let label = format!("{rows}/{write_shape}/{errors}");

                let written = standin
                    .run("auth", &insert_user(&id, &format!("{id}@example.com")))
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                assert!(written.rows.is_empty(), "{label}: {written:?}");
                let expected_changes = match write_shape {
                    "object" | "row" => Some(1),
                    _ => None,
                };
                assert_eq!(written.changes, expected_changes, "{label}");

                let read = standin
                    .run(
                        "auth",
                        &Statement::new("SELECT email, id, logins FROM users WHERE id = ?")
                            .bind(id.as_str()),
                    )
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(read.columns, ["email", "id", "logins"], "{label}");
                assert_eq!(
                    read.rows,
                    [vec![
                        text(&format!("{id}@example.com")),
                        text(&id),
                        Value::Integer(0)
                    ]],
                    "{label}"
                );
                let empty = standin
                    .exec("auth", "SELECT id FROM users WHERE id = 'nobody'")
                    .unwrap();
                assert_eq!(empty.columns, ["id"], "{label}");
                assert!(empty.rows.is_empty(), "{label}");

                let err = standin
                    .run("auth", &insert_user(&id, "other@example.com"))
                    .unwrap_err();
                assert!(
                    matches!(err, WebliteError::Constraint { .. }),
                    "{label}: {err:?}"
                );
                let err = standin
                    .run("auth", &insert_user("zz", &format!("{id}@example.com")))
                    .unwrap_err();
                assert!(err.is_unique_violation(), "{label}: {err:?}");
            }
        }
    }
    // Per-request `row` overrides the configured shape.
    standin.set_config(json!({"rows": "objects"}));
    let (status, body) = standin.post_sql_raw(
        br#"{"sql": "SELECT id FROM users ORDER BY id LIMIT 1", "database": "auth", "row": "array"}"#,
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(json["data"][0].is_array(), "{json}");
    assert_eq!(decode_response(status, &body).unwrap().columns, ["id"]);
}

#[test]
fn command_line_selects_the_dialect() {
    let standin = StandIn::start_with(&[
        "--rows",
        "arrays",
        "--write-shape",
        "row",
        "--errors",
        "new",
    ]);
    let config = standin.control("GET", "/__standin/config", None);
    assert_eq!(
        config,
        json!({"rows": "arrays", "write_shape": "row", "errors": "new", "latency_ms": 0, "commit_gap_ms": 0})
    );
    standin.create_database("db");
    let (status, body) = standin.post_sql_raw(
        br#"{"sql": "CREATE TABLE t (x); INSERT INTO t VALUES (1)", "database": "db"}"#,
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["data"][0].as_array().map(Vec::len), Some(6), "{json}");
    assert_eq!(decode_response(status, &body).unwrap().changes, Some(1));
    let (status, body) =
        standin.post_sql_raw(br#"{"sql": "SELECT * FROM nowhere", "database": "db"}"#);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(json["errors"][0]["detail"].is_string(), "{json}");
    assert!(matches!(
        decode_response(status, &body),
        Err(WebliteError::Sql { code: 1, .. })
    ));
}

#[test]
fn get_endpoint() {
    let standin = StandIn::start();
    with_users(&standin, "auth");
    standin
        .run("auth", &insert_user("u1", "a+b@example.com"))
        .unwrap();
    let sql = "SELECT id, email FROM users WHERE email = 'a+b@example.com'";
    for row in ["", "&row=array"] {
        let path = format!("/v2/weblite/sql?sql={}&database=auth{row}", encode(sql));
        let (status, body) = standin.call("GET", &path, Some(API_KEY));
        let result = decode_response(status, &body).unwrap();
        assert_eq!(
            result,
            QueryResult {
                columns: vec!["id".into(), "email".into()],
                rows: vec![vec![text("u1"), text("a+b@example.com")]],
                changes: None,
            },
            "{row}"
        );
    }
    let (status, _) = standin.call("GET", "/v2/weblite/sql?database=auth", Some(API_KEY));
    assert_eq!(status, 400);
}

#[test]
fn values_round_trip() {
    let standin = StandIn::start();
    standin.create_database("db");
    standin
        .exec("db", "CREATE TABLE v (i INTEGER, r REAL, t TEXT, n)")
        .unwrap();
    let max_safe = 9_007_199_254_740_991_i64;
    for (i, r, t) in [
        (0_i64, 0.0_f64, ""),
        (-max_safe, -1.5, "ünïcödé"),
        (max_safe, 1e300, "quote ' and \" and ;"),
    ] {
        standin
            .run(
                "db",
                &Statement::new("INSERT INTO v VALUES (?, ?, ?, NULL)")
                    .bind(i)
                    .bind(r)
                    .bind(t),
            )
            .unwrap();
    }
    let result = standin.exec("db", "SELECT i, r, t, n FROM v").unwrap();
    assert_eq!(result.rows.len(), 3);
    assert_eq!(
        result.rows[2],
        [
            Value::Integer(max_safe),
            Value::Real(1e300),
            text("quote ' and \" and ;"),
            Value::Null
        ]
    );
    assert_eq!(result.rows[1][0], Value::Integer(-max_safe));
    // An integer beyond 2^53 cannot cross the (JavaScript) gateway exactly: the
    // client refuses it instead of returning a wrong number.
    let err = standin
        .exec("db", "SELECT 9007199254740993 AS big")
        .unwrap_err();
    assert!(matches!(err, WebliteError::Malformed { .. }), "{err:?}");
    let ok = standin
        .exec("db", "SELECT CAST(9007199254740993 AS TEXT) AS big")
        .unwrap();
    assert_eq!(ok.rows, [vec![text("9007199254740993")]]);
}
