//! The TOTP second factor (issue 14), against both backends: enrolment and
//! its QR code, confirmation and recovery codes, sign-in's challenge and
//! its verification, assurance levels in the tokens, refusals (wrong,
//! replayed, out-of-window and used codes; used, expired and unknown
//! challenges), the lock-out, races, step-up and removal.
//!
//! Codes come from a [`latch_e2e::Authenticator`] (the `totp-rs` crate), never
//! from Latch's own TOTP code; the QR code is read as a phone would: the SVG
//! parsed as XML, drawn into pixels here and decoded by the `rqrr` QR reader.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use latch_e2e::{
    Account, Authenticator, Backend, Options, Reply, Service, Tokens, assert_no_cookies,
    assert_problem, assert_security_headers, b64url_encode, count, invariant_violations,
    is_recovery_code, jwt_parts, now_secs, session_id_of, tokens_of,
};
use serde_json::{Value, json};

latch_e2e::both_backends!(
    enrol_confirm_sign_in_and_verify_with_a_code,
    wrong_replayed_and_out_of_window_codes_are_refused,
    a_recovery_code_works_once,
    regenerated_recovery_codes_replace_the_old_ones,
    enrolment_and_confirmation_refusals,
    repeated_wrong_codes_lock_the_codes_out,
    only_wrong_codes_count_towards_the_lock_out,
    a_challenge_works_once,
    a_challenge_expires,
    racing_verifications_of_one_challenge_open_one_session,
    step_up_needs_a_session_with_the_second_factor,
    step_up_routes_are_configurable,
    the_qr_code_scans_to_the_otpauth_uri,
    production_needs_an_encryption_key,
);

// --- helpers -------------------------------------------------------------------------

/// Panics unless `reply` is a problem with `status` and `code`; returns the
/// body without its request-specific members (for one-answer checks).
fn assert_coded(what: &str, reply: &Reply, status: u16, code: &str) -> Value {
    let mut body = assert_problem(reply, status);
    assert_eq!(body["code"], code, "{what}: {reply}");
    assert_security_headers(reply);
    assert_no_cookies(reply);
    let object = body.as_object_mut().unwrap();
    object.remove("requestId");
    object.remove("instance");
    body
}

fn assert_invalid_code(what: &str, reply: &Reply) -> Value {
    assert_coded(what, reply, 400, "invalid_mfa_code")
}

fn assert_invalid_challenge(what: &str, reply: &Reply) -> Value {
    assert_coded(what, reply, 400, "invalid_challenge")
}

/// Panics unless the access token's claims carry `aal` and `amr`.
fn assert_assurance(access: &str, aal: &str, amr: &[&str]) {
    let (_, claims) = jwt_parts(access).unwrap();
    assert_eq!(claims["aal"], aal, "claims {claims}");
    assert_eq!(claims["amr"], json!(amr), "claims {claims}");
}

/// `mfaEnabled` of the profile.
fn mfa_enabled(svc: &Service, access: &str) -> bool {
    let reply = svc.profile(access);
    reply.expect_status(200);
    match reply.json()["user"]["mfaEnabled"].as_bool() {
        Some(enabled) => enabled,
        None => panic!("no boolean user.mfaEnabled in the profile: {reply}"),
    }
}

/// `POST /auth/signout`.
fn sign_out(svc: &Service, access: &str) {
    svc.post("/auth/signout")
        .access_cookie(access)
        .send()
        .expect_status(200);
}

/// `DELETE /auth/mfa/totp` with `body`.
fn remove(svc: &Service, access: &str, body: &Value) -> Reply {
    svc.delete("/auth/mfa/totp")
        .access_cookie(access)
        .json(body)
        .send()
}

/// `POST /auth/mfa/recovery-codes` with `body`.
fn regenerate(svc: &Service, access: &str, body: &Value) -> Reply {
    svc.post("/auth/mfa/recovery-codes")
        .access_cookie(access)
        .json(body)
        .send()
}

/// `POST /auth/password` (a password change).
fn change_password(svc: &Service, access: &str, current: &str, new: &str) -> Reply {
    svc.post("/auth/password")
        .access_cookie(access)
        .json(&json!({"currentPassword": current, "newPassword": new}))
        .send()
}

/// The ten recovery codes of a 200 answer, checked: ten, distinct, `XXXX-XXXX-XXXX`.
fn recovery_codes(reply: &Reply) -> Vec<String> {
    reply.expect_status(200);
    let body = reply.json();
    assert!(body["message"].is_string(), "{reply}");
    let codes: Vec<String> = body["recoveryCodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no recoveryCodes: {reply}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10, "{reply}");
    assert!(
        codes.iter().all(|c| is_recovery_code(c)),
        "not XXXX-XXXX-XXXX: {codes:?}"
    );
    assert_eq!(codes.iter().collect::<BTreeSet<_>>().len(), 10, "{codes:?}");
    codes
}

/// Audit rows of `event` for `user_id` (with `reason`, when given).
fn audit_rows(svc: &Service, user_id: &str, event: &str, reason: Option<&str>) -> i64 {
    let reason = reason.map_or(String::new(), |r| format!(" AND reason = '{r}'"));
    count(
        &svc.db(),
        &format!(
            "SELECT count(*) FROM audit_events WHERE event = '{event}' AND user_id = '{user_id}'{reason}"
        ),
    )
}

/// Sessions of a user not revoked (none of them expires during a test).
fn live_sessions(svc: &Service, user_id: &str) -> i64 {
    count(
        &svc.db(),
        &format!(
            "SELECT count(*) FROM sessions WHERE user_id = '{user_id}' AND revoked_at IS NULL"
        ),
    )
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn assert_no_violations(svc: &Service) {
    assert_eq!(invariant_violations(&svc.db()), Vec::<String>::new());
}

/// An account with a confirmed factor, its (aal1) enrolment session, its
/// authenticator and recovery codes.
fn account_with_factor(svc: &Service) -> (Account, Tokens, Authenticator, Vec<String>) {
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let (authenticator, codes) = svc.enable_mfa(&tokens.access);
    (account, tokens, authenticator, codes)
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("a bad escape in {text:?}"));
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| panic!("not UTF-8 once decoded: {text:?}"))
}

/// Every text and blob (as lossy text) of the rows `sql` selects.
fn row_texts(svc: &Service, sql: &str) -> Vec<String> {
    let db = svc.db();
    let mut statement = db.prepare(sql).unwrap();
    let columns = statement.column_count();
    let mut rows = statement.query([]).unwrap();
    let mut texts = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        for i in 0..columns {
            match row.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    texts.push(String::from_utf8_lossy(t).into_owned());
                }
                _ => {}
            }
        }
    }
    texts
}

