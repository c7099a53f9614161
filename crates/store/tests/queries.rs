//! The store's SQL against a real SQLite database with the real migrations,
//! through a native implementation of `Database` that behaves as the embedded
//! backend does (BEGIN IMMEDIATE ... COMMIT, rollback on error).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;

use futures::executor::block_on;
use latch_domain::{
    Assurance, AuditEvent, AuditKind, Email, Outcome, RefreshToken, Role, ThrottleKey,
    ThrottlePolicy, ThrottleState,
};
use latch_store::{
    AuditRecord, Database, NewSession, NewToken, NewUser, RefreshOutcome, RevokeOutcome, Rows,
    SignupOutcome, SignupThrottle, Statement, Store, StoreError, StoredKey, Throttles, Value,
};
use rusqlite::types::{ToSqlOutput, ValueRef};

struct Native {
    conn: RefCell<rusqlite::Connection>,
    /// SQL another request runs between the next batch's COMMIT and its
    /// read, as SQLite Cloud allows (it reads a batch's result after COMMIT).
    after_commit: RefCell<Option<String>>,
}

impl Native {
    fn migrated() -> Native {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for (i, file) in files.iter().enumerate() {
            conn.execute_batch(&std::fs::read_to_string(file).unwrap())
                .unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, 'test', 0)",
                rusqlite::params![i as i64 + 1, file.display().to_string()],
            )
            .unwrap();
        }
        Native {
            conn: RefCell::new(conn),
            after_commit: RefCell::new(None),
        }
    }

    fn run(conn: &rusqlite::Connection, s: &Statement) -> Result<Rows, StoreError> {
        let mut stmt = conn.prepare(&s.sql).map_err(err)?;
        let columns: Vec<String> = stmt.column_names().map(String::from).collect();
        let width = columns.len();
        let params: Vec<P> = s.params.iter().map(P).collect();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            out.push(
                (0..width)
                    .map(|i| match row.get_ref(i).unwrap() {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(i) => Value::Integer(i),
                        ValueRef::Real(f) => Value::Real(f),
                        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into()),
                        ValueRef::Blob(_) => Value::Null,
                    })
                    .collect(),
            );
        }
        Ok(Rows { columns, rows: out })
    }

    fn scalar(&self, sql: &str) -> i64 {
        self.conn.borrow().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

struct P<'a>(&'a Value);
impl rusqlite::ToSql for P<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn err(e: rusqlite::Error) -> StoreError {
    let message = e.to_string();
    if message.contains("UNIQUE constraint failed") {
        StoreError::Conflict(message)
    } else {
        StoreError::Query(message)
    }
}

impl Database for &Native {
    async fn query(&self, statement: &Statement) -> Result<Rows, StoreError> {
        Native::run(&self.conn.borrow(), statement)
    }

    async fn batch(
        &self,
        writes: &[Statement],
        then: Option<&Statement>,
    ) -> Result<Rows, StoreError> {
        let conn = self.conn.borrow();
        if let Some(other) = self.after_commit.borrow_mut().take() {
            conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
            for w in writes {
                Native::run(&conn, w)?;
            }
            conn.execute_batch("COMMIT").map_err(err)?;
            conn.execute_batch(&other).map_err(err)?;
            return then.map_or(Ok(Rows::default()), |r| Native::run(&conn, r));
        }
        conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        let outcome = (|| {
            for w in writes {
                Native::run(&conn, w)?;
            }
            then.map_or(Ok(Rows::default()), |r| Native::run(&conn, r))
        })();
        match outcome {
            Ok(rows) => {
                conn.execute_batch("COMMIT").map_err(err)?;
                Ok(rows)
            }
            Err(e) => {
                conn.execute_batch("ROLLBACK").unwrap();
                Err(e)
            }
        }
    }

    fn backend(&self) -> &'static str {
        "native-test"
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn audit(kind: AuditKind, outcome: Outcome, at: i64) -> AuditRecord {
    AuditRecord {
        id: format!(
            "audit-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
        at,
        event: AuditEvent::new(kind, outcome),
        request_id: Some("req-1".into()),
    }
}

/// The event an attempt records if a lock refuses it.
fn refusal(at: i64) -> AuditRecord {
    audit(AuditKind::Signin, Outcome::Denied, at)
}

fn sign_up(store: &Store<&Native>, id: &str, email: &str) -> SignupOutcome {
    let email = Email::parse(email).unwrap();
    block_on(store.create_user(
        &NewUser {
            id,
            email: &email,
            password_hash: "$argon2id$hash",
            full_name: "Jane Doe",
            now: 1_000,
            verification: NewToken {
                hash: &format!("verification-of-{id}"),
                expires_at: 1_000 + 86_400,
            },
        },
        None,
        &audit(AuditKind::Signup, Outcome::Success, 1_000),
        &audit(AuditKind::VerificationRequested, Outcome::Success, 1_000),
        &audit(AuditKind::Signup, Outcome::Failure, 1_000),
    ))
    .unwrap()
}

fn session(store: &Store<&Native>, id: &str, user: &str, refresh: &RefreshToken, now: i64) {
    let hash = latch_domain::parse_refresh_token(refresh.as_str()).unwrap();
    let email = Email::parse("x@example.com").unwrap();
    let key = ThrottleKey::account(&email);
    block_on(store.finish_signin(
        &NewSession {
            id,
            user_id: user,
            refresh_hash: &hash,
            now,
            expires_at: now + 3_600,
            client_ip: Some("127.0.0.1"),
            user_agent: Some("test"),
            assurance: Assurance::Password,
        },
        Throttles {
            account: (&key, &ThrottlePolicy::ACCOUNT),
            client: None,
        },
        &audit(AuditKind::Signin, Outcome::Success, now),
    ))
    .unwrap();
}

fn token(byte: u8) -> (RefreshToken, latch_domain::RefreshTokenHash) {
    RefreshToken::from_random([byte; 32])
}

#[test]
fn sign_up_creates_user_with_role_and_refuses_duplicates_in_one_round_trip() {
    let db = Native::migrated();
    let store = Store::new(&db);
    assert_eq!(
        sign_up(&store, "u1", "Jane@Example.com"),
        SignupOutcome::Created
    );
    assert_eq!(store.round_trips(), 1);
    assert_eq!(
        sign_up(&store, "u2", "jane@example.com "),
        SignupOutcome::EmailTaken
    );
    assert_eq!(db.scalar("SELECT count(*) FROM users"), 1);
    assert_eq!(
        db.scalar("SELECT count(*) FROM user_roles WHERE user_id = 'u1'"),
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM user_roles WHERE user_id = 'u2'"),
        0
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM audit_events WHERE event = 'signup' AND outcome = 'success'"
        ),
        1
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM audit_events WHERE event = 'signup' AND outcome = 'failure'"
        ),
        1
    );
}

