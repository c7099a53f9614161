//! The second factor's queries: enrolment, the checks of a code (counted on
//! the user's second-factor throttle key before the code is looked at), and
//! the writes a correct code allows. Each write batch records its audit event
//! only if everything it relies on still holds, and every other write of the
//! batch depends on that row: so of two requests racing with one code or one
//! challenge, exactly one changes anything.

use latch_domain::{ThrottleKey, ThrottlePolicy, ThrottleState};

use super::{
    ACTIVE_SESSION, AuditRecord, NewSession, USER_COLUMNS, User, active_session_params,
    count_attempt_if, counter, insert_session, purge_expired_sessions, record_if_locked_and,
    recorded, user_from,
};
use crate::{Database, Row, Statement, Store, StoreError, Value, stmt};

/// What enrolling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolment {
    /// The new secret is stored, pending confirmation; the user's address
    /// labels it in the authenticator app.
    Pending { email: String },
    /// A confirmed factor exists: it must be removed first.
    AlreadyEnabled,
    /// The caller's session is no longer active.
    SessionEnded,
}

/// A user's TOTP factor as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFactor {
    /// The sealed secret.
    pub secret_sealed: String,
    pub confirmed: bool,
    /// The highest step accepted so far.
    pub last_used_step: Option<i64>,
}

/// What checking a second-factor code needs: the user, the factor, the
/// unused recovery codes' hashes, and the counter after this attempt.
#[derive(Debug, Clone)]
pub struct FactorContext {
    pub user: User,
    pub factor: Option<StoredFactor>,
    pub recovery_code_hashes: Vec<String>,
    pub counter: ThrottleState,
    /// The key was locked: nothing was counted, the refusal is recorded,
    /// and no code may be checked.
    pub refused: bool,
}

/// What a correct second-factor code was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof<'a> {
    /// A TOTP code of this step (later than the factor's last used step).
    Totp { step: i64 },
    /// The unused recovery code with this hash.
    RecoveryCode { hash: &'a str },
}

/// The user's second-factor counter and its policy, the attempt it counts,
/// and the event recorded when a lock refuses it.
#[derive(Debug, Clone, Copy)]
pub struct FactorAttempt<'a> {
    pub key: &'a ThrottleKey,
    pub policy: &'a ThrottlePolicy,
    pub attempt_id: &'a str,
    pub refusal: &'a AuditRecord,
}

/// Which factor a signed-in caller's code is checked against: only an
/// attempt that will be checked is counted (a refusal for want of a
/// factor, or of `aal2`, is no guess).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A pending factor (confirmation).
    Pending,
    /// A confirmed factor; `allowed` false when the route will refuse the
    /// session anyway (step-up).
    Confirmed { allowed: bool },
}

impl Expected {
    fn condition(self, user_id: &str) -> (&'static str, Vec<Value>) {
        match self {
            Expected::Pending => (
                "EXISTS (SELECT 1 FROM mfa_factors f WHERE f.user_id = ? AND f.confirmed_at IS NULL)",
                vec![user_id.into()],
            ),
            Expected::Confirmed { allowed } => (
                "? AND EXISTS (SELECT 1 FROM mfa_factors f WHERE f.user_id = ? AND f.confirmed_at IS NOT NULL)",
                vec![i64::from(allowed).into(), user_id.into()],
            ),
        }
    }
}

/// A sign-in challenge to store.
#[derive(Debug, Clone, Copy)]
pub struct NewChallenge<'a> {
    /// Hex SHA-256 of the challenge's random part.
    pub hash: &'a str,
    pub user_id: &'a str,
    /// The sign-in attempt that passed the password.
    pub attempt_id: &'a str,
    pub now: i64,
    pub expires_at: i64,
}

/// SQL: the challenge `c` with hash `?` of user `?` is unused and
/// unexpired at `?`, and its user `u` active.
const OPEN_CHALLENGE: &str = "c.hash = ? AND c.user_id = ? AND c.used_at IS NULL AND c.expires_at > ? \
     AND EXISTS (SELECT 1 FROM users u WHERE u.id = c.user_id AND u.is_active = 1)";

fn open_challenge_params(hash: &str, user_id: &str, now: i64) -> Vec<Value> {
    vec![hash.into(), user_id.into(), now.into()]
}

