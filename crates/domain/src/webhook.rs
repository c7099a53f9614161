//! Standard Webhooks signing (<https://www.standardwebhooks.com>): how the
//! messages that carry recovery and verification links are signed.
//!
//! A receiver recomputes `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`
//! with the shared secret (`whsec_<base64 key>`) and compares. The id and the
//! timestamp let it refuse replays and stale messages.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::config::ConfigError;

/// Prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest key accepted: 24 bytes (192 bits); the specification asks for 24 to 64.
pub const MIN_KEY_BYTES: usize = 24;
/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 64;

/// The webhook signing key. `Debug` is redacted; the bytes are wiped on drop.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    /// Reads `whsec_<base64>` (the variable `email_webhook_secret`).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable (never echoing its value).
    pub fn parse(variable: &'static str, value: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::Invalid {
            name: variable,
            expected: "whsec_ followed by the standard base64 of a 24 to 64 byte key".to_owned(),
        };
        let encoded = value
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(invalid)?;
        let key = STANDARD.decode(encoded).map_err(|_| invalid())?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(invalid());
        }
        Ok(Self(Zeroizing::new(key)))
    }

    /// The `webhook-signature` header value of a message.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts every key length"),
        };
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The example of the specification's reference libraries
    /// (standard-webhooks, libraries/README: secret, id, timestamp, payload
    /// and the expected signature).
    #[test]
    fn signs_the_reference_example() {
        let secret = WebhookSecret::parse("s", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn refuses_malformed_secrets_without_echoing_them() {
        for bad in [
            "",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            "whsec_c2hvcnQ=",
        ] {
            let error = WebhookSecret::parse("email_webhook_secret", bad).unwrap_err();
            let text = error.to_string();
            assert!(text.contains("email_webhook_secret"), "{text}");
            if !bad.is_empty() {
                assert!(!text.contains(bad), "{text}");
            }
        }
    }

    #[test]
    fn any_change_changes_the_signature() {
        let secret =
            WebhookSecret::parse("s", &format!("whsec_{}", STANDARD.encode([3u8; 32]))).unwrap();
        let base = secret.sign("msg_1", 10, b"{}");
        assert_ne!(base, secret.sign("msg_2", 10, b"{}"));
        assert_ne!(base, secret.sign("msg_1", 11, b"{}"));
        assert_ne!(base, secret.sign("msg_1", 10, b"{ }"));
        assert!(!format!("{secret:?}").contains("AwMD"));
    }
}