/// Panics unless `uri` is the enrolment's otpauth URI: `otpauth://totp/`,
/// the label `<issuer>:<email>`, and exactly the parameters secret, issuer,
/// algorithm SHA1, digits 6 and period 30, percent-encoded.
fn check_otpauth_uri(uri: &str, issuer: &str, email: &str, secret: &str) {
    let rest = uri
        .strip_prefix("otpauth://totp/")
        .unwrap_or_else(|| panic!("not an otpauth://totp/ URI: {uri}"));
    let (label, query) = rest
        .split_once('?')
        .unwrap_or_else(|| panic!("no query: {uri}"));
    for (what, raw) in [("label", label), ("query", query)] {
        assert!(
            raw.chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, ' ' | '"' | '<' | '>' | '#')),
            "the {what} of {uri} is not percent-encoded"
        );
    }
    assert_eq!(percent_decode(label), format!("{issuer}:{email}"), "{uri}");
    let mut params = std::collections::BTreeMap::new();
    for pair in query.split('&') {
        let (name, value) = pair
            .split_once('=')
            .unwrap_or_else(|| panic!("parameter without a value in {uri}"));
        assert!(
            params
                .insert(name.to_string(), percent_decode(value))
                .is_none(),
            "{name} twice in {uri}"
        );
    }
    let expected: std::collections::BTreeMap<String, String> = [
        ("secret", secret),
        ("issuer", issuer),
        ("algorithm", "SHA1"),
        ("digits", "6"),
        ("period", "30"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(params, expected, "{uri}");
}

// --- the whole flow ------------------------------------------------------------------

fn enrol_confirm_sign_in_and_verify_with_a_code(backend: Backend) {
    let svc = Service::start_default(backend);
    let (_admin, admin) = svc.create_admin();
    let bystander = svc.create_account();
    let bystander_reply = svc.signin(&bystander.email, &bystander.password);
    let bystander_tokens = tokens_of(&bystander_reply);
    let account = svc.create_account();
    let first = svc.sign_in(&account);
    let other = svc.sign_in(&account);
    // A password-only session: aal1, amr ["pwd"].
    assert_assurance(&first.access, "aal1", &["pwd"]);
    assert!(!mfa_enabled(&svc, &first.access));
    // The admin's view of the user, taken along the way and checked at the
    // end (so that the rest of the flow is checked whatever it shows).
    let detail = || {
        let reply = svc
            .get(&format!("/admin/users/{}", account.id))
            .access_cookie(&admin.access)
            .send();
        reply.expect_status(200);
        reply.json()["user"].clone()
    };
    let mut admin_views = vec![("before enrolling", detail())];

    // Enrol.
    let reply = svc.mfa_enroll(&first.access);
    reply.expect_status(200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_security_headers(&reply);
    assert_no_cookies(&reply);
    let body = reply.json();
    let secret = body["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "a 20-byte secret in base32: {secret:?}");
    assert!(
        secret
            .chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)),
        "not unpadded base32: {secret:?}"
    );
    check_otpauth_uri(
        body["otpauthUri"].as_str().unwrap(),
        "Latch",
        &account.email,
        secret,
    );
    assert!(
        body["qrSvg"].as_str().is_some_and(|s| s.contains("<svg")),
        "{reply}"
    );
    let mut authenticator = Authenticator::from_base32(secret);
    assert_eq!(authenticator.secret_bytes().len(), 20);
    // Stored sealed: neither the secret nor its bytes are in the row.
    let raw_hex = hex_of(&authenticator.secret_bytes());
    let stored = row_texts(
        &svc,
        &format!("SELECT * FROM mfa_factors WHERE user_id = '{}'", account.id),
    );
    assert!(!stored.is_empty(), "no mfa_factors row");
    for text in &stored {
        assert!(
            !text.contains(secret) && !text.to_ascii_lowercase().contains(&raw_hex),
            "the secret is stored in the clear"
        );
    }
    // Pending: sign-in does not ask for it, the profile does not show it.
    let pending = svc.sign_in(&account);
    assert!(!mfa_enabled(&svc, &first.access));
    admin_views.push(("pending", detail()));

    // Confirm: ten recovery codes, every other session of the user revoked.
    let reply = svc.mfa_confirm(&first.access, &authenticator.fresh_code());
    assert_security_headers(&reply);
    assert_no_cookies(&reply);
    let codes = recovery_codes(&reply);
    for ended in [&other, &pending] {
        assert_problem(&svc.refresh(&ended.refresh), 401);
        assert_problem(&svc.profile(&ended.access), 401);
    }
    // The confirming session stays, still aal1, and so does everyone else's.
    assert!(mfa_enabled(&svc, &first.access));
    svc.profile(&bystander_tokens.access).expect_status(200);
    let refreshed = svc.refresh(&first.refresh);
    refreshed.expect_status(200);
    assert_assurance(&tokens_of(&refreshed).access, "aal1", &["pwd"]);
    admin_views.push(("confirmed", detail()));
    // Only hashes of the codes are stored.
    let db = svc.db();
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = '{}' AND used_at IS NULL",
                account.id
            )
        ),
        10
    );
    for code in &codes {
        let bare = code.replace('-', "");
        assert_eq!(
            count(
                &db,
                &format!(
                    "SELECT count(*) FROM mfa_recovery_codes WHERE hash LIKE '%{code}%' OR hash LIKE '%{bare}%'"
                )
            ),
            0,
            "a recovery code is stored in the clear"
        );
    }
    sign_out(&svc, &tokens_of(&refreshed).access);

    // Signing in now takes two steps: the password gives a challenge and no cookie.
    let reply = svc.signin(&account.email, &account.password);
    reply.expect_status(200);
    assert_security_headers(&reply);
    assert_no_cookies(&reply);
    let body = reply.json();
    assert_eq!(body["mfaRequired"], true, "{reply}");
    let challenge = body["challenge"].as_str().unwrap().to_string();
    assert!(!challenge.is_empty());
    for member in ["accessToken", "refreshToken", "user"] {
        assert!(body.get(member).is_none(), "`{member}` in {reply}");
    }

    // The code opens the session: sign-in's answer, at aal2.
    let reply = svc.mfa_verify(&challenge, &authenticator.fresh_code());
    reply.expect_status(200);
    assert_security_headers(&reply);
    let body = reply.json();
    let plain = bystander_reply.json();
    assert_eq!(body["message"], plain["message"], "{reply}");
    assert_eq!(
        body["user"],
        json!({"id": account.id, "email": account.email, "fullName": account.full_name}),
        "{reply}"
    );
    for name in ["token", "refreshToken"] {
        let attributes = |reply: &Reply| {
            let mut cookie = reply.set_cookie(name);
            cookie.attributes.retain(|(n, _)| n != "expires");
            cookie.attributes
        };
        assert_eq!(
            attributes(&reply),
            attributes(&bystander_reply),
            "{name} cookie"
        );
    }
    let tokens = tokens_of(&reply);
    assert_assurance(&tokens.access, "aal2", &["pwd", "otp"]);
    let (_, claims) = jwt_parts(&tokens.access).unwrap();
    let (_, plain_claims) = jwt_parts(&bystander_tokens.access).unwrap();
    assert_eq!(claims["sub"], account.id.as_str());
    let names = |c: &Value| c.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&claims), names(&plain_claims), "the same claims");
    assert!(mfa_enabled(&svc, &tokens.access));
    // Refresh keeps the session's assurance.
    let reply = svc.refresh(&tokens.refresh);
    reply.expect_status(200);
    let renewed = tokens_of(&reply);
    assert_assurance(&renewed.access, "aal2", &["pwd", "otp"]);
    assert_eq!(
        session_id_of(&renewed.access),
        session_id_of(&tokens.access)
    );
    assert_eq!(live_sessions(&svc, &account.id), 1);

    // The audit trail.
    assert_eq!(audit_rows(&svc, &account.id, "mfa_enrolled", None), 1);
    assert_eq!(audit_rows(&svc, &account.id, "mfa_verified", None), 1);
    assert_eq!(
        audit_rows(&svc, &account.id, "signin", Some("mfa_required")),
        1
    );
    svc.wait_for_audit("mfa_verified", |lines| {
        lines
            .iter()
            .any(|l| l["event"] == "mfa_verified" && l["outcome"] == "success")
    });
    assert_no_violations(&svc);

    // GET /admin/users/{id}: `mfa: {enabled, confirmedAt}`.
    for (what, user) in &admin_views {
        let mfa = &user["mfa"];
        assert!(mfa.is_object(), "{what}: no user.mfa object in {user}");
        if *what == "confirmed" {
            assert_eq!(mfa["enabled"], true, "{what}: {user}");
            let confirmed_at = mfa["confirmedAt"].as_str().unwrap_or("");
            assert!(
                confirmed_at.contains('T'),
                "{what}: confirmedAt {confirmed_at:?} is not RFC 3339"
            );
        } else {
            assert_eq!(
                *mfa,
                json!({"enabled": false, "confirmedAt": null}),
                "{what}: {user}"
            );
        }
    }
}

