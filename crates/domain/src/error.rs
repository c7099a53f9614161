//! Domain errors. No HTTP here: the web crate maps these to statuses.

use serde::Serialize;
use thiserror::Error;

use crate::config::ConfigError;
use crate::throttle::Throttled;
use crate::token::{KeyError, TokenError};

/// One rejected input field.
///
/// `field` and `code` are stable, machine-readable names (for API clients);
/// `message` is a short human explanation that never echoes secret input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Name of the input field, e.g. `"email"`.
    pub field: &'static str,
    /// Stable reason code, e.g. `"too_short"`; see the `codes` module.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }
}

/// Stable values of [`FieldError::code`].
pub mod codes {
    /// The value is empty.
    pub const REQUIRED: &str = "required";
    /// The value is shorter than allowed.
    pub const TOO_SHORT: &str = "too_short";
    /// The value is longer than allowed.
    pub const TOO_LONG: &str = "too_long";
    /// The value does not have the expected shape.
    pub const INVALID: &str = "invalid";
    /// The value contains characters that are not allowed.
    pub const INVALID_CHARACTERS: &str = "invalid_characters";
    /// The password appears in the list of common passwords.
    pub const COMMON_PASSWORD: &str = "common_password";
}

/// Every failure a domain operation can report.
#[derive(Debug, Error)]
pub enum DomainError {
    /// One or more input fields were rejected.
    #[error("invalid input: {}", join_fields(.0))]
    Validation(Vec<FieldError>),
    /// Unknown email or wrong password: deliberately indistinguishable.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// An access or refresh token was rejected.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The resource already exists (e.g. an email that is already registered).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The resource does not exist.
    #[error("not found")]
    NotFound,
    /// The caller is authenticated but lacks the required role.
    #[error("forbidden")]
    Forbidden,
    /// Too many failed attempts; the caller must wait.
    #[error("too many attempts, retry after {retry_after_secs} s")]
    Throttled {
        /// Seconds until the lock ends.
        retry_after_secs: u64,
    },
    /// A refresh token that was already rotated was presented again.
    #[error("refresh token reuse detected")]
    RefreshTokenReused,
    /// Password hashing failed (invalid parameters or a malformed salt).
    #[error("password hashing failed")]
    PasswordHashing,
    /// A signing or verification key could not be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A configuration value could not be parsed.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl From<FieldError> for DomainError {
    fn from(error: FieldError) -> Self {
        Self::Validation(vec![error])
    }
}

impl From<Vec<FieldError>> for DomainError {
    fn from(errors: Vec<FieldError>) -> Self {
        Self::Validation(errors)
    }
}

impl From<Throttled> for DomainError {
    fn from(throttled: Throttled) -> Self {
        Self::Throttled {
            retry_after_secs: throttled.retry_after_secs,
        }
    }
}

fn join_fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn validation_error_lists_every_field() {
        let error = DomainError::from(vec![
            FieldError::new("email", codes::INVALID, "not an email address"),
            FieldError::new("password", codes::TOO_SHORT, "at least 8 characters"),
        ]);
        assert_eq!(
            error.to_string(),
            "invalid input: email: not an email address; password: at least 8 characters"
        );
    }

    #[test]
    fn throttled_converts_with_its_delay() {
        let error = DomainError::from(Throttled {
            retry_after_secs: 42,
        });
        assert!(matches!(
            error,
            DomainError::Throttled {
                retry_after_secs: 42
            }
        ));
    }

    #[test]
    fn field_error_serialises_flat() {
        let json =
            serde_json::to_value(FieldError::new("name", codes::REQUIRED, "required")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"field": "name", "code": "required", "message": "required"})
        );
    }
}
