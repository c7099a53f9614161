//! Migrations over real HTTP on loopback, against the SQLite Cloud stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::StandIn;
use latch_migrate::{
    MigrateError, MigrationFile, Progress, State, Target, TargetError, load_dir, migrate,
    migration_status,
};
use latch_weblite::WebliteError;

const DB: &str = "auth";

fn run_on(
    standin: &StandIn,
    files: &[MigrationFile],
) -> (Result<latch_migrate::Report, MigrateError>, Vec<String>) {
    let mut target = standin.target(DB);
    let mut log = Vec::new();
    let result = migrate(&mut target, files, &mut |p| {
        log.push(match p {
            Progress::Applying(m) => format!("applying {}", m.name),
            Progress::Applied { migration, .. } => format!("ok {}", migration.name),
            Progress::Failed { migration, .. } => format!("failed {}", migration.name),
        });
    });
    (result, log)
}

/// The repository's first migration only: these tests are about the
/// protocol (dialects, failures, faults), not the schema's later versions,
/// and name their own broken migrations after it.
fn repo_files() -> Vec<MigrationFile> {
    let mut files = load_dir(&common::repo_migrations()).unwrap();
    files.truncate(1);
    files
}

fn with_file(mut files: Vec<MigrationFile>, name: &str, sql: &str) -> Vec<MigrationFile> {
    files.push(MigrationFile::from_bytes(Path::new(name), name, sql.as_bytes()).unwrap());
    latch_migrate::sort_and_check(files).unwrap()
}

fn table_count(standin: &StandIn, name: &str) -> i64 {
    standin.scalar(
        DB,
        &format!("SELECT count(*) FROM sqlite_master WHERE name = '{name}'"),
    )
}

/// Applies 0001 twice, checks the trigger over HTTP, then a broken second
/// migration, in the given response dialect.
fn full_cycle(extra_args: &[&str]) {
    let standin = StandIn::start(extra_args);
    standin.create_database(DB);

    let (result, log) = run_on(&standin, &repo_files());
    assert_eq!(
        result.unwrap().applied,
        ["0001_initial.sql"],
        "{extra_args:?}"
    );
    assert_eq!(log, ["applying 0001_initial.sql", "ok 0001_initial.sql"]);

    let (result, log) = run_on(&standin, &repo_files());
    let report = result.unwrap();
    assert!(report.applied.is_empty() && log.is_empty());
    assert_eq!(report.already_applied, 1);

    let rows = standin
        .exec(DB, "SELECT version, name, checksum FROM schema_migrations")
        .unwrap();
    assert_eq!(rows.rows.len(), 1);
    assert_eq!(
        rows.get(0, "name").unwrap().as_str(),
        Some("0001_initial.sql")
    );
    assert_eq!(
        rows.get(0, "checksum").unwrap().as_str(),
        Some(repo_files()[0].checksum.as_str())
    );

    // The trigger, created through the gateway's own statement splitting.
    standin
        .exec(
            DB,
            "INSERT INTO users (id, email, password_hash, full_name, created_at, updated_at) \
             VALUES ('u1', 'a@example.com', 'h', 'A', 1, 1); \
             INSERT INTO sessions (id, user_id, refresh_hash, created_at, last_used_at, expires_at) \
             VALUES ('s1', 'u1', 'hash-0', 1, 1, 100); \
             UPDATE sessions SET refresh_hash = 'hash-1', last_used_at = 42 WHERE id = 's1'",
        )
        .unwrap();
    let retired = standin
        .exec(
            DB,
            "SELECT hash, session_id, retired_at FROM retired_refresh_tokens",
        )
        .unwrap();
    assert_eq!(retired.rows.len(), 1);
    assert_eq!(retired.get(0, "hash").unwrap().as_str(), Some("hash-0"));
    assert_eq!(retired.get(0, "retired_at").unwrap().as_i64(), Some(42));

    // A valid statement, then a syntax error: neither it nor its row stays.
    let files = with_file(
        repo_files(),
        "0002_broken.sql",
        "CREATE TABLE half (x);\nSELEC 1;\n",
    );
    let (result, log) = run_on(&standin, &files);
    let err = result.unwrap_err();
    assert!(matches!(err, MigrateError::Apply { .. }), "{err:?}");
    assert!(err.to_string().contains("0002_broken.sql"), "{err}");
    assert!(err.to_string().contains("syntax error"), "{err}");
    assert_eq!(log, ["applying 0002_broken.sql", "failed 0002_broken.sql"]);
    assert_eq!(table_count(&standin, "half"), 0);
    assert_eq!(
        standin.scalar(DB, "SELECT count(*) FROM schema_migrations"),
        1
    );

    // A constraint failure in the middle of a file: same.
    let files = with_file(
        repo_files(),
        "0002_dup.sql",
        "CREATE TABLE half (x);\nINSERT INTO roles (id, name, created_at) VALUES ('role-x', 'user', 0);\n",
    );
    let err = run_on(&standin, &files).0.unwrap_err();
    assert!(err.to_string().contains("UNIQUE"), "{err}");
    assert_eq!(table_count(&standin, "half"), 0);

    // Fixed, it applies.
    let files = with_file(
        repo_files(),
        "0002_whole.sql",
        "CREATE TABLE whole (x TEXT); -- trailing comment, no newline",
    );
    assert_eq!(
        run_on(&standin, &files).0.unwrap().applied,
        ["0002_whole.sql"]
    );
    assert_eq!(table_count(&standin, "whole"), 1);
    assert!(!standin.stderr_log().contains("panicked"));
}

