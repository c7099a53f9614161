//! Small shared encoding helpers (base64url without padding, SHA-256 hex).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// Encodes bytes as base64url without padding (RFC 4648 section 5).
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes canonical base64url without padding into exactly `N` bytes.
///
/// Padding, non-zero trailing bits and characters outside the URL-safe
/// alphabet are rejected, so each value has exactly one accepted encoding.
pub(crate) fn b64url_decode_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    // Reject early on length: avoids decoding oversized input at all.
    if text.len() != encoded_len(N) {
        return None;
    }
    URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()
}

/// Decodes canonical base64url without padding of any length.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Length of the unpadded base64 encoding of `byte_len` bytes.
pub(crate) const fn encoded_len(byte_len: usize) -> usize {
    (byte_len * 4).div_ceil(3)
}

/// Whether `c` belongs to the base64url alphabet.
pub(crate) const fn is_b64url_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// Lower-case hex of the SHA-256 digest of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn encoded_lengths_match_the_engine() {
        for n in 0..70 {
            assert_eq!(encoded_len(n), b64url_encode(&vec![0xA5; n]).len(), "{n}");
        }
    }

    #[test]
    fn decode_exact_rejects_padding_wrong_length_and_non_canonical_bits() {
        let encoded = b64url_encode(&[7u8; 16]);
        assert_eq!(b64url_decode_exact::<16>(&encoded), Some([7u8; 16]));
        assert_eq!(b64url_decode_exact::<15>(&encoded), None);
        assert_eq!(b64url_decode_exact::<16>(&format!("{encoded}==")), None);
        // 16 bytes leave 4 unused bits in the last character; setting them
        // must not yield a second accepted spelling of the same value.
        let mut tweaked = encoded.into_bytes();
        let last = tweaked.len() - 1;
        assert_eq!(tweaked[last], b'w');
        tweaked[last] = b'x';
        assert_eq!(
            b64url_decode_exact::<16>(std::str::from_utf8(&tweaked).unwrap()),
            None
        );
        assert_eq!(b64url_decode_exact::<2>("a+8"), None);
    }

    #[test]
    fn sha256_hex_is_lower_case_known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
