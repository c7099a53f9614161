//! Compact JWS with EdDSA (Ed25519) only.
//!
//! Written by hand rather than with a general JWT library: one algorithm,
//! one header shape, and no RSA/ECDSA code in the wasm components.

use serde::{Deserialize, Serialize};

use super::keys::{KeySet, SigningKey};
use super::{AccessClaims, TokenError, TokenPolicy};
use crate::encoding::{b64url_decode, b64url_decode_exact, b64url_encode, is_b64url_char};

/// Largest accepted access token, in bytes. Ours are well under 1 KiB.
pub const MAX_TOKEN_LEN: usize = 4096;
/// How far in the future `iat` may be, for clocks that disagree slightly.
pub const CLOCK_SKEW_SECS: i64 = 60;

const ALGORITHM: &str = "EdDSA";
const HEADER_TYPE: &str = "JWT";

/// The header as issued: `{"alg":"EdDSA","typ":"JWT","kid":"..."}`.
#[derive(Serialize)]
struct IssuedHeader<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// The header as read. Unknown members (`jku`, `jwk`, `x5u`, `crit`...) are
/// refused outright; everything is optional here only so that the most
/// precise error can be reported.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceivedHeader {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
}

/// Signs `claims` with `key`: `base64url(header).base64url(claims).base64url(signature)`.
///
/// # Errors
/// [`TokenError::Encoding`] if serialisation fails (not expected).
pub fn issue_access_token(key: &SigningKey, claims: &AccessClaims) -> Result<String, TokenError> {
    let header = serde_json::to_vec(&IssuedHeader {
        alg: ALGORITHM,
        typ: HEADER_TYPE,
        kid: key.kid(),
    })
    .map_err(|_| TokenError::Encoding)?;
    let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Encoding)?;
    let mut token = b64url_encode(&header);
    token.push('.');
    token.push_str(&b64url_encode(&payload));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64url_encode(&signature));
    Ok(token)
}

