//! Display names of users.

use std::fmt;

use crate::error::{FieldError, codes};

const FIELD: &str = "name";
/// Fewest characters (Unicode scalar values) a full name may have.
pub const MIN_NAME_CHARS: usize = 2;
/// Most characters (Unicode scalar values) a full name may have.
pub const MAX_NAME_CHARS: usize = 100;

/// A user's full name: trimmed, 2 to 100 characters, printable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct FullName(String);

impl FullName {
    /// Trims and validates a full name.
    ///
    /// Rejects control characters, line/paragraph separators and bidirectional
    /// overrides (which could make a name display as something else).
    ///
    /// # Errors
    /// A [`FieldError`] on field `name`.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err(FieldError::new(FIELD, codes::REQUIRED, "name is required"));
        }
        if chars < MIN_NAME_CHARS {
            return Err(FieldError::new(
                FIELD,
                codes::TOO_SHORT,
                format!("name must be at least {MIN_NAME_CHARS} characters"),
            ));
        }
        if chars > MAX_NAME_CHARS {
            return Err(FieldError::new(
                FIELD,
                codes::TOO_LONG,
                format!("name must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if trimmed.chars().any(is_forbidden) {
            return Err(FieldError::new(
                FIELD,
                codes::INVALID_CHARACTERS,
                "name must not contain control or formatting characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FullName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_accepts_unicode_names() {
        assert_eq!(
            FullName::parse("  Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert_eq!(
            FullName::parse("Zoë Ó Súilleabháin").unwrap().to_string(),
            "Zoë Ó Súilleabháin"
        );
        assert!(FullName::parse("李小龍").is_ok());
        assert!(FullName::parse("Al").is_ok());
    }

    #[test]
    fn length_bounds_count_characters() {
        assert_eq!(FullName::parse("   ").unwrap_err().code, codes::REQUIRED);
        assert_eq!(FullName::parse(" A ").unwrap_err().code, codes::TOO_SHORT);
        assert_eq!(FullName::parse("é").unwrap_err().code, codes::TOO_SHORT);
        assert!(FullName::parse(&"é".repeat(100)).is_ok());
        assert_eq!(
            FullName::parse(&"é".repeat(101)).unwrap_err().code,
            codes::TOO_LONG
        );
    }

    #[test]
    fn rejects_control_and_formatting_characters() {
        for bad in [
            "Ada\nLovelace",
            "Ada\u{0}",
            "Ada\u{7f}x",
            "Ada\u{202E}ecalevol",
            "Ada\u{2028}L",
        ] {
            let err = FullName::parse(bad).unwrap_err();
            assert_eq!(
                (err.field, err.code),
                ("name", codes::INVALID_CHARACTERS),
                "{bad:?}"
            );
        }
    }
}