#[test]
fn throttle_sql_follows_the_domain_rule() {
    let db = Native::migrated();
    let store = Store::new(&db);
    let email = Email::parse("a@example.com").unwrap();
    let key = ThrottleKey::account(&email);
    let policy = ThrottlePolicy::ACCOUNT;
    let throttles = Throttles {
        account: (&key, &policy),
        client: None,
    };
    let raw = || -> ThrottleState {
        db.conn
            .borrow()
            .query_row(
                "SELECT failures, window_started_at, locked_until FROM throttle WHERE key = ?",
                [key.as_str()],
                |r| {
                    Ok(ThrottleState {
                        failures: r.get(0)?,
                        window_started_at: r.get(1)?,
                        locked_until: r.get(2)?,
                    })
                },
            )
            .unwrap()
    };
    // An expired lock means the same as none.
    let effective = |s: ThrottleState, now: i64| ThrottleState {
        locked_until: if s.locked_until > now {
            s.locked_until
        } else {
            0
        },
        ..s
    };
    let mut expected: Option<ThrottleState> = None;
    let mut now = 10_000;
    let mut failures_registered = 0;
    for step in 0..40 {
        let attempt = format!("attempt-{step}");
        let context =
            block_on(store.begin_signin(&email, throttles, &attempt, &refusal(now), now)).unwrap();
        match expected {
            Some(state) if state.locked_until > now => {
                // Locked: refused before any password check, not counted.
                assert!(context.refused, "step {step}");
                assert_eq!(
                    effective(context.account, now),
                    effective(state, now),
                    "step {step}"
                );
                assert!(policy.check(&context.account, now).is_err());
            }
            _ => {
                // Counted, with the lock this attempt earns already set.
                assert!(!context.refused, "step {step}");
                let locked_out = block_on(store.fail_signin(
                    throttles,
                    &attempt,
                    &audit(AuditKind::Signin, Outcome::Failure, now),
                    &audit(AuditKind::Lockout, Outcome::Denied, now),
                    now,
                ))
                .unwrap();
                failures_registered += 1;
                let next = policy.after_failure(expected, now);
                // Exactly the failure that set a lock records the lock-out
                // (it was not refused, so no earlier lock was running).
                assert_eq!(locked_out, next.locked_until > now, "step {step}");
                assert_eq!(
                    effective(raw(), now),
                    effective(next, now),
                    "step {step} at {now}"
                );
                assert_eq!(effective(context.account, now), effective(next, now));
                expected = Some(next);
            }
        }
        // Mostly quick retries; now and then wait out the lock, once a long pause.
        now += match step {
            20 => 3 * policy.window_secs,
            s if s % 3 == 0 => 61,
            _ => 7,
        };
    }
    assert!(
        failures_registered > 8,
        "the sequence must reach several locks"
    );
    assert!(raw().locked_until > 0);
}

#[test]
fn sign_in_reserves_account_attempts_and_success_releases_them() {
    let db = Native::migrated();
    let store = Store::new(&db);
    sign_up(&store, "u1", "jane@example.com");
    let email = Email::parse("jane@example.com").unwrap();
    let account = ThrottleKey::account(&email);
    let client = ThrottleKey::client("10.0.0.1".parse().unwrap());
    let throttles = Throttles {
        account: (&account, &ThrottlePolicy::ACCOUNT),
        client: Some((&client, &ThrottlePolicy::CLIENT)),
    };
    let store = Store::new(&db);
    let context =
        block_on(store.begin_signin(&email, throttles, "attempt-1", &refusal(2_000), 2_000))
            .unwrap();
    assert_eq!(store.round_trips(), 1);
    let creds = context.credentials.unwrap();
    assert_eq!(creds.user.id, "u1");
    assert_eq!(creds.user.roles, vec!["user".to_string()]);
    assert_eq!(context.account.failures, 1);
    assert!(!context.refused);
    assert_eq!(
        context.client.unwrap().failures,
        0,
        "an address counts failures only, after the check"
    );
    let (refresh, hash) = token(1);
    let _ = refresh;
    block_on(store.finish_signin(
        &NewSession {
            id: "s1",
            user_id: "u1",
            refresh_hash: &hash,
            now: 2_000,
            expires_at: 9_000,
            client_ip: Some("10.0.0.1"),
            user_agent: None,
            assurance: Assurance::Password,
        },
        throttles,
        &audit(AuditKind::Signin, Outcome::Success, 2_000),
    ))
    .unwrap();
    assert_eq!(store.round_trips(), 2);
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM throttle WHERE key = '{}'",
            account.as_str()
        )),
        0
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM throttle WHERE key = '{}'",
            client.as_str()
        )),
        0
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions WHERE id = 's1' AND revoked_at IS NULL"),
        1
    );

    // An unknown email is throttled the same way (no enumeration by lock-out).
    let ghost = Email::parse("ghost@example.com").unwrap();
    let ghost_key = ThrottleKey::account(&ghost);
    let ghost_throttles = Throttles {
        account: (&ghost_key, &ThrottlePolicy::ACCOUNT),
        client: None,
    };
    for i in 0..5 {
        let c = block_on(store.begin_signin(
            &ghost,
            ghost_throttles,
            &format!("g{i}"),
            &refusal(3_000 + i),
            3_000 + i,
        ))
        .unwrap();
        assert!(c.credentials.is_none());
        assert!(!c.refused);
        let locked_out = block_on(store.fail_signin(
            ghost_throttles,
            &format!("g{i}"),
            &audit(AuditKind::Signin, Outcome::Failure, 3_000 + i),
            &audit(AuditKind::Lockout, Outcome::Denied, 3_000 + i),
            3_000 + i,
        ))
        .unwrap();
        assert_eq!(locked_out, i == 4, "the fifth failure locks the account");
    }
    let late_refusal = refusal(3_010);
    let locked =
        block_on(store.begin_signin(&ghost, ghost_throttles, "g-late", &late_refusal, 3_010))
            .unwrap();
    assert!(locked.refused);
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM audit_events WHERE id = '{}'",
            late_refusal.id
        )),
        1,
        "the refusal is recorded in the same round trip"
    );
    let refused = ThrottlePolicy::ACCOUNT
        .check(&locked.account, 3_010)
        .unwrap_err();
    assert_eq!(refused.retry_after_secs, 54);
    assert_eq!(
        locked.account.failures, 5,
        "attempts while locked are not counted"
    );

    // Parallel attempts: the sixth is refused even though none has failed yet.
    let racer = Email::parse("racer@example.com").unwrap();
    let racer_key = ThrottleKey::account(&racer);
    let racer_throttles = Throttles {
        account: (&racer_key, &ThrottlePolicy::ACCOUNT),
        client: None,
    };
    let counted: Vec<bool> = (0..8)
        .map(|i| {
            !block_on(store.begin_signin(
                &racer,
                racer_throttles,
                &format!("r{i}"),
                &refusal(4_000),
                4_000,
            ))
            .unwrap()
            .refused
        })
        .collect();
    assert_eq!(
        counted,
        vec![true, true, true, true, true, false, false, false]
    );
    // Their failures, reported in any order: only the fifth attempt, whose
    // count set the lock, records the lock-out.
    let locked_out: Vec<bool> = (0..5)
        .rev()
        .map(|i| {
            block_on(store.fail_signin(
                racer_throttles,
                &format!("r{i}"),
                &audit(AuditKind::Signin, Outcome::Failure, 4_000),
                &audit(AuditKind::Lockout, Outcome::Denied, 4_000),
                4_000,
            ))
            .unwrap()
        })
        .collect();
    assert_eq!(locked_out, vec![true, false, false, false, false]);

    // A locked client address refuses the attempt without counting it on the account.
    let victim = Email::parse("victim@example.com").unwrap();
    let victim_key = ThrottleKey::account(&victim);
    let blocked_ip = ThrottleKey::client("10.9.9.9".parse().unwrap());
    db.conn
        .borrow()
        .execute(
            "INSERT INTO throttle (key, failures, window_started_at, locked_until) VALUES (?, 20, 4000, 9000)",
            [blocked_ip.as_str()],
        )
        .unwrap();
    let both = Throttles {
        account: (&victim_key, &ThrottlePolicy::ACCOUNT),
        client: Some((&blocked_ip, &ThrottlePolicy::CLIENT)),
    };
    let refused =
        block_on(store.begin_signin(&victim, both, "v1", &refusal(4_100), 4_100)).unwrap();
    assert!(refused.refused);
    assert_eq!(refused.client.unwrap().failures, 20, "not counted");
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM throttle WHERE key = '{}'",
            victim_key.as_str()
        )),
        0
    );
}