// --- refusals ------------------------------------------------------------------------

fn wrong_replayed_and_out_of_window_codes_are_refused(backend: Backend) {
    let svc = Service::start_default(backend);
    let (account, _, mut authenticator, _) = account_with_factor(&svc);
    let challenge = svc.mfa_challenge(&account);

    // Wrong, and a genuine code from three steps ago: one answer.
    let wrong = assert_invalid_code(
        "wrong code",
        &svc.mfa_verify(&challenge, &authenticator.wrong_code()),
    );
    let old = assert_invalid_code(
        "code from three steps back",
        &svc.mfa_verify(&challenge, &authenticator.code_steps_back(3)),
    );
    assert_eq!(wrong, old);
    // The challenge stays usable.
    let code = authenticator.fresh_code();
    let reply = svc.mfa_verify(&challenge, &code);
    reply.expect_status(200);
    assert_assurance(&tokens_of(&reply).access, "aal2", &["pwd", "otp"]);

    // The same code again, with a new challenge: a replay.
    let again = svc.mfa_challenge(&account);
    let replayed = assert_invalid_code("replayed code", &svc.mfa_verify(&again, &code));
    assert_eq!(replayed, wrong);
    svc.mfa_verify(&again, &authenticator.fresh_code())
        .expect_status(200);

    assert_eq!(audit_rows(&svc, &account.id, "mfa_failed", None), 3);
    assert_eq!(
        audit_rows(&svc, &account.id, "mfa_failed", Some("replayed_code")),
        1
    );
    assert!(audit_rows(&svc, &account.id, "mfa_failed", Some("wrong_code")) >= 1);
    assert_eq!(audit_rows(&svc, &account.id, "mfa_verified", None), 2);
    assert_eq!(live_sessions(&svc, &account.id), 3);
    assert_no_violations(&svc);
}

fn a_recovery_code_works_once(backend: Backend) {
    let svc = Service::start_default(backend);
    let (account, _, _, codes) = account_with_factor(&svc);

    let challenge = svc.mfa_challenge(&account);
    let reply = svc.mfa_verify_recovery(&challenge, &codes[0]);
    reply.expect_status(200);
    let tokens = tokens_of(&reply);
    assert_assurance(&tokens.access, "aal2", &["pwd", "recovery"]);
    let renewed = svc.refresh(&tokens.refresh);
    renewed.expect_status(200);
    assert_assurance(&tokens_of(&renewed).access, "aal2", &["pwd", "recovery"]);

    // Used: refused, and the challenge stays usable for another code.
    let challenge = svc.mfa_challenge(&account);
    assert_invalid_code(
        "used recovery code",
        &svc.mfa_verify_recovery(&challenge, &codes[0]),
    );
    assert_invalid_code(
        "made-up recovery code",
        &svc.mfa_verify_recovery(&challenge, "AAAA-BBBB-CCCC"),
    );
    svc.mfa_verify_recovery(&challenge, &codes[1])
        .expect_status(200);

    // Exactly one of code and recoveryCode, and a challenge.
    let challenge = svc.mfa_challenge(&account);
    for body in [
        json!({"challenge": challenge, "code": "123456", "recoveryCode": codes[2]}),
        json!({"challenge": challenge}),
        json!({"code": "123456"}),
        json!({}),
    ] {
        let reply = svc.post("/auth/mfa/verify").json(&body).send();
        let problem = assert_problem(&reply, 400);
        assert_ne!(problem["code"], "invalid_mfa_code", "{body}: {reply}");
        assert_no_cookies(&reply);
    }
    // None of those spent the challenge or the code.
    svc.mfa_verify_recovery(&challenge, &codes[2])
        .expect_status(200);

    let db = svc.db();
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = '{}' AND used_at IS NOT NULL",
                account.id
            )
        ),
        3
    );
    assert_eq!(audit_rows(&svc, &account.id, "recovery_code_used", None), 3);
    assert_eq!(
        audit_rows(&svc, &account.id, "mfa_verified", Some("recovery_code")),
        3
    );
    assert_eq!(
        audit_rows(&svc, &account.id, "mfa_failed", Some("wrong_recovery_code")),
        2
    );
    assert_no_violations(&svc);
}

