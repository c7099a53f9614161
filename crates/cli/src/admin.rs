//! `latch admin grant EMAIL` and `latch admin revoke EMAIL`: give an account
//! the `admin` role, or take it away, on the same databases as `latch migrate`
//! (the embedded file of `latch up`, another SQLite file, or SQLite Cloud over
//! HTTP, chosen by [`crate::database`]). This is how the first admin is made;
//! after that, admins can also change roles through the admin API.
//!
//! Each change is ONE batch, `BEGIN; ...; COMMIT;` and a read, so on SQLite
//! Cloud it is one request and, like the admin API's writes, all or nothing:
//! - an `audit_events` row (`admin_user_updated`, reason `cli_admin_granted`
//!   or `cli_admin_revoked`, the account's id, its email masked, no
//!   `actor_id`: no admin account acted) is inserted only when there is
//!   something to change, and the role row is written only when that audit
//!   row exists. The audit row's id, chosen here, then tells whether this
//!   run changed anything;
//! - the read reports the account, whether it has the role now, and how many
//!   OTHER active accounts have it.
//!
//! Granting is idempotent. Revoking refuses, without `--force`, to take the
//! role from the last active admin: the admin API could then no longer be
//! used by anyone, and only this command (with database access) could make
//! a new admin.
//!
//! The email is normalised as it is stored (trimmed, lower-cased, validated)
//! and only ever printed masked (`j***@example.com`), as the audit log does:
//! the output of this command lands in CI logs (the deploy workflow), which
//! everyone who can read the repository can read and which are kept long
//! after the run; the operator typed the address, and the account's id
//! printed beside it identifies the account exactly.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use latch_domain::{AuditKind, Email, Outcome, new_id};
use latch_migrate::{HttpTarget, SqliteTarget, Transport};
use latch_weblite::{QueryResult, Statement, Value, batch_sql};

use crate::database::{DatabaseArgs, Destination, refuse_stray, ureq_transport};

#[derive(clap::Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(clap::Subcommand)]
pub enum AdminCommand {
    /// Give the account with this email the `admin` role (nothing changes if it has it).
    Grant(RoleArgs),
    /// Take the `admin` role from the account with this email.
    Revoke(RevokeArgs),
}

#[derive(clap::Args)]
pub struct RoleArgs {
    /// The account's email address (trimmed and lower-cased, as it is stored).
    #[arg(value_name = "EMAIL")]
    pub email: String,
    /// The database (the same choice as `latch migrate`); it must exist and be migrated.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Stray arguments (e.g. a URL without --database-url), caught here so
    /// the error does not echo them: they may hold a credential.
    #[arg(hide = true)]
    pub stray: Vec<String>,
}

#[derive(clap::Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub role: RoleArgs,
    /// Revoke even from the last active admin, leaving none.
    #[arg(long)]
    pub force: bool,
}

/// What to do to the account's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Grant,
    Revoke { force: bool },
}

impl Change {
    /// The audit event's reason.
    fn reason(self) -> &'static str {
        match self {
            Change::Grant => "cli_admin_granted",
            Change::Revoke { .. } => "cli_admin_revoked",
        }
    }
}

pub fn run(args: &AdminArgs) -> anyhow::Result<()> {
    let (role, change) = match &args.command {
        AdminCommand::Grant(role) => (role, Change::Grant),
        AdminCommand::Revoke(revoke) => (
            &revoke.role,
            Change::Revoke {
                force: revoke.force,
            },
        ),
    };
    let command = match change {
        Change::Grant => "latch admin grant",
        Change::Revoke { .. } => "latch admin revoke",
    };
    refuse_stray(&role.stray, &format!("`{command}` takes one: EMAIL"))?;
    // FieldError messages never carry the value.
    let email = Email::parse(&role.email)
        .map_err(|e| anyhow::anyhow!("EMAIL (not shown) is not usable: {}", e.message))?;
    let destination = Destination::choose(&role.database)?;
    destination.scrub(run_on(&destination, &role.database, change, &email))
}

