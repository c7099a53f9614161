//! Property tests of the domain's parsers that take what a client sends: the
//! `Authorization` header, access and refresh tokens, the JSON fields of a
//! sign-up, and the settings a deployment gives. Whatever the input, a parser
//! answers with a value or its typed error; it never panics. Case counts are
//! bounded so the suite stays quick in CI.

use latch_domain::{
    AccessClaims, Email, FullName, KeySet, Password, Role, SigningKey, TokenError, TokenPolicy,
    bearer_token, config, issue_access_token, parse_refresh_token, parse_verification_keys,
    verify_access_token,
};
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000;

fn keys() -> KeySet {
    let signing = SigningKey::from_seed("k1", [7; 32]).unwrap_or_else(|e| panic!("{e}"));
    KeySet::new(Some(signing), Vec::new()).unwrap_or_else(|e| panic!("{e}"))
}

fn policy() -> TokenPolicy {
    TokenPolicy::new("latch", "latch")
}

fn valid_token(keys: &KeySet) -> String {
    let claims = AccessClaims::new(&policy(), "user-1", "session-1", &[Role::User], NOW);
    let signing = keys.signing().unwrap_or_else(|| panic!("a signing key"));
    issue_access_token(signing, &claims).unwrap_or_else(|e| panic!("{e}"))
}

/// Text shaped like a token: base64url characters and dots, sometimes other bytes.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_=.-]{0,300}",
        "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,90}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn authorization_headers_parse_or_are_refused(header in any::<String>()) {
        match bearer_token(&header) {
            Ok(token) => {
                prop_assert!(!token.is_empty() && !token.contains(' '));
                prop_assert!(header.contains(token));
            }
            Err(error) => prop_assert!(matches!(error, TokenError::Missing | TokenError::Malformed)),
        }
    }

    #[test]
    fn arbitrary_tokens_never_verify(token in token_like()) {
        let keys = keys();
        prop_assert!(verify_access_token(&token, &keys, &policy(), NOW).is_err());
    }

    /// One changed character anywhere in a valid token makes it fail.
    #[test]
    fn a_tampered_token_never_verifies(position in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_.=-]") {
        let keys = keys();
        let token = valid_token(&keys);
        prop_assert!(verify_access_token(&token, &keys, &policy(), NOW).is_ok());
        let at = position.index(token.len());
        let mut tampered = token.clone();
        tampered.replace_range(at..=at, &replacement);
        prop_assume!(tampered != token);
        // The last base64url character of the signature carries 4 unused
        // bits; a strict decoder refuses non-zero ones, so no variant slips through.
        prop_assert!(verify_access_token(&tampered, &keys, &policy(), NOW).is_err());
    }

    #[test]
    fn refresh_tokens_parse_or_are_refused(token in token_like()) {
        if parse_refresh_token(&token).is_ok() {
            prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }

    #[test]
    fn sign_up_fields_parse_or_name_the_field(text in any::<String>()) {
        for (field, result) in [
            ("email", Email::parse(&text).map(|_| ())),
            ("name", FullName::parse(&text).map(|_| ())),
            ("password", Password::parse(&text).map(|_| ())),
        ] {
            if let Err(error) = result {
                prop_assert_eq!(error.field, field);
            }
        }
    }

    #[test]
    fn key_settings_parse_or_are_refused(text in "[A-Za-z0-9_:,= -]{0,120}|\\PC{0,80}") {
        let _ = SigningKey::parse(&text);
        let _ = parse_verification_keys(&text);
        let _ = KeySet::from_variables(&text, &text);
    }

    #[test]
    fn boolean_settings_have_one_spelling(text in any::<String>()) {
        match config::parse_bool("cookie_secure", &text) {
            Ok(value) => prop_assert_eq!(text.as_str(), if value { "true" } else { "false" }),
            Err(error) => prop_assert!(error.to_string().contains("cookie_secure")),
        }
    }
}
