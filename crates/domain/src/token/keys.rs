//! Ed25519 signing and verification keys, key rotation and JWKS.
//!
//! Keys travel in Spin variables as `<kid>:<base64url-no-pad 32 bytes>`:
//! the seed for the signing key, the public key for verification keys.
//! The signing key may carry its public key as a third part,
//! `<kid>:<seed>:<public key>`: a component is instantiated for every
//! request, so without it every request would derive the public key from
//! the seed (a scalar multiplication, about 29 µs in a component). The
//! `ready` component checks that the two belong together.
//! The `verification_keys` variable is a comma-separated list of public
//! keys that stay valid for verification after a rotation.

use std::fmt;

use ed25519_dalek::Signature;
use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
use serde_json::{Map, Value};
use sha2::Sha512;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::config::optional;
use crate::encoding::{b64url_decode_exact, b64url_encode};

/// Longest accepted key id.
pub const MAX_KID_LEN: usize = 64;
const KEY_BYTES: usize = 32;

/// A key entry that cannot be used. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The entry is not `<kid>:<key>`.
    #[error("key entry must look like <kid>:<base64url key>")]
    Format,
    /// The key id is empty, too long or has other characters than letters,
    /// digits, `.`, `_` and `-`.
    #[error("key id must be 1 to 64 letters, digits, '.', '_' or '-'")]
    InvalidKid,
    /// The key is not 32 bytes of canonical unpadded base64url.
    #[error("key must be 32 bytes in unpadded base64url")]
    InvalidEncoding,
    /// The public key is not a valid Ed25519 point, or has small order.
    #[error("public key is not a usable Ed25519 key")]
    InvalidPublicKey,
    /// One key id is listed with two different public keys.
    #[error("key id `{0}` is listed with two different keys")]
    ConflictingKid(String),
    /// Neither a signing key nor any verification key is configured.
    #[error("no signing or verification key configured")]
    NoKeys,
}

fn validate_kid(kid: &str) -> Result<(), KeyError> {
    let valid = (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(KeyError::InvalidKid)
    }
}

/// Splits `<kid>:<key>` and decodes the key bytes.
fn parse_entry(entry: &str) -> Result<(&str, [u8; KEY_BYTES]), KeyError> {
    let (kid, encoded) = entry.trim().split_once(':').ok_or(KeyError::Format)?;
    validate_kid(kid)?;
    let bytes = b64url_decode_exact::<KEY_BYTES>(encoded).ok_or(KeyError::InvalidEncoding)?;
    Ok((kid, bytes))
}

/// The current Ed25519 signing key, its id (`kid`) and its public key.
///
/// `Debug` shows the kid and the public key only.
#[derive(Clone)]
pub struct SigningKey {
    seed: Zeroizing<[u8; KEY_BYTES]>,
    public: VerificationKey,
}

impl SigningKey {
    /// Builds a key from a 32-byte seed (pass random bytes to generate one),
    /// deriving its public key.
    ///
    /// # Errors
    /// [`KeyError::InvalidKid`] for an unusable key id.
    pub fn from_seed(kid: &str, seed: [u8; KEY_BYTES]) -> Result<Self, KeyError> {
        validate_kid(kid)?;
        let public = VerificationKey {
            kid: kid.to_owned(),
            key: derive_public(&seed),
        };
        Ok(Self {
            seed: Zeroizing::new(seed),
            public,
        })
    }

    /// Builds a key from a seed and the public key given with it, without
    /// deriving anything. Whether they belong together is
    /// [`SigningKey::public_key_matches_seed`]'s to check.
    ///
    /// # Errors
    /// As [`VerificationKey::from_bytes`].
    pub fn from_seed_and_public(
        kid: &str,
        seed: [u8; KEY_BYTES],
        public: [u8; KEY_BYTES],
    ) -> Result<Self, KeyError> {
        Ok(Self {
            seed: Zeroizing::new(seed),
            public: VerificationKey::from_bytes(kid, public)?,
        })
    }

    /// Parses the `signing_key` variable: `<kid>:<base64url 32-byte seed>`,
    /// optionally followed by `:<base64url 32-byte public key>`.
    ///
    /// # Errors
    /// [`KeyError`] naming what is wrong (never echoing the value).
    pub fn parse(variable: &str) -> Result<Self, KeyError> {
        let (kid_and_seed, public) = match variable.trim().rsplit_once(':') {
            Some((head, tail)) if head.contains(':') => (head, Some(tail)),
            _ => (variable, None),
        };
        let (kid, seed) = parse_entry(kid_and_seed)?;
        match public {
            None => Self::from_seed(kid, seed),
            Some(encoded) => {
                let public =
                    b64url_decode_exact::<KEY_BYTES>(encoded).ok_or(KeyError::InvalidEncoding)?;
                Self::from_seed_and_public(kid, seed, public)
            }
        }
    }

