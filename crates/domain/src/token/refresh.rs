//! Refresh tokens: 256 random bits given to the client once; only their
//! SHA-256 is stored, so a database leak does not leak usable tokens.

use std::fmt;

use super::TokenError;
use crate::encoding::{
    b64url_decode_exact, b64url_encode, encoded_len, is_b64url_char, sha256_hex,
};

/// Random bytes in a refresh token.
pub const REFRESH_TOKEN_BYTES: usize = 32;
/// Length of a refresh token string (32 bytes in unpadded base64url).
pub const REFRESH_TOKEN_LEN: usize = encoded_len(REFRESH_TOKEN_BYTES);

/// A refresh token to hand to the client. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

/// Lower-case hex SHA-256 of a refresh token's bytes: what the database
/// stores and looks sessions up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefreshTokenHash(String);

impl RefreshToken {
    /// Makes a token from 32 random bytes, with the hash to store.
    pub fn from_random(random: [u8; REFRESH_TOKEN_BYTES]) -> (RefreshToken, RefreshTokenHash) {
        (
            RefreshToken(b64url_encode(&random)),
            RefreshTokenHash(sha256_hex(&random)),
        )
    }

    /// The token string (43 base64url characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token string, consuming the wrapper.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

impl RefreshTokenHash {
    /// The 64 lower-case hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex string, consuming the wrapper.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RefreshTokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a refresh token presented by a client and returns its hash.
///
/// Exactly 43 base64url characters decoding (canonically) to 32 bytes: an
/// access token, which contains dots, is never accepted here.
///
/// # Errors
/// [`TokenError::Missing`] for an empty value, otherwise
/// [`TokenError::Malformed`].
pub fn parse_refresh_token(token: &str) -> Result<RefreshTokenHash, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() != REFRESH_TOKEN_LEN || !token.bytes().all(is_b64url_char) {
        return Err(TokenError::Malformed);
    }
    let bytes = b64url_decode_exact::<REFRESH_TOKEN_BYTES>(token).ok_or(TokenError::Malformed)?;
    Ok(RefreshTokenHash(sha256_hex(&bytes)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_gives_the_same_hash() {
        let (token, hash) = RefreshToken::from_random([0xAB; 32]);
        assert_eq!(token.as_str().len(), 43);
        assert_eq!(REFRESH_TOKEN_LEN, 43);
        assert_eq!(hash.as_str().len(), 64);
        assert!(
            hash.as_str()
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(parse_refresh_token(token.as_str()), Ok(hash.clone()));
        assert_eq!(hash.as_str(), sha256_hex(&[0xAB; 32]));
        assert!(!hash.as_str().contains(token.as_str()));
        let (other, other_hash) = RefreshToken::from_random([0xAC; 32]);
        assert_ne!(token, other);
        assert_ne!(hash, other_hash);
    }

    #[test]
    fn debug_is_redacted() {
        let (token, _) = RefreshToken::from_random([1; 32]);
        let debug = format!("{token:?}");
        assert!(!debug.contains(token.as_str()));
    }

    #[test]
    fn rejects_other_shapes() {
        let (token, _) = RefreshToken::from_random([5; 32]);
        let token = token.into_string();
        assert_eq!(parse_refresh_token(""), Err(TokenError::Missing));
        for bad in [
            token[..42].to_owned(),
            format!("{token}A"),
            format!("{token}="),
            format!("{}.", &token[..42]),
            format!("{}+", &token[..42]),
            format!("{} ", &token[..42]),
            "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln".to_owned(),
        ] {
            assert_eq!(
                parse_refresh_token(&bad),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        // 32 bytes leave 2 unused bits in the last character: setting them
        // would be a second spelling of the same bytes and is rejected.
        let zeros = "A".repeat(43);
        assert!(parse_refresh_token(&zeros).is_ok());
        assert_eq!(
            parse_refresh_token(&format!("{}B", &zeros[..42])),
            Err(TokenError::Malformed)
        );
        assert!(parse_refresh_token(&format!("{}E", &zeros[..42])).is_ok());
    }
}