#[test]
fn address_failure_sql_follows_the_domain_rule() {
    let db = Native::migrated();
    let store = Store::new(&db);
    let account = ThrottleKey::account(&Email::parse("a@example.com").unwrap());
    let client = ThrottleKey::client("10.1.2.3".parse().unwrap());
    let policy = ThrottlePolicy::CLIENT;
    let throttles = Throttles {
        account: (&account, &ThrottlePolicy::ACCOUNT),
        client: Some((&client, &policy)),
    };
    let mut expected: Option<ThrottleState> = None;
    let mut now = 10_000;
    for step in 0..60 {
        block_on(store.fail_signin(
            throttles,
            &format!("f{step}"),
            &audit(AuditKind::Signin, Outcome::Failure, now),
            &audit(AuditKind::Lockout, Outcome::Denied, now),
            now,
        ))
        .unwrap();
        // Every evaluated failure counts, locked or not.
        let next = policy.after_failure(expected, now);
        let stored = db
            .conn
            .borrow()
            .query_row(
                "SELECT failures, window_started_at, locked_until FROM throttle WHERE key = ?",
                [client.as_str()],
                |r| {
                    Ok(ThrottleState {
                        failures: r.get(0)?,
                        window_started_at: r.get(1)?,
                        locked_until: r.get(2)?,
                    })
                },
            )
            .unwrap();
        assert_eq!(stored.failures, next.failures, "step {step}");
        assert_eq!(stored.window_started_at, next.window_started_at);
        assert_eq!(stored.locked_until.max(now), next.locked_until.max(now));
        expected = Some(next);
        now += match step {
            30 => 5 * policy.window_secs,
            s if s % 4 == 0 => 50,
            _ => 3,
        };
    }
}

#[test]
fn an_address_counts_failures_not_attempts_in_flight() {
    let db = Native::migrated();
    let store = Store::new(&db);
    let client = ThrottleKey::client("10.0.0.7".parse().unwrap());
    let emails: Vec<Email> = (0..30)
        .map(|i| Email::parse(&format!("user{i}@example.com")).unwrap())
        .collect();
    let keys: Vec<ThrottleKey> = emails.iter().map(ThrottleKey::account).collect();
    let throttles = |i: usize| Throttles {
        account: (&keys[i], &ThrottlePolicy::ACCOUNT),
        client: Some((&client, &ThrottlePolicy::CLIENT)),
    };
    // Thirty users behind one address, all in flight at once: none refused,
    // and nothing counted on the address.
    for (i, email) in emails.iter().enumerate() {
        let context = block_on(store.begin_signin(
            email,
            throttles(i),
            &format!("a{i}"),
            &refusal(1_000),
            1_000,
        ))
        .unwrap();
        assert!(!context.refused, "attempt {i}");
        assert_eq!(context.client.unwrap().failures, 0);
    }
    // Their failures count on the address: the twentieth locks it, and only
    // that one records the lock-out.
    let locked_out: Vec<bool> = (0..20)
        .map(|i| {
            block_on(store.fail_signin(
                throttles(i),
                &format!("a{i}"),
                &audit(AuditKind::Signin, Outcome::Failure, 1_001),
                &audit(AuditKind::Lockout, Outcome::Denied, 1_001),
                1_001,
            ))
            .unwrap()
        })
        .collect();
    assert_eq!(locked_out.iter().filter(|l| **l).count(), 1);
    assert!(locked_out[19]);
    assert_eq!(
        db.scalar(&format!(
            "SELECT failures FROM throttle WHERE key = '{}'",
            client.as_str()
        )),
        20
    );
    // A guess already in flight when the lock landed was evaluated all the
    // same: it counts and lengthens the lock, without a second lock-out.
    assert!(
        !block_on(store.fail_signin(
            throttles(20),
            "a20",
            &audit(AuditKind::Signin, Outcome::Failure, 1_002),
            &audit(AuditKind::Lockout, Outcome::Denied, 1_002),
            1_002,
        ))
        .unwrap()
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT failures FROM throttle WHERE key = '{}'",
            client.as_str()
        )),
        21
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT locked_until FROM throttle WHERE key = '{}'",
            client.as_str()
        )),
        1_002 + 120
    );
    let refused =
        block_on(store.begin_signin(&emails[21], throttles(21), "late", &refusal(1_003), 1_003))
            .unwrap();
    assert!(refused.refused);
    let retry = ThrottlePolicy::CLIENT
        .check(&refused.client.unwrap(), 1_003)
        .unwrap_err();
    assert_eq!(retry.retry_after_secs, 119);
}

#[test]
fn whether_an_attempt_was_refused_survives_other_attempts_after_commit() {
    let db = Native::migrated();
    let store = Store::new(&db);
    sign_up(&store, "u1", "jane@example.com");
    let email = Email::parse("jane@example.com").unwrap();
    let account = ThrottleKey::account(&email);
    let throttles = Throttles {
        account: (&account, &ThrottlePolicy::ACCOUNT),
        client: None,
    };
    let key = account.as_str();
    // Between this attempt's COMMIT and its read: another attempt counted
    // (and took the row's last attempt), a success cleared the counter, or
    // a fifth failure locked the account. This attempt was counted before
    // any of them and must not read as refused.
    for (n, other) in [
        format!("UPDATE throttle SET failures = failures + 1, last_attempt = 'other' WHERE key = '{key}'"),
        format!("DELETE FROM throttle WHERE key = '{key}'"),
        format!("UPDATE throttle SET failures = 5, locked_until = 99999, last_attempt = 'other' WHERE key = '{key}'"),
    ]
    .into_iter()
    .enumerate()
    {
        db.conn.borrow().execute_batch("DELETE FROM throttle").unwrap();
        *db.after_commit.borrow_mut() = Some(other);
        let now = 5_000 + i64::try_from(n).unwrap();
        let context =
            block_on(store.begin_signin(&email, throttles, &format!("x{n}"), &refusal(now), now))
                .unwrap();
        assert!(!context.refused, "case {n}");
        assert!(context.credentials.is_some());
    }
    // And an attempt that met a lock still reads as refused when the lock
    // is lifted before its read.
    db.conn
        .borrow()
        .execute_batch("DELETE FROM throttle")
        .unwrap();
    db.conn
        .borrow()
        .execute(
            "INSERT INTO throttle (key, failures, window_started_at, locked_until) VALUES (?, 5, 6000, 9000)",
            [key],
        )
        .unwrap();
    *db.after_commit.borrow_mut() = Some(format!("DELETE FROM throttle WHERE key = '{key}'"));
    let context =
        block_on(store.begin_signin(&email, throttles, "late", &refusal(6_001), 6_001)).unwrap();
    assert!(context.refused);
}