    /// The variable form, `<kid>:<seed>:<public key>`. Contains the secret
    /// seed: only for generating a development key or a secret to store.
    pub fn to_variable_string(&self) -> String {
        format!(
            "{}:{}:{}",
            self.public.kid,
            b64url_encode(self.seed.as_slice()),
            self.public.x()
        )
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    /// The matching public key, with the same kid.
    pub fn verification_key(&self) -> VerificationKey {
        self.public.clone()
    }

    /// Whether the public key is the one the seed derives (always true for
    /// a key built with [`SigningKey::from_seed`]). Costs a derivation: for
    /// the readiness check, not for requests.
    pub fn public_key_matches_seed(&self) -> bool {
        derive_public(&self.seed) == self.public.key
    }

    /// Signs `message` (deterministic Ed25519), with the public key as
    /// given rather than derived.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        let expanded = ExpandedSecretKey::from(&*self.seed);
        raw_sign::<Sha512>(&expanded, message, &self.public.key).to_bytes()
    }
}

fn derive_public(seed: &[u8; KEY_BYTES]) -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(seed).verifying_key()
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .field("public", &self.public.x())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key and its id, for verifying tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationKey {
    kid: String,
    key: ed25519_dalek::VerifyingKey,
}

impl VerificationKey {
    /// Builds a key from 32 public-key bytes.
    ///
    /// # Errors
    /// [`KeyError::InvalidKid`], or [`KeyError::InvalidPublicKey`] when the
    /// bytes are not a point or the point has small order.
    pub fn from_bytes(kid: &str, public: [u8; 32]) -> Result<Self, KeyError> {
        validate_kid(kid)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| KeyError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(KeyError::InvalidPublicKey);
        }
        Ok(Self {
            kid: kid.to_owned(),
            key,
        })
    }

    /// Parses one entry: `<kid>:<base64url 32-byte public key>`.
    ///
    /// # Errors
    /// [`KeyError`] naming what is wrong.
    pub fn parse(entry: &str) -> Result<Self, KeyError> {
        let (kid, public) = parse_entry(entry)?;
        Self::from_bytes(kid, public)
    }

    /// The variable form, `<kid>:<public key>`.
    pub fn to_variable_string(&self) -> String {
        format!("{}:{}", self.kid, self.x())
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key in unpadded base64url (the JWK `x` member).
    pub fn x(&self) -> String {
        b64url_encode(self.key.as_bytes())
    }

    /// Whether `signature` is a valid strict Ed25519 signature of `message`
    /// (rejects non-canonical and small-order components).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.key
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    /// The RFC 8037 JWK of this key.
    fn jwk(&self) -> Value {
        let mut jwk = Map::new();
        for (name, value) in [
            ("kty", "OKP".to_owned()),
            ("crv", "Ed25519".to_owned()),
            ("x", self.x()),
            ("kid", self.kid.clone()),
            ("use", "sig".to_owned()),
            ("alg", "EdDSA".to_owned()),
        ] {
            jwk.insert(name.to_owned(), Value::String(value));
        }
        Value::Object(jwk)
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("x", &self.x())
            .finish()
    }
}

/// Parses the `verification_keys` variable: comma-separated entries of
/// `<kid>:<public key>`. Whitespace around entries and empty entries are
/// ignored, so `""` is an empty list.
///
/// # Errors
/// The first entry's [`KeyError`].
pub fn parse_verification_keys(list: &str) -> Result<Vec<VerificationKey>, KeyError> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(VerificationKey::parse)
        .collect()
}

/// The keys a component knows: optionally the current signing key, and the
/// public keys it accepts (the signing key's own public key first, then
/// older keys kept for rotation; no kid twice).
#[derive(Debug, Clone)]
pub struct KeySet {
    signing: Option<SigningKey>,
    verification: Vec<VerificationKey>,
}