/// SQL: user `?` has a confirmed factor, and the proof still holds (its
/// step is later than the last one used, or its recovery code is unused).
fn proof_holds(user_id: &str, proof: Proof<'_>) -> (String, Vec<Value>) {
    match proof {
        Proof::Totp { step } => (
            "EXISTS (SELECT 1 FROM mfa_factors f WHERE f.user_id = ? AND f.confirmed_at IS NOT NULL \
             AND (f.last_used_step IS NULL OR f.last_used_step < ?))"
                .into(),
            vec![user_id.into(), step.into()],
        ),
        Proof::RecoveryCode { hash } => (
            "EXISTS (SELECT 1 FROM mfa_factors f WHERE f.user_id = ? AND f.confirmed_at IS NOT NULL) \
             AND EXISTS (SELECT 1 FROM mfa_recovery_codes r WHERE r.user_id = ? AND r.hash = ? AND r.used_at IS NULL)"
                .into(),
            vec![user_id.into(), user_id.into(), hash.into()],
        ),
    }
}

/// `EXISTS (SELECT 1 FROM audit_events WHERE id = ?)`: the batch's witness row.
const WITNESSED: &str = "EXISTS (SELECT 1 FROM audit_events WHERE id = ?)";

/// Spends the proof: the step becomes the last used, or the code used.
fn spend(user_id: &str, proof: Proof<'_>, witness: &AuditRecord, now: i64) -> Statement {
    match proof {
        Proof::Totp { step } => stmt(
            &format!("UPDATE mfa_factors SET last_used_step = ? WHERE user_id = ? AND {WITNESSED}"),
            vec![step.into(), user_id.into(), witness.id.as_str().into()],
        ),
        Proof::RecoveryCode { hash } => stmt(
            &format!(
                "UPDATE mfa_recovery_codes SET used_at = ? WHERE user_id = ? AND hash = ? \
                 AND used_at IS NULL AND {WITNESSED}"
            ),
            vec![
                now.into(),
                user_id.into(),
                hash.into(),
                witness.id.as_str().into(),
            ],
        ),
    }
}

/// Replaces the user's recovery codes with `hashes`.
fn replace_recovery_codes(
    user_id: &str,
    hashes: &[String],
    witness: &AuditRecord,
    now: i64,
) -> [Statement; 2] {
    let mut params: Vec<Value> = vec![user_id.into(), now.into()];
    params.extend(hashes.iter().map(|h| Value::from(h.as_str())));
    params.push(witness.id.as_str().into());
    let rows = vec!["(?)"; hashes.len()].join(", ");
    [
        stmt(
            &format!("DELETE FROM mfa_recovery_codes WHERE user_id = ? AND {WITNESSED}"),
            vec![user_id.into(), witness.id.as_str().into()],
        ),
        stmt(
            &format!(
                "INSERT INTO mfa_recovery_codes (user_id, hash, created_at, used_at) \
                 SELECT ?, h.column1, ?, NULL FROM (VALUES {rows}) h WHERE {WITNESSED}"
            ),
            params,
        ),
    ]
}

fn clear_throttle(key: &ThrottleKey, witness: &AuditRecord) -> Statement {
    stmt(
        &format!("DELETE FROM throttle WHERE key = ? AND {WITNESSED}"),
        vec![key.as_str().into(), witness.id.as_str().into()],
    )
}

/// The factor, recovery-code and counter columns every check reads, over a
/// query joining users `u`, `mfa_factors f` and `throttle t`.
const FACTOR_COLUMNS: &str = "f.secret_sealed, f.confirmed_at, f.last_used_step, \
     (SELECT group_concat(r.hash, ',') FROM mfa_recovery_codes r WHERE r.user_id = u.id AND r.used_at IS NULL) AS recovery_hashes, \
     t.failures AS t_failures, t.window_started_at AS t_window, t.locked_until AS t_locked";

fn factor_context(row: &Row<'_>, now: i64) -> Result<FactorContext, StoreError> {
    let factor = match row.opt_text("secret_sealed")? {
        Some(sealed) => Some(StoredFactor {
            secret_sealed: sealed.to_string(),
            confirmed: row.opt_int("confirmed_at")?.is_some(),
            last_used_step: row.opt_int("last_used_step")?,
        }),
        None => None,
    };
    Ok(FactorContext {
        user: user_from(row)?,
        factor,
        recovery_code_hashes: row
            .opt_text("recovery_hashes")?
            .unwrap_or("")
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect(),
        counter: counter(row, "t", now)?,
        refused: row.flag("refused")?,
    })
}