/// Verifies an access token and returns its claims.
///
/// Checks, in order: size (at most [`MAX_TOKEN_LEN`]); exactly three
/// base64url parts; header with only `alg`, `typ`, `kid`; `alg` is `EdDSA`;
/// `typ`, if present, is `JWT`; `kid` is in `keys`; the Ed25519 signature
/// (strict verification); then the claims: `typ` is `access`, `iss` and
/// `aud` match `policy`, `exp > now`, and `iat <= now + 60`.
///
/// # Errors
/// The [`TokenError`] naming the first failed check.
pub fn verify_access_token(
    token: &str,
    keys: &KeySet,
    policy: &TokenPolicy,
    now: i64,
) -> Result<AccessClaims, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_part), Some(payload_part), Some(signature_part), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    // Structure first, so a garbled token is reported as malformed whichever
    // part is garbled.
    if [header_part, payload_part, signature_part]
        .iter()
        .any(|part| !part.bytes().all(is_b64url_char))
    {
        return Err(TokenError::Malformed);
    }

    let header_json = b64url_decode(header_part).ok_or(TokenError::Malformed)?;
    let header: ReceivedHeader =
        serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
    if header.alg.as_deref() != Some(ALGORITHM) {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    if header.typ.as_deref().is_some_and(|typ| typ != HEADER_TYPE) {
        return Err(TokenError::Malformed);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.find(kid))
        .ok_or(TokenError::UnknownKey)?;

    let signature = b64url_decode_exact::<64>(signature_part).ok_or(TokenError::BadSignature)?;
    let signing_input = &token[..header_part.len() + 1 + payload_part.len()];
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(TokenError::BadSignature);
    }

    // Claims are parsed only once the signature proved who wrote them.
    let payload = b64url_decode(payload_part).ok_or(TokenError::Malformed)?;
    let claims: AccessClaims =
        serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if claims.typ != AccessClaims::TYPE {
        return Err(TokenError::WrongType);
    }
    if claims.iss != policy.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if claims.aud != policy.audience {
        return Err(TokenError::WrongAudience);
    }
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    if claims.iat > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::role::Role;
    use crate::token::{RefreshToken, VerificationKey, parse_refresh_token};

    const NOW: i64 = 1_750_000_000;

    fn policy() -> TokenPolicy {
        TokenPolicy::new("https://auth.latch.test", "latch-api")
    }

    fn signing(kid: &str, seed: u8) -> SigningKey {
        SigningKey::from_seed(kid, [seed; 32]).unwrap()
    }

    fn keys() -> KeySet {
        KeySet::new(Some(signing("k1", 1)), vec![]).unwrap()
    }

    fn claims() -> AccessClaims {
        AccessClaims::new(&policy(), "user-1", "session-1", &[Role::User], NOW)
    }

    fn token() -> String {
        issue_access_token(&signing("k1", 1), &claims()).unwrap()
    }

    /// Re-signs arbitrary header and payload JSON with the k1 key.
    fn forge(header: &str, payload: &str, key: &SigningKey) -> String {
        let input = format!(
            "{}.{}",
            b64url_encode(header.as_bytes()),
            b64url_encode(payload.as_bytes())
        );
        let signature = key.sign(input.as_bytes());
        format!("{input}.{}", b64url_encode(&signature))
    }

    fn payload_json(claims: &AccessClaims) -> String {
        serde_json::to_string(claims).unwrap()
    }

    fn verify(token: &str) -> Result<AccessClaims, TokenError> {
        verify_access_token(token, &keys(), &policy(), NOW)
    }

    #[test]
    fn round_trip() {
        let token = token();
        assert_eq!(token.split('.').count(), 3);
        assert!(token.len() < 1024);
        let header = b64url_decode(token.split('.').next().unwrap()).unwrap();
        assert_eq!(header, br#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#);
        assert_eq!(verify(&token), Ok(claims()));
    }

    #[test]
    fn tampered_payload_or_signature_is_rejected() {
        let token = token();
        let parts: Vec<&str> = token.split('.').collect();

        let mut admin = claims();
        admin.roles.push("admin".to_owned());
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            b64url_encode(payload_json(&admin).as_bytes()),
            parts[2]
        );
        assert_eq!(verify(&swapped), Err(TokenError::BadSignature));

        let mut signature = b64url_decode(parts[2]).unwrap();
        signature[10] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], b64url_encode(&signature));
        assert_eq!(verify(&flipped), Err(TokenError::BadSignature));

        let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..80]);
        assert_eq!(verify(&truncated), Err(TokenError::BadSignature));
        let empty_signature = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(verify(&empty_signature), Err(TokenError::BadSignature));
    }

    #[test]
    fn non_canonical_signature_scalar_is_rejected() {
        // Adding the group order L to S gives a signature that lax verifiers
        // accept (malleability); strict verification must not.
        let token = token();
        let parts: Vec<&str> = token.split('.').collect();
        let mut signature = b64url_decode(parts[2]).unwrap();
        let order: [u8; 32] =
            hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
                .unwrap()
                .try_into()
                .unwrap();
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(signature[32 + i]) + u16::from(order[i]) + carry;
            signature[32 + i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        let malleated = format!("{}.{}.{}", parts[0], parts[1], b64url_encode(&signature));
        assert_eq!(verify(&malleated), Err(TokenError::BadSignature));
    }

    #[test]
    fn algorithms_other_than_eddsa_are_rejected() {
        let payload = b64url_encode(payload_json(&claims()).as_bytes());
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"none","typ":"JWT","kid":"k1"}"#,
            r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#,
            r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#,
            r#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#,
            r#"{"alg":"eddsa","typ":"JWT","kid":"k1"}"#,
            r#"{"alg":"Ed25519","typ":"JWT","kid":"k1"}"#,
            r#"{"typ":"JWT","kid":"k1"}"#,
        ] {
            let header = b64url_encode(header.as_bytes());
            for signature in ["", "c2lnbmF0dXJl"] {
                let forged = format!("{header}.{payload}.{signature}");
                assert_eq!(
                    verify(&forged),
                    Err(TokenError::UnsupportedAlgorithm),
                    "{forged}"
                );
            }
        }
        // HS256 "signed" with the public key as HMAC secret (key confusion)
        // still fails on the algorithm, before any key is used.
        let hs = forge(
            r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#,
            &payload_json(&claims()),
            &signing("k1", 1),
        );
        assert_eq!(verify(&hs), Err(TokenError::UnsupportedAlgorithm));
    }

    #[test]
    fn header_shape_is_fixed() {
        let key = signing("k1", 1);
        let payload = payload_json(&claims());
        let extra = forge(
            r#"{"alg":"EdDSA","typ":"JWT","kid":"k1","jku":"https://evil.test"}"#,
            &payload,
            &key,
        );
        assert_eq!(verify(&extra), Err(TokenError::Malformed));
        let crit = forge(
            r#"{"alg":"EdDSA","kid":"k1","crit":["exp"]}"#,
            &payload,
            &key,
        );
        assert_eq!(verify(&crit), Err(TokenError::Malformed));
        let wrong_typ = forge(
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}"#,
            &payload,
            &key,
        );
        assert_eq!(verify(&wrong_typ), Err(TokenError::Malformed));
        let duplicate_alg = forge(r#"{"alg":"EdDSA","alg":"none","kid":"k1"}"#, &payload, &key);
        assert_eq!(verify(&duplicate_alg), Err(TokenError::Malformed));
        // typ may be omitted; the signature is what matters.
        let no_typ = forge(r#"{"alg":"EdDSA","kid":"k1"}"#, &payload, &key);
        assert_eq!(verify(&no_typ), Ok(claims()));
    }

    #[test]
    fn unknown_or_missing_kid_is_rejected() {
        let other = signing("k2", 2);
        assert_eq!(
            verify(&issue_access_token(&other, &claims()).unwrap()),
            Err(TokenError::UnknownKey)
        );
        let no_kid = forge(
            r#"{"alg":"EdDSA","typ":"JWT"}"#,
            &payload_json(&claims()),
            &signing("k1", 1),
        );
        assert_eq!(verify(&no_kid), Err(TokenError::UnknownKey));
        // Right kid, wrong key: the signature fails.
        let impostor = signing("k1", 9);
        assert_eq!(
            verify(&issue_access_token(&impostor, &claims()).unwrap()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn expiry_and_clock_skew() {
        let token = token();
        let exp = claims().exp;
        let policy = policy();
        assert!(verify_access_token(&token, &keys(), &policy, exp - 1).is_ok());
        assert_eq!(
            verify_access_token(&token, &keys(), &policy, exp),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_access_token(&token, &keys(), &policy, exp + 3600),
            Err(TokenError::Expired)
        );
        // Issued 60 s "in the future" is tolerated, 61 s is not.
        assert!(verify_access_token(&token, &keys(), &policy, NOW - 60).is_ok());
        assert_eq!(
            verify_access_token(&token, &keys(), &policy, NOW - 61),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn issuer_audience_and_type_must_match() {
        let token = token();
        let mut other_issuer = policy();
        other_issuer.issuer = "https://evil.test".to_owned();
        assert_eq!(
            verify_access_token(&token, &keys(), &other_issuer, NOW),
            Err(TokenError::WrongIssuer)
        );
        let mut other_audience = policy();
        other_audience.audience = "another-api".to_owned();
        assert_eq!(
            verify_access_token(&token, &keys(), &other_audience, NOW),
            Err(TokenError::WrongAudience)
        );

        let mut refresh_typed = claims();
        refresh_typed.typ = "refresh".to_owned();
        let token = issue_access_token(&signing("k1", 1), &refresh_typed).unwrap();
        assert_eq!(verify(&token), Err(TokenError::WrongType));
    }

    #[test]
    fn malformed_shapes() {
        let token = token();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(verify(""), Err(TokenError::Missing));
        for bad in [
            "abc".to_owned(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{token}.{}", parts[2]),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}", parts[0], "%%%", parts[2]),
            format!("{}.{}.{}", b64url_encode(b"not json"), parts[1], parts[2]),
            format!(
                "{}.{}.{}",
                b64url_encode(b"[\"EdDSA\"]"),
                parts[1],
                parts[2]
            ),
            format!("{} ", token),
            "a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(verify(&bad), Err(TokenError::Malformed), "{bad}");
        }
        // Signed but with claims missing or of the wrong type.
        let key = signing("k1", 1);
        for payload in [
            r#"{"sub":"u"}"#,
            r#"{}"#,
            "null",
            r#"{"iss":"https://auth.latch.test","aud":["latch-api"],"sub":"u","sid":"s","roles":[],"iat":1,"exp":2,"typ":"access"}"#,
        ] {
            let forged = forge(r#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#, payload, &key);
            assert_eq!(verify(&forged), Err(TokenError::Malformed), "{payload}");
        }
    }

    #[test]
    fn refresh_tokens_and_access_tokens_never_cross() {
        let (refresh, _) = RefreshToken::from_random([3; 32]);
        assert_eq!(verify(refresh.as_str()), Err(TokenError::Malformed));
        assert_eq!(parse_refresh_token(&token()), Err(TokenError::Malformed));
    }

    #[test]
    fn rotation_old_key_verifies_while_listed() {
        let old = signing("2024-12", 11);
        let new = signing("2025-06", 12);
        let old_token = issue_access_token(&old, &claims()).unwrap();
        let new_token = issue_access_token(&new, &claims()).unwrap();

        let during = KeySet::new(Some(new.clone()), vec![old.verification_key()]).unwrap();
        assert_eq!(
            verify_access_token(&old_token, &during, &policy(), NOW),
            Ok(claims())
        );
        assert_eq!(
            verify_access_token(&new_token, &during, &policy(), NOW),
            Ok(claims())
        );
        let kids: Vec<&str> = during
            .verification_keys()
            .iter()
            .map(VerificationKey::kid)
            .collect();
        assert_eq!(kids, ["2025-06", "2024-12"]);

        let after = KeySet::new(Some(new), vec![]).unwrap();
        assert_eq!(
            verify_access_token(&old_token, &after, &policy(), NOW),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            verify_access_token(&new_token, &after, &policy(), NOW),
            Ok(claims())
        );

        // A verify-only component (public keys from variables) accepts both.
        let list = format!(
            "{},{}",
            after.verification_keys()[0].to_variable_string(),
            old.verification_key().to_variable_string()
        );
        let verify_only = KeySet::from_variables("", &list).unwrap();
        assert!(verify_access_token(&old_token, &verify_only, &policy(), NOW).is_ok());
        assert!(verify_access_token(&new_token, &verify_only, &policy(), NOW).is_ok());
    }
}