#[test]
fn rotation_is_single_use_and_reuse_revokes_the_session() {
    let db = Native::migrated();
    let store = Store::new(&db);
    sign_up(&store, "u1", "jane@example.com");
    let (first, first_hash) = token(1);
    session(&store, "s1", "u1", &first, 5_000);
    let (_, second_hash) = token(2);
    let (_, third_hash) = token(3);

    let store = Store::new(&db);
    let outcome = block_on(store.rotate_refresh(
        &first_hash,
        &second_hash,
        5_010,
        9_999,
        &audit(AuditKind::Refresh, Outcome::Success, 5_010),
        &audit(AuditKind::RefreshReuseDetected, Outcome::Denied, 5_010),
    ))
    .unwrap();
    assert_eq!(store.round_trips(), 1);
    match outcome {
        RefreshOutcome::Rotated {
            session_id, user, ..
        } => {
            assert_eq!(session_id, "s1");
            assert_eq!(user.roles, vec!["user".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM retired_refresh_tokens WHERE session_id = 's1'"),
        1
    );
    // Never both active and retired.
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions s JOIN retired_refresh_tokens r ON r.hash = s.refresh_hash"),
        0
    );

    // The first token again: reuse. The session is revoked, the current token dies with it.
    let outcome = block_on(store.rotate_refresh(
        &first_hash,
        &third_hash,
        5_020,
        9_999,
        &audit(AuditKind::Refresh, Outcome::Success, 5_020),
        &audit(AuditKind::RefreshReuseDetected, Outcome::Denied, 5_020),
    ))
    .unwrap();
    assert_eq!(
        outcome,
        RefreshOutcome::Reused {
            session_id: "s1".into(),
            user_id: "u1".into()
        }
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM sessions WHERE id = 's1' AND revoked_reason = 'refresh_reuse'"
        ),
        1
    );
    let (_, fourth_hash) = token(4);
    let after = block_on(store.rotate_refresh(
        &second_hash,
        &fourth_hash,
        5_030,
        9_999,
        &audit(AuditKind::Refresh, Outcome::Success, 5_030),
        &audit(AuditKind::RefreshReuseDetected, Outcome::Denied, 5_030),
    ))
    .unwrap();
    assert_eq!(
        after,
        RefreshOutcome::Invalid,
        "a revoked family yields nothing"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM audit_events WHERE event = 'refresh_reuse_detected'"),
        1
    );
}

#[test]
fn expired_sessions_and_inactive_users_cannot_refresh() {
    let db = Native::migrated();
    let store = Store::new(&db);
    sign_up(&store, "u1", "jane@example.com");
    let (first, first_hash) = token(1);
    session(&store, "s1", "u1", &first, 5_000);
    let (_, next) = token(2);
    let rotate = |now| {
        block_on(store.rotate_refresh(
            &first_hash,
            &next,
            now,
            now + 10,
            &audit(AuditKind::Refresh, Outcome::Success, now),
            &audit(AuditKind::RefreshReuseDetected, Outcome::Denied, now),
        ))
        .unwrap()
    };
    assert_eq!(rotate(5_000 + 3_600), RefreshOutcome::Invalid);
    db.conn
        .borrow()
        .execute("UPDATE users SET is_active = 0", [])
        .unwrap();
    assert_eq!(rotate(5_001), RefreshOutcome::Invalid);
}

#[test]
fn sign_out_and_session_management() {
    let db = Native::migrated();
    let store = Store::new(&db);
    sign_up(&store, "u1", "jane@example.com");
    sign_up(&store, "u2", "john@example.com");
    session(&store, "s1", "u1", &token(1).0, 5_000);
    session(&store, "s2", "u1", &token(2).0, 5_001);
    session(&store, "other", "u2", &token(3).0, 5_002);

    let listed = block_on(store.list_sessions("s1", "u1", 5_010))
        .unwrap()
        .unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec!["s2", "s1"]
    );
    assert!(listed.iter().find(|s| s.id == "s1").unwrap().current);

    let revoke = |caller: &str, target: &str| {
        block_on(store.revoke_session(
            caller,
            "u1",
            target,
            5_020,
            &audit(AuditKind::SessionRevoked, Outcome::Success, 5_020),
        ))
        .unwrap()
    };
    assert_eq!(
        revoke("s1", "other"),
        RevokeOutcome::NotFound,
        "not the caller's session"
    );
    assert_eq!(revoke("s1", "s2"), RevokeOutcome::Revoked);
    assert_eq!(revoke("s1", "s2"), RevokeOutcome::NotFound);
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions WHERE id = 'other' AND revoked_at IS NULL"),
        1
    );

    assert!(
        block_on(store.sign_out(
            "s1",
            "u1",
            5_030,
            &audit(AuditKind::Signout, Outcome::Success, 5_030)
        ))
        .unwrap()
    );
    assert!(
        !block_on(store.sign_out(
            "s1",
            "u1",
            5_031,
            &audit(AuditKind::Signout, Outcome::Success, 5_031)
        ))
        .unwrap()
    );
    assert!(
        block_on(store.list_sessions("s1", "u1", 5_040))
            .unwrap()
            .is_none()
    );
    assert!(
        block_on(store.profile("s1", "u1", 5_040))
            .unwrap()
            .is_none()
    );
    assert_eq!(revoke("s1", "s1"), RevokeOutcome::CallerInactive);
}

#[test]
fn profile_update_and_password_change_take_effect_at_once() {
    let db = Native::migrated();
    let store = Store::new(&db);
    sign_up(&store, "u1", "jane@example.com");
    session(&store, "s1", "u1", &token(1).0, 5_000);
    session(&store, "s2", "u1", &token(2).0, 5_001);
    let profile = block_on(store.profile("s1", "u1", 5_010)).unwrap().unwrap();
    assert_eq!(profile.full_name, "Jane Doe");
    assert_eq!(profile.email, "jane@example.com");
    let updated = block_on(store.update_profile("s1", "u1", "Jane Q. Doe", 5_011))
        .unwrap()
        .unwrap();
    assert_eq!(updated.full_name, "Jane Q. Doe");
    assert!(
        block_on(store.update_profile("s1", "someone-else", "X Y", 5_011))
            .unwrap()
            .is_none()
    );

    let key = ThrottleKey::password_check("u1");
    let check = block_on(store.begin_password_check(
        "s1",
        "u1",
        (&key, &ThrottlePolicy::ACCOUNT),
        "attempt-1",
        &refusal(5_012),
        5_012,
    ))
    .unwrap()
    .unwrap();
    assert!(!check.refused);
    assert_eq!(check.counter.failures, 1);
    let creds = check.credentials;
    assert!(
        block_on(store.begin_password_check(
            "s1",
            "intruder",
            (&key, &ThrottlePolicy::ACCOUNT),
            "a2",
            &refusal(5_012),
            5_012
        ))
        .unwrap()
        .is_none()
    );
    let changed = block_on(store.change_password(
        "s1",
        "u1",
        &creds.password_hash,
        "$argon2id$new",
        &key,
        5_013,
        &audit(AuditKind::PasswordChange, Outcome::Success, 5_013),
    ))
    .unwrap();
    assert!(changed);
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM sessions WHERE id = 's2' AND revoked_reason = 'password_change'"
        ),
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions WHERE id = 's1' AND revoked_at IS NULL"),
        1
    );
    // A second change based on the old hash loses.
    assert_eq!(
        db.scalar("SELECT count(*) FROM throttle WHERE key = 'pwd:u1'"),
        0
    );
    let again = block_on(store.change_password(
        "s1",
        "u1",
        &creds.password_hash,
        "$argon2id$other",
        &key,
        5_014,
        &audit(AuditKind::PasswordChange, Outcome::Success, 5_014),
    ))
    .unwrap();
    assert!(!again);
    assert_eq!(
        db.scalar("SELECT count(*) FROM users WHERE password_hash = '$argon2id$new'"),
        1
    );
}

