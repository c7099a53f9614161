//! Opaque, URL-safe identifiers for users, sessions and other rows.

use crate::encoding::{b64url_decode_exact, b64url_encode, encoded_len};

/// Random bytes in an identifier.
pub const ID_BYTES: usize = 16;
/// Length of an identifier string: 16 bytes in unpadded base64url.
pub const ID_LEN: usize = encoded_len(ID_BYTES);

/// Builds an identifier from 16 random bytes: 22 characters of base64url
/// without padding, safe in URLs, headers and TEXT columns.
pub fn new_id(random: [u8; ID_BYTES]) -> String {
    b64url_encode(&random)
}

/// Whether `candidate` is exactly what [`new_id`] produces (22 base64url
/// characters in canonical form). Check untrusted ids with this before
/// using them in a query.
pub fn is_valid_id(candidate: &str) -> bool {
    b64url_decode_exact::<ID_BYTES>(candidate).is_some()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_22_url_safe_characters_and_round_trip() {
        let id = new_id([0xFB; 16]);
        assert_eq!(id.len(), 22);
        assert_eq!(ID_LEN, 22);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(id.contains('-') || id.contains('_'), "{id}");
        assert!(is_valid_id(&id));
        assert_ne!(new_id([0; 16]), new_id([1; 16]));
        assert_eq!(new_id([0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            "",
            "AAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAA+A",
            "AAAAAAAAAAAAAAAAAAAA/A",
            "AAAAAAAAAAAAAAAAAAAA A",
            "AAAAAAAAAAAAAAAAAAAAAB",
            "' OR 1=1 --aaaaaaaaaaa",
        ] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }
}
