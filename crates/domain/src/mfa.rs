//! The second factor around TOTP: how sure a session is of its user
//! (assurance level and methods), the sign-in challenge that waits for the
//! second factor, and the sealing of TOTP secrets at rest.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::ConfigError;
use crate::encoding::{b64url_decode, b64url_decode_exact, b64url_encode};
use crate::ids::is_valid_id;
use crate::one_time::{OneTimeToken, parse_one_time_token};
use crate::totp::{SECRET_BYTES, TotpSecret, hashes_equal, normalise_recovery_code};

/// How a session's user proved who they are (OIDC's `amr` values, RFC 8176).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Assurance {
    /// A password alone: `aal1`, `["pwd"]`.
    Password,
    /// A password and a TOTP code: `aal2`, `["pwd","otp"]`.
    PasswordAndOtp,
    /// A password and a recovery code: `aal2`, `["pwd","recovery"]`.
    PasswordAndRecoveryCode,
}

impl Assurance {
    /// The authenticator assurance level: `aal1` or `aal2`.
    pub const fn aal(self) -> &'static str {
        match self {
            Assurance::Password => "aal1",
            Assurance::PasswordAndOtp | Assurance::PasswordAndRecoveryCode => "aal2",
        }
    }

    /// The methods used, in the order they were.
    pub fn amr(self) -> Vec<String> {
        self.stored().split(' ').map(str::to_owned).collect()
    }

    /// The value of `sessions.amr`: the methods separated by spaces.
    pub const fn stored(self) -> &'static str {
        match self {
            Assurance::Password => "pwd",
            Assurance::PasswordAndOtp => "pwd otp",
            Assurance::PasswordAndRecoveryCode => "pwd recovery",
        }
    }

    /// The assurance stored as `amr` in `sessions` (unknown values: the
    /// weakest, so nothing stored wrongly ever grants more).
    pub fn from_stored(amr: &str) -> Assurance {
        match amr {
            "pwd otp" => Assurance::PasswordAndOtp,
            "pwd recovery" => Assurance::PasswordAndRecoveryCode,
            _ => Assurance::Password,
        }
    }

    /// Whether a second factor was presented.
    pub const fn is_multi_factor(self) -> bool {
        !matches!(self, Assurance::Password)
    }
}

/// The routes that ask for `aal2` by default, when the user has a factor:
/// changing the password and removing the factor.
pub const DEFAULT_STEP_UP_ROUTES: &str = "/auth/password,/auth/mfa/totp";

/// Whether a request to `route` must be refused for want of a second factor:
/// the route is listed in `step_up_routes` (comma-separated route paths),
/// the user has an active factor, and the session presented none.
pub fn step_up_required(
    step_up_routes: &str,
    route: &str,
    has_factor: bool,
    session_is_aal2: bool,
) -> bool {
    has_factor
        && !session_is_aal2
        && step_up_routes
            .split(',')
            .any(|listed| listed.trim() == route)
}

/// Lifetime of a sign-in challenge by default: 5 minutes.
pub const DEFAULT_CHALLENGE_TTL_SECS: i64 = 300;

/// A sign-in that passed the password and waits for the second factor:
/// `<user id>.<43 random base64url characters>`. The user id lets the
/// verification count attempts per user before anything is checked; only the
/// SHA-256 of the random part is stored. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge(String);

impl Challenge {
    /// A challenge for `user_id` from 32 random bytes, with the hash to store.
    pub fn new(user_id: &str, random: [u8; 32]) -> (Challenge, String) {
        let (token, hash) = OneTimeToken::from_random(random);
        (Challenge(format!("{user_id}.{}", token.as_str())), hash)
    }

    /// The string handed to the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Challenge(<redacted>)")
    }
}

/// The user id and stored hash of a presented challenge; `None` for
/// anything [`Challenge::new`] cannot have made.
pub fn parse_challenge(text: &str) -> Option<(&str, String)> {
    let (user_id, token) = text.split_once('.')?;
    if !is_valid_id(user_id) {
        return None;
    }
    let hash = parse_one_time_token(token).ok()?;
    Some((user_id, hash))
}

/// The key TOTP secrets are sealed with (XChaCha20-Poly1305). `Debug` is
/// redacted; the bytes are wiped on drop.
pub struct SealingKey(Zeroizing<[u8; 32]>);

/// A sealed secret that does not open: a wrong key, another user's row, or
/// a damaged value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stored TOTP secret cannot be opened with the configured key")]
pub struct UnsealError;

/// Prefix of the sealed format, so a later format can sit beside this one.
const SEALED_V1: &str = "v1.";

