//! What can go wrong talking to SQLite Cloud, sorted by what the service does
//! about it.

use std::fmt;

/// Which constraint a write violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintKind {
    Unique,
    PrimaryKey,
    ForeignKey,
    Check,
    NotNull,
    /// Plain SQLITE_CONSTRAINT or a rarer extended code (trigger, datatype...).
    Other,
}

impl ConstraintKind {
    /// From an SQLite extended result code, if it names a known kind.
    pub(crate) fn from_extended_code(code: u32) -> Option<ConstraintKind> {
        match code {
            2067 => Some(ConstraintKind::Unique),
            1555 => Some(ConstraintKind::PrimaryKey),
            787 => Some(ConstraintKind::ForeignKey),
            275 => Some(ConstraintKind::Check),
            1299 => Some(ConstraintKind::NotNull),
            _ => None,
        }
    }

    /// From SQLite's message text, e.g. `UNIQUE constraint failed: users.email`.
    pub(crate) fn from_message(message: &str) -> Option<ConstraintKind> {
        let upper = message.to_ascii_uppercase();
        [
            ("UNIQUE CONSTRAINT FAILED", ConstraintKind::Unique),
            ("NOT NULL CONSTRAINT FAILED", ConstraintKind::NotNull),
            ("FOREIGN KEY CONSTRAINT FAILED", ConstraintKind::ForeignKey),
            ("CHECK CONSTRAINT FAILED", ConstraintKind::Check),
            ("PRIMARY KEY MUST BE UNIQUE", ConstraintKind::PrimaryKey),
        ]
        .into_iter()
        .find(|(needle, _)| upper.contains(needle))
        .map(|(_, kind)| kind)
    }
}

impl fmt::Display for ConstraintKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConstraintKind::Unique => "UNIQUE",
            ConstraintKind::PrimaryKey => "PRIMARY KEY",
            ConstraintKind::ForeignKey => "FOREIGN KEY",
            ConstraintKind::Check => "CHECK",
            ConstraintKind::NotNull => "NOT NULL",
            ConstraintKind::Other => "other",
        })
    }
}

/// An error from SQLite Cloud or on the way to it. Messages carry neither
/// credentials nor parameter values: gateway text is truncated, and the body
/// of an authorization failure is not kept at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebliteError {
    /// HTTP 401/403: the API key or token was refused.
    #[error("SQLite Cloud refused the credential (HTTP {status})")]
    Unauthorized { status: u16 },
    /// HTTP 429.
    #[error("SQLite Cloud rate limit reached: {message}")]
    RateLimited { message: String },
    /// The gateway answered with a bare `message` instead of a result: how a
    /// paused free node answers (it must be resumed from the dashboard).
    #[error("SQLite Cloud node unavailable, probably paused (HTTP {status}): {message}")]
    Paused { status: u16, message: String },
    /// HTTP 5xx without a more precise error.
    #[error("SQLite Cloud server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    /// A body that is not JSON, or JSON of an unexpected shape.
    #[error("unexpected answer from SQLite Cloud (HTTP {status}): {reason}")]
    Malformed { status: u16, reason: String },
    /// For callers: the request never got a complete answer (timeout, refused
    /// or dropped connection, truncated body).
    #[error("could not reach SQLite Cloud: {0}")]
    Transport(String),
    /// A constraint violation (SQLITE_CONSTRAINT and its extended codes).
    #[error("{kind} constraint violation: {detail}")]
    Constraint {
        kind: ConstraintKind,
        detail: String,
    },
    /// Any other SQLite error: a bug in the SQL the service sent.
    #[error("SQLite error {code}: {message}")]
    Sql { code: u32, message: String },
    /// SQLite Cloud's own error (codes 10000-99999), or an error that came
    /// without any code.
    #[error("SQLite Cloud error{}: {message}", code.map(|c| format!(" {c}")).unwrap_or_default())]
    Gateway { code: Option<u32>, message: String },
}

impl WebliteError {
    /// True when the database could not do the work at all, whatever the SQL:
    /// the service answers 503. Gateway errors count here: they come from
    /// SQLite Cloud's own layer (quota, node state, missing database), not
    /// from the service's SQL.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            WebliteError::Unauthorized { .. }
                | WebliteError::RateLimited { .. }
                | WebliteError::Paused { .. }
                | WebliteError::Server { .. }
                | WebliteError::Malformed { .. }
                | WebliteError::Transport(_)
                | WebliteError::Gateway { .. }
        )
    }

    /// A UNIQUE or PRIMARY KEY violation: the service answers 409.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            WebliteError::Constraint {
                kind: ConstraintKind::Unique | ConstraintKind::PrimaryKey,
                ..
            }
        )
    }

    /// Any constraint violation.
    pub fn is_constraint(&self) -> bool {
        matches!(self, WebliteError::Constraint { .. })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let unique = WebliteError::Constraint {
            kind: ConstraintKind::Unique,
            detail: "UNIQUE constraint failed: users.email".into(),
        };
        assert!(unique.is_unique_violation() && !unique.is_unavailable());
        let not_null = WebliteError::Constraint {
            kind: ConstraintKind::NotNull,
            detail: String::new(),
        };
        assert!(!not_null.is_unique_violation() && not_null.is_constraint());
        let sql = WebliteError::Sql {
            code: 1,
            message: "no such table: x".into(),
        };
        assert!(!sql.is_unavailable() && !sql.is_constraint());
        assert!(WebliteError::Transport("timed out".into()).is_unavailable());
        assert!(WebliteError::Unauthorized { status: 401 }.is_unavailable());
    }

    #[test]
    fn messages() {
        let err = WebliteError::Gateway {
            code: Some(10002),
            message: "database not found".into(),
        };
        assert_eq!(
            err.to_string(),
            "SQLite Cloud error 10002: database not found"
        );
        let err = WebliteError::Gateway {
            code: None,
            message: "boom".into(),
        };
        assert_eq!(err.to_string(), "SQLite Cloud error: boom");
        let err = WebliteError::Constraint {
            kind: ConstraintKind::Unique,
            detail: "UNIQUE constraint failed: t.x".into(),
        };
        assert_eq!(
            err.to_string(),
            "UNIQUE constraint violation: UNIQUE constraint failed: t.x"
        );
    }
}