fn regenerated_recovery_codes_replace_the_old_ones(backend: Backend) {
    let svc = Service::start_default(backend);
    let (account, enrolment, mut authenticator, old) = account_with_factor(&svc);

    assert_problem(&regenerate(&svc, "", &json!({"code": "123456"})), 401);
    assert_invalid_code(
        "wrong code",
        &regenerate(
            &svc,
            &enrolment.access,
            &json!({"code": authenticator.wrong_code()}),
        ),
    );
    // A TOTP code only.
    let reply = regenerate(&svc, &enrolment.access, &json!({"recoveryCode": old[0]}));
    assert_problem(&reply, 400);
    let reply = regenerate(
        &svc,
        &enrolment.access,
        &json!({"code": authenticator.fresh_code()}),
    );
    assert_no_cookies(&reply);
    let new = recovery_codes(&reply);
    assert!(new.iter().all(|c| !old.contains(c)), "{new:?} {old:?}");
    assert_eq!(
        audit_rows(&svc, &account.id, "recovery_codes_regenerated", None),
        1
    );

    // The old codes stopped working, the new ones work.
    let challenge = svc.mfa_challenge(&account);
    assert_invalid_code(
        "an old recovery code",
        &svc.mfa_verify_recovery(&challenge, &old[1]),
    );
    let reply = svc.mfa_verify_recovery(&challenge, &new[0]);
    reply.expect_status(200);
    assert_assurance(&tokens_of(&reply).access, "aal2", &["pwd", "recovery"]);

    // Without a factor: 404.
    let plain = svc.create_account();
    let tokens = svc.sign_in(&plain);
    assert_coded(
        "no factor",
        &regenerate(&svc, &tokens.access, &json!({"code": "123456"})),
        404,
        "mfa_not_enabled",
    );
    assert_no_violations(&svc);
}

fn enrolment_and_confirmation_refusals(backend: Backend) {
    let svc = Service::start_default(backend);
    // No session: 401 on every authenticated MFA route.
    for (method, path, body) in [
        ("POST", "/auth/mfa/totp/enroll", None),
        (
            "POST",
            "/auth/mfa/totp/confirm",
            Some(json!({"code": "123456"})),
        ),
        ("DELETE", "/auth/mfa/totp", Some(json!({"code": "123456"}))),
        (
            "POST",
            "/auth/mfa/recovery-codes",
            Some(json!({"code": "123456"})),
        ),
    ] {
        for token in [None, Some("not.a.token")] {
            let mut call = svc.call(method, path);
            if let Some(token) = token {
                call = call.access_cookie(token);
            }
            if let Some(body) = &body {
                call = call.json(body);
            }
            assert_problem(&call.send(), 401);
        }
    }

    // Nothing pending; no factor to remove (another account: whether such
    // refusals count towards the lock-out is only_wrong_codes_count_...'s).
    let bare = svc.create_account();
    let bare_tokens = svc.sign_in(&bare);
    assert_coded(
        "confirm before enrolling",
        &svc.mfa_confirm(&bare_tokens.access, "123456"),
        409,
        "mfa_not_pending",
    );
    assert_coded(
        "remove without a factor",
        &remove(&svc, &bare_tokens.access, &json!({"code": "123456"})),
        404,
        "mfa_not_enabled",
    );

    let account = svc.create_account();
    let tokens = svc.sign_in(&account);

    // A new enrolment replaces a pending one (`{}` is a body enrol takes).
    let (first, _) = svc.start_mfa(&tokens.access);
    let reply = svc
        .post("/auth/mfa/totp/enroll")
        .access_cookie(&tokens.access)
        .json(&json!({}))
        .send();
    reply.expect_status(200);
    let mut second = Authenticator::from_base32(reply.json()["secret"].as_str().unwrap());
    assert_ne!(first.secret, second.secret);
    assert_eq!(
        count(
            &svc.db(),
            &format!(
                "SELECT count(*) FROM mfa_factors WHERE user_id = '{}'",
                account.id
            )
        ),
        1
    );
    let mut first = first;
    assert_invalid_code(
        "a code of the replaced secret",
        &svc.mfa_confirm(&tokens.access, &first.fresh_code()),
    );
    // Malformed codes: the same answer.
    for malformed in ["12345", "abcdef"] {
        assert_invalid_code(malformed, &svc.mfa_confirm(&tokens.access, malformed));
    }
    // No code at all: a validation error.
    let reply = svc
        .post("/auth/mfa/totp/confirm")
        .access_cookie(&tokens.access)
        .json(&json!({}))
        .send();
    let problem = assert_problem(&reply, 400);
    assert_ne!(problem["code"], "invalid_mfa_code", "{reply}");
    assert_eq!(
        audit_rows(&svc, &account.id, "mfa_failed", None),
        3,
        "every wrong code is recorded"
    );

    recovery_codes(&svc.mfa_confirm(&tokens.access, &second.fresh_code()));
    // Active: enrolling again is refused, and so is confirming again.
    assert_coded(
        "enrol with an active factor",
        &svc.mfa_enroll(&tokens.access),
        409,
        "mfa_already_enabled",
    );
    // The spec names mfa_not_pending for "nothing pending"; an active factor
    // may also be told apart as mfa_already_enabled: both are 409.
    let reply = svc.mfa_confirm(&tokens.access, &second.peek_code());
    let problem = assert_problem(&reply, 409);
    assert!(
        problem["code"] == "mfa_not_pending" || problem["code"] == "mfa_already_enabled",
        "{reply}"
    );
    // The factor is the second secret's.
    svc.mfa_verify(&svc.mfa_challenge(&account), &second.fresh_code())
        .expect_status(200);
    assert_no_violations(&svc);
}