fn run_on(
    destination: &Destination,
    args: &DatabaseArgs,
    change: Change,
    email: &Email,
) -> anyhow::Result<()> {
    println!("{}", destination.describe());
    let audit_id = new_id(rand::random());
    let at = unix_now();
    let (writes, read) = statements(change, email, &audit_id, at);
    let rows = match destination {
        Destination::Cloud { url, .. } => {
            let mut target = HttpTarget::new(url.clone(), ureq_transport(args.request_timeout()));
            run_batch_http(&mut target, &writes, &read)
        }
        Destination::File(path) => {
            if !path.is_file() {
                bail!(
                    "no database at {}: run `latch migrate` (or `latch up`) on it first",
                    path.display()
                );
            }
            let target = SqliteTarget::open_existing(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            run_batch_sqlite(target.connection(), &writes, &read)
        }
    }
    .map_err(|e| {
        let message = format!("{e:#}");
        if message.contains("no such table") {
            e.context("the database lacks Latch's tables: run `latch migrate` on it first")
        } else {
            e
        }
    })?;
    let found = Found::from_rows(&rows)?;
    println!("{}", report(change, email, &found)?);
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `EXISTS`: the account `{user}` (an SQL expression) has the admin role.
fn has_admin(user: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
         WHERE ur.user_id = {user} AND r.name = 'admin')"
    )
}

/// `count(*)`: active accounts other than `{user}` with the admin role.
fn other_active_admins(user: &str) -> String {
    format!(
        "(SELECT count(*) FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
         JOIN users o ON o.id = ur.user_id \
         WHERE r.name = 'admin' AND o.is_active = 1 AND ur.user_id IS NOT {user})"
    )
}

/// The writes of `change` (one transaction) and the read that follows them.
fn statements(
    change: Change,
    email: &Email,
    audit_id: &str,
    at: i64,
) -> (Vec<Statement>, Statement) {
    let condition = match change {
        Change::Grant => format!(
            "NOT {} AND EXISTS (SELECT 1 FROM roles WHERE name = 'admin')",
            has_admin("u.id")
        ),
        Change::Revoke { force } => format!(
            "{} AND ({} OR {} > 0)",
            has_admin("u.id"),
            i64::from(force),
            other_active_admins("u.id")
        ),
    };
    let audit = Statement::with_params(
        format!(
            "INSERT INTO audit_events (id, at, event, outcome, user_id, email, reason) \
             SELECT ?, ?, ?, ?, u.id, ?, ? FROM users u WHERE u.email = ? AND {condition}"
        ),
        vec![
            audit_id.into(),
            at.into(),
            AuditKind::AdminUserUpdated.as_str().into(),
            Outcome::Success.as_str().into(),
            email.masked().into(),
            change.reason().into(),
            email.as_str().into(),
        ],
    );
    let role = match change {
        Change::Grant => Statement::with_params(
            "INSERT INTO user_roles (user_id, role_id, created_at) \
             SELECT a.user_id, r.id, ? FROM audit_events a JOIN roles r ON r.name = 'admin' \
             WHERE a.id = ?",
            vec![at.into(), audit_id.into()],
        ),
        Change::Revoke { .. } => Statement::with_params(
            "DELETE FROM user_roles \
             WHERE user_id = (SELECT user_id FROM audit_events WHERE id = ?) \
             AND role_id IN (SELECT id FROM roles WHERE name = 'admin')",
            vec![audit_id.into()],
        ),
    };
    let read = Statement::with_params(
        format!(
            "SELECT u.id AS user_id, u.is_active AS is_active, \
             EXISTS (SELECT 1 FROM audit_events WHERE id = ?) AS changed, \
             {} AS is_admin, {} AS other_admins \
             FROM (SELECT 1) one LEFT JOIN users u ON u.email = ?",
            has_admin("u.id"),
            other_active_admins("u.id")
        ),
        vec![audit_id.into(), email.as_str().into()],
    );
    (vec![audit, role], read)
}

/// One request: `BEGIN; writes; COMMIT; read;`, the values inlined.
fn run_batch_http<T: Transport>(
    target: &mut HttpTarget<T>,
    writes: &[Statement],
    read: &Statement,
) -> anyhow::Result<QueryResult> {
    let sql = batch_sql(writes, Some(read))?;
    Ok(target.send(&Statement::new(sql))?)
}