impl<D: Database> Store<D> {
    /// Stores a new pending factor for the caller (replacing a pending one)
    /// unless a confirmed one exists or the session has ended. One round trip.
    pub async fn enroll_factor(
        &self,
        session_id: &str,
        user_id: &str,
        secret_sealed: &str,
        now: i64,
    ) -> Result<Enrolment, StoreError> {
        let mut params: Vec<Value> = vec![user_id.into(), secret_sealed.into(), now.into()];
        params.extend(active_session_params(session_id, user_id, now));
        let write = stmt(
            &format!(
                "INSERT INTO mfa_factors (user_id, secret_sealed, created_at, confirmed_at, last_used_step) \
                 SELECT ?, ?, ?, NULL, NULL WHERE EXISTS (SELECT 1 FROM sessions s WHERE {ACTIVE_SESSION}) \
                 ON CONFLICT (user_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, \
                 created_at = excluded.created_at, last_used_step = NULL \
                 WHERE mfa_factors.confirmed_at IS NULL"
            ),
            params,
        );
        let mut params: Vec<Value> = active_session_params(session_id, user_id, now);
        params.extend([secret_sealed.into(), user_id.into()]);
        let read = stmt(
            &format!(
                "SELECT u.email, EXISTS (SELECT 1 FROM sessions s WHERE {ACTIVE_SESSION}) AS active, \
                 f.confirmed_at, f.secret_sealed = ? AS stored \
                 FROM users u LEFT JOIN mfa_factors f ON f.user_id = u.id WHERE u.id = ?"
            ),
            params,
        );
        let rows = self.batch(&[write], Some(&read)).await?;
        let Some(row) = rows.first() else {
            return Ok(Enrolment::SessionEnded);
        };
        Ok(if !row.flag("active")? {
            Enrolment::SessionEnded
        } else if row.opt_int("confirmed_at")?.is_some() {
            Enrolment::AlreadyEnabled
        } else if row.opt_int("stored")? == Some(1) {
            Enrolment::Pending {
                email: row.text("email")?.to_string(),
            }
        } else {
            return Err(StoreError::Shape(
                "the pending factor was not stored".into(),
            ));
        })
    }

    /// Counts a signed-in caller's code on their second-factor counter, or
    /// records the refusal while it is locked, when the factor is as
    /// `expected` (otherwise the route refuses without looking at the code,
    /// and nothing is counted or recorded); reads the factor. `None` when the
    /// session has ended. One round trip.
    pub async fn begin_factor_check(
        &self,
        session_id: &str,
        user_id: &str,
        expected: Expected,
        attempt: FactorAttempt<'_>,
        now: i64,
    ) -> Result<Option<FactorContext>, StoreError> {
        let (guard, guard_params) = expected.condition(user_id);
        self.begin_code_check(
            attempt,
            (guard, guard_params),
            &format!(
                "sessions s JOIN users u ON u.id = s.user_id \
                 LEFT JOIN mfa_factors f ON f.user_id = u.id LEFT JOIN throttle t ON t.key = ? \
                 WHERE {ACTIVE_SESSION}"
            ),
            active_session_params(session_id, user_id, now),
            now,
        )
        .await
    }

    /// Counts a code presented with the sign-in challenge `challenge_hash`
    /// of `user_id` on the user's second-factor counter (only if the
    /// challenge is open: a made-up challenge counts nothing), or records the
    /// refusal while locked, and reads the user's confirmed factor. `None`
    /// when the challenge is unknown, used or expired, or the user inactive.
    /// One round trip.
    pub async fn begin_challenge_check(
        &self,
        challenge_hash: &str,
        user_id: &str,
        attempt: FactorAttempt<'_>,
        now: i64,
    ) -> Result<Option<FactorContext>, StoreError> {
        let open = format!("EXISTS (SELECT 1 FROM mfa_challenges c WHERE {OPEN_CHALLENGE})");
        let open_params = open_challenge_params(challenge_hash, user_id, now);
        self.begin_code_check(
            attempt,
            (&open, open_params.clone()),
            &format!(
                "mfa_challenges c JOIN users u ON u.id = c.user_id \
                 LEFT JOIN mfa_factors f ON f.user_id = u.id AND f.confirmed_at IS NOT NULL \
                 LEFT JOIN throttle t ON t.key = ? \
                 WHERE {OPEN_CHALLENGE}"
            ),
            open_params,
            now,
        )
        .await
    }