fn repeated_wrong_codes_lock_the_codes_out(backend: Backend) {
    let svc = Service::start_default(backend);
    let (account, enrolment, mut authenticator, codes) = account_with_factor(&svc);
    let challenge = svc.mfa_challenge(&account);
    for i in 0..5 {
        assert_invalid_code(
            &format!("wrong code {i}"),
            &svc.mfa_verify(&challenge, &authenticator.wrong_code()),
        );
    }
    // Locked: even the right code is refused, with Retry-After.
    let good = authenticator.peek_code();
    let check_locked = |what: &str, reply: &Reply| {
        assert_problem(reply, 429);
        assert_no_cookies(reply);
        let retry: u64 = reply
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no Retry-After in seconds: {reply}"));
        assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
    };
    check_locked("right code", &svc.mfa_verify(&challenge, &good));
    check_locked(
        "recovery code",
        &svc.mfa_verify_recovery(&challenge, &codes[0]),
    );
    // The lock is the user's, shared by the routes that take codes.
    check_locked(
        "recovery-codes",
        &regenerate(&svc, &enrolment.access, &json!({"code": good})),
    );
    let key = format!("mfa:{}", account.id);
    let (failures, locked_until): (i64, i64) = svc
        .db()
        .query_row(
            "SELECT failures, locked_until FROM throttle WHERE key = ?1",
            [&key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or_else(|e| panic!("no throttle row {key}: {e}"));
    assert!(failures >= 5, "{failures} failures");
    assert!(locked_until > now_secs(), "locked until {locked_until}");
    assert!(
        count(
            &svc.db(),
            &format!(
                "SELECT count(*) FROM audit_events WHERE event = 'lockout' AND user_id = '{}'",
                account.id
            )
        ) >= 1
    );
    // The password step is not what is locked.
    svc.mfa_challenge(&account);

    // Once the lock is over (lifted here), the challenge still works.
    svc.db()
        .execute(
            "UPDATE throttle SET failures = 0, locked_until = 0 WHERE key = ?1",
            [&key],
        )
        .unwrap();
    let reply = svc.mfa_verify(&challenge, &authenticator.fresh_code());
    reply.expect_status(200);
    assert_no_violations(&svc);
}

/// The lock-out counts wrong codes (5 in 15 minutes); refusals that look
/// at no code are not wrong codes.
fn only_wrong_codes_count_towards_the_lock_out(backend: Backend) {
    let svc = Service::start_default(backend);
    let (account, enrolment, mut authenticator, _) = account_with_factor(&svc);
    let challenge = svc.mfa_challenge(&account);
    for i in 0..4 {
        assert_invalid_code(
            &format!("wrong code {i}"),
            &svc.mfa_verify(&challenge, &authenticator.wrong_code()),
        );
    }
    // Refused before any code is checked: step-up (twice), nothing pending.
    for _ in 0..2 {
        assert_coded(
            "removal at aal1",
            &remove(
                &svc,
                &enrolment.access,
                &json!({"code": authenticator.peek_code()}),
            ),
            403,
            "aal2_required",
        );
    }
    assert_problem(
        &svc.mfa_confirm(&enrolment.access, &authenticator.peek_code()),
        409,
    );
    // Unknown challenges either.
    assert_invalid_challenge(
        "unknown challenge",
        &svc.mfa_verify(
            &format!("{}.{}", account.id, b64url_encode(&[5u8; 32])),
            &authenticator.peek_code(),
        ),
    );
    let reply = svc.mfa_verify(&challenge, &authenticator.fresh_code());
    assert_eq!(
        reply.status, 200,
        "four wrong codes and four refusals that checked no code (403 aal2_required x2, \
         409, 400 invalid_challenge) locked the codes out: {reply}"
    );
    assert_eq!(
        audit_rows(&svc, &account.id, "mfa_failed", None),
        4,
        "only wrong codes are recorded as mfa_failed"
    );
    assert_no_violations(&svc);
}

fn a_challenge_works_once(backend: Backend) {
    let svc = Service::start_default(backend);
    let (account, _, mut authenticator, codes) = account_with_factor(&svc);
    let challenge = svc.mfa_challenge(&account);
    svc.mfa_verify(&challenge, &authenticator.fresh_code())
        .expect_status(200);
    // Used: refused whatever the code.
    let used = assert_invalid_challenge(
        "used challenge",
        &svc.mfa_verify(&challenge, &authenticator.peek_code()),
    );
    assert_invalid_challenge(
        "used challenge, recovery code",
        &svc.mfa_verify_recovery(&challenge, &codes[0]),
    );

    // Unknown challenges: the same answer.
    let (user_part, random_part) = challenge.split_once('.').unwrap_or(("", &challenge));
    let mut flipped = random_part.to_string();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        format!("{user_part}.{}", b64url_encode(&[7u8; 32])),
        format!("{user_part}.{flipped}"),
        format!("{}.{random_part}", b64url_encode(&[1u8; 16])),
        "garbage".to_string(),
        format!("{challenge}x"),
    ] {
        let body = assert_invalid_challenge(&bad, &svc.mfa_verify(&bad, "123456"));
        assert_eq!(body, used, "{bad}");
    }
    // Another user's challenge does not take this user's codes.
    let (other, _, _, _) = account_with_factor(&svc);
    let theirs = svc.mfa_challenge(&other);
    assert_invalid_code(
        "a code of another user's factor",
        &svc.mfa_verify(&theirs, &authenticator.peek_code()),
    );
    assert_invalid_code(
        "a recovery code of another user",
        &svc.mfa_verify_recovery(&theirs, &codes[0]),
    );
    assert_eq!(live_sessions(&svc, &other.id), 1, "only the enrolment's");
    assert_no_violations(&svc);
}

fn a_challenge_expires(backend: Backend) {
    let svc = Options::new(backend)
        .var("mfa_challenge_ttl_seconds", "1")
        .start();
    let (account, _, mut authenticator, codes) = account_with_factor(&svc);
    let asked = Instant::now();
    let challenge = svc.mfa_challenge(&account);
    let expires_at: i64 = svc
        .db()
        .query_row(
            "SELECT expires_at FROM mfa_challenges WHERE user_id = ?1",
            [&account.id],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        expires_at <= now_secs() + 1,
        "the challenge expires at {expires_at}, more than 1 s from now"
    );
    if let Some(left) = Duration::from_millis(2200).checked_sub(asked.elapsed()) {
        std::thread::sleep(left);
    }
    let expired = assert_invalid_challenge(
        "expired challenge",
        &svc.mfa_verify(&challenge, &authenticator.fresh_code()),
    );
    assert_invalid_challenge(
        "expired challenge, recovery code",
        &svc.mfa_verify_recovery(&challenge, &codes[0]),
    );
    let unknown = assert_invalid_challenge(
        "unknown challenge",
        &svc.mfa_verify("garbage", &authenticator.fresh_code()),
    );
    assert_eq!(expired, unknown);
    assert_eq!(live_sessions(&svc, &account.id), 1, "only the enrolment's");
    assert_no_violations(&svc);
}

fn racing_verifications_of_one_challenge_open_one_session(backend: Backend) {
    let svc = Service::start_default(backend);
    if backend == Backend::Cloud {
        // Hold each batch's commit open a little, so the racers do overlap.
        svc.standin().configure(&json!({"commit_gap_ms": 30}));
    }
    let (account, enrolment, mut authenticator, _) = account_with_factor(&svc);
    sign_out(&svc, &enrolment.access);
    let challenge = svc.mfa_challenge(&account);
    let code = authenticator.fresh_code();
    const RACERS: usize = 8;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(RACERS));
    let threads: Vec<_> = (0..RACERS)
        .map(|_| {
            let call = svc
                .post("/auth/mfa/verify")
                .json(&json!({"challenge": challenge, "code": code}));
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                call.send()
            })
        })
        .collect();
    let replies: Vec<Reply> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "{statuses:?}");
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_no_cookies(reply);
        // Losers see the challenge used or the code spent; their failures
        // may also lock the codes out for the last ones.
        if reply.status == 429 {
            assert_problem(reply, 429);
            continue;
        }
        let problem = assert_problem(reply, 400);
        assert!(
            problem["code"] == "invalid_challenge" || problem["code"] == "invalid_mfa_code",
            "{reply}"
        );
    }
    let tokens = tokens_of(winners[0]);
    let listed = svc
        .get("/auth/sessions")
        .access_cookie(&tokens.access)
        .send();
    listed.expect_status(200);
    let sessions = listed.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1, "{listed}");
    assert_eq!(sessions[0]["id"], session_id_of(&tokens.access).as_str());
    assert_eq!(live_sessions(&svc, &account.id), 1);
    assert_eq!(
        count(
            &svc.db(),
            &format!(
                "SELECT count(*) FROM audit_events WHERE event = 'mfa_verified' \
                 AND outcome = 'success' AND user_id = '{}'",
                account.id
            )
        ),
        1
    );
    assert_no_violations(&svc);
}