/// The same writes as over HTTP (the same inlined text, in one transaction,
/// rolled back on any error), then the read.
fn run_batch_sqlite(
    conn: &rusqlite::Connection,
    writes: &[Statement],
    read: &Statement,
) -> anyhow::Result<QueryResult> {
    let sql = batch_sql(writes, None)?;
    if let Err(e) = conn.execute_batch(&sql) {
        if !conn.is_autocommit() {
            // The error to report is the batch's; dropping the connection
            // rolls back too.
            let _ = conn.execute_batch("ROLLBACK");
        }
        return Err(e.into());
    }
    let mut statement = conn.prepare(&read.sql)?;
    let columns: Vec<String> = statement.column_names().map(str::to_owned).collect();
    let params = read.params.iter().map(|value| match value {
        Value::Null => rusqlite::types::Value::Null,
        Value::Integer(n) => rusqlite::types::Value::Integer(*n),
        Value::Real(x) => rusqlite::types::Value::Real(*x),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
    });
    let width = columns.len();
    let rows = statement
        .query_map(rusqlite::params_from_iter(params), |row| {
            (0..width)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => Value::Null,
                        rusqlite::types::ValueRef::Integer(n) => Value::Integer(n),
                        rusqlite::types::ValueRef::Real(x) => Value::Real(x),
                        rusqlite::types::ValueRef::Text(t) => {
                            Value::Text(String::from_utf8_lossy(t).into_owned())
                        }
                        rusqlite::types::ValueRef::Blob(_) => Value::Null,
                    })
                })
                .collect::<rusqlite::Result<Vec<Value>>>()
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(QueryResult {
        columns,
        rows,
        changes: None,
    })
}

/// What the read after the writes found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    /// `None`: no account has the email.
    user_id: Option<String>,
    is_active: bool,
    /// This run wrote its audit event, and so its change.
    changed: bool,
    /// The account has the admin role now.
    is_admin: bool,
    /// Active accounts other than this one with the admin role.
    other_admins: i64,
}

impl Found {
    fn from_rows(result: &QueryResult) -> anyhow::Result<Found> {
        if result.rows.len() != 1 {
            bail!(
                "expected one row from the database, got {}",
                result.rows.len()
            );
        }
        let integer = |column: &str| -> anyhow::Result<i64> {
            match result.get(0, column) {
                Some(Value::Integer(n)) => Ok(*n),
                // A gateway may print an integral number as 1.0.
                Some(Value::Real(x)) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(*x as i64),
                Some(Value::Null) => Ok(0),
                Some(other) => bail!("column {column} is {}, expected INTEGER", other.type_name()),
                None => bail!("no column {column} in the database's answer"),
            }
        };
        let user_id = match result.get(0, "user_id") {
            Some(Value::Text(id)) => Some(id.clone()),
            Some(Value::Null) => None,
            Some(other) => bail!("column user_id is {}, expected TEXT", other.type_name()),
            None => bail!("no column user_id in the database's answer"),
        };
        Ok(Found {
            user_id,
            is_active: integer("is_active")? != 0,
            changed: integer("changed")? != 0,
            is_admin: integer("is_admin")? != 0,
            other_admins: integer("other_admins")?,
        })
    }
}

