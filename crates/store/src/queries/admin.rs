//! The admin API's queries. Every one also decides, in the same round trip,
//! whether the caller may act: their session is active and they still have
//! the `admin` role in the database (a token issued before a demotion or a
//! disable does not outlive it). An admin action writes nothing unless so,
//! and records its audit event with the acting admin's id.

use latch_domain::{Role, ThrottleKey};

use super::{
    ACTIVE_SESSION, AuditRecord, SessionInfo, USER_COLUMNS, User, active_session_params, first,
    placeholders, recorded, user_from,
};
use crate::{Database, Row, Statement, Store, StoreError, Value, stmt};

/// The admin making a request.
#[derive(Debug, Clone, Copy)]
pub struct AdminCaller<'a> {
    pub session_id: &'a str,
    pub user_id: &'a str,
    pub now: i64,
}

/// Why the caller may not use the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAccess {
    /// The caller's session is revoked or expired, or their account disabled (401).
    SessionEnded,
    /// The caller no longer has the `admin` role (403).
    NotAdmin,
    /// The caller has a second factor but this session did not present it (403).
    SecondFactorRequired,
}

/// An admin answer: either refused, or what the query found.
pub type Admin<T> = Result<T, AdminAccess>;

/// One page of users.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<User>,
    /// The email of the last user, when more follow.
    pub next_after: Option<String>,
}

/// A user as an admin sees it.
#[derive(Debug, Clone)]
pub struct UserDetail {
    pub user: User,
    pub sessions: Vec<SessionInfo>,
}

/// What an admin changes on an account.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub is_active: Option<bool>,
    /// The whole new role list.
    pub roles: Option<Vec<Role>>,
}

/// One audit event as stored.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Insertion order (SQLite's rowid; audit rows are never deleted).
    pub seq: i64,
    pub id: String,
    pub at: i64,
    pub event: String,
    pub outcome: String,
    pub user_id: Option<String>,
    pub actor_id: Option<String>,
    pub session_id: Option<String>,
    pub email: Option<String>,
    pub client_ip: Option<String>,
    pub reason: Option<String>,
    pub request_id: Option<String>,
}

/// One page of audit events, newest first.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub events: Vec<AuditEntry>,
    /// `seq` of the last event, when more follow.
    pub next_after: Option<i64>,
}

/// Filters of the audit listing.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditFilter<'a> {
    pub user_id: Option<&'a str>,
    pub event: Option<&'a str>,
    /// `seq` of the last event of the previous page.
    pub before: Option<i64>,
}

/// `<session active> AS caller_active, <caller is admin> AS caller_admin`.
fn access_columns(caller: &AdminCaller<'_>) -> (String, Vec<Value>) {
    let mut params = active_session_params(caller.session_id, caller.user_id, caller.now);
    for _ in 0..2 {
        params.extend(active_session_params(
            caller.session_id,
            caller.user_id,
            caller.now,
        ));
    }
    (
        format!(
            "EXISTS (SELECT 1 FROM sessions s WHERE {ACTIVE_SESSION}) AS caller_active, \
             EXISTS (SELECT 1 FROM sessions s JOIN user_roles ur ON ur.user_id = s.user_id \
             JOIN roles r ON r.id = ur.role_id AND r.name = 'admin' WHERE {ACTIVE_SESSION}) AS caller_admin, \
             EXISTS (SELECT 1 FROM sessions s WHERE {ACTIVE_SESSION} AND {SESSION_ASSURED}) AS caller_assured"
        ),
        params,
    )
}

/// SQL: the session `s` presented a second factor, or its user has none
/// (an admin with a factor acts only from an `aal2` session).
const SESSION_ASSURED: &str = "(s.aal = 'aal2' OR NOT EXISTS (SELECT 1 FROM mfa_factors f \
     WHERE f.user_id = s.user_id AND f.confirmed_at IS NOT NULL))";

