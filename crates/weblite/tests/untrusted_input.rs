//! Property tests of what the SQLite Cloud client reads from outside: the
//! database's HTTP answers (any status, any bytes, any JSON shape, including
//! the shapes the API documents with wrong types in them) and the connection
//! string a deployment sets. Each gives a value or a typed error, never a
//! panic. Case counts are bounded so the suite stays quick in CI.

use latch_weblite::{DatabaseUrl, WebliteError, decode_response};
use proptest::prelude::*;
use serde_json::{Value as Json, json};

/// JSON values a few levels deep, with the keys the decoder looks for.
fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        "[ -~]{0,12}".prop_map(Json::from),
    ];
    let key = prop_oneof![
        Just("data".to_string()),
        Just("metadata".to_string()),
        Just("columns".to_string()),
        Just("name".to_string()),
        Just("error".to_string()),
        Just("errors".to_string()),
        Just("message".to_string()),
        Just("code".to_string()),
        Just("extendedErrorCode".to_string()),
        Just("changes".to_string()),
        Just("lastID".to_string()),
        Just("numberOfColumns".to_string()),
        Just("numberOfRows".to_string()),
        "[a-z]{1,6}",
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Json::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|map| Json::Object(map.into_iter().collect())),
        ]
    })
}

/// A documented answer shape with arbitrary values in its slots.
fn documented_shape() -> impl Strategy<Value = Json> {
    (json_value(), json_value(), json_value()).prop_flat_map(|(a, b, c)| {
        prop_oneof![
            Just(json!({"data": a.clone(), "metadata": {"columns": b.clone()}})),
            Just(json!({"data": [a.clone(), b.clone()]})),
            Just(json!({"data": {"lastID": a.clone(), "changes": b.clone()}})),
            Just(json!({"error": {"status": a.clone(), "code": b.clone(), "message": c.clone()}})),
            Just(json!({"errors": [{"status": a.clone(), "code": b.clone(), "detail": c.clone()}]})),
            Just(json!({"message": a.clone()})),
            Just(json!({"data": [[a.clone()], [b.clone(), c.clone()]], "metadata": {"columns": [{"name": a}]}})),
        ]
    })
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(200u16),
        Just(400),
        Just(401),
        Just(403),
        Just(429),
        Just(500),
        Just(503),
        100u16..600,
    ]
}

/// A typed error that says what went wrong.
fn assert_typed(error: &WebliteError) -> Result<(), TestCaseError> {
    prop_assert!(!error.to_string().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_decode_or_are_refused(status in status(), body in prop::collection::vec(any::<u8>(), 0..200)) {
        match decode_response(status, &body) {
            Ok(_) => prop_assert!((200..300).contains(&status), "{status} decoded as a result"),
            Err(error) => assert_typed(&error)?,
        }
    }

    #[test]
    fn any_json_decodes_or_is_refused(status in status(), body in json_value()) {
        match decode_response(status, body.to_string().as_bytes()) {
            Ok(_) => prop_assert!((200..300).contains(&status), "{status} decoded as a result"),
            Err(error) => assert_typed(&error)?,
        }
    }

    #[test]
    fn documented_shapes_with_wrong_values_decode_or_are_refused(status in status(), body in documented_shape()) {
        match decode_response(status, body.to_string().as_bytes()) {
            // A failed HTTP status is never read as rows.
            Ok(_) => prop_assert!((200..300).contains(&status), "{status} decoded as a result"),
            Err(error) => assert_typed(&error)?,
        }
    }

    #[test]
    fn connection_strings_parse_or_are_refused(
        text in "(sqlitecloud|https|http)://[a-z0-9.:@\\[\\]-]{0,30}(/[A-Za-z0-9._%-]{0,20})?(\\?[a-z]{0,8}=[A-Za-z0-9%&=]{0,20})?|\\PC{0,80}",
    ) {
        if let Ok(url) = DatabaseUrl::parse(&text) {
            // The redacted form never shows the credential.
            let redacted = url.redacted();
            let header = url.authorization_header();
            let secret = header.strip_prefix("Bearer ").unwrap_or_default();
            prop_assume!(!secret.is_empty() && !"REDACTED".starts_with(secret));
            prop_assert!(redacted.ends_with("=REDACTED"), "{redacted}");
            prop_assert!(!redacted.contains(&format!("={secret}")), "{redacted}");
        }
    }
}
