//! Access tokens (EdDSA-signed JWTs) and refresh tokens (opaque random).
//!
//! Access tokens are short-lived compact JWS with a fixed header
//! `{"alg":"EdDSA","typ":"JWT","kid":"..."}`; verification is strict and
//! accepts nothing else. Refresh tokens are 256-bit random strings; only
//! their SHA-256 is stored.

mod jwt;
mod keys;
mod refresh;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::mfa::Assurance;
use crate::role::Role;

fn aal1() -> String {
    Assurance::Password.aal().to_owned()
}

fn password_only() -> Vec<String> {
    Assurance::Password.amr()
}

pub use jwt::{CLOCK_SKEW_SECS, MAX_TOKEN_LEN, issue_access_token, verify_access_token};
pub use keys::{KeyError, KeySet, SigningKey, VerificationKey, parse_verification_keys};
pub use refresh::{
    REFRESH_TOKEN_BYTES, REFRESH_TOKEN_LEN, RefreshToken, RefreshTokenHash, parse_refresh_token,
};

/// Why a token was rejected. Variants name the reason for logs and
/// metrics; clients should get one generic answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum TokenError {
    /// No token was presented.
    #[error("token missing")]
    Missing,
    /// Not a token of the expected shape (size, parts, encoding, JSON).
    #[error("token malformed")]
    Malformed,
    /// The header names an algorithm other than `EdDSA`.
    #[error("token algorithm not supported")]
    UnsupportedAlgorithm,
    /// The header has no `kid`, or one that is not in the key set.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("token signature invalid")]
    BadSignature,
    /// The `typ` claim is not `access`.
    #[error("token has the wrong type")]
    WrongType,
    /// The `iss` claim is not this service.
    #[error("token issuer mismatch")]
    WrongIssuer,
    /// The `aud` claim is not this service's audience.
    #[error("token audience mismatch")]
    WrongAudience,
    /// `exp` is not after now.
    #[error("token expired")]
    Expired,
    /// `iat` is more than the allowed clock skew in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// The claims could not be serialised (not expected).
    #[error("token could not be encoded")]
    Encoding,
}

/// Who issues tokens, for whom, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Value of the `iss` claim.
    pub issuer: String,
    /// Value of the `aud` claim.
    pub audience: String,
    /// Access-token lifetime in seconds (default 15 minutes).
    pub access_ttl_secs: i64,
    /// Refresh-token (session) lifetime in seconds (default 7 days).
    pub refresh_ttl_secs: i64,
}

impl TokenPolicy {
    /// Default access-token lifetime: 15 minutes.
    pub const DEFAULT_ACCESS_TTL_SECS: i64 = 900;
    /// Default refresh-token lifetime: 7 days.
    pub const DEFAULT_REFRESH_TTL_SECS: i64 = 604_800;

    /// A policy with the default lifetimes.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            access_ttl_secs: Self::DEFAULT_ACCESS_TTL_SECS,
            refresh_ttl_secs: Self::DEFAULT_REFRESH_TTL_SECS,
        }
    }

    /// When an access token issued at `now` expires.
    pub fn access_expires_at(&self, now: i64) -> i64 {
        now.saturating_add(self.access_ttl_secs)
    }

    /// When a refresh token issued at `now` expires.
    pub fn refresh_expires_at(&self, now: i64) -> i64 {
        now.saturating_add(self.refresh_ttl_secs)
    }
}

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience (a single string).
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Session id (the refresh-token family), for revocation checks.
    pub sid: String,
    /// Role names, e.g. `["user"]`.
    pub roles: Vec<String>,
    /// Whether the address was verified when the token was issued (OIDC's
    /// claim name). Absent in tokens issued before it existed: false.
    #[serde(default)]
    pub email_verified: bool,
    /// Authenticator assurance level: `aal1` (a password) or `aal2` (and a
    /// second factor). Absent in tokens issued before it existed: `aal1`.
    #[serde(default = "aal1")]
    pub aal: String,
    /// Authentication methods (RFC 8176): `["pwd"]`, `["pwd","otp"]` or
    /// `["pwd","recovery"]`.
    #[serde(default = "password_only")]
    pub amr: Vec<String>,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expires at (unix seconds).
    pub exp: i64,
    /// Token type; always [`AccessClaims::TYPE`].
    pub typ: String,
}