/// The condition of an admin action's writes: the caller is an active
/// admin, with a second factor if they have one.
fn caller_is_admin(caller: &AdminCaller<'_>) -> (String, Vec<Value>) {
    (
        format!(
            "EXISTS (SELECT 1 FROM sessions s JOIN user_roles ur ON ur.user_id = s.user_id \
             JOIN roles r ON r.id = ur.role_id AND r.name = 'admin' WHERE {ACTIVE_SESSION} AND {SESSION_ASSURED})"
        ),
        active_session_params(caller.session_id, caller.user_id, caller.now),
    )
}

/// `Err` with the refusal unless the row's access columns grant it.
fn access(row: &Row<'_>) -> Result<Admin<()>, StoreError> {
    Ok(if !row.flag("caller_active")? {
        Err(AdminAccess::SessionEnded)
    } else if !row.flag("caller_admin")? {
        Err(AdminAccess::NotAdmin)
    } else if !row.flag("caller_assured")? {
        Err(AdminAccess::SecondFactorRequired)
    } else {
        Ok(())
    })
}

/// `EXISTS (SELECT 1 FROM audit_events WHERE id = ?)`.
const AUDIT_RECORDED: &str = "EXISTS (SELECT 1 FROM audit_events WHERE id = ?)";

fn session_from(row: &Row<'_>) -> Result<SessionInfo, StoreError> {
    Ok(SessionInfo {
        id: row.text("session_id")?.to_string(),
        created_at: row.int("session_created_at")?,
        last_used_at: row.int("session_last_used_at")?,
        expires_at: row.int("session_expires_at")?,
        client_ip: row.opt_text("session_client_ip")?.map(str::to_string),
        user_agent: row.opt_text("session_user_agent")?.map(str::to_string),
        current: false,
    })
}

