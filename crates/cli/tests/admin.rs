//! `latch admin grant` and `latch admin revoke` as a process, on a temporary
//! SQLite file and over HTTP on the SQLite Cloud stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod migrate_support;

use std::path::Path;

use migrate_support::{API_KEY, StandIn, latch, repo_migrations};

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

const INSERT_USER: &str = "INSERT INTO users (id, email, password_hash, full_name, created_at, updated_at) \
     VALUES ('user-jane', 'jane@example.com', 'x', 'Jane', 0, 0)";

fn column(db: &Path, sql: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn admins(db: &Path) -> Vec<String> {
    column(
        db,
        "SELECT user_id FROM user_roles WHERE role_id = 'role-admin' ORDER BY user_id",
    )
}

#[test]
fn grant_then_revoke_on_an_embedded_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = dir.join("app.db");
    let on_db = |args: &[&str]| {
        let mut all = vec!["admin"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--database", s(&db)]);
        latch(dir, &all, &[])
    };

    // No database yet: nothing is created.
    on_db(&["grant", "jane@example.com"]).failed_with(&["run `latch migrate`"]);
    assert!(!db.exists());

    let migrations = repo_migrations();
    let migrate = [
        "migrate",
        "--migrations",
        s(&migrations),
        "--database",
        s(&db),
    ];
    latch(dir, &migrate, &[]).succeeded_with(&[]);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(INSERT_USER)
        .unwrap();

    let run = on_db(&["grant", " Jane@Example.com "]);
    run.succeeded_with(&["granted admin to j***@example.com (user user-jane)"]);
    assert!(!run.all().contains("jane@"), "the email in full:\n{run:?}");
    assert_eq!(admins(&db), ["user-jane"]);
    on_db(&["grant", "jane@example.com"])
        .succeeded_with(&["j***@example.com already has admin (user user-jane)"]);

    // The last active admin stays unless --force.
    on_db(&["revoke", "jane@example.com"]).failed_with(&["is the last active admin", "--force"]);
    assert_eq!(admins(&db), ["user-jane"]);
    on_db(&["revoke", "jane@example.com", "--force"]).succeeded_with(&[
        "revoked admin from j***@example.com (user user-jane)",
        "warning: no active admin remains",
    ]);
    assert!(admins(&db).is_empty());
    on_db(&["revoke", "jane@example.com"])
        .succeeded_with(&["j***@example.com does not have admin (user user-jane)"]);

    // Two changes, two audit rows.
    let reasons = column(
        &db,
        "SELECT reason FROM audit_events WHERE event = 'admin_user_updated' \
         AND user_id = 'user-jane' AND email = 'j***@example.com' ORDER BY at, rowid",
    );
    assert_eq!(reasons, ["cli_admin_granted", "cli_admin_revoked"]);

    // An unknown email, and one that is not an email, exit non-zero.
    on_db(&["grant", "nobody@example.com"])
        .failed_with(&["error: no user has the email n***@example.com"]);
    on_db(&["revoke", "not-an-email"]).failed_with(&["EMAIL (not shown)"]);
    assert_eq!(column(&db, "SELECT id FROM audit_events").len(), 2);
}

#[test]
fn grant_over_the_stand_in_never_shows_the_key() {
    let standin = StandIn::start();
    standin.create_database("auth");
    standin.create_database("empty");
    let tmp = tempfile::tempdir().unwrap();
    let url = standin.url("auth", API_KEY);
    let grant = |url: &str| {
        latch(
            tmp.path(),
            &["admin", "grant", "jane@example.com", "--database-url", url],
            &[],
        )
    };
    let migrations = repo_migrations();
    let migrate = [
        "migrate",
        "--migrations",
        s(&migrations),
        "--database-url",
        &url,
    ];
    latch(tmp.path(), &migrate, &[]).succeeded_with(&[]);
    standin.sql("auth", INSERT_USER);

    let shown = format!(
        "database: http://127.0.0.1:{}/auth?apikey=REDACTED (from --database-url)",
        standin.port
    );
    let mut runs = vec![grant(&url)];
    runs[0].succeeded_with(&[&shown, "granted admin to j***@example.com (user user-jane)"]);
    let roles = standin.sql(
        "auth",
        "SELECT user_id FROM user_roles WHERE role_id = 'role-admin'",
    );
    assert!(roles.contains("user-jane"), "{roles}");
    let audit = standin.sql(
        "auth",
        "SELECT group_concat(user_id) AS who FROM audit_events WHERE reason = 'cli_admin_granted'",
    );
    assert!(audit.contains("\"user-jane\""), "{audit}");

    // $DATABASE_URL, as the deploy workflow gives it.
    let run = latch(
        tmp.path(),
        &["admin", "grant", "jane@example.com"],
        &[("DATABASE_URL", &url)],
    );
    run.succeeded_with(&["already has admin", "(from DATABASE_URL)"]);
    runs.push(run);

    // An unknown email: non-zero.
    let run = latch(
        tmp.path(),
        &[
            "admin",
            "revoke",
            "nobody@example.com",
            "--database-url",
            &url,
        ],
        &[],
    );
    run.failed_with(&["no user has the email"]);
    runs.push(run);

    // A database without the tables, a wrong key, a URL without its flag.
    let run = grant(&standin.url("empty", API_KEY));
    run.failed_with(&["run `latch migrate`"]);
    runs.push(run);
    let run = grant(&standin.url("auth", "wrong-key"));
    run.failed_with(&["error: "]);
    runs.push(run);
    let run = latch(
        tmp.path(),
        &["admin", "grant", "jane@example.com", &url],
        &[],
    );
    run.failed_with(&["--database-url URL"]);
    runs.push(run);

    for run in &runs {
        let output = run.all();
        assert!(!output.contains(API_KEY), "the key leaked:\n{output}");
        assert!(!output.contains("jane@"), "the email in full:\n{output}");
    }
}
