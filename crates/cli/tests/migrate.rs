//! `latch migrate` (and the start-up migration of `latch up`) as a process,
//! against temporary SQLite files and the SQLite Cloud stand-in over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod migrate_support;

use std::path::Path;

use migrate_support::{API_KEY, StandIn, latch, repo_migrations};

/// Copies the repository's first migration (`0001_initial.sql`) to `to`:
/// these tests are about the command (targets, output, refusals), not the
/// schema's later versions, and add their own `0002_*` files after it.
fn copy_migrations(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let initial = "0001_initial.sql";
    std::fs::copy(repo_migrations().join(initial), to.join(initial)).unwrap();
}

fn applied_versions(db: &Path) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.prepare("SELECT version, name FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn migrates_a_file_then_has_nothing_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    let migrations = tmp.path().join("migrations");
    copy_migrations(&migrations);
    let args = [
        "migrate",
        "--migrations",
        s(&migrations),
        "--database",
        s(&db),
    ];

    let run = latch(tmp.path(), &args, &[]);
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("applying 0001_initial.sql ... ok ("),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(" ms)\n"), "{}", run.stdout);
    assert!(run.stdout.contains("1 migration applied"), "{}", run.stdout);
    assert_eq!(applied_versions(&db), [(1, "0001_initial.sql".to_owned())]);

    let run = latch(tmp.path(), &args, &[]);
    assert!(run.ok(), "{run:?}");
    assert!(!run.stdout.contains("applying"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("nothing to apply: 1 migration already applied"),
        "{}",
        run.stdout
    );

    let mut status_args = args.to_vec();
    status_args.push("--status");
    let run = latch(tmp.path(), &status_args, &[]);
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("0001_initial.sql  applied 20"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("1 applied, 0 pending"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_default_target_is_the_default_database_of_latch_up() {
    let tmp = tempfile::tempdir().unwrap();
    copy_migrations(&tmp.path().join("migrations"));

    // --status on a database that does not exist creates nothing.
    let run = latch(tmp.path(), &["migrate", "--status"], &[]);
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("0001_initial.sql  pending"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("does not exist yet"), "{}", run.stdout);
    assert!(!tmp.path().join(".latch").exists());

    let run = latch(tmp.path(), &["migrate"], &[]);
    assert!(run.ok(), "{run:?}");
    let db = tmp.path().join(".latch/sqlite/default.db");
    assert!(
        run.stdout.contains("database: .latch/sqlite/default.db"),
        "{}",
        run.stdout
    );
    assert_eq!(applied_versions(&db).len(), 1);

    // --from moves the default migrations directory; --data-dir the database.
    let app = tmp.path().join("app");
    copy_migrations(&app.join("migrations"));
    let run = latch(
        tmp.path(),
        &["migrate", "--from", "app/spin.toml", "--data-dir", "data"],
        &[],
    );
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("migrations: app/migrations (1 file)"),
        "{}",
        run.stdout
    );
    assert_eq!(
        applied_versions(&tmp.path().join("data/sqlite/default.db")).len(),
        1
    );
}

#[test]
fn refusals_exit_non_zero_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("migrations");
    copy_migrations(&dir);
    let db = tmp.path().join("app.db");
    let args = ["migrate", "--migrations", s(&dir), "--database", s(&db)];
    assert!(latch(tmp.path(), &args, &[]).ok());

    // A changed applied file.
    let file = dir.join("0001_initial.sql");
    let original = std::fs::read(&file).unwrap();
    let mut changed = original.clone();
    changed.extend_from_slice(b"\n-- an edit\n");
    std::fs::write(&file, &changed).unwrap();
    let run = latch(tmp.path(), &args, &[]);
    assert!(!run.ok(), "{run:?}");
    assert!(
        run.stderr
            .contains("error: 0001_initial.sql has changed since it was applied"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&latch_migrate::checksum(&original))
            && run.stderr.contains(&latch_migrate::checksum(&changed)),
        "{}",
        run.stderr
    );
    // --status shows it too, and fails.
    let mut status_args = args.to_vec();
    status_args.push("--status");
    let run = latch(tmp.path(), &status_args, &[]);
    assert!(!run.ok(), "{run:?}");
    assert!(run.stdout.contains("CHANGED"), "{}", run.stdout);
    std::fs::write(&file, &original).unwrap();

    // A misnamed file.
    std::fs::write(dir.join("0002-typo.sql"), "CREATE TABLE t (x);").unwrap();
    let run = latch(tmp.path(), &args, &[]);
    assert!(!run.ok(), "{run:?}");
    assert!(run.stderr.contains("0002-typo.sql"), "{}", run.stderr);
    assert!(
        run.stderr.contains("not a migration file"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(dir.join("0002-typo.sql")).unwrap();

    // A failing migration: reported, nothing of it kept.
    std::fs::write(dir.join("0002_bad.sql"), "CREATE TABLE half (x);\nSELEC 1;").unwrap();
    let run = latch(tmp.path(), &args, &[]);
    assert!(!run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("applying 0002_bad.sql ... FAILED ("),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("0002_bad.sql failed"), "{}", run.stderr);
    assert!(run.stderr.contains("syntax error"), "{}", run.stderr);
    assert_eq!(applied_versions(&db).len(), 1);

    // A missing directory.
    let run = latch(
        tmp.path(),
        &["migrate", "--migrations", "nope", "--database", s(&db)],
        &[],
    );
    assert!(!run.ok(), "{run:?}");
    assert!(
        run.stderr
            .contains("cannot read the migrations directory nope"),
        "{}",
        run.stderr
    );

    // Conflicting targets.
    let run = latch(
        tmp.path(),
        &[
            "migrate",
            "--database",
            "x.db",
            "--database-url",
            "http://127.0.0.1:1/db?apikey=k",
        ],
        &[],
    );
    assert!(!run.ok(), "{run:?}");
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}

#[test]
fn migrates_sqlite_cloud_over_http_without_showing_the_key() {
    let standin = StandIn::start();
    standin.create_database("auth");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("migrations");
    copy_migrations(&dir);
    let url = standin.url("auth", API_KEY);
    let mut outputs = Vec::new();

    let run = latch(
        tmp.path(),
        &[
            "migrate",
            "--migrations",
            s(&dir),
            "--status",
            "--database-url",
            &url,
        ],
        &[],
    );
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("0001_initial.sql  pending"),
        "{}",
        run.stdout
    );
    outputs.push(run.all());

    let run = latch(
        tmp.path(),
        &["migrate", "--migrations", s(&dir), "--database-url", &url],
        &[],
    );
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "database: http://127.0.0.1:{}/auth?apikey=REDACTED (from --database-url)",
            standin.port
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("applying 0001_initial.sql ... ok ("),
        "{}",
        run.stdout
    );
    outputs.push(run.all());
    let users = standin.sql(
        "auth",
        "SELECT count(*) AS n FROM sqlite_master WHERE name = 'users'",
    );
    assert!(users.contains("\"n\":1"), "{users}");

    // From $DATABASE_URL, then $SPIN_VARIABLE_DATABASE_URL (an empty one is unset).
    let run = latch(
        tmp.path(),
        &["migrate", "--migrations", s(&dir)],
        &[("DATABASE_URL", &url)],
    );
    assert!(run.ok(), "{run:?}");
    assert!(run.stdout.contains("(from DATABASE_URL)"), "{}", run.stdout);
    assert!(run.stdout.contains("nothing to apply"), "{}", run.stdout);
    outputs.push(run.all());
    let run = latch(
        tmp.path(),
        &["migrate", "--migrations", s(&dir), "--status"],
        &[("DATABASE_URL", ""), ("SPIN_VARIABLE_DATABASE_URL", &url)],
    );
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("(from SPIN_VARIABLE_DATABASE_URL)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("0001_initial.sql  applied"),
        "{}",
        run.stdout
    );
    outputs.push(run.all());

    // A failing migration over HTTP: neither its table nor its row remains.
    std::fs::write(
        dir.join("0002_bad.sql"),
        "CREATE TABLE half (x);\nSELEC 1;\n",
    )
    .unwrap();
    let run = latch(
        tmp.path(),
        &["migrate", "--migrations", s(&dir), "--database-url", &url],
        &[],
    );
    assert!(!run.ok(), "{run:?}");
    assert!(
        run.stdout.contains("applying 0002_bad.sql ... FAILED"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("0002_bad.sql failed"), "{}", run.stderr);
    outputs.push(run.all());
    let half = standin.sql(
        "auth",
        "SELECT count(*) AS n FROM sqlite_master WHERE name = 'half'",
    );
    assert!(half.contains("\"n\":0"), "{half}");
    let rows = standin.sql("auth", "SELECT count(*) AS n FROM schema_migrations");
    assert!(rows.contains("\"n\":1"), "{rows}");
    std::fs::remove_file(dir.join("0002_bad.sql")).unwrap();

    // Errors of every kind, none showing the key.
    let wrong = standin.url("auth", "wrong-secret-key-991");
    let run = latch(
        tmp.path(),
        &["migrate", "--migrations", s(&dir), "--database-url", &wrong],
        &[],
    );
    assert!(!run.ok(), "{run:?}");
    assert!(
        run.stderr.contains("refused the credential"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains("wrong-secret-key-991"), "{}", run.all());

    let missing = standin.url("nodb", API_KEY);
    let run = latch(
        tmp.path(),
        &[
            "migrate",
            "--migrations",
            s(&dir),
            "--database-url",
            &missing,
        ],
        &[],
    );
    assert!(!run.ok(), "{run:?}");
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
    outputs.push(run.all());

    standin.add_faults(r#"{"kind": "latency", "latency_ms": 5000}"#);
    let run = latch(
        tmp.path(),
        &[
            "migrate",
            "--migrations",
            s(&dir),
            "--database-url",
            &url,
            "--timeout",
            "1",
        ],
        &[],
    );
    assert!(!run.ok(), "{run:?}");
    assert!(
        run.stderr.contains("could not reach SQLite Cloud"),
        "{}",
        run.stderr
    );
    outputs.push(run.all());

    standin.add_faults(r#"{"kind": "paused"}"#);
    let run = latch(
        tmp.path(),
        &["migrate", "--migrations", s(&dir), "--database-url", &url],
        &[],
    );
    assert!(!run.ok(), "{run:?}");
    assert!(run.stderr.contains("paused"), "{}", run.stderr);
    outputs.push(run.all());

    let not_loopback = format!("http://db.example.com/auth?apikey={API_KEY}");
    let run = latch(
        tmp.path(),
        &[
            "migrate",
            "--migrations",
            s(&dir),
            "--database-url",
            &not_loopback,
        ],
        &[],
    );
    assert!(!run.ok(), "{run:?}");
    assert!(
        run.stderr
            .contains("invalid database URL in --database-url"),
        "{}",
        run.stderr
    );
    outputs.push(run.all());

    let run = latch(
        tmp.path(),
        &["migrate", "--migrations", s(&dir)],
        &[(
            "DATABASE_URL",
            &format!("sqlitecloud://h.sqlite.cloud:8860?apikey={API_KEY}"),
        )],
    );
    assert!(!run.ok(), "{run:?}");
    assert!(run.stderr.contains("in DATABASE_URL"), "{}", run.stderr);
    outputs.push(run.all());

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = format!("http://127.0.0.1:{closed}/auth?apikey={API_KEY}");
    let run = latch(
        tmp.path(),
        &[
            "migrate",
            "--migrations",
            s(&dir),
            "--database-url",
            &unreachable,
        ],
        &[],
    );
    assert!(!run.ok(), "{run:?}");
    assert!(
        run.stderr.contains("could not reach SQLite Cloud"),
        "{}",
        run.stderr
    );
    outputs.push(run.all());

    // A URL given without its flag is not echoed either.
    let run = latch(tmp.path(), &["migrate", &url], &[]);
    assert!(!run.ok(), "{run:?}");
    assert!(run.stderr.contains("--database-url URL"), "{}", run.stderr);
    outputs.push(run.all());

    for output in &outputs {
        assert!(!output.contains(API_KEY), "the key leaked:\n{output}");
    }
}

#[test]
fn latch_up_migrates_the_default_database_before_serving() {
    let tmp = tempfile::tempdir().unwrap();
    // A manifest that does not load: start-up migrates, then fails to load
    // the app and exits.
    std::fs::write(tmp.path().join("spin.toml"), "not a manifest").unwrap();
    copy_migrations(&tmp.path().join("migrations"));
    let db = tmp.path().join(".latch/sqlite/default.db");

    let run = latch(tmp.path(), &["up", "--no-migrate", "--no-watch"], &[]);
    assert!(!run.ok(), "{run:?}");
    assert!(!db.exists(), "--no-migrate created the database");

    let run = latch(tmp.path(), &["up", "--no-watch"], &[]);
    assert!(!run.ok(), "{run:?}");
    assert!(
        run.stderr.contains("applied 0001_initial.sql"),
        "{}",
        run.stderr
    );
    assert_eq!(applied_versions(&db), [(1, "0001_initial.sql".to_owned())]);

    // A changed applied file stops start-up with the error.
    let file = tmp.path().join("migrations/0001_initial.sql");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("\n-- edited\n");
    std::fs::write(&file, text).unwrap();
    let run = latch(tmp.path(), &["up", "--no-watch"], &[]);
    assert!(!run.ok(), "{run:?}");
    assert!(
        run.stderr
            .contains("0001_initial.sql has changed since it was applied"),
        "{}",
        run.stderr
    );

    // An explicit --migrations must exist; without one, no directory is fine.
    let run = latch(
        tmp.path(),
        &["up", "--no-watch", "--migrations", "nope"],
        &[],
    );
    assert!(
        run.stderr
            .contains("cannot read the migrations directory nope"),
        "{}",
        run.stderr
    );
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("spin.toml"), "not a manifest").unwrap();
    let run = latch(empty.path(), &["up", "--no-watch"], &[]);
    assert!(!run.ok(), "{run:?}");
    assert!(!run.stderr.contains("migrations"), "{}", run.stderr);
    assert!(!empty.path().join(".latch/sqlite/default.db").exists());

    // No manifest at all: the load error, and no database created.
    let bare = tempfile::tempdir().unwrap();
    copy_migrations(&bare.path().join("migrations"));
    let run = latch(bare.path(), &["up", "--no-watch"], &[]);
    assert!(run.stderr.contains("spin.toml"), "{}", run.stderr);
    assert!(!bare.path().join(".latch").exists());
}