/// What to print, or why the command failed.
fn report(change: Change, email: &Email, found: &Found) -> anyhow::Result<String> {
    let who = email.masked();
    let Some(user_id) = &found.user_id else {
        bail!("no user has the email {who} (the address is compared trimmed and lower-cased)");
    };
    let mut lines = match change {
        Change::Grant if found.changed => vec![format!("granted admin to {who} (user {user_id})")],
        Change::Grant if found.is_admin => {
            vec![format!("{who} already has admin (user {user_id})")]
        }
        Change::Grant => bail!(
            "nothing changed for {who} (user {user_id}): the roles table has no `admin` role; \
             has `latch migrate` run on this database?"
        ),
        Change::Revoke { .. } if found.changed => {
            let mut lines = vec![format!("revoked admin from {who} (user {user_id})")];
            if found.other_admins == 0 {
                lines.push(
                    "warning: no active admin remains; make one with `latch admin grant EMAIL`"
                        .to_owned(),
                );
            }
            lines
        }
        Change::Revoke { .. } if !found.is_admin => {
            vec![format!("{who} does not have admin (user {user_id})")]
        }
        Change::Revoke { force: false } if found.other_admins == 0 => bail!(
            "refused: {who} (user {user_id}) is the last active admin, and revoking would leave \
             none; grant admin to another account first, or pass --force"
        ),
        Change::Revoke { .. } => bail!(
            "nothing changed for {who} (user {user_id}): the account's roles changed meanwhile; \
             run the command again"
        ),
    };
    if change == Change::Grant && !found.is_active {
        lines.push(
            "note: the account is disabled; it cannot sign in until it is enabled again".to_owned(),
        );
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SCHEMA: &str = include_str!("../../../migrations/0001_initial.sql");
    const ACTOR: &str = include_str!("../../../migrations/0003_audit_actor.sql");

    fn database() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(ACTOR).unwrap();
        conn
    }

    fn add_user(conn: &rusqlite::Connection, id: &str, email: &str, active: bool) {
        conn.execute(
            "INSERT INTO users (id, email, password_hash, full_name, is_active, created_at, updated_at) \
             VALUES (?1, ?2, 'x', 'X', ?3, 0, 0)",
            rusqlite::params![id, email, i64::from(active)],
        )
        .unwrap();
    }

    fn apply(conn: &rusqlite::Connection, change: Change, email: &str) -> Found {
        let email = Email::parse(email).unwrap();
        let (writes, read) = statements(change, &email, &new_id(rand::random()), 1_700_000_000);
        Found::from_rows(&run_batch_sqlite(conn, &writes, &read).unwrap()).unwrap()
    }

    fn roles(conn: &rusqlite::Connection, id: &str) -> Vec<String> {
        conn.prepare("SELECT role_id FROM user_roles WHERE user_id = ? ORDER BY role_id")
            .unwrap()
            .query_map([id], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn audit(conn: &rusqlite::Connection) -> Vec<(String, String, String, String, Option<String>)> {
        conn.prepare(
            "SELECT event, outcome, user_id, email || ' ' || reason, actor_id FROM audit_events ORDER BY rowid",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    #[test]
    fn grant_is_idempotent_and_audited_once() {
        let conn = database();
        add_user(&conn, "u1", "jane@example.com", true);
        let first = apply(&conn, Change::Grant, "  Jane@Example.COM ");
        assert_eq!(
            first,
            Found {
                user_id: Some("u1".into()),
                is_active: true,
                changed: true,
                is_admin: true,
                other_admins: 0,
            }
        );
        let again = apply(&conn, Change::Grant, "jane@example.com");
        assert!(!again.changed && again.is_admin, "{again:?}");
        assert_eq!(roles(&conn, "u1"), ["role-admin"]);
        assert_eq!(
            audit(&conn),
            [(
                "admin_user_updated".to_owned(),
                "success".to_owned(),
                "u1".to_owned(),
                "j***@example.com cli_admin_granted".to_owned(),
                None
            )]
        );
    }

    #[test]
    fn revoke_keeps_the_last_active_admin_unless_forced() {
        let conn = database();
        add_user(&conn, "u1", "jane@example.com", true);
        add_user(&conn, "u2", "max@example.com", false);
        apply(&conn, Change::Grant, "jane@example.com");
        apply(&conn, Change::Grant, "max@example.com");
        // Max is disabled, so Jane is the last ACTIVE admin.
        let refused = apply(&conn, Change::Revoke { force: false }, "jane@example.com");
        assert!(!refused.changed && refused.is_admin, "{refused:?}");
        assert_eq!(refused.other_admins, 0);
        assert_eq!(roles(&conn, "u1"), ["role-admin"]);
        // Max is not the last one: Jane remains.
        let max = apply(&conn, Change::Revoke { force: false }, "max@example.com");
        assert!(max.changed && !max.is_admin, "{max:?}");
        assert_eq!(max.other_admins, 1);
        let forced = apply(&conn, Change::Revoke { force: true }, "jane@example.com");
        assert!(forced.changed && !forced.is_admin, "{forced:?}");
        assert!(roles(&conn, "u1").is_empty());
        let again = apply(&conn, Change::Revoke { force: true }, "jane@example.com");
        assert!(!again.changed && !again.is_admin, "{again:?}");
        assert_eq!(audit(&conn).len(), 4);
    }

    #[test]
    fn an_unknown_email_changes_nothing() {
        let conn = database();
        let found = apply(&conn, Change::Grant, "nobody@example.com");
        assert_eq!(found.user_id, None);
        assert!(audit(&conn).is_empty());
        let email = Email::parse("nobody@example.com").unwrap();
        let err = report(Change::Grant, &email, &found).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no user has the email n***@example.com"),
            "{err}"
        );
        assert!(!err.to_string().contains("nobody"), "{err}");
    }

    #[test]
    fn a_failing_batch_leaves_nothing() {
        let conn = database();
        add_user(&conn, "u1", "jane@example.com", true);
        let email = Email::parse("jane@example.com").unwrap();
        let (mut writes, read) = statements(Change::Grant, &email, "a1", 1);
        writes.push(Statement::new("INSERT INTO nowhere VALUES (1)"));
        let err = run_batch_sqlite(&conn, &writes, &read).unwrap_err();
        assert!(err.to_string().contains("no such table"), "{err}");
        assert!(conn.is_autocommit());
        assert!(roles(&conn, "u1").is_empty());
        assert!(audit(&conn).is_empty());
    }

    #[test]
    fn reports() {
        let email = Email::parse("jane@example.com").unwrap();
        let found = |changed, is_admin, other_admins| Found {
            user_id: Some("u1".into()),
            is_active: true,
            changed,
            is_admin,
            other_admins,
        };
        let text = |change, found: Found| match report(change, &email, &found) {
            Ok(text) => text,
            Err(e) => format!("error: {e}"),
        };
        let revoke = Change::Revoke { force: false };
        assert_eq!(
            text(Change::Grant, found(true, true, 0)),
            "granted admin to j***@example.com (user u1)"
        );
        assert_eq!(
            text(Change::Grant, found(false, true, 3)),
            "j***@example.com already has admin (user u1)"
        );
        assert_eq!(
            text(revoke, found(true, false, 1)),
            "revoked admin from j***@example.com (user u1)"
        );
        assert!(
            text(Change::Revoke { force: true }, found(true, false, 0))
                .contains("\nwarning: no active admin remains"),
        );
        assert_eq!(
            text(revoke, found(false, false, 0)),
            "j***@example.com does not have admin (user u1)"
        );
        assert!(
            text(revoke, found(false, true, 0)).starts_with("error: refused: j***@example.com"),
        );
        let disabled = Found {
            is_active: false,
            ..found(true, true, 0)
        };
        assert!(text(Change::Grant, disabled).ends_with(
            "\nnote: the account is disabled; it cannot sign in until it is enabled again"
        ));
    }

    /// The request text sent to SQLite Cloud: one request, values inlined,
    /// the raw email nowhere but in hex.
    #[test]
    fn one_request_over_http() {
        let email = Email::parse("jane@example.com").unwrap();
        let (writes, read) = statements(Change::Revoke { force: false }, &email, "a1", 7);
        let sql = batch_sql(&writes, Some(&read)).unwrap();
        assert!(sql.starts_with("BEGIN; INSERT INTO audit_events"), "{sql}");
        assert!(sql.contains("; DELETE FROM user_roles"), "{sql}");
        assert!(sql.contains(" COMMIT; SELECT u.id AS user_id"), "{sql}");
        assert!(!sql.contains("jane"), "{sql}");
        // It runs as one script in a real SQLite.
        let conn = database();
        add_user(&conn, "u1", "jane@example.com", true);
        conn.execute_batch(&sql).unwrap();
        assert!(conn.is_autocommit());
    }
}