#[test]
fn development_key_is_stored_once() {
    let db = Native::migrated();
    let store = Store::new(&db);
    assert_eq!(block_on(store.development_key()).unwrap(), None);
    let a = StoredKey {
        kid: "a".into(),
        private_key: "pa".into(),
    };
    let b = StoredKey {
        kid: "b".into(),
        private_key: "pb".into(),
    };
    assert_eq!(block_on(store.store_development_key(&a, 1)).unwrap(), a);
    assert_eq!(
        block_on(store.store_development_key(&b, 2)).unwrap(),
        a,
        "the first stored key wins"
    );
    assert_eq!(block_on(store.development_key()).unwrap(), Some(a));
}

#[test]
fn schema_version_matches_the_migrations() {
    let db = Native::migrated();
    let store = Store::new(&db);
    assert_eq!(
        block_on(store.schema_version()).unwrap(),
        latch_store::SCHEMA_VERSION
    );
    const { assert!(latch_store::SCHEMA_VERSION >= 1) };
}

fn recovery(
    store: &Store<&Native>,
    email: &str,
    hash: &str,
    attempt: &str,
    now: i64,
) -> latch_store::RecoveryRequest {
    let email = Email::parse(email).unwrap();
    let key = ThrottleKey::recovery(&email);
    let client = ThrottleKey::recovery_client("192.0.2.1".parse().unwrap());
    block_on(store.request_recovery(
        &email,
        Throttles {
            account: (&key, &ThrottlePolicy::RECOVERY_ACCOUNT),
            client: Some((&client, &ThrottlePolicy::RECOVERY_CLIENT)),
        },
        attempt,
        &audit(AuditKind::RecoveryRequested, Outcome::Denied, now),
        &audit(AuditKind::RecoveryRequested, Outcome::Success, now),
        &audit(AuditKind::RecoveryRequested, Outcome::Failure, now),
        NewToken {
            hash,
            expires_at: now + 1_800,
        },
        now,
    ))
    .unwrap()
}

fn reset(store: &Store<&Native>, hash: &str, now: i64) -> Option<String> {
    block_on(store.reset_password(
        hash,
        "$argon2id$new",
        &audit(AuditKind::PasswordReset, Outcome::Success, now),
        &audit(AuditKind::PasswordReset, Outcome::Failure, now),
        now,
    ))
    .unwrap()
}

#[test]
fn recovery_tokens_are_single_use_newest_only_and_expire() {
    let db = Native::migrated();
    let store = Store::new(&db);
    sign_up(&store, "u1", "jane@example.com");
    session(&store, "s1", "u1", &token(1).0, 2_000);
    session(&store, "s2", "u1", &token(2).0, 2_001);

    // An unknown address does the same work and stores nothing.
    let before = store.round_trips();
    let unknown = recovery(&store, "nobody@example.com", "h-unknown", "a0", 3_000);
    assert_eq!(store.round_trips() - before, 1);
    assert_eq!((unknown.refused, unknown.issued), (false, false));
    assert_eq!(
        db.scalar("SELECT count(*) FROM audit_events WHERE event = 'recovery_requested' AND outcome = 'failure'"),
        1
    );

    let first = recovery(&store, "jane@example.com", "h-first", "a1", 3_000);
    assert_eq!((first.refused, first.issued), (false, true));
    let second = recovery(&store, "Jane@example.com", "h-second", "a2", 3_001);
    assert!(second.issued);
    // Only the newest is valid.
    assert_eq!(reset(&store, "h-first", 3_002), None);
    let before = store.round_trips();
    assert_eq!(reset(&store, "h-second", 3_003).as_deref(), Some("u1"));
    assert_eq!(store.round_trips() - before, 1);
    // Single use.
    assert_eq!(reset(&store, "h-second", 3_004), None);
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM users WHERE id = 'u1' AND password_hash = '$argon2id$new' \
             AND email_verified_at = 3003"
        ),
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions WHERE user_id = 'u1' AND revoked_reason = 'password_reset'"),
        2
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM audit_events WHERE event = 'password_reset' AND outcome = 'success' AND user_id = 'u1'"),
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM audit_events WHERE event = 'password_reset' AND outcome = 'failure'"),
        2
    );

    // Expiry.
    recovery(&store, "jane@example.com", "h-late", "a3", 4_000);
    assert_eq!(reset(&store, "h-late", 4_000 + 1_800), None);
    assert_eq!(
        db.scalar("SELECT count(*) FROM users WHERE password_hash = '$argon2id$new'"),
        1
    );

    // An inactive account gets no token, and a token issued before cannot be used.
    recovery(&store, "jane@example.com", "h-before-disable", "a4", 5_000);
    db.conn
        .borrow()
        .execute("UPDATE users SET is_active = 0", [])
        .unwrap();
    assert_eq!(reset(&store, "h-before-disable", 5_001), None);
    let inactive = recovery(&store, "jane@example.com", "h-inactive", "a5", 5_002);
    assert!(!inactive.issued);
}

#[test]
fn recovery_requests_lock_out_and_a_lockout_issues_nothing() {
    let db = Native::migrated();
    let store = Store::new(&db);
    sign_up(&store, "u1", "jane@example.com");
    let max = ThrottlePolicy::RECOVERY_ACCOUNT.max_failures;
    for i in 0..max {
        let request = recovery(
            &store,
            "jane@example.com",
            &format!("h{i}"),
            &format!("a{i}"),
            1_000 + i64::from(i),
        );
        assert_eq!(
            (request.refused, request.issued),
            (false, true),
            "request {i}"
        );
    }
    let locked = recovery(&store, "jane@example.com", "h-locked", "a-locked", 1_100);
    assert_eq!((locked.refused, locked.issued), (true, false));
    // The newest token before the lock is still the one that works.
    assert_eq!(
        reset(&store, &format!("h{}", max - 1), 1_101).as_deref(),
        Some("u1")
    );
    // Sign-in's counter was never touched.
    let email = Email::parse("jane@example.com").unwrap();
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM throttle WHERE key = '{}'",
            ThrottleKey::account(&email).as_str()
        )),
        0
    );
}