#[test]
fn full_cycle_default_dialect() {
    full_cycle(&[]);
}

#[test]
fn full_cycle_arrays_row_writes_new_errors() {
    full_cycle(&[
        "--rows",
        "arrays",
        "--write-shape",
        "row",
        "--errors",
        "new",
    ]);
}

#[test]
fn full_cycle_null_and_empty_write_shapes() {
    full_cycle(&["--write-shape", "null"]);
    full_cycle(&["--write-shape", "empty"]);
}

#[test]
fn status_over_http_changes_nothing() {
    let standin = StandIn::start(&[]);
    standin.create_database(DB);
    let mut target = standin.target(DB);
    let entries = migration_status(&mut target, &repo_files()).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, State::Pending);
    assert_eq!(table_count(&standin, "schema_migrations"), 0);

    run_on(&standin, &repo_files()).0.unwrap();
    let entries = migration_status(&mut target, &repo_files()).unwrap();
    assert!(matches!(entries[0].state, State::Applied { .. }));
}

#[test]
fn a_changed_file_is_refused_over_http() {
    let standin = StandIn::start(&[]);
    standin.create_database(DB);
    run_on(&standin, &repo_files()).0.unwrap();
    let mut files = repo_files();
    let changed = format!("{}\n-- edited\n", files[0].sql);
    files[0] = MigrationFile::from_bytes("x", "0001_initial.sql", changed.as_bytes()).unwrap();
    let err = run_on(&standin, &files).0.unwrap_err();
    assert!(matches!(err, MigrateError::Changed { .. }), "{err:?}");
    assert!(err.to_string().contains(&repo_files()[0].checksum), "{err}");
    assert!(err.to_string().contains(&files[0].checksum), "{err}");
}

/// Another deployer applies the same version between this one's plan and
/// its request: the INSERT's PRIMARY KEY fails this transaction.
#[test]
fn a_concurrent_deployer_is_reported() {
    struct Racing<T, U> {
        inner: T,
        other: Option<U>,
    }
    impl<T: Target, U: Target> Target for Racing<T, U> {
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

    let standin = StandIn::start(&[]);
    standin.create_database(DB);
    // An empty migration, so only the schema_migrations INSERT conflicts.
    let files = vec![MigrationFile::from_bytes("x", "0001_nothing.sql", b"-- nothing\n").unwrap()];
    let mut target = Racing {
        inner: standin.target(DB),
        other: Some(standin.target(DB)),
    };
    let err = migrate(&mut target, &files, &mut |_| {}).unwrap_err();
    let MigrateError::AppliedConcurrently { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(source, TargetError::Weblite(e) if e.is_unique_violation()),
        "{source:?}"
    );
    assert!(err.to_string().contains("another deployer"), "{err}");
    assert_eq!(
        standin.scalar(DB, "SELECT count(*) FROM schema_migrations"),
        1
    );

    // With the real schema, the other deployer's tables make it fail earlier.
    let standin = StandIn::start(&[]);
    standin.create_database(DB);
    let mut target = Racing {
        inner: standin.target(DB),
        other: Some(standin.target(DB)),
    };
    let err = migrate(&mut target, &repo_files(), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, MigrateError::AppliedConcurrently { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn gateway_faults() {
    let standin = StandIn::start(&[]);
    standin.create_database(DB);
    // ensure, exists check and read go through; the migration request gets a 503
    // without running: nothing applied, and the next run applies it.
    standin.add_faults(r#"{"kind": "status", "status": 503, "skip": 3}"#);
    let err = run_on(&standin, &repo_files()).0.unwrap_err();
    assert!(
        matches!(
            err,
            MigrateError::Apply {
                source: TargetError::Weblite(WebliteError::Server { status: 503, .. }),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(table_count(&standin, "users"), 0);
    assert_eq!(
        run_on(&standin, &repo_files()).0.unwrap().applied,
        ["0001_initial.sql"]
    );

    // The answer is lost after the migration committed: reported, and the
    // next run finds it applied.
    let files = with_file(repo_files(), "0002_more.sql", "CREATE TABLE more (x);");
    standin.add_faults(r#"{"kind": "cut", "when": "after", "skip": 3}"#);
    let err = run_on(&standin, &files).0.unwrap_err();
    assert!(
        matches!(err, MigrateError::AppliedConcurrently { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("answer to this attempt was lost"),
        "{err}"
    );
    let report = run_on(&standin, &files).0.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.already_applied, 2);

    // A paused node and a wrong key are reported as such, key not shown.
    standin.add_faults(r#"{"kind": "paused"}"#);
    let err = run_on(&standin, &files).0.unwrap_err();
    assert!(err.to_string().contains("paused"), "{err}");
    let url = latch_weblite::DatabaseUrl::parse(&format!(
        "http://127.0.0.1:{}/{DB}?apikey=wrong-key-123",
        standin.port
    ))
    .unwrap();
    let mut target = latch_migrate::HttpTarget::new(url, common::ureq_transport(common::agent()));
    let err = migrate(&mut target, &files, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("refused the credential"), "{err}");
    assert!(!err.to_string().contains("wrong-key-123"), "{err}");
    assert!(!target.describe().contains("wrong-key-123"));
}

#[test]
fn an_unknown_database_is_an_error() {
    let standin = StandIn::start(&[]);
    let err = run_on(&standin, &repo_files()).0.unwrap_err();
    assert!(matches!(err, MigrateError::Database(_)), "{err:?}");
    assert!(err.to_string().contains("not found"), "{err}");
}