impl KeySet {
    /// Combines a signing key and verification keys. The signing key's
    /// public key is added in front; repeated identical entries are dropped.
    ///
    /// # Errors
    /// [`KeyError::ConflictingKid`] when a kid has two different keys,
    /// [`KeyError::NoKeys`] when there is nothing to verify with.
    pub fn new(
        signing: Option<SigningKey>,
        verification: Vec<VerificationKey>,
    ) -> Result<Self, KeyError> {
        let mut combined: Vec<VerificationKey> = Vec::with_capacity(verification.len() + 1);
        for key in signing
            .as_ref()
            .map(SigningKey::verification_key)
            .into_iter()
            .chain(verification)
        {
            match combined.iter().find(|known| known.kid == key.kid) {
                Some(known) if *known == key => {}
                Some(_) => return Err(KeyError::ConflictingKid(key.kid)),
                None => combined.push(key),
            }
        }
        if combined.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(Self {
            signing,
            verification: combined,
        })
    }

    /// Builds the set from the `signing_key` and `verification_keys`
    /// variable values; an empty value means "not set".
    ///
    /// # Errors
    /// As [`SigningKey::parse`], [`parse_verification_keys`] and
    /// [`KeySet::new`].
    pub fn from_variables(signing_key: &str, verification_keys: &str) -> Result<Self, KeyError> {
        let signing = optional(signing_key).map(SigningKey::parse).transpose()?;
        Self::new(signing, parse_verification_keys(verification_keys)?)
    }

    /// The current signing key, if this component may issue tokens.
    pub fn signing(&self) -> Option<&SigningKey> {
        self.signing.as_ref()
    }

    /// Every accepted public key, current first.
    pub fn verification_keys(&self) -> &[VerificationKey] {
        &self.verification
    }

    /// The public key with this kid.
    pub fn find(&self, kid: &str) -> Option<&VerificationKey> {
        self.verification.iter().find(|key| key.kid == kid)
    }

    /// The JWK Set (RFC 7517, OKP keys per RFC 8037) of every accepted key,
    /// current first: `{"keys":[{"kty":"OKP","crv":"Ed25519",...}]}`.
    pub fn jwks(&self) -> Value {
        let keys = self.verification.iter().map(VerificationKey::jwk).collect();
        let mut set = Map::new();
        set.insert("keys".to_owned(), Value::Array(keys));
        Value::Object(set)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(kid: &str, seed: u8) -> SigningKey {
        SigningKey::from_seed(kid, [seed; 32]).unwrap()
    }

    #[test]
    fn signing_key_variable_round_trip() {
        let original = key("2025-01", 7);
        let text = original.to_variable_string();
        assert!(text.starts_with("2025-01:"));
        assert_eq!(text.len(), "2025-01:".len() + 43 + 1 + 43);
        let parsed = SigningKey::parse(&format!(" {text}\n")).unwrap();
        assert_eq!(parsed.kid(), "2025-01");
        assert_eq!(parsed.verification_key(), original.verification_key());
        assert!(parsed.public_key_matches_seed());
        assert_eq!(parsed.sign(b"m"), original.sign(b"m"));

        // Without the public key, it is derived.
        let (seed_form, _) = text.rsplit_once(':').unwrap();
        let derived = SigningKey::parse(seed_form).unwrap();
        assert_eq!(derived.verification_key(), original.verification_key());
        assert_eq!(derived.sign(b"m"), original.sign(b"m"));
    }

    #[test]
    fn a_carried_public_key_that_is_not_the_seeds_is_detected() {
        let seed_text = b64url_encode(&[7; 32]);
        let other_public = key("x", 8).verification_key().x();
        let mismatched = SigningKey::parse(&format!("k:{seed_text}:{other_public}")).unwrap();
        assert!(!mismatched.public_key_matches_seed());
        assert_eq!(
            SigningKey::parse(&format!("k:{seed_text}:short")).err(),
            Some(KeyError::InvalidEncoding)
        );
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            SigningKey::parse(&format!("k:{seed_text}:{}", b64url_encode(&identity))).err(),
            Some(KeyError::InvalidPublicKey)
        );
        assert_eq!(
            SigningKey::parse(&format!("k:{seed_text}:{other_public}:{other_public}")).err(),
            Some(KeyError::InvalidEncoding)
        );
    }