impl<D: Database> Store<D> {
    /// Users whose email starts with `prefix` (lower case), ordered by email,
    /// after the email `after`, at most `limit`. One round trip.
    pub async fn admin_list_users(
        &self,
        caller: &AdminCaller<'_>,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Admin<UserPage>, StoreError> {
        let (access_sql, mut params) = access_columns(caller);
        params.extend([
            prefix.into(),
            prefix.into(),
            after.unwrap_or("").into(),
            (i64::from(limit) + 1).into(),
        ]);
        // Emails are printable ASCII (the domain's rule), all below char(127):
        // `[prefix, prefix || char(127))` is the prefix range, on the email index.
        let rows = self
            .query(&stmt(
                &format!(
                    "SELECT a.caller_active, a.caller_admin, a.caller_assured, page.* FROM (SELECT {access_sql}) a \
                     LEFT JOIN (SELECT {USER_COLUMNS} FROM users u \
                     WHERE u.email >= ? AND u.email < ? || char(127) AND u.email > ? \
                     ORDER BY u.email LIMIT ?) page ON a.caller_admin AND a.caller_assured \
                     ORDER BY page.email"
                ),
                params,
            ))
            .await?;
        let head = first(&rows)?;
        if let Err(refused) = access(&head)? {
            return Ok(Err(refused));
        }
        let mut users = Vec::new();
        for row in rows.iter() {
            if row.opt_text("id")?.is_some() {
                users.push(user_from(&row)?);
            }
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next_after = if users.len() > limit {
            users.truncate(limit);
            users.last().map(|u| u.email.clone())
        } else {
            None
        };
        Ok(Ok(UserPage { users, next_after }))
    }

    /// A user with their active sessions; `None` for an unknown id. One round trip.
    pub async fn admin_user(
        &self,
        caller: &AdminCaller<'_>,
        user_id: &str,
    ) -> Result<Admin<Option<UserDetail>>, StoreError> {
        let (access_sql, mut params) = access_columns(caller);
        params.extend([user_id.into(), caller.now.into()]);
        let rows = self
            .query(&stmt(
                &format!(
                    "SELECT a.caller_active, a.caller_admin, a.caller_assured, {USER_COLUMNS}, \
                     s.id AS session_id, s.created_at AS session_created_at, \
                     s.last_used_at AS session_last_used_at, s.expires_at AS session_expires_at, \
                     s.client_ip AS session_client_ip, s.user_agent AS session_user_agent \
                     FROM (SELECT {access_sql}) a \
                     LEFT JOIN users u ON a.caller_admin AND a.caller_assured AND u.id = ? \
                     LEFT JOIN sessions s ON s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > ? \
                     ORDER BY s.last_used_at DESC, s.id"
                ),
                params,
            ))
            .await?;
        let head = first(&rows)?;
        if let Err(refused) = access(&head)? {
            return Ok(Err(refused));
        }
        if head.opt_text("id")?.is_none() {
            return Ok(Ok(None));
        }
        let user = user_from(&head)?;
        let mut sessions = Vec::new();
        for row in rows.iter() {
            if row.opt_text("session_id")?.is_some() {
                sessions.push(session_from(&row)?);
            }
        }
        Ok(Ok(Some(UserDetail { user, sessions })))
    }

    /// The latest lock end among `keys` (0 when none is locked). One round trip.
    pub async fn admin_locked_until(&self, keys: &[ThrottleKey]) -> Result<i64, StoreError> {
        let rows = self
            .query(&stmt(
                &format!(
                    "SELECT COALESCE(MAX(locked_until), 0) AS locked_until FROM throttle WHERE key IN ({})",
                    placeholders(keys.len())
                ),
                keys.iter().map(|k| Value::from(k.as_str())).collect(),
            ))
            .await?;
        first(&rows)?.int("locked_until")
    }

    /// Changes a user's active flag and roles; disabling revokes every
    /// session at once. Records `audit` (user: the target, actor: the
    /// caller). `None` for an unknown id. One round trip.
    pub async fn admin_update_user(
        &self,
        caller: &AdminCaller<'_>,
        user_id: &str,
        change: &UserChange,
        audit: &AuditRecord,
    ) -> Result<Admin<Option<User>>, StoreError> {
        let now = caller.now;
        let (admin_sql, admin_params) = caller_is_admin(caller);
        let mut condition_params = admin_params;
        condition_params.push(user_id.into());
        let mut writes = vec![audit.insert_if(
            &format!("{admin_sql} AND EXISTS (SELECT 1 FROM users WHERE id = ?)"),
            condition_params,
        )];
        let audit_id: Value = audit.id.as_str().into();
        if let Some(active) = change.is_active {
            writes.push(stmt(
                &format!("UPDATE users SET is_active = ?, updated_at = ? WHERE id = ? AND {AUDIT_RECORDED}"),
                vec![i64::from(active).into(), now.into(), user_id.into(), audit_id.clone()],
            ));
            if !active {
                writes.push(stmt(
                    &format!(
                        "UPDATE sessions SET revoked_at = ?, revoked_reason = 'admin_disabled' \
                         WHERE user_id = ? AND revoked_at IS NULL AND {AUDIT_RECORDED}"
                    ),
                    vec![now.into(), user_id.into(), audit_id.clone()],
                ));
            }
        }
        if let Some(roles) = &change.roles {
            let names: Vec<Value> = roles.iter().map(|r| Value::from(r.as_str())).collect();
            let list = placeholders(names.len().max(1));
            let names_or_none = if names.is_empty() {
                vec![Value::Null]
            } else {
                names
            };
            let mut delete_params: Vec<Value> = vec![user_id.into()];
            delete_params.extend(names_or_none.iter().cloned());
            delete_params.push(audit_id.clone());
            writes.push(stmt(
                &format!(
                    "DELETE FROM user_roles WHERE user_id = ? \
                     AND role_id NOT IN (SELECT id FROM roles WHERE name IN ({list})) AND {AUDIT_RECORDED}"
                ),
                delete_params,
            ));
            let mut insert_params: Vec<Value> = vec![user_id.into(), now.into()];
            insert_params.extend(names_or_none);
            insert_params.push(audit_id.clone());
            writes.push(stmt(
                &format!(
                    "INSERT INTO user_roles (user_id, role_id, created_at) \
                     SELECT ?, r.id, ? FROM roles r WHERE r.name IN ({list}) AND {AUDIT_RECORDED} \
                     ON CONFLICT (user_id, role_id) DO NOTHING"
                ),
                insert_params,
            ));
        }
        let (access_sql, mut params) = access_columns(caller);
        params.push(user_id.into());
        let read = stmt(
            &format!(
                "SELECT a.caller_active, a.caller_admin, a.caller_assured, {USER_COLUMNS} FROM (SELECT {access_sql}) a \
                 LEFT JOIN users u ON a.caller_admin AND a.caller_assured AND u.id = ?"
            ),
            params,
        );
        let rows = self.batch(&writes, Some(&read)).await?;
        let row = first(&rows)?;
        if let Err(refused) = access(&row)? {
            return Ok(Err(refused));
        }
        if row.opt_text("id")?.is_none() {
            return Ok(Ok(None));
        }
        Ok(Ok(Some(user_from(&row)?)))
    }

    /// The email of a user, for an admin action that needs it (the
    /// throttle keys of an unlock). One round trip.
    pub async fn admin_user_email(
        &self,
        caller: &AdminCaller<'_>,
        user_id: &str,
    ) -> Result<Admin<Option<String>>, StoreError> {
        let (access_sql, mut params) = access_columns(caller);
        params.push(user_id.into());
        let rows = self
            .query(&stmt(
                &format!(
                    "SELECT a.caller_active, a.caller_admin, a.caller_assured, u.email FROM (SELECT {access_sql}) a \
                     LEFT JOIN users u ON a.caller_admin AND a.caller_assured AND u.id = ?"
                ),
                params,
            ))
            .await?;
        let row = first(&rows)?;
        if let Err(refused) = access(&row)? {
            return Ok(Err(refused));
        }
        Ok(Ok(row.opt_text("email")?.map(str::to_string)))
    }

    /// Deletes the throttle rows `keys` of user `user_id`, recording `audit`,
    /// if the caller is still an admin. Returns whether it was done. One
    /// round trip.
    pub async fn admin_unlock(
        &self,
        caller: &AdminCaller<'_>,
        user_id: &str,
        keys: &[ThrottleKey],
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        let (admin_sql, mut params) = caller_is_admin(caller);
        params.push(user_id.into());
        let mut delete_params: Vec<Value> = keys.iter().map(|k| Value::from(k.as_str())).collect();
        delete_params.push(audit.id.as_str().into());
        let writes = [
            audit.insert_if(
                &format!("{admin_sql} AND EXISTS (SELECT 1 FROM users WHERE id = ?)"),
                params,
            ),
            stmt(
                &format!(
                    "DELETE FROM throttle WHERE key IN ({}) AND {AUDIT_RECORDED}",
                    placeholders(keys.len())
                ),
                delete_params,
            ),
        ];
        self.admin_recorded(&writes, audit).await
    }

    /// Revokes every active session of `user_id`, recording `audit`.
    /// `None` for an unknown id. One round trip.
    pub async fn admin_revoke_sessions(
        &self,
        caller: &AdminCaller<'_>,
        user_id: &str,
        audit: &AuditRecord,
    ) -> Result<Admin<Option<()>>, StoreError> {
        let now = caller.now;
        let (admin_sql, mut params) = caller_is_admin(caller);
        params.push(user_id.into());
        let writes = [
            audit.insert_if(
                &format!("{admin_sql} AND EXISTS (SELECT 1 FROM users WHERE id = ?)"),
                params,
            ),
            stmt(
                &format!(
                    "UPDATE sessions SET revoked_at = ?, revoked_reason = 'admin_revoked' \
                     WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? AND {AUDIT_RECORDED}"
                ),
                vec![
                    now.into(),
                    user_id.into(),
                    now.into(),
                    audit.id.as_str().into(),
                ],
            ),
        ];
        let (access_sql, access_params) = access_columns(caller);
        // In the order of the placeholders: the flag, then the FROM clause's.
        let mut read_params: Vec<Value> = vec![user_id.into()];
        read_params.extend(access_params);
        let read = stmt(
            &format!(
                "SELECT a.caller_active, a.caller_admin, a.caller_assured, \
                 EXISTS (SELECT 1 FROM users WHERE id = ?) AS known FROM (SELECT {access_sql}) a"
            ),
            read_params,
        );
        let rows = self.batch(&writes, Some(&read)).await?;
        let row = first(&rows)?;
        if let Err(refused) = access(&row)? {
            return Ok(Err(refused));
        }
        Ok(Ok(row.flag("known")?.then_some(())))
    }

    /// Audit events, newest (last inserted) first, filtered, at most
    /// `limit`. One round trip.
    pub async fn admin_audit(
        &self,
        caller: &AdminCaller<'_>,
        filter: &AuditFilter<'_>,
        limit: u32,
    ) -> Result<Admin<AuditPage>, StoreError> {
        let (access_sql, mut params) = access_columns(caller);
        let mut conditions = Vec::new();
        if let Some(user_id) = filter.user_id {
            conditions.push("e.user_id = ?");
            params.push(user_id.into());
        }
        if let Some(event) = filter.event {
            conditions.push("e.event = ?");
            params.push(event.into());
        }
        if let Some(seq) = filter.before {
            conditions.push("e.rowid < ?");
            params.push(seq.into());
        }
        params.push((i64::from(limit) + 1).into());
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let rows = self
            .query(&stmt(
                &format!(
                    "SELECT a.caller_active, a.caller_admin, a.caller_assured, page.* FROM (SELECT {access_sql}) a \
                     LEFT JOIN (SELECT e.rowid AS seq, e.id, e.at, e.event, e.outcome, e.user_id, e.actor_id, e.session_id, \
                     e.email, e.client_ip, e.reason, e.request_id FROM audit_events e {where_clause} \
                     ORDER BY e.rowid DESC LIMIT ?) page ON a.caller_admin AND a.caller_assured \
                     ORDER BY page.seq DESC"
                ),
                params,
            ))
            .await?;
        let head = first(&rows)?;
        if let Err(refused) = access(&head)? {
            return Ok(Err(refused));
        }
        let mut events = Vec::new();
        for row in rows.iter() {
            let Some(id) = row.opt_text("id")? else {
                continue;
            };
            let text = |column: &str| -> Result<Option<String>, StoreError> {
                Ok(row.opt_text(column)?.map(str::to_string))
            };
            events.push(AuditEntry {
                seq: row.int("seq")?,
                id: id.to_string(),
                at: row.int("at")?,
                event: row.text("event")?.to_string(),
                outcome: row.text("outcome")?.to_string(),
                user_id: text("user_id")?,
                actor_id: text("actor_id")?,
                session_id: text("session_id")?,
                email: text("email")?,
                client_ip: text("client_ip")?,
                reason: text("reason")?,
                request_id: text("request_id")?,
            });
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next_after = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(Ok(AuditPage { events, next_after }))
    }

    /// Runs an admin action's writes and reads whether its audit row (the
    /// mark that the caller was allowed) was recorded.
    async fn admin_recorded(
        &self,
        writes: &[Statement],
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        let (flag, id) = recorded(audit, "done");
        let rows = self
            .batch(writes, Some(&stmt(&format!("SELECT {flag}"), vec![id])))
            .await?;
        first(&rows)?.flag("done")
    }
}