#[test]
fn verification_marks_the_address_it_was_sent_to_once() {
    let db = Native::migrated();
    let store = Store::new(&db);
    sign_up(&store, "u1", "jane@example.com");
    session(&store, "s1", "u1", &token(1).0, 2_000);
    let profile = block_on(store.profile("s1", "u1", 2_001)).unwrap().unwrap();
    assert!(!profile.email_verified);
    let verify = |hash: &str, now: i64| {
        block_on(store.verify_email(
            hash,
            &audit(AuditKind::EmailVerified, Outcome::Success, now),
            &audit(AuditKind::EmailVerified, Outcome::Failure, now),
            now,
        ))
        .unwrap()
    };
    let resend = |hash: &str, attempt: &str, now: i64| {
        let key = ThrottleKey::verification_resend("u1");
        block_on(store.request_verification(
            "s1",
            "u1",
            (&key, &ThrottlePolicy::VERIFICATION_RESEND),
            attempt,
            &audit(AuditKind::VerificationRequested, Outcome::Denied, now),
            &audit(AuditKind::VerificationRequested, Outcome::Success, now),
            NewToken {
                hash,
                expires_at: now + 86_400,
            },
            now,
        ))
        .unwrap()
    };
    // A resend supersedes the sign-up's token.
    let request = resend("h-resent", "r1", 2_002).unwrap();
    assert_eq!(request.email, "jane@example.com");
    assert!(request.issued && !request.refused && !request.already_verified);
    assert_eq!(verify("verification-of-u1", 2_003), None);
    assert_eq!(verify("h-resent", 2_004).as_deref(), Some("u1"));
    assert_eq!(verify("h-resent", 2_005), None);
    let profile = block_on(store.profile("s1", "u1", 2_006)).unwrap().unwrap();
    assert!(profile.email_verified);
    let again = resend("h-again", "r2", 2_007).unwrap();
    assert!(again.already_verified && !again.issued);
    // Another session's id gives nothing.
    let key = ThrottleKey::verification_resend("u1");
    assert!(
        block_on(store.request_verification(
            "s-unknown",
            "u1",
            (&key, &ThrottlePolicy::VERIFICATION_RESEND),
            "r3",
            &audit(AuditKind::VerificationRequested, Outcome::Denied, 2_008),
            &audit(AuditKind::VerificationRequested, Outcome::Success, 2_008),
            NewToken {
                hash: "h-x",
                expires_at: 9_999
            },
            2_008,
        ))
        .unwrap()
        .is_none()
    );
}

#[test]
fn sign_ups_from_one_address_are_throttled_whether_or_not_the_email_exists() {
    let db = Native::migrated();
    let store = Store::new(&db);
    let key = ThrottleKey::signup_client("192.0.2.9".parse().unwrap());
    let policy = ThrottlePolicy::signup(3, 3_600);
    let attempt = |n: u32, email: &str, now: i64| {
        let email = Email::parse(email).unwrap();
        let id = format!("u{n}");
        let refusal = audit(AuditKind::Signup, Outcome::Denied, now);
        let before = store.round_trips();
        let outcome = block_on(store.create_user(
            &NewUser {
                id: &id,
                email: &email,
                password_hash: "$argon2id$hash",
                full_name: "Jane Doe",
                now,
                verification: NewToken {
                    hash: &format!("v-{n}"),
                    expires_at: now + 86_400,
                },
            },
            Some(SignupThrottle {
                key: &key,
                policy: &policy,
                attempt_id: &format!("a{n}"),
                refusal: &refusal,
            }),
            &audit(AuditKind::Signup, Outcome::Success, now),
            &audit(AuditKind::VerificationRequested, Outcome::Success, now),
            &audit(AuditKind::Signup, Outcome::Failure, now),
        ))
        .unwrap();
        assert_eq!(store.round_trips() - before, 1);
        outcome
    };
    assert_eq!(attempt(1, "a@example.com", 1_000), SignupOutcome::Created);
    // A taken email counts too.
    assert_eq!(
        attempt(2, "a@example.com", 1_001),
        SignupOutcome::EmailTaken
    );
    assert_eq!(attempt(3, "b@example.com", 1_002), SignupOutcome::Created);
    // The fourth is refused, for a new email and a taken one alike.
    for (n, email) in [(4, "c@example.com"), (5, "a@example.com")] {
        match attempt(n, email, 1_010) {
            SignupOutcome::Refused(counter) => {
                assert_eq!(
                    policy.check(&counter, 1_010).unwrap_err().retry_after_secs,
                    3_592
                )
            }
            other => panic!("{email}: {other:?}"),
        }
    }
    assert_eq!(db.scalar("SELECT count(*) FROM users"), 2);
    assert_eq!(db.scalar("SELECT count(*) FROM one_time_tokens"), 2);
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM audit_events WHERE event = 'signup' AND outcome = 'denied'"
        ),
        2
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM audit_events WHERE event = 'signup' AND outcome = 'failure'"
        ),
        1
    );
    // After the window, sign-ups are counted afresh.
    assert_eq!(
        attempt(6, "c@example.com", 1_002 + 3_600),
        SignupOutcome::Created
    );
}

