//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): SHA-1, a
//! 30-second step, 6 digits, one step of drift either side, and no code
//! accepted twice (the caller stores the last step used), plus the
//! single-use recovery codes that stand in for a lost authenticator.

use std::fmt;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Seconds per step.
pub const STEP_SECS: i64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps of clock drift accepted either side of now.
pub const WINDOW: i64 = 1;
/// Bytes of a secret: 160 bits, RFC 4226's recommendation for SHA-1.
pub const SECRET_BYTES: usize = 20;
/// Recovery codes issued at a time.
pub const RECOVERY_CODES: usize = 10;

/// RFC 4648 base32 alphabet (authenticator apps expect it, unpadded).
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A TOTP secret. `Debug` is redacted; the bytes are wiped on drop.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<[u8; SECRET_BYTES]>);

/// Why a code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// Not six ASCII digits.
    #[error("the code is not six digits")]
    Malformed,
    /// No step in the window gives this code.
    #[error("the code is wrong or outside the time window")]
    Wrong,
    /// The code's step was already used (a replay).
    #[error("the code was already used")]
    Replayed,
}

impl TotpSecret {
    /// A secret from random bytes.
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw bytes (to encrypt for storage).
    pub fn as_bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }

    /// Unpadded base32, as typed into or scanned by an authenticator app.
    pub fn base32(&self) -> String {
        let mut out = String::with_capacity(SECRET_BYTES * 8 / 5 + 1);
        let mut buffer: u32 = 0;
        let mut bits = 0;
        for &byte in self.0.iter() {
            buffer = (buffer << 8) | u32::from(byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
            }
        }
        if bits > 0 {
            out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
        }
        out
    }

    /// The `otpauth://totp/...` URI of Google Authenticator's key URI format.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let label = format!("{}:{}", percent_encode(issuer), percent_encode(account));
        format!(
            "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            self.base32(),
            percent_encode(issuer)
        )
    }

    /// The code of `step` with `digits` digits (RFC 4226 dynamic truncation).
    pub fn code(&self, step: i64, digits: u32) -> u32 {
        // HMAC accepts every key length: this cannot fail.
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(self.0.as_ref()) else {
            unreachable!("HMAC accepts every key length")
        };
        mac.update(&step.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = usize::from(digest[19] & 0x0f);
        let binary = (u32::from(digest[offset] & 0x7f) << 24)
            | (u32::from(digest[offset + 1]) << 16)
            | (u32::from(digest[offset + 2]) << 8)
            | u32::from(digest[offset + 3]);
        binary % 10u32.pow(digits)
    }

    /// Checks `code` at unix time `now`: the step it belongs to (within
    /// [`WINDOW`] steps of now), which must be later than `last_used_step`.
    ///
    /// # Errors
    /// [`TotpError`] naming why it was refused.
    pub fn verify(
        &self,
        code: &str,
        now: i64,
        last_used_step: Option<i64>,
    ) -> Result<i64, TotpError> {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpError::Malformed);
        }
        let wanted: u32 = code.parse().map_err(|_| TotpError::Malformed)?;
        let current = now.div_euclid(STEP_SECS);
        // Every step of the window is computed, so the time taken does not
        // tell which one matched.
        let mut matched = None;
        for step in (current - WINDOW)..=(current + WINDOW) {
            let equal = self.code(step, DIGITS).ct_eq(&wanted);
            if bool::from(equal) && matched.is_none() {
                matched = Some(step);
            }
        }
        let step = matched.ok_or(TotpError::Wrong)?;
        if last_used_step.is_some_and(|last| step <= last) {
            return Err(TotpError::Replayed);
        }
        Ok(step)
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A recovery code as shown once: `xxxx-xxxx-xxxx` from base32 (60 bits).
pub fn recovery_code(random: [u8; 8]) -> String {
    let value = u64::from_be_bytes(random) >> 4;
    let chars: Vec<char> = (0..12)
        .rev()
        .map(|i| char::from(BASE32[((value >> (i * 5)) & 31) as usize]))
        .collect();
    format!(
        "{}-{}-{}",
        chars[..4].iter().collect::<String>(),
        chars[4..8].iter().collect::<String>(),
        chars[8..].iter().collect::<String>()
    )
}

/// A recovery code as typed, normalised: upper case, no separators (so
/// `abcd-efgh-ijkl`, `ABCD EFGH IJKL` and `ABCDEFGHIJKL` are one code).
pub fn normalise_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Whether two hex hashes are equal, compared in constant time.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (8 digits, the seed "12345678901234567890").
    #[test]
    fn rfc_6238_sha1_vectors() {
        let secret = TotpSecret::from_bytes(*b"12345678901234567890");
        for (time, expected) in [
            (59, 94_287_082),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            assert_eq!(secret.code(time / STEP_SECS, 8), expected, "T = {time}");
        }
    }

    #[test]
    fn a_window_of_one_step_either_side_and_no_replay() {
        let secret = TotpSecret::from_bytes([7; SECRET_BYTES]);
        let now = 1_800_000_015;
        let step = now / STEP_SECS;
        let code = |s: i64| format!("{:06}", secret.code(s, DIGITS));
        assert_eq!(secret.verify(&code(step), now, None), Ok(step));
        assert_eq!(secret.verify(&code(step - 1), now, None), Ok(step - 1));
        assert_eq!(secret.verify(&code(step + 1), now, None), Ok(step + 1));
        assert_eq!(
            secret.verify(&code(step - 2), now, None),
            Err(TotpError::Wrong)
        );
        assert_eq!(
            secret.verify(&code(step + 2), now, None),
            Err(TotpError::Wrong)
        );
        assert_eq!(
            secret.verify(&code(step), now, Some(step)),
            Err(TotpError::Replayed)
        );
        assert_eq!(
            secret.verify(&code(step - 1), now, Some(step)),
            Err(TotpError::Replayed)
        );
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(
                secret.verify(bad, now, None),
                Err(TotpError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn base32_and_uri() {
        // RFC 4648 test vector: "foobar" -> "MZXW6YTBOI".
        let mut bytes = [0u8; SECRET_BYTES];
        bytes[..6].copy_from_slice(b"foobar");
        assert!(
            TotpSecret::from_bytes(bytes)
                .base32()
                .starts_with("MZXW6YTBOI")
        );
        let secret = TotpSecret::from_bytes(*b"12345678901234567890");
        assert_eq!(secret.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let uri = secret.otpauth_uri("Latch Co", "ada@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Latch%20Co:ada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Latch%20Co&algorithm=SHA1&digits=6&period=30"
        );
        assert!(!format!("{secret:?}").contains("GEZD"));
    }

    #[test]
    fn recovery_codes_normalise_however_typed() {
        let code = recovery_code([0xAB; 8]);
        assert_eq!(code.len(), 14);
        let normal = normalise_recovery_code(&code);
        assert_eq!(normal.len(), 12);
        assert_eq!(normalise_recovery_code(&code.to_lowercase()), normal);
        assert_eq!(normalise_recovery_code(&code.replace('-', " ")), normal);
        assert_ne!(recovery_code([1; 8]), recovery_code([2; 8]));
        assert!(hashes_equal("ab", "ab"));
        assert!(!hashes_equal("ab", "ac"));
    }
}
