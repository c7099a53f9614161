//! Parsing of Spin variable values into typed settings.
//!
//! Values arrive as strings; these helpers give each failure a clear message
//! naming the variable. Values are not echoed back, in case a secret was put
//! into the wrong variable.

use std::str::FromStr;

use thiserror::Error;

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The variable is required but missing or empty.
    #[error("variable `{name}` is required")]
    Missing {
        /// Variable name.
        name: &'static str,
    },
    /// The variable is set to something that is not accepted.
    #[error("variable `{name}` must be {expected}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// What is accepted, e.g. `"true or false"`.
        expected: String,
    },
}

/// Which kind of deployment this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    /// Local work: development conveniences (e.g. a generated signing key)
    /// are allowed.
    Development,
    /// A real deployment: every setting must be given explicitly.
    Production,
}

impl Environment {
    /// The variable value naming this environment.
    pub const fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
        }
    }

    /// Whether this is a production deployment.
    pub const fn is_production(self) -> bool {
        matches!(self, Environment::Production)
    }

    /// Parses `"development"` or `"production"` (surrounding whitespace
    /// ignored, case-sensitive) from the variable `name`.
    ///
    /// # Errors
    /// [`ConfigError`] when empty or anything else.
    pub fn parse(name: &'static str, value: &str) -> Result<Self, ConfigError> {
        match required(name, value)? {
            "development" => Ok(Environment::Development),
            "production" => Ok(Environment::Production),
            _ => Err(ConfigError::Invalid {
                name,
                expected: "\"development\" or \"production\"".to_owned(),
            }),
        }
    }
}

/// Parses `"true"` or `"false"` from the variable `name`.
///
/// # Errors
/// [`ConfigError`] when empty or anything else (no `1`/`yes`: one spelling).
pub fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match required(name, value)? {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name,
            expected: "\"true\" or \"false\"".to_owned(),
        }),
    }
}

/// Parses a decimal integer within `min..=max` (inclusive) from the
/// variable `name`; use `min >= 1` for positive settings.
///
/// # Errors
/// [`ConfigError`] when empty, not a decimal integer, or out of bounds.
pub fn parse_bounded<T>(name: &'static str, value: &str, min: T, max: T) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + Copy + std::fmt::Display,
{
    let text = required(name, value)?;
    let invalid = || ConfigError::Invalid {
        name,
        expected: format!("an integer from {min} to {max}"),
    };
    // Only plain digits (and a leading minus): no `+5`, no `1_000`.
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let parsed: T = text.parse().map_err(|_| invalid())?;
    if parsed < min || parsed > max {
        return Err(invalid());
    }
    Ok(parsed)
}

/// The trimmed value, or [`ConfigError::Missing`] when it is empty.
///
/// # Errors
/// [`ConfigError::Missing`] when `value` is empty or only whitespace.
pub fn required<'v>(name: &'static str, value: &'v str) -> Result<&'v str, ConfigError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        Err(ConfigError::Missing { name })
    } else {
        Ok(trimmed)
    }
}

/// The trimmed value, or `None` when it is empty (Spin variables default to
/// `""` when optional).
pub fn optional(value: &str) -> Option<&str> {
    let trimmed = value.trim();
    (!trimmed.is_empty()).then_some(trimmed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn environment() {
        assert_eq!(
            Environment::parse("env", "production"),
            Ok(Environment::Production)
        );
        assert_eq!(
            Environment::parse("env", " development\n"),
            Ok(Environment::Development)
        );
        assert!(Environment::Production.is_production());
        assert!(!Environment::Development.is_production());
        assert_eq!(
            Environment::parse("env", ""),
            Err(ConfigError::Missing { name: "env" })
        );
        let err = Environment::parse("env", "Production").unwrap_err();
        assert_eq!(
            err.to_string(),
            "variable `env` must be \"development\" or \"production\""
        );
        assert!(Environment::parse("env", "prod").is_err());
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("flag", "true"), Ok(true));
        assert_eq!(parse_bool("flag", " false "), Ok(false));
        for bad in ["1", "yes", "TRUE", "on"] {
            assert!(parse_bool("flag", bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_bool("flag", "").unwrap_err().to_string(),
            "variable `flag` is required"
        );
    }

    #[test]
    fn bounded_integers() {
        assert_eq!(parse_bounded("ttl", "900", 1i64, 86_400), Ok(900));
        assert_eq!(parse_bounded("ttl", "1", 1i64, 86_400), Ok(1));
        assert_eq!(parse_bounded("ttl", "86400", 1i64, 86_400), Ok(86_400));
        assert_eq!(parse_bounded("n", "7", 1u32, 10), Ok(7));
        for bad in [
            "0",
            "86401",
            "-5",
            "+5",
            "1_000",
            "1e3",
            "abc",
            "9999999999999999999999",
            "-",
        ] {
            let err = parse_bounded("ttl", bad, 1i64, 86_400).unwrap_err();
            assert_eq!(
                err.to_string(),
                "variable `ttl` must be an integer from 1 to 86400",
                "{bad}"
            );
        }
        assert_eq!(parse_bounded("n", "-3", -5i32, 5), Ok(-3));
    }

    #[test]
    fn optional_values() {
        assert_eq!(optional("  "), None);
        assert_eq!(optional(" x "), Some("x"));
    }
}