#[test]
fn admin_queries_check_the_caller_and_page_by_email() {
    use latch_store::{AdminAccess, AdminCaller, AuditFilter, UserChange};
    let db = Native::migrated();
    let store = Store::new(&db);
    for (id, email) in [
        ("admin", "root@example.com"),
        ("u1", "ann@example.com"),
        ("u2", "bob@example.com"),
        ("u3", "anna@example.org"),
    ] {
        sign_up(&store, id, email);
    }
    db.conn
        .borrow()
        .execute(
            "INSERT INTO user_roles (user_id, role_id, created_at) VALUES ('admin', 'role-admin', 0)",
            [],
        )
        .unwrap();
    session(&store, "s-admin", "admin", &token(1).0, 2_000);
    session(&store, "s-u1", "u1", &token(2).0, 2_000);
    let admin = AdminCaller {
        session_id: "s-admin",
        user_id: "admin",
        now: 2_010,
    };
    let user = AdminCaller {
        session_id: "s-u1",
        user_id: "u1",
        now: 2_010,
    };

    assert_eq!(
        block_on(store.admin_list_users(&user, "", None, 10))
            .unwrap()
            .unwrap_err(),
        AdminAccess::NotAdmin
    );
    let before = store.round_trips();
    let page = block_on(store.admin_list_users(&admin, "an", None, 1))
        .unwrap()
        .unwrap();
    assert_eq!(store.round_trips() - before, 1);
    assert_eq!(page.users.len(), 1);
    assert_eq!(page.users[0].email, "ann@example.com");
    let next = page.next_after.unwrap();
    let page = block_on(store.admin_list_users(&admin, "an", Some(&next), 1))
        .unwrap()
        .unwrap();
    assert_eq!(page.users[0].email, "anna@example.org");
    assert_eq!(page.next_after, None);
    let all = block_on(store.admin_list_users(&admin, "", None, 100))
        .unwrap()
        .unwrap();
    assert_eq!(all.users.len(), 4);

    let detail = block_on(store.admin_user(&admin, "u1"))
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(detail.sessions.len(), 1);
    assert!(
        block_on(store.admin_user(&admin, "nobody"))
            .unwrap()
            .unwrap()
            .is_none()
    );

    // Disabling revokes every session, and records the actor.
    let disable = UserChange {
        is_active: Some(false),
        roles: Some(vec![Role::User, Role::Admin]),
    };
    let record = audit(AuditKind::AdminUserUpdated, Outcome::Success, 2_011);
    let mut record = record;
    record.event = record.event.with_user("u1").with_actor("admin");
    let updated = block_on(store.admin_update_user(&admin, "u1", &disable, &record))
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!updated.is_active);
    assert_eq!(updated.roles, vec!["admin".to_string(), "user".to_string()]);
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions WHERE user_id = 'u1' AND revoked_reason = 'admin_disabled'"),
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM audit_events WHERE event = 'admin_user_updated' AND actor_id = 'admin' AND user_id = 'u1'"),
        1
    );
    // A non-admin changes nothing.
    let sneaky = audit(AuditKind::AdminUserUpdated, Outcome::Success, 2_012);
    let enable = UserChange {
        is_active: Some(true),
        roles: None,
    };
    assert_eq!(
        block_on(store.admin_update_user(&user, "u2", &enable, &sneaky))
            .unwrap()
            .unwrap_err(),
        AdminAccess::SessionEnded
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM audit_events WHERE event = 'admin_user_updated'"),
        1
    );

    let revoke = audit(AuditKind::AdminSessionsRevoked, Outcome::Success, 2_013);
    session(&store, "s-u2", "u2", &token(3).0, 2_000);
    assert_eq!(
        block_on(store.admin_revoke_sessions(&admin, "u2", &revoke))
            .unwrap()
            .unwrap(),
        Some(())
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions WHERE user_id = 'u2' AND revoked_reason = 'admin_revoked'"),
        1
    );
    let page = block_on(store.admin_audit(
        &admin,
        &AuditFilter {
            user_id: None,
            event: Some("admin_user_updated"),
            before: None,
        },
        10,
    ))
    .unwrap()
    .unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].actor_id.as_deref(), Some("admin"));
}

// --- second factor -----------------------------------------------------------

/// A user `u1` with session `s1` (aal1) and a confirmed factor whose last
/// used step is 100, with recovery codes `r1`..`r3`.
fn user_with_factor(db: &Native, store: &Store<&Native>) {
    sign_up(store, "u1", "ada@example.com");
    session(store, "s1", "u1", &token(1).0, 2_000);
    assert!(matches!(
        block_on(store.enroll_factor("s1", "u1", "v1.sealed", 2_000)).unwrap(),
        latch_store::Enrolment::Pending { .. }
    ));
    let key = ThrottleKey::second_factor("u1");
    let hashes: Vec<String> = (1..=3).map(|i| format!("r{i}")).collect();
    assert!(
        block_on(store.confirm_factor(
            "s1",
            "u1",
            "v1.sealed",
            100,
            &hashes,
            &key,
            2_000,
            &audit(AuditKind::MfaEnrolled, Outcome::Success, 2_000),
        ))
        .unwrap()
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM mfa_recovery_codes WHERE user_id = 'u1'"),
        3
    );
}

fn open_challenge(store: &Store<&Native>, hash: &str, expires_at: i64) {
    let email = Email::parse("ada@example.com").unwrap();
    block_on(store.open_challenge(
        &latch_store::NewChallenge {
            hash,
            user_id: "u1",
            attempt_id: "attempt",
            now: 2_100,
            expires_at,
        },
        &ThrottleKey::account(&email),
        &audit(AuditKind::Signin, Outcome::Success, 2_100),
    ))
    .unwrap();
}

fn finish(
    store: &Store<&Native>,
    hash: &str,
    proof: latch_store::Proof<'_>,
    id: &str,
    now: i64,
) -> bool {
    let (_, refresh_hash) = token(id.as_bytes()[1]);
    let session = NewSession {
        id,
        user_id: "u1",
        refresh_hash: &refresh_hash,
        now,
        expires_at: now + 3_600,
        client_ip: None,
        user_agent: None,
        assurance: Assurance::PasswordAndOtp,
    };
    block_on(store.finish_challenge(
        hash,
        proof,
        &session,
        &ThrottleKey::second_factor("u1"),
        &audit(AuditKind::MfaVerified, Outcome::Success, now),
        None,
    ))
    .unwrap()
}

#[test]
fn enrolment_is_pending_until_confirmed_and_a_confirmed_factor_is_kept() {
    let db = Native::migrated();
    let store = Store::new(&db);
    sign_up(&store, "u1", "ada@example.com");
    session(&store, "s1", "u1", &token(1).0, 2_000);
    session(&store, "s2", "u1", &token(2).0, 2_000);
    let pending = block_on(store.enroll_factor("s1", "u1", "v1.first", 2_000)).unwrap();
    assert_eq!(
        pending,
        latch_store::Enrolment::Pending {
            email: "ada@example.com".into()
        }
    );
    // A new enrolment replaces a pending one.
    block_on(store.enroll_factor("s1", "u1", "v1.second", 2_001)).unwrap();
    assert_eq!(
        db.scalar("SELECT count(*) FROM mfa_factors WHERE secret_sealed = 'v1.second'"),
        1
    );
    let key = ThrottleKey::second_factor("u1");
    let confirm = |sealed: &str| {
        block_on(store.confirm_factor(
            "s1",
            "u1",
            sealed,
            70,
            &["h".to_string()],
            &key,
            2_002,
            &audit(AuditKind::MfaEnrolled, Outcome::Success, 2_002),
        ))
        .unwrap()
    };
    // A confirmation of the replaced secret changes nothing.
    assert!(!confirm("v1.first"));
    assert!(confirm("v1.second"));
    // Other sessions are revoked; the confirming one stays.
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions WHERE revoked_reason = 'mfa_enrolled'"),
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions WHERE id = 's1' AND revoked_at IS NULL"),
        1
    );
    assert_eq!(
        block_on(store.enroll_factor("s1", "u1", "v1.third", 2_003)).unwrap(),
        latch_store::Enrolment::AlreadyEnabled
    );
    assert!(
        block_on(store.profile("s1", "u1", 2_003))
            .unwrap()
            .unwrap()
            .mfa_enabled
    );
}

#[test]
fn one_challenge_opens_one_session_and_a_step_is_accepted_once() {
    let db = Native::migrated();
    let store = Store::new(&db);
    user_with_factor(&db, &store);
    open_challenge(&store, "c1", 2_400);
    open_challenge(&store, "c2", 2_400);
    let totp = |step| latch_store::Proof::Totp { step };
    // The step of the confirmation, or an earlier one, is a replay.
    assert!(!finish(&store, "c1", totp(100), "sa", 2_200));
    assert!(finish(&store, "c1", totp(101), "sb", 2_200));
    // The challenge is spent, and so is step 101 (also through another challenge).
    assert!(!finish(&store, "c1", totp(102), "sc", 2_200));
    assert!(!finish(&store, "c2", totp(101), "sd", 2_200));
    assert!(finish(&store, "c2", totp(102), "se", 2_200));
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions WHERE aal = 'aal2' AND amr = 'pwd otp'"),
        2
    );
    // An expired challenge opens nothing.
    open_challenge(&store, "c3", 2_300);
    assert!(!finish(&store, "c3", totp(200), "sf", 2_300));
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions WHERE id = 'sf'"),
        0
    );
}