impl SealingKey {
    /// The key from the variable `name`: 32 bytes in unpadded base64url, or
    /// in standard base64 (what `openssl rand -base64 32` prints).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for anything else.
    pub fn parse(name: &'static str, value: &str) -> Result<SealingKey, ConfigError> {
        use base64::Engine as _;
        let value = value.trim();
        b64url_decode_exact::<32>(value)
            .or_else(|| {
                let bytes = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(value)
                        .ok()?,
                );
                <[u8; 32]>::try_from(bytes.as_slice()).ok()
            })
            .map(|bytes| SealingKey(Zeroizing::new(bytes)))
            .ok_or_else(|| ConfigError::Invalid {
                name,
                expected: "32 bytes in base64 (e.g. the output of `openssl rand -base64 32`)"
                    .into(),
            })
    }

    /// In development only, when no key is configured: a key derived from
    /// the development signing key, which is random per database, so no key
    /// is ever written in the code.
    pub fn derive_for_development(signing_key_text: &str) -> SealingKey {
        let mut hasher = Sha256::new();
        hasher.update(b"latch/mfa-sealing-key/development/v1\0");
        hasher.update(signing_key_text.as_bytes());
        SealingKey(Zeroizing::new(hasher.finalize().into()))
    }

    /// Seals `secret` for `user_id` (the user id is authenticated data: a
    /// row copied to another user does not open) with a random 24-byte nonce.
    pub fn seal(&self, secret: &TotpSecret, user_id: &str, nonce: [u8; 24]) -> String {
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: user_id.as_bytes(),
        };
        // Encryption fails only for messages over 256 GiB.
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{SEALED_V1}{}", b64url_encode(&bytes))
    }

    /// What is stored for one of `user_id`'s recovery codes: hex
    /// HMAC-SHA-256 of the user id and the normalised code, under a key
    /// derived from this one. Keyed and bound to the user, so a copy of the
    /// database without the key gives nothing to search offline.
    pub fn recovery_code_hash(&self, user_id: &str, code: &str) -> String {
        let mut derived = Sha256::new();
        derived.update(b"latch/recovery-code-hash/v1\0");
        derived.update(self.0.as_ref());
        let derived = Zeroizing::new(<[u8; 32]>::from(derived.finalize()));
        // HMAC accepts every key length: this cannot fail.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(derived.as_ref()) else {
            unreachable!("HMAC accepts every key length")
        };
        mac.update(user_id.as_bytes());
        mac.update(b"\0");
        mac.update(normalise_recovery_code(code).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `code` is the recovery code of `user_id` stored as `hash`,
    /// compared in constant time.
    pub fn recovery_code_matches(&self, user_id: &str, code: &str, hash: &str) -> bool {
        hashes_equal(&self.recovery_code_hash(user_id, code), hash)
    }

    /// Opens what [`SealingKey::seal`] made for `user_id`.
    ///
    /// # Errors
    /// [`UnsealError`] when it does not open.
    pub fn open(&self, sealed: &str, user_id: &str) -> Result<TotpSecret, UnsealError> {
        let bytes = sealed
            .strip_prefix(SEALED_V1)
            .and_then(b64url_decode)
            .ok_or(UnsealError)?;
        if bytes.len() <= 24 {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: user_id.as_bytes(),
                    },
                )
                .map_err(|_| UnsealError)?,
        );
        let bytes: [u8; SECRET_BYTES] = plain.as_slice().try_into().map_err(|_| UnsealError)?;
        Ok(TotpSecret::from_bytes(bytes))
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ids::new_id;

    #[test]
    fn assurance_levels_and_methods() {
        assert_eq!(Assurance::Password.aal(), "aal1");
        assert_eq!(Assurance::Password.amr(), vec!["pwd"]);
        assert_eq!(Assurance::PasswordAndOtp.aal(), "aal2");
        assert_eq!(Assurance::PasswordAndOtp.amr(), vec!["pwd", "otp"]);
        assert_eq!(
            Assurance::PasswordAndRecoveryCode.amr(),
            vec!["pwd", "recovery"]
        );
        for assurance in [
            Assurance::Password,
            Assurance::PasswordAndOtp,
            Assurance::PasswordAndRecoveryCode,
        ] {
            assert_eq!(Assurance::from_stored(assurance.stored()), assurance);
        }
        assert_eq!(Assurance::from_stored("otp"), Assurance::Password);
    }

    #[test]
    fn step_up_applies_to_listed_routes_of_users_with_a_factor() {
        let routes = DEFAULT_STEP_UP_ROUTES;
        assert!(step_up_required(routes, "/auth/password", true, false));
        assert!(step_up_required(
            " /x , /auth/mfa/totp",
            "/auth/mfa/totp",
            true,
            false
        ));
        assert!(!step_up_required(routes, "/auth/password", false, false));
        assert!(!step_up_required(routes, "/auth/password", true, true));
        assert!(!step_up_required(routes, "/auth/password", true, true));
        assert!(!step_up_required(routes, "/auth/profile", true, false));
        assert!(!step_up_required("", "/auth/password", true, false));
    }

    #[test]
    fn challenges_carry_their_user_and_store_only_a_hash() {
        let user = new_id([3; 16]);
        let (challenge, hash) = Challenge::new(&user, [9; 32]);
        let (parsed_user, parsed_hash) = parse_challenge(challenge.as_str()).unwrap();
        assert_eq!(
            (parsed_user, parsed_hash.as_str()),
            (user.as_str(), hash.as_str())
        );
        assert!(!challenge.as_str().contains(&hash));
        assert!(!format!("{challenge:?}").contains(&user));
        for bad in [
            "",
            ".",
            "no-dot",
            &format!("{user}."),
            &format!("short.{}", &challenge.as_str()[23..]),
            &format!("{}x", challenge.as_str()),
        ] {
            assert!(parse_challenge(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_user() {
        let key = SealingKey::parse("k", &b64url_encode(&[5; 32])).unwrap();
        let other = SealingKey::parse("k", &b64url_encode(&[6; 32])).unwrap();
        let secret = TotpSecret::from_bytes([1; SECRET_BYTES]);
        let sealed = key.seal(&secret, "user-a", [2; 24]);
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains(&b64url_encode(&[1; SECRET_BYTES])));
        assert_eq!(
            key.open(&sealed, "user-a").unwrap().as_bytes(),
            secret.as_bytes()
        );
        assert_eq!(key.open(&sealed, "user-b").unwrap_err(), UnsealError);
        assert_eq!(other.open(&sealed, "user-a").unwrap_err(), UnsealError);
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(key.open(&damaged, "user-a").unwrap_err(), UnsealError);
        assert_eq!(key.open("v1.", "user-a").unwrap_err(), UnsealError);
        assert_eq!(key.open("garbage", "user-a").unwrap_err(), UnsealError);
        assert!(SealingKey::parse("k", "too-short").is_err());
        // Standard, padded base64 names the same key as base64url.
        use base64::Engine as _;
        let standard = base64::engine::general_purpose::STANDARD.encode([0xfb; 32]);
        assert!(standard.contains('+') || standard.contains('/'));
        let a = SealingKey::parse("k", &standard).unwrap();
        let b = SealingKey::parse("k", &b64url_encode(&[0xfb; 32])).unwrap();
        assert!(b.open(&a.seal(&secret, "u", [1; 24]), "u").is_ok());
        assert!(
            SealingKey::parse(
                "k",
                &base64::engine::general_purpose::STANDARD.encode([1; 31])
            )
            .is_err()
        );
        assert!(!format!("{key:?}").contains('5'));
    }

    #[test]
    fn recovery_code_hashes_are_keyed_bound_to_the_user_and_typing_blind() {
        let key = SealingKey::parse("k", &b64url_encode(&[5; 32])).unwrap();
        let other = SealingKey::parse("k", &b64url_encode(&[6; 32])).unwrap();
        let code = crate::totp::recovery_code([0xAB; 8]);
        let hash = key.recovery_code_hash("u1", &code);
        assert_eq!(hash.len(), 64);
        assert!(key.recovery_code_matches("u1", &code.to_lowercase(), &hash));
        assert!(key.recovery_code_matches("u1", &code.replace('-', " "), &hash));
        assert!(!key.recovery_code_matches("u2", &code, &hash));
        assert!(!other.recovery_code_matches("u1", &code, &hash));
        let another = crate::totp::recovery_code([0xAC; 8]);
        assert!(!key.recovery_code_matches("u1", &another, &hash));
        // Not the plain digest a copy of the database could be searched with.
        assert_ne!(
            hash,
            crate::encoding::sha256_hex(crate::totp::normalise_recovery_code(&code).as_bytes())
        );
    }

    #[test]
    fn development_keys_differ_per_signing_key() {
        let secret = TotpSecret::from_bytes([1; SECRET_BYTES]);
        let a = SealingKey::derive_for_development("dev-a:seed");
        let b = SealingKey::derive_for_development("dev-b:seed");
        let sealed = a.seal(&secret, "u", [0; 24]);
        assert!(a.open(&sealed, "u").is_ok());
        assert!(b.open(&sealed, "u").is_err());
    }
}
