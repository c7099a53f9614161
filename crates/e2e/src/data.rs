//! Looking into the database behind the API: the embedded SQLite file, or
//! the stand-in's file for the SQLite Cloud backend (read directly, so the
//! stand-in's request counter only counts what the service sends).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use sha2::Digest as _;

/// Opens a database file the service is using (WAL mode: readers and the
/// service's writer do not block each other; writes wait up to 10 s).
pub fn open_database(path: &Path) -> Connection {
    let conn = match Connection::open(path) {
        Ok(conn) => conn,
        Err(e) => panic!("opening {}: {e}", path.display()),
    };
    if let Err(e) = conn.busy_timeout(Duration::from_secs(10)) {
        panic!("setting a busy timeout on {}: {e}", path.display());
    }
    conn
}

/// The single integer an SQL query returns (e.g. `SELECT count(*) ...`).
pub fn count(conn: &Connection, sql: &str) -> i64 {
    match conn.query_row(sql, [], |row| row.get::<_, Option<i64>>(0)) {
        Ok(value) => value.unwrap_or(0),
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// The account throttle key of an email, as the domain computes it:
/// `acct:` and the first 32 hex characters of SHA-256 of the trimmed,
/// lower-cased address.
pub fn throttle_key_for_email(email: &str) -> String {
    let normalised = email.trim().to_ascii_lowercase();
    let digest = hex::encode(sha2::Sha256::digest(normalised.as_bytes()));
    format!("acct:{}", &digest[..32])
}

/// The data invariants no request, failed or not, may break. Returns a
/// description of each violation (empty when all hold).
pub fn invariant_violations(conn: &Connection) -> Vec<String> {
    let checks: [(&str, &str); 24] = [
        (
            "a user without a role",
            "SELECT count(*) FROM users u WHERE NOT EXISTS \
             (SELECT 1 FROM user_roles ur WHERE ur.user_id = u.id)",
        ),
        (
            "a role grant without its user",
            "SELECT count(*) FROM user_roles ur WHERE NOT EXISTS \
             (SELECT 1 FROM users u WHERE u.id = ur.user_id)",
        ),
        (
            "a session without its user",
            "SELECT count(*) FROM sessions s WHERE NOT EXISTS \
             (SELECT 1 FROM users u WHERE u.id = s.user_id)",
        ),
        (
            "a refresh token both current (a session's refresh_hash) and retired",
            "SELECT count(*) FROM sessions s JOIN retired_refresh_tokens r ON r.hash = s.refresh_hash",
        ),
        (
            "a retired refresh token without its session",
            "SELECT count(*) FROM retired_refresh_tokens r WHERE NOT EXISTS \
             (SELECT 1 FROM sessions s WHERE s.id = r.session_id)",
        ),
        (
            "a throttle counter below zero",
            "SELECT count(*) FROM throttle WHERE failures < 0",
        ),
        (
            "an account, password or second-factor counter at its limit (5) without a lock",
            "SELECT count(*) FROM throttle WHERE (key LIKE 'acct:%' OR key LIKE 'pwd:%' \
             OR key LIKE 'mfa:%') AND failures >= 5 AND locked_until = 0",
        ),
        (
            "a client-address counter at its limit (20) without a lock",
            "SELECT count(*) FROM throttle WHERE key LIKE 'ip:%' AND failures >= 20 AND locked_until = 0",
        ),
        (
            // Sessions are only deleted once expired, which no test waits for.
            // A right password for a user with a second factor opens no
            // session (reason `mfa_required`): verifying the code does.
            "a successful sign-in recorded without its session",
            "SELECT count(*) FROM audit_events a WHERE a.event = 'signin' AND a.outcome = 'success' \
             AND a.reason IS NOT 'mfa_required' \
             AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = a.session_id)",
        ),
        // One-time tokens (recovery and verification links).
        (
            "a one-time token without its user",
            "SELECT count(*) FROM one_time_tokens t WHERE NOT EXISTS \
             (SELECT 1 FROM users u WHERE u.id = t.user_id)",
        ),
        (
            "a one-time token that expires before it is created",
            "SELECT count(*) FROM one_time_tokens WHERE expires_at <= created_at",
        ),
        (
            // Issuing a token deletes the user's others of its purpose, in the same write.
            "two unused one-time tokens of one user and purpose",
            "SELECT count(*) FROM (SELECT user_id, purpose FROM one_time_tokens \
             WHERE used_at IS NULL GROUP BY user_id, purpose HAVING count(*) > 1)",
        ),
        (
            // Verifying sets email_verified_at and consumes the token in one write.
            "a used verification token whose user is not verified",
            "SELECT count(*) FROM one_time_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.purpose = 'verification' AND t.used_at IS NOT NULL AND u.email_verified_at IS NULL",
        ),
        (
            // A reset revokes every session, consumes the token and audits, in one write.
            "a used recovery token whose user kept a session from before the reset",
            "SELECT count(*) FROM one_time_tokens t JOIN sessions s ON s.user_id = t.user_id \
             WHERE t.purpose = 'recovery' AND t.used_at IS NOT NULL AND s.created_at < t.used_at \
             AND s.revoked_at IS NULL AND s.expires_at > t.used_at",
        ),
        (
            "a used recovery token without its password_reset audit event",
            "SELECT count(*) FROM one_time_tokens t WHERE t.purpose = 'recovery' \
             AND t.used_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM audit_events a \
             WHERE a.event = 'password_reset' AND a.outcome = 'success' AND a.user_id = t.user_id)",
        ),
        // The admin API (issue 15): every admin action names who did it, and to whom.
        (
            "an admin action audited without its acting admin (actor_id)",
            "SELECT count(*) FROM audit_events WHERE event LIKE 'admin\\_%' ESCAPE '\\' \
             AND actor_id IS NULL",
        ),
        (
            "an admin action audited without its target user",
            "SELECT count(*) FROM audit_events WHERE event LIKE 'admin\\_%' ESCAPE '\\' \
             AND user_id IS NULL",
        ),
        // The second factor (issue 14).
        (
            // Confirming writes the codes with the confirmation; removing
            // deletes them with the factor.
            "recovery codes without a confirmed factor",
            "SELECT count(*) FROM mfa_recovery_codes r WHERE NOT EXISTS (SELECT 1 FROM \
             mfa_factors f WHERE f.user_id = r.user_id AND f.confirmed_at IS NOT NULL)",
        ),
        (
            "a confirmed factor without recovery codes",
            "SELECT count(*) FROM mfa_factors f WHERE f.confirmed_at IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM mfa_recovery_codes r WHERE r.user_id = f.user_id)",
        ),
        (
            // Confirming revokes every other session in the same write: only
            // the confirming one may be older than the confirmation.
            "a confirmed factor whose user kept more than one session from before it",
            "SELECT count(*) FROM mfa_factors f WHERE f.confirmed_at IS NOT NULL AND \
             (SELECT count(*) FROM sessions s WHERE s.user_id = f.user_id \
             AND s.created_at < f.confirmed_at AND s.revoked_at IS NULL \
             AND s.expires_at > f.confirmed_at) > 1",
        ),
        (
            "a session whose assurance is none the API issues",
            "SELECT count(*) FROM sessions WHERE NOT ((aal = 'aal1' AND amr = 'pwd') \
             OR (aal = 'aal2' AND amr IN ('pwd otp', 'pwd recovery')))",
        ),
        (
            "a sign-in challenge that expires before it is created",
            "SELECT count(*) FROM mfa_challenges WHERE expires_at <= created_at",
        ),
        (
            // Sessions are only deleted once expired, which no test waits for.
            "a successful second-factor verification recorded without its session",
            "SELECT count(*) FROM audit_events a WHERE a.event = 'mfa_verified' \
             AND a.outcome = 'success' AND NOT EXISTS \
             (SELECT 1 FROM sessions s WHERE s.id = a.session_id AND s.aal = 'aal2')",
        ),
        (
            // Using a challenge opens the session and audits it in one write.
            "a used sign-in challenge without its mfa_verified audit event",
            "SELECT count(*) FROM (SELECT user_id, count(*) AS used FROM mfa_challenges \
             WHERE used_at IS NOT NULL GROUP BY user_id) c WHERE c.used > (SELECT count(*) \
             FROM audit_events a WHERE a.event = 'mfa_verified' AND a.outcome = 'success' \
             AND a.user_id = c.user_id)",
        ),
    ];
    checks
        .iter()
        .filter_map(|(what, sql)| {
            let n = count(conn, sql);
            (n != 0).then(|| format!("{n} x {what}"))
        })
        .collect()
}
