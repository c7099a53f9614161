//! Email addresses: normalisation, validation, masking for logs.

use std::fmt;

use crate::encoding::sha256_hex;
use crate::error::{FieldError, codes};

const FIELD: &str = "email";
/// Longest accepted address, in bytes (RFC 5321 path limit less the brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest accepted local part (before the `@`), in bytes (RFC 5321).
pub const MAX_LOCAL_PART_LEN: usize = 64;
const MAX_LABEL_LEN: usize = 63;
/// Number of hex characters of the SHA-256 digest kept in a throttle key.
const THROTTLE_HASH_HEX_LEN: usize = 32;

/// A normalised (trimmed, lower-case), validated email address.
///
/// Two spellings that differ only in case or surrounding whitespace are the
/// same `Email`, so they map to the same account.
///
/// It serialises as the plain address (for API responses); there is
/// deliberately no `Display`, so it is not formatted into logs by accident.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Trims, lower-cases and validates an email address.
    ///
    /// Accepts printable ASCII `local@domain`, at most 254 characters, where
    /// the local part is 1 to 64 characters without RFC 5322 specials (no
    /// quoted local parts) and the domain has at least two dot-separated
    /// labels of letters, digits and inner hyphens (internationalised domains
    /// must be given in their `xn--` form).
    ///
    /// # Errors
    /// A [`FieldError`] on field `email` naming the first problem found.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(FieldError::new(FIELD, codes::REQUIRED, "email is required"));
        }
        // ASCII only: Unicode case folding can merge distinct spellings
        // (the Kelvin sign lower-cases to `k`), and SMTPUTF8 is rare.
        if !trimmed.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError::new(
                FIELD,
                codes::INVALID_CHARACTERS,
                "email must not contain spaces, control or non-ASCII characters",
            ));
        }
        if trimmed.len() > MAX_EMAIL_LEN {
            return Err(FieldError::new(
                FIELD,
                codes::TOO_LONG,
                format!("email must be at most {MAX_EMAIL_LEN} characters"),
            ));
        }
        let normalised = trimmed.to_ascii_lowercase();
        let Some((local, domain)) = normalised.split_once('@') else {
            return Err(invalid());
        };
        if domain.contains('@') {
            return Err(invalid());
        }
        if !is_valid_local_part(local) || !is_valid_domain(domain) {
            return Err(invalid());
        }
        Ok(Self(normalised))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, domain)| domain)
    }

    /// A form safe for logs: the first character of the local part, `***`,
    /// then the domain, e.g. `j***@example.com`.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or(("", self.0.as_str()));
        let first = local.chars().next().unwrap_or('*');
        format!("{first}***@{domain}")
    }

    /// Key of this account's sign-in throttle counter:
    /// `acct:` followed by the first 32 hex characters of SHA-256 of the
    /// normalised address (so the address itself is not stored as a key).
    pub fn throttle_key(&self) -> String {
        let digest = sha256_hex(self.0.as_bytes());
        format!("acct:{}", &digest[..THROTTLE_HASH_HEX_LEN])
    }
}

impl fmt::Debug for Email {
    // Debug output ends up in logs, so it shows the masked form only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Email").field(&self.masked()).finish()
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

fn invalid() -> FieldError {
    FieldError::new(FIELD, codes::INVALID, "email address is not valid")
}

fn is_valid_local_part(local: &str) -> bool {
    // RFC 5322 specials that would need quoting; quoted local parts are not
    // supported because they are rare and easy to abuse in downstream tools.
    const SPECIALS: &str = "\"(),:;<>[\\]";
    (1..=MAX_LOCAL_PART_LEN).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !local.chars().any(|c| SPECIALS.contains(c))
}

fn is_valid_domain(domain: &str) -> bool {
    let mut labels = 0usize;
    for label in domain.split('.') {
        labels += 1;
        let bytes = label.as_bytes();
        let valid = (1..=MAX_LABEL_LEN).contains(&bytes.len())
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return false;
        }
    }
    labels >= 2
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_lower_cases() {
        let email = Email::parse("  John.Doe+Tag@Example.COM \n").unwrap();
        assert_eq!(email.as_str(), "john.doe+tag@example.com");
        assert_eq!(email.domain(), "example.com");
        assert_eq!(email, Email::parse("john.doe+tag@example.com").unwrap());
    }

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in [
            "a@b.co",
            "first.last@sub.example.org",
            "user_name-1@x-y.example",
            "o'brien@example.ie",
            "user@xn--bcher-kva.example",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "plainaddress",
            "@example.com",
            "user@",
            "user@localhost",
            "a@@example.com",
            "a@b@example.com",
            "user name@example.com",
            "user@exa mple.com",
            "user\u{0}@example.com",
            "user\t@example.com",
            ".user@example.com",
            "user.@example.com",
            "us..er@example.com",
            "user@-example.com",
            "user@example-.com",
            "user@example..com",
            "user@.example.com",
            "user@example.com.",
            "user@exa_mple.com",
            "user@exämple.com",
            "\u{212A}ate@example.com",
            "\"quoted\"@example.com",
            "a<b@example.com",
        ] {
            let error = Email::parse(bad).expect_err(bad);
            assert_eq!(error.field, "email");
        }
    }

    #[test]
    fn empty_is_required() {
        assert_eq!(Email::parse("   ").unwrap_err().code, codes::REQUIRED);
    }

    #[test]
    fn length_limits() {
        let local_64 = "a".repeat(64);
        assert!(Email::parse(&format!("{local_64}@example.com")).is_ok());
        let local_65 = "a".repeat(65);
        assert_eq!(
            Email::parse(&format!("{local_65}@example.com"))
                .unwrap_err()
                .code,
            codes::INVALID
        );
        // 64 + 1 + 189 = 254 bytes exactly, with labels of at most 63.
        let domain_189 = format!(
            "{}.{}.{}.com",
            "b".repeat(61),
            "c".repeat(61),
            "d".repeat(61)
        );
        assert_eq!(domain_189.len(), 189);
        let longest = format!("{local_64}@{domain_189}");
        assert_eq!(longest.len(), 254);
        assert!(Email::parse(&longest).is_ok());
        let too_long = format!("{local_64}@e{domain_189}");
        assert_eq!(Email::parse(&too_long).unwrap_err().code, codes::TOO_LONG);
        let long_label = format!("u@{}.com", "x".repeat(64));
        assert!(Email::parse(&long_label).is_err());
    }

    #[test]
    fn masked_hides_the_local_part() {
        let email = Email::parse("jane.doe@example.com").unwrap();
        assert_eq!(email.masked(), "j***@example.com");
        assert_eq!(
            Email::parse("x@example.com").unwrap().masked(),
            "x***@example.com"
        );
        let debug = format!("{email:?}");
        assert!(!debug.contains("jane.doe"), "{debug}");
        assert_eq!(
            serde_json::to_value(&email).unwrap(),
            "jane.doe@example.com"
        );
    }

    #[test]
    fn throttle_key_is_a_stable_hash_of_the_normalised_address() {
        let a = Email::parse("Jane@Example.com").unwrap();
        let b = Email::parse("jane@example.com").unwrap();
        let key = a.throttle_key();
        assert_eq!(key, b.throttle_key());
        assert!(key.starts_with("acct:"));
        assert_eq!(key.len(), 5 + 32);
        assert!(!key.contains("jane"));
        assert_eq!(
            key,
            format!("acct:{}", &sha256_hex(b"jane@example.com")[..32])
        );
        assert_ne!(
            key,
            Email::parse("john@example.com").unwrap().throttle_key()
        );
    }
}