// --- step-up and removal ----------------------------------------------------------

fn step_up_needs_a_session_with_the_second_factor(backend: Backend) {
    let svc = Service::start_default(backend);
    let mut account = svc.create_account();
    // Signed in before enrolling: this session stays aal1.
    let first = svc.sign_in(&account);
    let (mut authenticator, _) = svc.enable_mfa(&first.access);
    assert_assurance(&first.access, "aal1", &["pwd"]);

    let new_password = latch_e2e::unique_password();
    assert_coded(
        "password change at aal1",
        &change_password(&svc, &first.access, &account.password, &new_password),
        403,
        "aal2_required",
    );
    // The session is refused before the code is looked at (or spent).
    assert_coded(
        "removal at aal1",
        &remove(
            &svc,
            &first.access,
            &json!({"code": authenticator.peek_code()}),
        ),
        403,
        "aal2_required",
    );
    // Nothing changed.
    assert!(mfa_enabled(&svc, &first.access));
    svc.mfa_challenge(&account);

    // A session that presented the factor may do both.
    let second = svc.sign_in_mfa(&account, &mut authenticator);
    change_password(&svc, &second.access, &account.password, &new_password).expect_status(200);
    account.password = new_password;
    assert_invalid_code(
        "removal with a wrong code",
        &remove(
            &svc,
            &second.access,
            &json!({"code": authenticator.wrong_code()}),
        ),
    );
    let reply = remove(
        &svc,
        &second.access,
        &json!({"code": authenticator.fresh_code()}),
    );
    reply.expect_status(200);
    assert!(reply.json()["message"].is_string(), "{reply}");
    assert!(!mfa_enabled(&svc, &second.access));
    let db = svc.db();
    for table in ["mfa_factors", "mfa_recovery_codes"] {
        assert_eq!(
            count(
                &db,
                &format!(
                    "SELECT count(*) FROM {table} WHERE user_id = '{}'",
                    account.id
                )
            ),
            0,
            "{table}"
        );
    }
    assert_eq!(audit_rows(&svc, &account.id, "mfa_removed", None), 1);
    // Sign-in is one step again, at aal1; without a factor there is no step-up.
    let plain = svc.sign_in(&account);
    assert_assurance(&plain.access, "aal1", &["pwd"]);
    assert_coded(
        "removal without a factor",
        &remove(&svc, &plain.access, &json!({"code": "123456"})),
        404,
        "mfa_not_enabled",
    );
    let newer = latch_e2e::unique_password();
    change_password(&svc, &plain.access, &account.password, &newer).expect_status(200);
    account.password = newer;

    // Enrolled again, removed with a recovery code.
    let plain = svc.sign_in(&account);
    let (mut authenticator, codes) = svc.enable_mfa(&plain.access);
    let stepped = svc.sign_in_mfa(&account, &mut authenticator);
    let reply = remove(&svc, &stepped.access, &json!({"recoveryCode": codes[0]}));
    reply.expect_status(200);
    assert!(!mfa_enabled(&svc, &stepped.access));
    assert_eq!(audit_rows(&svc, &account.id, "mfa_removed", None), 2);
    assert_eq!(audit_rows(&svc, &account.id, "recovery_code_used", None), 1);
    assert_no_violations(&svc);
}

fn step_up_routes_are_configurable(backend: Backend) {
    let svc = Options::new(backend)
        .var("step_up_routes", "/auth/mfa/totp")
        .start();
    let mut account = svc.create_account();
    let first = svc.sign_in(&account);
    let (mut authenticator, _) = svc.enable_mfa(&first.access);
    // The password change is no longer listed: aal1 may.
    let new_password = latch_e2e::unique_password();
    change_password(&svc, &first.access, &account.password, &new_password).expect_status(200);
    account.password = new_password;
    // Removal still is.
    assert_coded(
        "removal at aal1",
        &remove(
            &svc,
            &first.access,
            &json!({"code": authenticator.wrong_code()}),
        ),
        403,
        "aal2_required",
    );
    let stepped = svc.sign_in_mfa(&account, &mut authenticator);
    remove(
        &svc,
        &stepped.access,
        &json!({"code": authenticator.fresh_code()}),
    )
    .expect_status(200);
    assert_no_violations(&svc);
}

// --- the QR code -------------------------------------------------------------------

/// A greyscale image: 0 is dark, 255 light.
struct Raster {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

/// The SVG user-space box: (min x, min y, width, height).
fn view_box(svg: &roxmltree::Node<'_, '_>) -> (f64, f64, f64, f64) {
    if let Some(text) = svg.attribute("viewBox") {
        let numbers: Vec<f64> = text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(|n| n.parse().unwrap_or_else(|_| panic!("viewBox {text:?}")))
            .collect();
        assert_eq!(numbers.len(), 4, "viewBox {text:?}");
        return (numbers[0], numbers[1], numbers[2], numbers[3]);
    }
    let length = |name: &str| -> f64 {
        let text = svg
            .attribute(name)
            .unwrap_or_else(|| panic!("an <svg> without viewBox nor {name}"));
        text.trim_end_matches("px")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?}"))
    };
    (0.0, 0.0, length("width"), length("height"))
}

