//! Migrations on a real embedded SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use latch_migrate::{
    MigrateError, MigrationFile, Progress, SqliteTarget, State, Target, TargetError, load_dir,
    migrate, migration_status,
};
use rusqlite::Connection;

/// Applies with a progress log of `applying NAME` / `ok NAME` / `failed NAME`.
fn run(path: &Path, dir: &Path) -> (Result<latch_migrate::Report, MigrateError>, Vec<String>) {
    let files = load_dir(dir).unwrap();
    let mut target = SqliteTarget::open(path).unwrap();
    let mut log = Vec::new();
    let result = migrate(&mut target, &files, &mut |p| {
        log.push(match p {
            Progress::Applying(m) => format!("applying {}", m.name),
            Progress::Applied { migration, .. } => format!("ok {}", migration.name),
            Progress::Failed { migration, .. } => format!("failed {}", migration.name),
        });
    });
    (result, log)
}

/// Copies the repository's first migration (`0001_initial.sql`) to `to`:
/// these tests are about applying migrations, not the schema's later
/// versions, and add their own `0002_*` files after it. Returns `to`.
fn copy_repo_migrations(to: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(to).unwrap();
    let initial = "0001_initial.sql";
    std::fs::copy(common::repo_migrations().join(initial), to.join(initial)).unwrap();
    to.to_path_buf()
}

fn schema_rows(conn: &Connection) -> Vec<(i64, String, String)> {
    conn.prepare("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn table_exists(conn: &Connection, name: &str) -> bool {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = ?",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .unwrap()
        == 1
}

#[test]
fn applies_once_then_nothing_is_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("nested/dir/app.db");
    let migrations = copy_repo_migrations(&tmp.path().join("migrations"));
    let (result, log) = run(&db, &migrations);
    let report = result.unwrap();
    assert_eq!(report.applied, ["0001_initial.sql"]);
    assert_eq!(report.already_applied, 0);
    assert_eq!(log, ["applying 0001_initial.sql", "ok 0001_initial.sql"]);

    let (result, log) = run(&db, &migrations);
    let report = result.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.already_applied, 1);
    assert!(log.is_empty());

    let conn = Connection::open(&db).unwrap();
    let rows = schema_rows(&conn);
    let initial = std::fs::read(common::repo_migrations().join("0001_initial.sql")).unwrap();
    assert_eq!(
        rows,
        [(
            1,
            "0001_initial.sql".to_owned(),
            latch_migrate::checksum(&initial)
        )]
    );
    let applied_at: i64 = conn
        .query_row("SELECT applied_at FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert!(applied_at > 1_700_000_000, "{applied_at}");
    for table in [
        "users",
        "roles",
        "sessions",
        "retired_refresh_tokens",
        "throttle",
    ] {
        assert!(table_exists(&conn, table), "{table}");
    }
}

#[test]
fn the_refresh_token_trigger_works_after_migrating() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    run(&db, &copy_repo_migrations(&tmp.path().join("migrations")))
        .0
        .unwrap();
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "INSERT INTO users (id, email, password_hash, full_name, created_at, updated_at)
             VALUES ('u1', 'a@example.com', '$argon2id$x', 'A', 1, 1);
         INSERT INTO sessions (id, user_id, refresh_hash, created_at, last_used_at, expires_at)
             VALUES ('s1', 'u1', 'hash-0', 1, 1, 100);
         UPDATE sessions SET refresh_hash = 'hash-1', generation = 1, last_used_at = 42 WHERE id = 's1';
         UPDATE sessions SET last_used_at = 43 WHERE id = 's1';",
    )
    .unwrap();
    let retired: Vec<(String, String, i64)> = conn
        .prepare("SELECT hash, session_id, retired_at FROM retired_refresh_tokens")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(retired, [("hash-0".to_owned(), "s1".to_owned(), 42)]);
}

