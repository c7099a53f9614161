//! One-time tokens: the secrets in recovery and verification links.
//!
//! 256 random bits, sent to the user's address once; only their SHA-256 is
//! stored, with the purpose, user, expiry and when it was used. The shape is
//! the refresh token's (43 base64url characters), but a one-time token is
//! only ever looked up in its own table, for its own purpose.

use std::fmt;

use crate::token::{RefreshToken, TokenError, parse_refresh_token};

/// What a one-time token proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenPurpose {
    /// Possession of the address, to set a new password.
    Recovery,
    /// Possession of the address, to mark it verified.
    Verification,
}

impl TokenPurpose {
    /// The stored name (`one_time_tokens.purpose`) and the webhook's `kind`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Recovery => "recovery",
            TokenPurpose::Verification => "verification",
        }
    }

    /// The front-end page a link of this purpose opens, under `public_url`.
    pub const fn link_path(self) -> &'static str {
        match self {
            TokenPurpose::Recovery => "/reset-password",
            TokenPurpose::Verification => "/verify-email",
        }
    }
}

/// A one-time token to send. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeToken(String);

impl OneTimeToken {
    /// Makes a token from 32 random bytes, with the hash to store
    /// (lower-case hex SHA-256 of the bytes).
    pub fn from_random(random: [u8; 32]) -> (OneTimeToken, String) {
        let (token, hash) = RefreshToken::from_random(random);
        (OneTimeToken(token.into_string()), hash.into_string())
    }

    /// The token string (43 base64url characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The link that carries it: `<public_url><page>?token=<token>`.
    pub fn link(&self, public_url: &str, purpose: TokenPurpose) -> String {
        format!(
            "{}{}?token={}",
            public_url.trim_end_matches('/'),
            purpose.link_path(),
            self.0
        )
    }
}

impl fmt::Debug for OneTimeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeToken(<redacted>)")
    }
}

/// The stored hash of a presented token.
///
/// # Errors
/// [`TokenError::Missing`] for an empty value, [`TokenError::Malformed`] for
/// anything but 43 base64url characters spelling 32 bytes canonically.
pub fn parse_one_time_token(token: &str) -> Result<String, TokenError> {
    parse_refresh_token(token).map(|hash| hash.into_string())
}

/// When a token issued at `now` expires.
pub fn expires_at(now: i64, ttl_secs: i64) -> i64 {
    now.saturating_add(ttl_secs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn issued_and_presented_tokens_hash_alike() {
        let (token, hash) = OneTimeToken::from_random([9; 32]);
        assert_eq!(token.as_str().len(), 43);
        assert_eq!(parse_one_time_token(token.as_str()), Ok(hash.clone()));
        assert_eq!(hash.len(), 64);
        let (other, other_hash) = OneTimeToken::from_random([10; 32]);
        assert_ne!(token, other);
        assert_ne!(hash, other_hash);
        assert!(!format!("{token:?}").contains(token.as_str()));
    }

    #[test]
    fn bad_tokens_are_refused() {
        assert_eq!(parse_one_time_token(""), Err(TokenError::Missing));
        for bad in ["short", &"A".repeat(44), &format!("{}!", "A".repeat(42))] {
            assert_eq!(
                parse_one_time_token(bad),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn links_carry_the_token_on_the_purpose_page() {
        let (token, _) = OneTimeToken::from_random([1; 32]);
        assert_eq!(
            token.link("https://app.example.com/", TokenPurpose::Recovery),
            format!(
                "https://app.example.com/reset-password?token={}",
                token.as_str()
            )
        );
        assert_eq!(
            token.link("http://localhost:3000", TokenPurpose::Verification),
            format!(
                "http://localhost:3000/verify-email?token={}",
                token.as_str()
            )
        );
    }
}