/// The paint of an element: `Some(0)` dark, `Some(255)` light, `None` for
/// `fill="none"`. SVG's default fill is black; fill is inherited.
fn shade_of(node: &roxmltree::Node<'_, '_>) -> Option<u8> {
    let fill = node
        .ancestors()
        .find_map(|n| n.attribute("fill"))
        .unwrap_or("black")
        .trim()
        .to_ascii_lowercase();
    let rgb: (u32, u32, u32) = match fill.as_str() {
        "none" | "transparent" => return None,
        "black" => (0, 0, 0),
        "white" => (255, 255, 255),
        hex if hex.starts_with('#') && hex.len() == 4 => {
            let digit = |i: usize| u32::from_str_radix(&hex[i..=i], 16).unwrap() * 17;
            (digit(1), digit(2), digit(3))
        }
        hex if hex.starts_with('#') && hex.len() == 7 => {
            let pair = |i: usize| u32::from_str_radix(&hex[i..i + 2], 16).unwrap();
            (pair(1), pair(3), pair(5))
        }
        other => panic!("a fill this test does not read: {other:?}"),
    };
    let luminance = (299 * rgb.0 + 587 * rgb.1 + 114 * rgb.2) / 1000;
    Some(if luminance < 128 { 0 } else { 255 })
}

/// The closed polygons of a path's `d` (straight segments only: M L H V Z,
/// absolute or relative, which is what a QR code's modules are made of).
fn path_polygons(d: &str) -> Vec<Vec<(f64, f64)>> {
    #[derive(Debug)]
    enum Token {
        Command(char),
        Number(f64),
    }
    let mut tokens = Vec::new();
    let chars: Vec<char> = d.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || c == ',' {
            i += 1;
        } else if c.is_ascii_alphabetic() && c != 'e' && c != 'E' {
            tokens.push(Token::Command(c));
            i += 1;
        } else {
            let start = i;
            if chars[i] == '-' || chars[i] == '+' {
                i += 1;
            }
            let mut seen_dot = false;
            while i < chars.len() && (chars[i].is_ascii_digit() || (chars[i] == '.' && !seen_dot)) {
                seen_dot |= chars[i] == '.';
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                i += 1;
                if i < chars.len() && (chars[i] == '-' || chars[i] == '+') {
                    i += 1;
                }
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().collect();
            let number = text
                .parse()
                .unwrap_or_else(|_| panic!("a number {text:?} in the path {d:?}"));
            tokens.push(Token::Number(number));
        }
    }

    let mut polygons = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    let (mut x, mut y) = (0.0, 0.0);
    let (mut start_x, mut start_y) = (0.0, 0.0);
    let mut command = None;
    let mut k = 0;
    let number = |k: &mut usize| -> f64 {
        match tokens.get(*k) {
            Some(Token::Number(n)) => {
                *k += 1;
                *n
            }
            other => panic!("a number expected in {d:?}, found {other:?}"),
        }
    };
    while k < tokens.len() {
        if let Token::Command(c) = tokens[k] {
            command = Some(c);
            k += 1;
            if c == 'Z' || c == 'z' {
                if current.len() > 1 {
                    polygons.push(std::mem::take(&mut current));
                }
                current.clear();
                x = start_x;
                y = start_y;
                command = None;
                continue;
            }
        }
        let Some(c) = command else {
            panic!("coordinates without a command in {d:?}")
        };
        match c {
            'M' | 'm' => {
                let (nx, ny) = (number(&mut k), number(&mut k));
                if c == 'm' {
                    x += nx;
                    y += ny;
                } else {
                    x = nx;
                    y = ny;
                }
                if current.len() > 1 {
                    polygons.push(std::mem::take(&mut current));
                }
                current = vec![(x, y)];
                start_x = x;
                start_y = y;
                // Further pairs are line-tos.
                command = Some(if c == 'm' { 'l' } else { 'L' });
            }
            'L' | 'l' => {
                let (nx, ny) = (number(&mut k), number(&mut k));
                if c == 'l' {
                    x += nx;
                    y += ny;
                } else {
                    x = nx;
                    y = ny;
                }
                current.push((x, y));
            }
            'H' => {
                x = number(&mut k);
                current.push((x, y));
            }
            'h' => {
                x += number(&mut k);
                current.push((x, y));
            }
            'V' => {
                y = number(&mut k);
                current.push((x, y));
            }
            'v' => {
                y += number(&mut k);
                current.push((x, y));
            }
            other => panic!("a path command this test does not draw: {other:?} in {d:?}"),
        }
    }
    if current.len() > 1 {
        polygons.push(current);
    }
    polygons
}

/// Paints `polygons` (pixel coordinates) with `shade`, nonzero or even-odd,
/// sampling each pixel at its centre.
fn fill(raster: &mut Raster, polygons: &[Vec<(f64, f64)>], even_odd: bool, shade: u8) {
    for row in 0..raster.height {
        let yc = row as f64 + 0.5;
        let mut crossings: Vec<(f64, i32)> = Vec::new();
        for polygon in polygons {
            for i in 0..polygon.len() {
                let (x0, y0) = polygon[i];
                let (x1, y1) = polygon[(i + 1) % polygon.len()];
                let direction = if y0 <= yc && y1 > yc {
                    1
                } else if y1 <= yc && y0 > yc {
                    -1
                } else {
                    continue;
                };
                crossings.push((x0 + (yc - y0) * (x1 - x0) / (y1 - y0), direction));
            }
        }
        crossings.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut winding = 0;
        for k in 0..crossings.len() {
            winding += crossings[k].1;
            let inside = if even_odd {
                winding % 2 != 0
            } else {
                winding != 0
            };
            if !inside || k + 1 == crossings.len() {
                continue;
            }
            let clamp = |v: f64| (v.max(0.0) as usize).min(raster.width);
            let from = clamp((crossings[k].0 - 0.5).ceil());
            let to = clamp((crossings[k + 1].0 - 0.5).ceil());
            for column in from..to {
                raster.pixels[row * raster.width + column] = shade;
            }
        }
    }
}