    /// The round trip both checks share: the refusal recorded if the key is
    /// locked and the attempt counted if not, each only while `guard` holds;
    /// then the user, factor, recovery codes and counter read from `from`
    /// (a FROM clause with its WHERE, joining `u`, `f` and `throttle t ON
    /// t.key = ?`; `from_params` fill its placeholders after that key).
    async fn begin_code_check(
        &self,
        attempt: FactorAttempt<'_>,
        guard: (&str, Vec<Value>),
        from: &str,
        from_params: Vec<Value>,
        now: i64,
    ) -> Result<Option<FactorContext>, StoreError> {
        let (condition, guard_params) = guard;
        let writes = [
            record_if_locked_and(
                attempt.refusal,
                &[attempt.key],
                None,
                Some((condition, guard_params.clone())),
                now,
            ),
            count_attempt_if(
                attempt.key,
                attempt.policy,
                attempt.attempt_id,
                &[],
                Some((condition, guard_params)),
                now,
            ),
        ];
        let (refused, refusal_id) = recorded(attempt.refusal, "refused");
        let mut params: Vec<Value> = vec![refusal_id, attempt.key.as_str().into()];
        params.extend(from_params);
        let read = stmt(
            &format!("SELECT {USER_COLUMNS}, {FACTOR_COLUMNS}, {refused} FROM {from}"),
            params,
        );
        let rows = self.batch(&writes, Some(&read)).await?;
        rows.first()
            .map(|row| factor_context(&row, now))
            .transpose()
    }

    /// A right password for a user with a factor: clears the account's
    /// sign-in counter (as a successful sign-in does), drops the user's
    /// spent and expired challenges, stores `challenge`, records `audit`.
    /// One round trip.
    pub async fn open_challenge(
        &self,
        challenge: &NewChallenge<'_>,
        account_key: &ThrottleKey,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let writes = [
            stmt(
                "DELETE FROM throttle WHERE key = ?",
                vec![account_key.as_str().into()],
            ),
            stmt(
                "DELETE FROM mfa_challenges WHERE user_id = ? AND (used_at IS NOT NULL OR expires_at <= ?)",
                vec![challenge.user_id.into(), challenge.now.into()],
            ),
            stmt(
                "INSERT INTO mfa_challenges (hash, user_id, attempt_id, created_at, expires_at, used_at) \
                 VALUES (?, ?, ?, ?, ?, NULL)",
                vec![
                    challenge.hash.into(),
                    challenge.user_id.into(),
                    challenge.attempt_id.into(),
                    challenge.now.into(),
                    challenge.expires_at.into(),
                ],
            ),
            audit.insert(),
        ];
        self.batch(&writes, None).await.map(drop)
    }