#[test]
fn a_changed_applied_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("migrations");
    copy_repo_migrations(&dir);
    let db = tmp.path().join("app.db");
    run(&db, &dir).0.unwrap();
    let before = latch_migrate::checksum(&std::fs::read(dir.join("0001_initial.sql")).unwrap());

    let file = dir.join("0001_initial.sql");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("\nCREATE TABLE sneaky (x);\n");
    std::fs::write(&file, &text).unwrap();
    std::fs::write(dir.join("0002_next.sql"), "CREATE TABLE next (x);").unwrap();
    let after = latch_migrate::checksum(text.as_bytes());

    let (result, log) = run(&db, &dir);
    let err = result.unwrap_err();
    assert!(
        matches!(err, MigrateError::Changed { version: 1, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    for needle in ["0001_initial.sql", before.as_str(), after.as_str()] {
        assert!(message.contains(needle), "{needle} not in {message}");
    }
    // Nothing was applied: not the change, not the next file.
    assert!(log.is_empty());
    let conn = Connection::open(&db).unwrap();
    assert!(!table_exists(&conn, "sneaky") && !table_exists(&conn, "next"));
}

#[test]
fn a_failing_migration_leaves_nothing_half_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("migrations");
    copy_repo_migrations(&dir);
    std::fs::write(
        dir.join("0002_broken.sql"),
        "CREATE TABLE half (x);\nINSERT INTO roles (id, name, created_at) VALUES ('r3', 'r3', 0);\nSELEC 1;\n",
    )
    .unwrap();
    let db = tmp.path().join("app.db");
    let (result, log) = run(&db, &dir);
    let err = result.unwrap_err();
    assert!(matches!(err, MigrateError::Apply { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("0002_broken.sql") && message.contains("syntax error"),
        "{message}"
    );
    assert_eq!(
        log,
        [
            "applying 0001_initial.sql",
            "ok 0001_initial.sql",
            "applying 0002_broken.sql",
            "failed 0002_broken.sql"
        ]
    );
    let conn = Connection::open(&db).unwrap();
    assert!(!table_exists(&conn, "half"));
    let roles: i64 = conn
        .query_row("SELECT count(*) FROM roles", [], |r| r.get(0))
        .unwrap();
    assert_eq!(roles, 2);
    assert_eq!(schema_rows(&conn).len(), 1);
    assert!(conn.is_autocommit());

    // Fixed, it applies on the next run.
    std::fs::write(dir.join("0002_broken.sql"), "CREATE TABLE whole (x);").unwrap();
    let (result, _) = run(&db, &dir);
    assert_eq!(result.unwrap().applied, ["0002_broken.sql"]);
}

#[test]
fn status_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    Connection::open(&db).unwrap();
    let files = load_dir(&copy_repo_migrations(&tmp.path().join("migrations"))).unwrap();
    let mut target = SqliteTarget::open_existing(&db).unwrap();
    let entries = migration_status(&mut target, &files).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, State::Pending);
    assert!(!table_exists(target.connection(), "schema_migrations"));
    assert!(SqliteTarget::open_existing(&tmp.path().join("missing.db")).is_err());
    assert!(!tmp.path().join("missing.db").exists());
}

/// Two deployers: the other one applies the migration between this one's
/// plan and its apply. The PRIMARY KEY makes this one fail and roll back,
/// and the error says what happened.
#[test]
fn a_concurrent_apply_is_reported() {
    struct RacingTarget {
        inner: SqliteTarget,
        other: Option<SqliteTarget>,
    }
    impl Target for RacingTarget {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn ensure_schema_migrations(&mut self) -> Result<(), TargetError> {
            self.inner.ensure_schema_migrations()
        }
        fn applied(&mut self) -> Result<Vec<latch_migrate::AppliedMigration>, TargetError> {
            self.inner.applied()
        }
        fn apply(&mut self, m: &MigrationFile, at: i64) -> Result<(), TargetError> {
            if let Some(mut other) = self.other.take() {
                other.apply(m, at).unwrap();
            }
            self.inner.apply(m, at)
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    // An empty migration: only the schema_migrations INSERT can conflict.
    let files = vec![MigrationFile::from_bytes("x", "0001_nothing.sql", b"-- nothing\n").unwrap()];
    let mut target = RacingTarget {
        inner: SqliteTarget::open(&db).unwrap(),
        other: Some(SqliteTarget::open(&db).unwrap()),
    };
    let err = migrate(&mut target, &files, &mut |_| {}).unwrap_err();
    let MigrateError::AppliedConcurrently {
        version, source, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*version, 1);
    assert!(
        source.to_string().contains("UNIQUE constraint failed"),
        "{source}"
    );
    assert!(err.to_string().contains("another deployer"), "{err}");
    let conn = Connection::open(&db).unwrap();
    assert_eq!(schema_rows(&conn).len(), 1);
    // And the next run has nothing to do.
    let mut target = SqliteTarget::open(&db).unwrap();
    assert!(
        migrate(&mut target, &files, &mut |_| {})
            .unwrap()
            .applied
            .is_empty()
    );
}

#[test]
fn a_missing_file_and_a_gap_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0001_a.sql"), "CREATE TABLE a (x);").unwrap();
    std::fs::write(dir.join("0003_c.sql"), "CREATE TABLE c (x);").unwrap();
    let db = tmp.path().join("app.db");
    run(&db, &dir).0.unwrap();

    std::fs::write(dir.join("0002_b.sql"), "CREATE TABLE b (x);").unwrap();
    let err = run(&db, &dir).0.unwrap_err();
    assert!(
        matches!(
            err,
            MigrateError::OutOfOrder {
                version: 2,
                highest_applied: 3,
                ..
            }
        ),
        "{err:?}"
    );

    std::fs::remove_file(dir.join("0002_b.sql")).unwrap();
    std::fs::remove_file(dir.join("0003_c.sql")).unwrap();
    let err = run(&db, &dir).0.unwrap_err();
    assert!(
        matches!(err, MigrateError::MissingFile { version: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("0003_c.sql"), "{err}");
}

#[test]
fn a_migrated_file_is_left_in_wal_mode_for_every_later_connection() {
    // Spin opens the file with SQLite's defaults: the journal mode must come
    // from the file itself.
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("spin/sqlite_db.db");
    let migrations = tmp.path().join("migrations");
    copy_repo_migrations(&migrations);
    let (result, _) = run(&db, &migrations);
    result.unwrap();
    let later = Connection::open(&db).unwrap();
    let mode: String = later
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// Every migration of the repository applies, in order, to a new database,
/// and a second run has nothing to do.
#[test]
fn every_repository_migration_applies_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    let mut names: Vec<String> = std::fs::read_dir(common::repo_migrations())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    let (result, _) = run(&db, &common::repo_migrations());
    assert_eq!(result.unwrap().applied, names);
    let (result, _) = run(&db, &common::repo_migrations());
    assert_eq!(result.unwrap().already_applied, names.len());
    let conn = Connection::open(&db).unwrap();
    for table in ["one_time_tokens", "audit_events"] {
        assert!(table_exists(&conn, table), "{table}");
    }
}