impl AccessClaims {
    /// The only accepted `typ` claim.
    pub const TYPE: &'static str = "access";

    /// Claims for a session's access token issued at `now` under `policy`.
    pub fn new(
        policy: &TokenPolicy,
        user_id: impl Into<String>,
        session_id: impl Into<String>,
        roles: &[Role],
        now: i64,
    ) -> Self {
        Self {
            iss: policy.issuer.clone(),
            aud: policy.audience.clone(),
            sub: user_id.into(),
            sid: session_id.into(),
            roles: roles.iter().map(|role| role.as_str().to_owned()).collect(),
            email_verified: false,
            aal: aal1(),
            amr: password_only(),
            iat: now,
            exp: policy.access_expires_at(now),
            typ: Self::TYPE.to_owned(),
        }
    }

    /// The same claims, saying whether the address is verified.
    pub fn with_email_verified(mut self, verified: bool) -> Self {
        self.email_verified = verified;
        self
    }

    /// The same claims, saying how the session's user was authenticated.
    pub fn with_assurance(mut self, assurance: Assurance) -> Self {
        self.aal = assurance.aal().to_owned();
        self.amr = assurance.amr();
        self
    }

    /// Whether the session presented a second factor.
    pub fn is_aal2(&self) -> bool {
        self.aal == "aal2"
    }

    /// Whether the token grants `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.iter().any(|name| name == role.as_str())
    }

    /// The known roles in the token (unknown names are skipped).
    pub fn known_roles(&self) -> Vec<Role> {
        self.roles
            .iter()
            .filter_map(|name| Role::parse(name))
            .collect()
    }
}

/// Extracts the token from an `Authorization: Bearer <token>` header value
/// (scheme case-insensitive).
///
/// # Errors
/// [`TokenError::Missing`] when the value is empty, [`TokenError::Malformed`]
/// for another scheme or a token with spaces.
pub fn bearer_token(authorization: &str) -> Result<&str, TokenError> {
    let value = authorization.trim();
    if value.is_empty() {
        return Err(TokenError::Missing);
    }
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Malformed)?;
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn policy_defaults() {
        let policy = TokenPolicy::new("https://latch.example", "latch");
        assert_eq!(policy.access_ttl_secs, 900);
        assert_eq!(policy.refresh_ttl_secs, 604_800);
        assert_eq!(policy.access_expires_at(100), 1000);
        assert_eq!(policy.refresh_expires_at(100), 604_900);
    }

    #[test]
    fn claims_constructor() {
        let policy = TokenPolicy::new("iss", "aud");
        let claims = AccessClaims::new(&policy, "u1", "s1", &[Role::User], 1_000);
        assert_eq!(claims.typ, "access");
        assert_eq!((claims.iat, claims.exp), (1_000, 1_900));
        assert!(claims.has_role(Role::User));
        assert!(!claims.has_role(Role::Admin));
        assert_eq!(claims.known_roles(), vec![Role::User]);
        assert_eq!(
            (claims.aal.as_str(), claims.amr.clone()),
            ("aal1", vec!["pwd".to_owned()])
        );
        assert!(!claims.is_aal2());
        let stepped = claims.with_assurance(Assurance::PasswordAndOtp);
        assert!(stepped.is_aal2());
        assert_eq!(stepped.amr, vec!["pwd", "otp"]);
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Ok("abc.def.ghi"));
        assert_eq!(bearer_token("bearer  abc"), Ok("abc"));
        assert_eq!(bearer_token(""), Err(TokenError::Missing));
        assert_eq!(
            bearer_token("Basic dXNlcjpwdw=="),
            Err(TokenError::Malformed)
        );
        assert_eq!(bearer_token("Bearer"), Err(TokenError::Malformed));
        assert_eq!(bearer_token("Bearer a b"), Err(TokenError::Malformed));
        assert_eq!(bearer_token("Bearerabc"), Err(TokenError::Malformed));
    }
}