#[test]
fn a_recovery_code_is_spent_once() {
    let db = Native::migrated();
    let store = Store::new(&db);
    user_with_factor(&db, &store);
    open_challenge(&store, "c1", 2_400);
    open_challenge(&store, "c2", 2_400);
    let code = latch_store::Proof::RecoveryCode { hash: "r2" };
    assert!(finish(&store, "c1", code, "sa", 2_200));
    assert!(!finish(&store, "c2", code, "sb", 2_200));
    assert_eq!(
        db.scalar("SELECT count(*) FROM mfa_recovery_codes WHERE used_at IS NOT NULL"),
        1
    );
    // The check reads only the unused codes.
    let attempt = latch_store::FactorAttempt {
        key: &ThrottleKey::second_factor("u1"),
        policy: &ThrottlePolicy::ACCOUNT,
        attempt_id: "a1",
        refusal: &refusal(2_200),
    };
    let context = block_on(store.begin_challenge_check("c2", "u1", attempt, 2_200))
        .unwrap()
        .unwrap();
    assert_eq!(context.recovery_code_hashes.len(), 2);
    assert!(!context.recovery_code_hashes.contains(&"r2".to_string()));
    assert!(context.factor.unwrap().confirmed);
}

#[test]
fn a_made_up_challenge_counts_nothing_and_a_real_one_counts_each_code() {
    let db = Native::migrated();
    let store = Store::new(&db);
    user_with_factor(&db, &store);
    open_challenge(&store, "c1", 9_000);
    let key = ThrottleKey::second_factor("u1");
    let check = |hash: &str, attempt_id: &str, now: i64| {
        let refused = refusal(now);
        let attempt = latch_store::FactorAttempt {
            key: &key,
            policy: &ThrottlePolicy::ACCOUNT,
            attempt_id,
            refusal: &refused,
        };
        block_on(store.begin_challenge_check(hash, "u1", attempt, now)).unwrap()
    };
    assert!(check("made-up", "a0", 2_200).is_none());
    assert_eq!(db.scalar("SELECT count(*) FROM throttle"), 0);
    for i in 1..=5 {
        let context = check("c1", &format!("a{i}"), 2_200).unwrap();
        assert!(!context.refused);
        assert_eq!(context.counter.failures, i);
    }
    // The fifth attempt locked the key: the sixth is refused and not counted.
    let context = check("c1", "a6", 2_201).unwrap();
    assert!(context.refused);
    assert_eq!(context.counter.failures, 5);
}

#[test]
fn removal_needs_a_live_proof_and_takes_everything_with_it() {
    let db = Native::migrated();
    let store = Store::new(&db);
    user_with_factor(&db, &store);
    open_challenge(&store, "c1", 9_000);
    let key = ThrottleKey::second_factor("u1");
    let remove = |proof| {
        block_on(store.remove_factor(
            "s1",
            "u1",
            proof,
            &key,
            2_200,
            &audit(AuditKind::MfaRemoved, Outcome::Success, 2_200),
            None,
        ))
        .unwrap()
    };
    assert!(!remove(latch_store::Proof::RecoveryCode {
        hash: "unknown"
    }));
    assert!(!remove(latch_store::Proof::Totp { step: 99 }));
    assert!(remove(latch_store::Proof::RecoveryCode { hash: "r1" }));
    for table in ["mfa_factors", "mfa_recovery_codes", "mfa_challenges"] {
        assert_eq!(
            db.scalar(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table}"
        );
    }
    assert!(
        !block_on(store.profile("s1", "u1", 2_200))
            .unwrap()
            .unwrap()
            .mfa_enabled
    );
}

#[test]
fn refresh_keeps_the_assurance_of_the_session() {
    let db = Native::migrated();
    let store = Store::new(&db);
    user_with_factor(&db, &store);
    open_challenge(&store, "c1", 9_000);
    assert!(finish(
        &store,
        "c1",
        latch_store::Proof::Totp { step: 101 },
        "sa",
        2_200
    ));
    let (_, old) = token(b'a');
    let (_, new) = token(200);
    let outcome = block_on(store.rotate_refresh(
        &old,
        &new,
        2_300,
        9_000,
        &audit(AuditKind::Refresh, Outcome::Success, 2_300),
        &audit(AuditKind::RefreshReuseDetected, Outcome::Denied, 2_300),
    ))
    .unwrap();
    match outcome {
        RefreshOutcome::Rotated { assurance, .. } => {
            assert_eq!(assurance, Assurance::PasswordAndOtp)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_admin_with_a_factor_acts_only_from_a_session_that_presented_it() {
    use latch_store::{AdminAccess, AdminCaller};
    let db = Native::migrated();
    let store = Store::new(&db);
    user_with_factor(&db, &store);
    db.conn
        .borrow()
        .execute(
            "INSERT INTO user_roles (user_id, role_id, created_at) VALUES ('u1', 'role-admin', 0)",
            [],
        )
        .unwrap();
    let caller = |session_id| AdminCaller {
        session_id,
        user_id: "u1",
        now: 2_300,
    };
    // s1 signed in with the password alone.
    assert_eq!(
        block_on(store.admin_list_users(&caller("s1"), "", None, 10))
            .unwrap()
            .unwrap_err(),
        AdminAccess::SecondFactorRequired
    );
    assert!(
        block_on(store.admin_revoke_sessions(
            &caller("s1"),
            "u1",
            &audit(AuditKind::AdminSessionsRevoked, Outcome::Success, 2_300)
        ))
        .unwrap()
        .is_err()
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL"),
        0
    );
    open_challenge(&store, "c1", 9_000);
    assert!(finish(
        &store,
        "c1",
        latch_store::Proof::Totp { step: 101 },
        "sa",
        2_200
    ));
    let page = block_on(store.admin_list_users(&caller("sa"), "", None, 10))
        .unwrap()
        .unwrap();
    assert_eq!(page.users.len(), 1);
}

#[test]
fn a_code_the_route_will_not_check_counts_nothing() {
    use latch_store::Expected;
    let db = Native::migrated();
    let store = Store::new(&db);
    user_with_factor(&db, &store);
    let key = ThrottleKey::second_factor("u1");
    let begin = |expected, attempt_id: &str| {
        let refused = refusal(2_200);
        let attempt = latch_store::FactorAttempt {
            key: &key,
            policy: &ThrottlePolicy::ACCOUNT,
            attempt_id,
            refusal: &refused,
        };
        block_on(store.begin_factor_check("s1", "u1", expected, attempt, 2_200))
            .unwrap()
            .unwrap()
    };
    // No pending factor to confirm, a session the step-up rule refuses: not counted.
    begin(Expected::Pending, "a1");
    begin(Expected::Confirmed { allowed: false }, "a2");
    assert_eq!(db.scalar("SELECT count(*) FROM throttle"), 0);
    let context = begin(Expected::Confirmed { allowed: true }, "a3");
    assert_eq!(context.counter.failures, 1);
    assert!(context.user.mfa_enabled);
}