    #[test]
    fn rfc8032_test_vector_public_key() {
        // RFC 8032 section 7.1, TEST 1.
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let public =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap();
        let signing = SigningKey::from_seed("t", seed).unwrap();
        assert_eq!(signing.verification_key().x(), b64url_encode(&public));
        let signature = signing.sign(b"");
        assert_eq!(
            hex::encode(signature),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
    }

    #[test]
    fn debug_never_shows_the_seed() {
        let signing = key("k1", 9);
        let seed_b64 = b64url_encode(&[9; 32]);
        let debug = format!(
            "{signing:?} {:?}",
            KeySet::new(Some(signing.clone()), vec![]).unwrap()
        );
        assert!(!debug.contains(&seed_b64), "{debug}");
        assert!(debug.contains("k1"));
    }

    #[test]
    fn rejects_bad_entries() {
        let good = key("k", 1).verification_key().x();
        assert_eq!(VerificationKey::parse(&good), Err(KeyError::Format));
        assert_eq!(
            VerificationKey::parse(&format!(":{good}")),
            Err(KeyError::InvalidKid)
        );
        assert_eq!(
            VerificationKey::parse(&format!("a b:{good}")),
            Err(KeyError::InvalidKid)
        );
        assert_eq!(
            VerificationKey::parse(&format!("{}:{good}", "k".repeat(65))),
            Err(KeyError::InvalidKid)
        );
        assert_eq!(
            VerificationKey::parse(&format!("k:{good}=")),
            Err(KeyError::InvalidEncoding)
        );
        assert_eq!(
            VerificationKey::parse(&format!("k:{}", &good[1..])),
            Err(KeyError::InvalidEncoding)
        );
        assert_eq!(
            VerificationKey::parse("k:not base64"),
            Err(KeyError::InvalidEncoding)
        );
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            VerificationKey::from_bytes("k", identity),
            Err(KeyError::InvalidPublicKey)
        );
        assert!(SigningKey::parse("k:short").is_err());
        assert!(SigningKey::from_seed("bad:kid", [1; 32]).is_err());
    }

    #[test]
    fn verification_key_list() {
        let a = key("a", 1).verification_key();
        let b = key("b", 2).verification_key();
        let list = format!(" {} ,{},", a.to_variable_string(), b.to_variable_string());
        assert_eq!(parse_verification_keys(&list).unwrap(), vec![a.clone(), b]);
        assert_eq!(parse_verification_keys("").unwrap(), vec![]);
        assert_eq!(parse_verification_keys(" , ").unwrap(), vec![]);
        assert!(parse_verification_keys(&format!("{},junk", a.to_variable_string())).is_err());
    }

    #[test]
    fn key_set_puts_current_first_and_drops_duplicates() {
        let current = key("new", 2);
        let old = key("old", 1).verification_key();
        let set = KeySet::new(
            Some(current.clone()),
            vec![old.clone(), current.verification_key(), old.clone()],
        )
        .unwrap();
        let kids: Vec<&str> = set
            .verification_keys()
            .iter()
            .map(VerificationKey::kid)
            .collect();
        assert_eq!(kids, ["new", "old"]);
        assert_eq!(set.find("old"), Some(&old));
        assert_eq!(set.find("missing"), None);
        assert_eq!(set.signing().map(SigningKey::kid), Some("new"));
    }

    #[test]
    fn key_set_rejects_conflicts_and_emptiness() {
        let conflicting = key("same", 3).verification_key();
        assert_eq!(
            KeySet::new(Some(key("same", 4)), vec![conflicting]).unwrap_err(),
            KeyError::ConflictingKid("same".to_owned())
        );
        assert_eq!(KeySet::new(None, vec![]).unwrap_err(), KeyError::NoKeys);
        assert_eq!(
            KeySet::from_variables(" ", "").unwrap_err(),
            KeyError::NoKeys
        );
    }

    #[test]
    fn key_set_from_variables() {
        let current = key("cur", 5);
        let old = key("old", 6).verification_key();
        let set = KeySet::from_variables(&current.to_variable_string(), &old.to_variable_string())
            .unwrap();
        assert_eq!(set.verification_keys().len(), 2);
        let verify_only = KeySet::from_variables("", &old.to_variable_string()).unwrap();
        assert!(verify_only.signing().is_none());
        assert_eq!(verify_only.find("old"), Some(&old));
    }

    #[test]
    fn jwks_shape() {
        let current = key("cur", 5);
        let old = key("old", 6).verification_key();
        let set = KeySet::new(Some(current.clone()), vec![old.clone()]).unwrap();
        assert_eq!(
            set.jwks(),
            serde_json::json!({"keys": [
                {"kty": "OKP", "crv": "Ed25519", "x": current.verification_key().x(), "kid": "cur", "use": "sig", "alg": "EdDSA"},
                {"kty": "OKP", "crv": "Ed25519", "x": old.x(), "kid": "old", "use": "sig", "alg": "EdDSA"},
            ]})
        );
        let x = current.verification_key().x();
        assert_eq!(x.len(), 43);
        assert!(!x.contains('='));
    }
}