/// Draws the SVG of a QR code into a greyscale image: the elements a QR
/// renderer uses (rectangles and straight-edged paths, filled), in document
/// order; anything else is refused rather than misdrawn.
fn rasterise(svg: &str) -> Raster {
    let document =
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("qrSvg is not XML: {e}"));
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "svg", "the root element");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg"),
        "the SVG namespace"
    );
    let (min_x, min_y, box_width, box_height) = view_box(&root);
    assert!(box_width > 0.0 && box_height > 0.0);
    // Enough pixels per module for a reader, whatever the user units.
    let scale = (600.0 / box_width.min(box_height)).ceil().max(1.0);
    let width = (box_width * scale).round() as usize;
    let height = (box_height * scale).round() as usize;
    let mut raster = Raster {
        width,
        height,
        pixels: vec![255; width * height],
    };
    let to_pixels = |polygons: Vec<Vec<(f64, f64)>>| -> Vec<Vec<(f64, f64)>> {
        polygons
            .into_iter()
            .map(|p| {
                p.into_iter()
                    .map(|(x, y)| ((x - min_x) * scale, (y - min_y) * scale))
                    .collect()
            })
            .collect()
    };
    for node in root.descendants().filter(roxmltree::Node::is_element) {
        let name = node.tag_name().name();
        for unsupported in ["transform", "style", "clip-path", "mask"] {
            assert!(
                node.attribute(unsupported).is_none(),
                "<{name} {unsupported}=...> is not drawn by this test"
            );
        }
        let even_odd = node
            .ancestors()
            .find_map(|n| n.attribute("fill-rule"))
            .is_some_and(|r| r.trim() == "evenodd");
        match name {
            "svg" | "g" | "title" | "desc" | "metadata" => {}
            "rect" => {
                let Some(shade) = shade_of(&node) else {
                    continue;
                };
                let length = |attribute: &str, of: f64, default: Option<f64>| -> f64 {
                    match node.attribute(attribute) {
                        Some(text) if text.ends_with('%') => {
                            text.trim_end_matches('%').parse::<f64>().unwrap() / 100.0 * of
                        }
                        Some(text) => text
                            .trim_end_matches("px")
                            .parse()
                            .unwrap_or_else(|_| panic!("rect {attribute}={text:?}")),
                        None => default.unwrap_or_else(|| panic!("a rect without {attribute}")),
                    }
                };
                let x = length("x", box_width, Some(0.0))
                    + if node.attribute("x").is_some_and(|v| v.ends_with('%')) {
                        min_x
                    } else {
                        0.0
                    };
                let y = length("y", box_height, Some(0.0))
                    + if node.attribute("y").is_some_and(|v| v.ends_with('%')) {
                        min_y
                    } else {
                        0.0
                    };
                let w = length("width", box_width, None);
                let h = length("height", box_height, None);
                let polygon = vec![(x, y), (x + w, y), (x + w, y + h), (x, y + h)];
                fill(&mut raster, &to_pixels(vec![polygon]), false, shade);
            }
            "path" => {
                let Some(shade) = shade_of(&node) else {
                    continue;
                };
                let d = node.attribute("d").unwrap_or("");
                fill(&mut raster, &to_pixels(path_polygons(d)), even_odd, shade);
            }
            other => panic!("an element this test does not draw: <{other}>"),
        }
    }
    raster
}

/// What a QR reader finds in the SVG: exactly one code, decoded.
fn scan(svg: &str) -> String {
    let raster = rasterise(svg);
    let dark = raster.pixels.iter().filter(|p| **p == 0).count();
    assert!(
        dark > 0 && dark < raster.pixels.len(),
        "the drawing is blank or all dark"
    );
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(raster.width, raster.height, |x, y| {
            raster.pixels[y * raster.width + x]
        });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "QR codes found in the drawing");
    match grids[0].decode() {
        Ok((_, content)) => content,
        Err(e) => panic!("the QR code does not decode: {e:?}"),
    }
}

fn the_qr_code_scans_to_the_otpauth_uri(backend: Backend) {
    // An issuer that needs encoding, in the label and in the query.
    const ISSUER: &str = "Acme & Co";
    let svc = Options::new(backend).var("mfa_issuer", ISSUER).start();
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let (_, body) = svc.start_mfa(&tokens.access);
    let uri = body["otpauthUri"].as_str().unwrap();
    let secret = body["secret"].as_str().unwrap();
    check_otpauth_uri(uri, ISSUER, &account.email, secret);

    let scanned = scan(body["qrSvg"].as_str().unwrap());
    assert_eq!(scanned, uri, "the QR code holds another text");

    // An authenticator app's reading of the scanned URI (totp-rs's parser).
    let totp = totp_rs::Totp::from_url(&scanned)
        .unwrap_or_else(|e| panic!("totp-rs refuses the scanned URI: {e:?}"));
    assert_eq!(totp.issuer(), Some(ISSUER));
    assert_eq!(totp.account_name(), account.email);
    let mut scanned_authenticator = Authenticator::from_totp(totp, secret);
    assert_eq!(
        scanned_authenticator.secret_bytes(),
        Authenticator::from_base32(secret).secret_bytes()
    );
    // Its codes confirm the factor.
    recovery_codes(&svc.mfa_confirm(&tokens.access, &scanned_authenticator.fresh_code()));
    assert!(mfa_enabled(&svc, &tokens.access));
    assert_no_violations(&svc);
}

fn production_needs_an_encryption_key(backend: Backend) {
    {
        let svc = Options::new(backend).production().start();
        let account = svc.create_account();
        let tokens = svc.sign_in(&account);
        let reply = svc.mfa_enroll(&tokens.access);
        assert_problem(&reply, 503);
        assert_no_cookies(&reply);
        assert_problem(&svc.mfa_confirm(&tokens.access, "123456"), 503);
        assert_eq!(
            count(&svc.db(), "SELECT count(*) FROM mfa_factors"),
            0,
            "nothing stored without a key"
        );
    }
    // With a key (unpadded base64url) the routes work; with tokens_in_body,
    // verify puts the tokens in the body as sign-in does.
    let key = b64url_encode(&[0xfb; 32]);
    let svc = Options::new(backend)
        .production()
        .var("mfa_encryption_key", &key)
        .var("tokens_in_body", "true")
        .start();
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let (mut authenticator, _) = svc.enable_mfa(&tokens.access);
    let reply = svc.mfa_verify(&svc.mfa_challenge(&account), &authenticator.fresh_code());
    reply.expect_status(200);
    let body = reply.json();
    let cookies = tokens_of(&reply);
    assert_eq!(body["accessToken"], cookies.access.as_str(), "{reply}");
    assert_eq!(body["refreshToken"], cookies.refresh.as_str(), "{reply}");
    assert_assurance(&cookies.access, "aal2", &["pwd", "otp"]);
    assert!(!svc.output().contains(&key), "the key is in the log");
    assert_no_violations(&svc);
    drop(svc);

    // Standard base64 (with `+`, `/` and padding) of 32 bytes is a key too.
    let key = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode([0xfb; 32])
    };
    assert!(key.contains('+') && key.contains('/') && key.ends_with('='));
    let svc = Options::new(backend)
        .production()
        .var("mfa_encryption_key", &key)
        .start();
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let reply = svc.mfa_enroll(&tokens.access);
    assert_eq!(
        reply.status, 200,
        "mfa_encryption_key in standard base64 (the spec allows it): {reply}"
    );
    assert!(!svc.output().contains(&key), "the key is in the log");
    assert_no_violations(&svc);
}