    /// A correct second factor for an open challenge: if the challenge is
    /// still open and the proof unspent, spends both, clears the user's
    /// second-factor counter, opens `session` and records `verified` (and
    /// `code_used` for a recovery code). Returns whether it did; of racing
    /// verifications of one challenge or one code, one does. One round trip.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_challenge(
        &self,
        challenge_hash: &str,
        proof: Proof<'_>,
        session: &NewSession<'_>,
        throttle_key: &ThrottleKey,
        verified: &AuditRecord,
        code_used: Option<&AuditRecord>,
    ) -> Result<bool, StoreError> {
        let user_id = session.user_id;
        let now = session.now;
        let (proof_sql, proof_params) = proof_holds(user_id, proof);
        let mut params = open_challenge_params(challenge_hash, user_id, now);
        params.extend(proof_params);
        let witness = || -> (&str, Vec<Value>) { (WITNESSED, vec![verified.id.as_str().into()]) };
        let mut writes = vec![verified.insert_if(
            &format!(
                "EXISTS (SELECT 1 FROM mfa_challenges c WHERE {OPEN_CHALLENGE}) AND {proof_sql}"
            ),
            params,
        )];
        writes.push(stmt(
            &format!("UPDATE mfa_challenges SET used_at = ? WHERE hash = ? AND used_at IS NULL AND {WITNESSED}"),
            vec![now.into(), challenge_hash.into(), verified.id.as_str().into()],
        ));
        writes.push(spend(user_id, proof, verified, now));
        if let Some(code_used) = code_used {
            let (condition, params) = witness();
            writes.push(code_used.insert_if(condition, params));
        }
        writes.push(clear_throttle(throttle_key, verified));
        writes.extend(purge_expired_sessions(user_id, now));
        writes.push(insert_session(session, Some(witness())));
        self.recorded_after(&writes, verified).await
    }

    /// Confirms the caller's pending factor with a code of `step`: activates
    /// it, stores `recovery_code_hashes` in place of any others, revokes every
    /// other session of the user and clears the counter; only if the session
    /// is active and the factor is the same pending one. One round trip.
    #[allow(clippy::too_many_arguments)]
    pub async fn confirm_factor(
        &self,
        session_id: &str,
        user_id: &str,
        secret_sealed: &str,
        step: i64,
        recovery_code_hashes: &[String],
        throttle_key: &ThrottleKey,
        now: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        let mut params = active_session_params(session_id, user_id, now);
        params.extend([user_id.into(), secret_sealed.into()]);
        let mut writes = vec![audit.insert_for_session(
            &format!(
                "{ACTIVE_SESSION} AND EXISTS (SELECT 1 FROM mfa_factors f WHERE f.user_id = ? \
                 AND f.secret_sealed = ? AND f.confirmed_at IS NULL)"
            ),
            params,
        )];
        writes.push(stmt(
            &format!(
                "UPDATE mfa_factors SET confirmed_at = ?, last_used_step = ? WHERE user_id = ? AND {WITNESSED}"
            ),
            vec![
                now.into(),
                step.into(),
                user_id.into(),
                audit.id.as_str().into(),
            ],
        ));
        writes.extend(replace_recovery_codes(
            user_id,
            recovery_code_hashes,
            audit,
            now,
        ));
        writes.push(stmt(
            &format!(
                "UPDATE sessions SET revoked_at = ?, revoked_reason = 'mfa_enrolled' \
                 WHERE user_id = ? AND id <> ? AND revoked_at IS NULL AND {WITNESSED}"
            ),
            vec![
                now.into(),
                user_id.into(),
                session_id.into(),
                audit.id.as_str().into(),
            ],
        ));
        writes.push(clear_throttle(throttle_key, audit));
        self.recorded_after(&writes, audit).await
    }

    /// Replaces the caller's recovery codes, proven by a TOTP code of `step`
    /// (which becomes the last used). One round trip.
    #[allow(clippy::too_many_arguments)]
    pub async fn regenerate_recovery_codes(
        &self,
        session_id: &str,
        user_id: &str,
        step: i64,
        recovery_code_hashes: &[String],
        throttle_key: &ThrottleKey,
        now: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        let proof = Proof::Totp { step };
        let (proof_sql, proof_params) = proof_holds(user_id, proof);
        let mut params = active_session_params(session_id, user_id, now);
        params.extend(proof_params);
        let mut writes = vec![
            audit.insert_for_session(&format!("{ACTIVE_SESSION} AND {proof_sql}"), params),
            spend(user_id, proof, audit, now),
        ];
        writes.extend(replace_recovery_codes(
            user_id,
            recovery_code_hashes,
            audit,
            now,
        ));
        writes.push(clear_throttle(throttle_key, audit));
        self.recorded_after(&writes, audit).await
    }

    /// Removes the caller's factor, its recovery codes and open challenges,
    /// proven by `proof`, and clears the counter; records `removed` (and
    /// `code_used` for a recovery code). One round trip.
    #[allow(clippy::too_many_arguments)]
    pub async fn remove_factor(
        &self,
        session_id: &str,
        user_id: &str,
        proof: Proof<'_>,
        throttle_key: &ThrottleKey,
        now: i64,
        removed: &AuditRecord,
        code_used: Option<&AuditRecord>,
    ) -> Result<bool, StoreError> {
        let (proof_sql, proof_params) = proof_holds(user_id, proof);
        let mut params = active_session_params(session_id, user_id, now);
        params.extend(proof_params);
        let mut writes =
            vec![removed.insert_for_session(&format!("{ACTIVE_SESSION} AND {proof_sql}"), params)];
        if let Some(code_used) = code_used {
            writes.push(code_used.insert_if(WITNESSED, vec![removed.id.as_str().into()]));
        }
        for table in ["mfa_recovery_codes", "mfa_challenges", "mfa_factors"] {
            writes.push(stmt(
                &format!("DELETE FROM {table} WHERE user_id = ? AND {WITNESSED}"),
                vec![user_id.into(), removed.id.as_str().into()],
            ));
        }
        writes.push(clear_throttle(throttle_key, removed));
        self.recorded_after(&writes, removed).await
    }
}
