//! Pure domain rules of Latch.
//!
//! Everything here is deterministic: no I/O, no clock and no OS randomness.
//! Callers pass the current time (`now`, unix seconds) and random bytes, so
//! every rule can be tested natively and costs little per request (route
//! components are instantiated fresh for each request, so nothing here builds
//! tables lazily at first use).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod client;
pub mod config;
pub mod email;
pub mod error;
pub mod ids;
pub mod mfa;
pub mod name;
pub mod one_time;
pub mod password;
pub mod role;
pub mod throttle;
pub mod token;
pub mod totp;
pub mod webhook;

mod encoding;

pub use audit::{AuditEvent, AuditKind, Outcome};
pub use client::client_ip;
pub use config::{ConfigError, Environment};
pub use email::Email;
pub use error::{DomainError, FieldError};
pub use ids::{is_valid_id, new_id};
pub use mfa::{Assurance, Challenge, SealingKey, UnsealError, parse_challenge};
pub use name::FullName;
pub use one_time::{OneTimeToken, TokenPurpose, parse_one_time_token};
pub use password::{
    DUMMY_PASSWORD_HASH, Password, hash_password, needs_rehash, verify_password,
    verify_password_or_dummy,
};
pub use role::Role;
pub use throttle::{ThrottleKey, ThrottlePolicy, ThrottleState, Throttled};
pub use token::{
    AccessClaims, KeyError, KeySet, RefreshToken, RefreshTokenHash, SigningKey, TokenError,
    TokenPolicy, VerificationKey, bearer_token, issue_access_token, parse_refresh_token,
    parse_verification_keys, verify_access_token,
};
pub use totp::{TotpError, TotpSecret};
pub use webhook::WebhookSecret;
