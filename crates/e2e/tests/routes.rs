//! Every route's success and error answers, against both backends: each
//! case is written once and runs as `embedded::<case>` and
//! `sqlitecloud::<case>`, each with its own service (and stand-in).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use latch_e2e::{
    Account, Backend, Options, Service, assert_cookies_cleared, assert_no_cookies, assert_problem,
    assert_security_headers, b64url, count, jwt_parts, jwt_verifies_with, now_secs, refresh_hash,
    session_id_of, throttle_key_for_email, tokens_of, unique_email, unique_password,
};
use serde_json::json;

latch_e2e::both_backends!(
    signup_creates_an_account_with_the_user_role,
    signup_lists_every_invalid_field,
    signup_treats_case_variants_of_an_email_as_duplicates,
    signin_sets_both_token_cookies,
    cookies_drop_secure_only_when_configured,
    signin_failures_are_indistinguishable,
    signin_rejects_malformed_input,
    long_passwords_are_compared_in_full,
    signin_locks_the_account_after_five_failures_and_the_lock_grows,
    refresh_rotates_both_tokens,
    refresh_token_reuse_revokes_the_session,
    refresh_rejects_missing_and_invalid_tokens_and_clears_cookies,
    signout_revokes_the_session_at_once,
    signout_without_a_valid_session_is_401,
    profile_get_and_put_with_the_old_name_alias,
    profile_requires_a_valid_access_token,
    password_change_revokes_every_other_session_at_once,
    password_change_rejects_bad_requests_and_locks_out_guessing,
    sessions_are_listed_and_revoked,
    jwks_publishes_the_key_that_signs_the_tokens,
    health_and_ready_answer,
    ready_is_503_on_an_unmigrated_database,
    production_without_a_signing_key_is_unavailable,
    a_signing_key_carrying_another_public_key_is_not_ready,
    production_with_a_signing_key,
    bearer_header_and_cookie_both_carry_the_access_token,
    token_types_cannot_be_swapped,
    access_and_refresh_tokens_expire,
    tokens_in_body_for_non_browser_clients,
    inactive_users_lose_access_at_once,
);

fn problem_without_ids(reply: &latch_e2e::Reply, status: u16) -> serde_json::Value {
    let mut body = assert_problem(reply, status);
    let object = body.as_object_mut().unwrap();
    assert!(
        object.remove("requestId").is_some(),
        "no requestId: {reply}"
    );
    object.remove("instance");
    body
}

fn error_fields(body: &serde_json::Value) -> Vec<String> {
    let mut fields: Vec<String> = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors[]: {body}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect();
    fields.sort();
    fields
}

// --- sign-up -----------------------------------------------------------------------

fn signup_creates_an_account_with_the_user_role(backend: Backend) {
    let svc = Service::start_default(backend);
    let email = unique_email("Mixed.Case");
    let password = unique_password();
    let sent = format!("  {}  ", email.to_uppercase());
    let reply = svc.signup(&sent, &password, "  Jane Doe  ");
    reply.expect_status(201);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_security_headers(&reply);
    assert_no_cookies(&reply);
    let body = reply.json();
    assert_eq!(body["message"], "User created successfully");
    let id = body["userId"].as_str().unwrap();
    assert!(!id.is_empty());

    let db = svc.db();
    let (stored_email, name, hash, active): (String, String, String, i64) = db
        .query_row(
            "SELECT email, full_name, password_hash, is_active FROM users WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        stored_email,
        email.to_lowercase(),
        "normalised: trimmed, lower-case"
    );
    assert_eq!(name, "Jane Doe");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(&password));
    assert_eq!(active, 1);
    let roles = count(
        &db,
        &format!(
            "SELECT count(*) FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
             WHERE ur.user_id = '{id}' AND r.name = 'user'"
        ),
    );
    assert_eq!(roles, 1);

    // The account works, with the email in any case.
    svc.signin(&email.to_lowercase(), &password)
        .expect_status(200);
}

fn signup_lists_every_invalid_field(backend: Backend) {
    let svc = Service::start_default(backend);

    let reply = svc.post("/auth/signup").json(&json!({})).send();
    let body = assert_problem(&reply, 400);
    assert_security_headers(&reply);
    assert_eq!(body["code"], "FST_ERR_VALIDATION");
    assert_eq!(error_fields(&body), ["email", "fullName", "password"]);
    assert!(
        body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["code"] == "required")
    );

    let reply = svc
        .post("/auth/signup")
        .json(&json!({"email": "not-an-email", "password": "short", "fullName": "J"}))
        .send();
    let body = assert_problem(&reply, 400);
    assert_eq!(error_fields(&body), ["email", "fullName", "password"]);

    // One bad field at a time: each named, with its own code.
    let cases = [
        (
            json!({"email": "a@b", "password": unique_password(), "fullName": "Jane Doe"}),
            "email",
            "invalid",
        ),
        (
            json!({"email": unique_email("x"), "password": "x".repeat(129), "fullName": "Jane Doe"}),
            "password",
            "too_long",
        ),
        (
            json!({"email": unique_email("x"), "password": "1234567", "fullName": "Jane Doe"}),
            "password",
            "too_short",
        ),
        (
            json!({"email": unique_email("x"), "password": "password", "fullName": "Jane Doe"}),
            "password",
            "common_password",
        ),
        (
            json!({"email": unique_email("x"), "password": unique_password(), "fullName": "   "}),
            "fullName",
            "required",
        ),
        (
            json!({"email": unique_email("x"), "password": unique_password(), "fullName": "n".repeat(101)}),
            "fullName",
            "too_long",
        ),
        (
            json!({"email": unique_email("x"), "password": unique_password(), "fullName": "Eve\u{202e}lyn"}),
            "fullName",
            "invalid_characters",
        ),
        (
            json!({"email": "jane doe@example.com", "password": unique_password(), "fullName": "Jane"}),
            "email",
            "invalid_characters",
        ),
    ];
    for (request, field, code) in cases {
        let reply = svc.post("/auth/signup").json(&request).send();
        let body = assert_problem(&reply, 400);
        assert_eq!(error_fields(&body), [field], "{request}: {reply}");
        assert_eq!(body["errors"][0]["code"], code, "{request}: {reply}");
        assert!(
            body["detail"].as_str().unwrap().starts_with(field),
            "{reply}"
        );
    }
    // Nothing was created.
    assert_eq!(count(&svc.db(), "SELECT count(*) FROM users"), 0);
}

fn signup_treats_case_variants_of_an_email_as_duplicates(backend: Backend) {
    let svc = Service::start_default(backend);
    let email = unique_email("dup");
    svc.signup(&email, &unique_password(), "First Owner")
        .expect_status(201);
    for variant in [
        email.clone(),
        email.to_uppercase(),
        format!(" {} ", capitalise(&email)),
    ] {
        let reply = svc.signup(&variant, &unique_password(), "Second Owner");
        let body = assert_problem(&reply, 409);
        assert_security_headers(&reply);
        assert!(
            body["detail"].as_str().unwrap().contains("already exists"),
            "{reply}"
        );
    }
    let users = count(
        &svc.db(),
        &format!(
            "SELECT count(*) FROM users WHERE lower(email) = '{}'",
            email.to_lowercase()
        ),
    );
    assert_eq!(users, 1);
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

// --- sign-in -----------------------------------------------------------------------

fn signin_sets_both_token_cookies(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let reply = svc.signin(&account.email.to_uppercase(), &account.password);
    reply.expect_status(200);
    assert_security_headers(&reply);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    // Not behind TLS unless the deployment says so (`behind_tls`): no HSTS.
    assert_eq!(reply.header("strict-transport-security"), None, "{reply}");
    let body = reply.json();
    assert_eq!(body["message"], "Signed in successfully");
    assert_eq!(
        body["user"],
        json!({"id": account.id, "email": account.email, "fullName": account.full_name})
    );
    assert!(body.get("accessToken").is_none() && body.get("refreshToken").is_none());

    let access = reply.set_cookie("token");
    access.assert_token_attributes(true, 900);
    let refresh = reply.set_cookie("refreshToken");
    refresh.assert_token_attributes(true, 604_800);

    // The access token: an EdDSA JWT for this user and a new session.
    let (header, payload) = jwt_parts(&access.value).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    assert_eq!(payload["sub"], account.id.as_str());
    assert_eq!(payload["typ"], "access");
    assert_eq!(payload["roles"], json!(["user"]));
    assert_eq!(
        payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(),
        900
    );
    assert!(payload.get("email").is_none() || payload["email"] == account.email.as_str());

    // The refresh token: opaque, 32 random bytes; only its hash is stored.
    assert_eq!(refresh.value.len(), 43);
    assert_eq!(b64url(&refresh.value).unwrap().len(), 32);
    let db = svc.db();
    let sid = session_id_of(&access.value);
    let stored: String = db
        .query_row(
            "SELECT refresh_hash FROM sessions WHERE id = ?1",
            [&sid],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, refresh_hash(&refresh.value));
    let raw = count(
        &db,
        &format!(
            "SELECT count(*) FROM sessions WHERE refresh_hash = '{}'",
            refresh.value
        ),
    );
    assert_eq!(raw, 0, "the raw refresh token is stored");

    // The cookies work.
    svc.profile(&access.value).expect_status(200);
}

fn cookies_drop_secure_only_when_configured(backend: Backend) {
    let svc = Options::new(backend).var("cookie_secure", "false").start();
    let account = svc.create_account();
    let reply = svc.signin(&account.email, &account.password);
    reply.expect_status(200);
    reply
        .set_cookie("token")
        .assert_token_attributes(false, 900);
    reply
        .set_cookie("refreshToken")
        .assert_token_attributes(false, 604_800);
    assert_eq!(reply.header("strict-transport-security"), None, "{reply}");
    let tokens = tokens_of(&reply);

    let refreshed = svc.refresh(&tokens.refresh);
    refreshed.expect_status(200);
    refreshed
        .set_cookie("token")
        .assert_token_attributes(false, 900);
    refreshed
        .set_cookie("refreshToken")
        .assert_token_attributes(false, 604_800);
    let tokens = tokens_of(&refreshed);

    let out = svc
        .post("/auth/signout")
        .access_cookie(&tokens.access)
        .refresh_cookie(&tokens.refresh)
        .send();
    out.expect_status(200);
    assert_cookies_cleared(&out, false);

    // An answer made before any handler runs (a body over the limit) follows
    // the same settings: no HSTS where the service is not behind TLS.
    let huge = json!({"email": account.email, "password": "p".repeat(16 * 1024)});
    let refused = svc.post("/auth/signin").json(&huge).send();
    assert_problem(&refused, 413);
    assert_eq!(
        refused.header("strict-transport-security"),
        None,
        "{refused}"
    );
}

fn signin_failures_are_indistinguishable(backend: Backend) {
    let svc = Service::start_default(backend);
    let active = svc.create_account();
    let inactive = svc.create_account();
    svc.db()
        .execute(
            "UPDATE users SET is_active = 0 WHERE id = ?1",
            [&inactive.id],
        )
        .unwrap();

    let wrong_password = svc.signin(&active.email, &unique_password());
    let unknown_email = svc.signin(&unique_email("nobody"), &active.password);
    let inactive_user = svc.signin(&inactive.email, &inactive.password);
    let bodies: Vec<serde_json::Value> = [&wrong_password, &unknown_email, &inactive_user]
        .into_iter()
        .map(|reply| {
            assert_no_cookies(reply);
            assert_security_headers(reply);
            problem_without_ids(reply, 401)
        })
        .collect();
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[1], bodies[2]);
    assert_eq!(bodies[0]["detail"], "Invalid email or password");
    assert_eq!(
        wrong_password.header("content-type"),
        inactive_user.header("content-type")
    );

    // The audit trail knows the difference; the client does not.
    let db = svc.db();
    let reasons: Vec<String> = db
        .prepare("SELECT reason FROM audit_events WHERE event = 'signin' AND outcome = 'failure' ORDER BY reason")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        reasons,
        ["inactive_account", "unknown_email", "wrong_password"]
    );
    // The right password still works for the active account.
    svc.sign_in(&active);
}

fn signin_rejects_malformed_input(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (json!({}), "email"),
        (json!({"password": account.password}), "email"),
        (
            json!({"email": "not-an-email", "password": account.password}),
            "email",
        ),
        (json!({"email": account.email}), "password"),
    ];
    for (request, field) in cases {
        let reply = svc.post("/auth/signin").json(&request).send();
        let body = assert_problem(&reply, 400);
        assert_eq!(body["errors"][0]["field"], field, "{request}: {reply}");
        assert_no_cookies(&reply);
    }
    for raw in [
        "{",
        "[]",
        "null",
        "\"text\"",
        r#"{"email": 5, "password": "x"}"#,
    ] {
        let reply = svc
            .post("/auth/signin")
            .body("application/json", raw.as_bytes().to_vec())
            .send();
        assert_problem(&reply, 400);
    }
    let form = format!("email={}&password={}", account.email, account.password);
    let reply = svc
        .post("/auth/signin")
        .body("application/x-www-form-urlencoded", form.into_bytes())
        .send();
    assert_problem(&reply, 415);
    let reply = svc
        .post("/auth/signin")
        .body("", br#"{"email":"a@b.co","password":"x"}"#.to_vec())
        .send();
    assert_problem(&reply, 415);
    let huge = json!({"email": account.email, "password": "p".repeat(16 * 1024)});
    assert_problem(&svc.post("/auth/signin").json(&huge).send(), 413);
    // None of these counted as a failed attempt (the sign-up's own counter
    // per client address aside).
    assert_eq!(
        count(
            &svc.db(),
            "SELECT count(*) FROM throttle WHERE key NOT LIKE 'sgn-%'"
        ),
        0
    );
    svc.sign_in(&account);
}

fn long_passwords_are_compared_in_full(backend: Backend) {
    // bcrypt, in the old service, ignored everything past 72 bytes.
    let svc = Service::start_default(backend);
    let email = unique_email("long");
    let password = format!("{}-tail-one", "L".repeat(100));
    svc.signup(&email, &password, "Long Password")
        .expect_status(201);
    let same_prefix = format!("{}-tail-two", "L".repeat(100));
    assert_problem(&svc.signin(&email, &same_prefix), 401);
    assert_problem(&svc.signin(&email, &password[..72]), 401);
    svc.signin(&email, &password).expect_status(200);
    // Multi-byte characters count as characters: 128 of them are accepted.
    let email = unique_email("wide");
    let wide = "ü".repeat(128);
    svc.signup(&email, &wide, "Wide Password")
        .expect_status(201);
    svc.signin(&email, &wide).expect_status(200);
    assert_problem(&svc.signin(&email, &"ü".repeat(127)), 401);
}

fn signin_locks_the_account_after_five_failures_and_the_lock_grows(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let other = svc.create_account();
    let key = throttle_key_for_email(&account.email);
    for attempt in 1..=5 {
        let reply = svc.signin(&account.email, &format!("wrong-{attempt}-password"));
        assert_problem(&reply, 401);
    }
    let locked_until: i64 = svc
        .db()
        .query_row(
            "SELECT locked_until FROM throttle WHERE key = ?1",
            [&key],
            |r| r.get(0),
        )
        .unwrap();
    assert!(locked_until > now_secs(), "the fifth failure locks");

    // Locked: even the right password is refused, before it is checked.
    let reply = svc.signin(&account.email, &account.password);
    let body = assert_problem(&reply, 429);
    assert_security_headers(&reply);
    assert_no_cookies(&reply);
    let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "first lock is 60 s: {reply}");
    assert!(
        body["detail"].as_str().unwrap().contains("retry after"),
        "{reply}"
    );
    // The email's case does not open another counter.
    assert_problem(
        &svc.signin(&account.email.to_uppercase(), &account.password),
        429,
    );
    // Other accounts from the same address are not affected.
    svc.sign_in(&other);

    // When the lock ends, the next failure locks again, for twice as long.
    expire_lock(&svc, &key);
    assert_problem(&svc.signin(&account.email, "wrong-6-password"), 401);
    let reply = svc.signin(&account.email, &account.password);
    assert_problem(&reply, 429);
    let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((61..=120).contains(&retry), "second lock is 120 s: {reply}");

    // After the lock, the right password works and clears the counter.
    expire_lock(&svc, &key);
    svc.sign_in(&account);
    let left = count(
        &svc.db(),
        &format!("SELECT count(*) FROM throttle WHERE key = '{key}'"),
    );
    assert_eq!(left, 0);
    // The lock-out was audited.
    let db = svc.db();
    assert!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE event = 'lockout'"
        ) >= 2
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE event = 'signin' AND outcome = 'denied' AND reason = 'locked_out'"
        ) >= 3
    );
}

/// Ends a throttle lock now (as if its time had passed).
fn expire_lock(svc: &Service, key: &str) {
    let changed = svc
        .db()
        .execute(
            "UPDATE throttle SET locked_until = ?1 WHERE key = ?2",
            rusqlite::params![now_secs() - 1, key],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

// --- refresh ------------------------------------------------------------------------

fn refresh_rotates_both_tokens(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let first = svc.sign_in(&account);
    let sid = session_id_of(&first.access);

    let reply = svc.refresh(&first.refresh);
    reply.expect_status(200);
    assert_security_headers(&reply);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.json()["message"], "Token refreshed successfully");
    reply.set_cookie("token").assert_token_attributes(true, 900);
    reply
        .set_cookie("refreshToken")
        .assert_token_attributes(true, 604_800);
    let second = tokens_of(&reply);
    assert_ne!(second.refresh, first.refresh, "the refresh token rotates");
    // (The access token may come out byte-identical: same claims within the
    // same second, and Ed25519 signatures are deterministic.)
    assert_eq!(session_id_of(&second.access), sid, "same session");
    svc.profile(&second.access).expect_status(200);

    let third = tokens_of(svc.refresh(&second.refresh).expect_status(200));
    svc.profile(&third.access).expect_status(200);
    let db = svc.db();
    let (generation, hash): (i64, String) = db
        .query_row(
            "SELECT generation, refresh_hash FROM sessions WHERE id = ?1",
            [&sid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(generation, 2);
    assert_eq!(hash, refresh_hash(&third.refresh));
    let retired = count(
        &db,
        &format!("SELECT count(*) FROM retired_refresh_tokens WHERE session_id = '{sid}'"),
    );
    assert_eq!(retired, 2);
}

fn refresh_token_reuse_revokes_the_session(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let elsewhere = svc.sign_in(&account);
    let first = svc.sign_in(&account);
    let second = tokens_of(svc.refresh(&first.refresh).expect_status(200));

    // The retired token comes back: someone has a copy. The session ends.
    let reply = svc.refresh(&first.refresh);
    let body = assert_problem(&reply, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("already used"),
        "{reply}"
    );
    assert_cookies_cleared(&reply, true);
    // The newest token of that session is dead too, and so is its access token, at once.
    assert_problem(&svc.refresh(&second.refresh), 401);
    assert_problem(&svc.profile(&second.access), 401);
    // Presenting the retired token again changes nothing more.
    assert_problem(&svc.refresh(&first.refresh), 401);
    // The user's other session lives on.
    svc.profile(&elsewhere.access).expect_status(200);
    svc.refresh(&elsewhere.refresh).expect_status(200);

    let db = svc.db();
    let sid = session_id_of(&first.access);
    let reason: String = db
        .query_row(
            "SELECT revoked_reason FROM sessions WHERE id = ?1",
            [&sid],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reason, "refresh_reuse");
    let audited = count(
        &db,
        &format!(
            "SELECT count(*) FROM audit_events WHERE event = 'refresh_reuse_detected' \
             AND outcome = 'denied' AND session_id = '{sid}' AND user_id = '{}'",
            account.id
        ),
    );
    assert_eq!(audited, 1);
}

fn refresh_rejects_missing_and_invalid_tokens_and_clears_cookies(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    // Well-formed (32 canonical base64url bytes) but never issued.
    let unknown = "A".repeat(42) + "Q";
    let replies = [
        svc.post("/auth/refresh").send(),
        svc.post("/auth/refresh").refresh_cookie("").send(),
        svc.refresh("garbage"),
        svc.refresh(&unknown),
        svc.refresh(&format!("{}x", tokens.refresh)),
        svc.refresh(&tokens.refresh[..42]),
        // The old service's cookie name only; tokens elsewhere are not looked at.
        svc.post("/auth/refresh").bearer(&tokens.refresh).send(),
        svc.post("/auth/refresh")
            .json(&json!({"refreshToken": tokens.refresh}))
            .send(),
    ];
    for reply in &replies {
        assert_problem(reply, 401);
        assert_security_headers(reply);
        assert_cookies_cleared(reply, true);
    }
    // None of that touched the real session.
    svc.refresh(&tokens.refresh).expect_status(200);
}

// --- sign-out -----------------------------------------------------------------------

fn signout_revokes_the_session_at_once(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let other = svc.sign_in(&account);
    let tokens = svc.sign_in(&account);
    svc.profile(&tokens.access).expect_status(200);

    let reply = svc
        .post("/auth/signout")
        .access_cookie(&tokens.access)
        .refresh_cookie(&tokens.refresh)
        .send();
    reply.expect_status(200);
    assert_security_headers(&reply);
    assert_eq!(reply.json()["message"], "Signed out successfully");
    assert_cookies_cleared(&reply, true);

    // At once: the same, unexpired access token is refused.
    let after = svc.profile(&tokens.access);
    assert_problem(&after, 401);
    assert_problem(&svc.get("/user/profile").bearer(&tokens.access).send(), 401);
    assert_problem(&svc.refresh(&tokens.refresh), 401);
    let again = svc
        .post("/auth/signout")
        .access_cookie(&tokens.access)
        .send();
    assert_problem(&again, 401);
    assert_cookies_cleared(&again, true);
    // Only that session.
    svc.profile(&other.access).expect_status(200);

    // With the Authorization header instead of the cookie.
    let bearer = svc.sign_in(&account);
    svc.post("/auth/signout")
        .bearer(&bearer.access)
        .send()
        .expect_status(200);
    assert_problem(&svc.profile(&bearer.access), 401);

    let reason: String = svc
        .db()
        .query_row(
            "SELECT revoked_reason FROM sessions WHERE id = ?1",
            [session_id_of(&tokens.access)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reason, "signout");
}

fn signout_without_a_valid_session_is_401(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    for reply in [
        svc.post("/auth/signout").send(),
        svc.post("/auth/signout").access_cookie("garbage").send(),
        svc.post("/auth/signout").bearer("garbage").send(),
        svc.post("/auth/signout")
            .refresh_cookie(&tokens.refresh)
            .send(),
        svc.post("/auth/signout")
            .access_cookie(&tokens.refresh)
            .send(),
    ] {
        assert_problem(&reply, 401);
        assert_cookies_cleared(&reply, true);
    }
    svc.profile(&tokens.access).expect_status(200);
}

// --- profile ------------------------------------------------------------------------

fn profile_get_and_put_with_the_old_name_alias(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);

    let reply = svc.profile(&tokens.access);
    reply.expect_status(200);
    assert_security_headers(&reply);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let user = &reply.json()["user"];
    assert_eq!(user["id"], account.id.as_str());
    assert_eq!(user["email"], account.email.as_str());
    assert_eq!(user["fullName"], account.full_name.as_str());
    assert_eq!(user["avatarUrl"], serde_json::Value::Null);
    assert_eq!(user["isActive"], true);
    let created = user["createdAt"].as_str().unwrap();
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.contains('T'),
        "{created}"
    );

    let put = svc
        .put("/user/profile")
        .access_cookie(&tokens.access)
        .json(&json!({"fullName": "  Jane Q. Public  "}))
        .send();
    put.expect_status(200);
    assert_eq!(put.json()["message"], "Profile updated successfully");
    assert_eq!(put.json()["user"]["fullName"], "Jane Q. Public");
    assert_eq!(put.json()["user"]["id"], account.id.as_str());

    // The old service's `name` (which made it answer 500).
    let put = svc
        .put("/user/profile")
        .access_cookie(&tokens.access)
        .json(&json!({"name": "Old Client Name"}))
        .send();
    put.expect_status(200);
    assert_eq!(put.json()["user"]["fullName"], "Old Client Name");
    let reply = svc.profile(&tokens.access);
    assert_eq!(reply.json()["user"]["fullName"], "Old Client Name");

    for bad in [
        json!({}),
        json!({"fullName": "J"}),
        json!({"name": "x"}),
        json!({"fullName": " "}),
        json!({"fullName": "n".repeat(101)}),
    ] {
        let reply = svc
            .put("/user/profile")
            .access_cookie(&tokens.access)
            .json(&bad)
            .send();
        let body = assert_problem(&reply, 400);
        assert_eq!(error_fields(&body), ["fullName"], "{bad}: {reply}");
    }
    let reply = svc
        .put("/user/profile")
        .access_cookie(&tokens.access)
        .json(&json!({"fullName": 42}))
        .send();
    assert_problem(&reply, 400);
    let reply = svc
        .put("/user/profile")
        .access_cookie(&tokens.access)
        .body("text/plain", b"Jane".to_vec())
        .send();
    assert_problem(&reply, 415);
    // A valid body without a session.
    let reply = svc
        .put("/user/profile")
        .json(&json!({"fullName": "No One"}))
        .send();
    assert_problem(&reply, 401);
    assert_eq!(
        svc.profile(&tokens.access).json()["user"]["fullName"],
        "Old Client Name"
    );

    // HEAD answers like GET without a body.
    let head = svc
        .call("HEAD", "/user/profile")
        .access_cookie(&tokens.access)
        .send();
    head.expect_status(200);
    assert!(head.body.is_empty());
}

fn profile_requires_a_valid_access_token(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let victim = svc.create_account();
    let tokens = svc.sign_in(&account);
    let (header, payload) = jwt_parts(&tokens.access).unwrap();
    let parts: Vec<&str> = tokens.access.split('.').collect();
    let enc = |value: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    // Another user's id in a token signed for this one.
    let mut stolen = payload.clone();
    stolen["sub"] = victim.id.as_str().into();
    let swapped = format!("{}.{}.{}", parts[0], enc(&stolen), parts[2]);
    // A flipped signature byte.
    let mut signature = b64url(parts[2]).unwrap();
    signature[10] ^= 0x01;
    let tampered = format!("{}.{}.{}", parts[0], parts[1], {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&signature)
    });
    // `alg: none`, and a token signed by a key the service does not know
    // under the kid it does know.
    let mut none_header = header.clone();
    none_header["alg"] = "none".into();
    let unsigned = format!("{}.{}.", enc(&none_header), parts[1]);
    let forged = {
        use ed25519_dalek::Signer as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
        let input = format!("{}.{}", parts[0], parts[1]);
        let sig = key.sign(input.as_bytes());
        use base64::Engine as _;
        format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.to_bytes())
        )
    };

    let attempts = [
        svc.get("/user/profile").send(),
        svc.get("/user/profile").access_cookie("").send(),
        svc.get("/user/profile").access_cookie("garbage").send(),
        svc.get("/user/profile")
            .header("authorization", "Bearer")
            .send(),
        svc.get("/user/profile")
            .header("authorization", "Bearer garbage")
            .send(),
        svc.get("/user/profile")
            .header("authorization", "Basic dXNlcjpwYXNz")
            .send(),
        svc.get("/user/profile")
            .header("authorization", &tokens.access)
            .send(),
        svc.profile(&swapped),
        svc.profile(&tampered),
        svc.profile(&unsigned),
        svc.profile(&forged),
        svc.profile(&format!("{}.", tokens.access)),
        svc.profile(&"a".repeat(5000)),
    ];
    for reply in &attempts {
        assert_problem(reply, 401);
        assert_security_headers(reply);
        assert_no_cookies(reply);
    }
    assert_eq!(
        attempts[0].json()["detail"],
        "authentication required",
        "{}",
        attempts[0]
    );
    // The genuine token still works.
    svc.profile(&tokens.access).expect_status(200);
}

// --- password change ------------------------------------------------------------------

fn change_password(svc: &Service, access: &str, current: &str, new: &str) -> latch_e2e::Reply {
    svc.post("/auth/password")
        .access_cookie(access)
        .json(&json!({"currentPassword": current, "newPassword": new}))
        .send()
}

fn password_change_revokes_every_other_session_at_once(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let bystander = svc.create_account();
    let bystander_tokens = svc.sign_in(&bystander);
    let caller = svc.sign_in(&account);
    let second = svc.sign_in(&account);
    let third = svc.sign_in(&account);
    let new_password = unique_password();

    let reply = change_password(&svc, &caller.access, &account.password, &new_password);
    reply.expect_status(200);
    assert_security_headers(&reply);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("Password changed")
    );

    // At once: every other session is dead, access and refresh tokens alike.
    for other in [&second, &third] {
        assert_problem(&svc.profile(&other.access), 401);
        assert_problem(&svc.refresh(&other.refresh), 401);
    }
    // The caller's session lives on.
    svc.profile(&caller.access).expect_status(200);
    let caller = tokens_of(svc.refresh(&caller.refresh).expect_status(200));
    svc.profile(&caller.access).expect_status(200);
    // Other users are untouched.
    svc.profile(&bystander_tokens.access).expect_status(200);
    // Only the new password signs in.
    assert_problem(&svc.signin(&account.email, &account.password), 401);
    svc.signin(&account.email, &new_password).expect_status(200);

    let db = svc.db();
    let revoked = count(
        &db,
        &format!(
            "SELECT count(*) FROM sessions WHERE user_id = '{}' AND revoked_reason = 'password_change'",
            account.id
        ),
    );
    assert_eq!(revoked, 2);
    let audited = count(
        &db,
        "SELECT count(*) FROM audit_events WHERE event = 'password_change' AND outcome = 'success'",
    );
    assert_eq!(audited, 1);
}

fn password_change_rejects_bad_requests_and_locks_out_guessing(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);

    // A wrong current password: 403, nothing changes.
    let reply = change_password(&svc, &tokens.access, "not-my-password", &unique_password());
    let body = assert_problem(&reply, 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("current password"),
        "{reply}"
    );

    // Validation of the new password (before anything else).
    for (new, code) in [("short", "too_short"), ("password", "common_password")] {
        let reply = change_password(&svc, &tokens.access, &account.password, new);
        let body = assert_problem(&reply, 400);
        assert_eq!(error_fields(&body), ["newPassword"], "{reply}");
        assert_eq!(body["errors"][0]["code"], code);
    }
    let reply = svc
        .post("/auth/password")
        .access_cookie(&tokens.access)
        .json(&json!({}))
        .send();
    let body = assert_problem(&reply, 400);
    assert_eq!(error_fields(&body), ["currentPassword", "newPassword"]);
    let reply = svc
        .post("/auth/password")
        .access_cookie(&tokens.access)
        .body("text/plain", b"x".to_vec())
        .send();
    assert_problem(&reply, 415);
    // No session.
    let reply = svc
        .post("/auth/password")
        .json(&json!({"currentPassword": account.password, "newPassword": unique_password()}))
        .send();
    assert_problem(&reply, 401);
    let reply = svc
        .get("/auth/password")
        .access_cookie(&tokens.access)
        .send();
    assert_problem(&reply, 405);
    assert_eq!(reply.header("allow"), Some("POST"));
    // The password did not change.
    svc.sign_in(&account);

    // Guessing the current password with a stolen access token is limited
    // like sign-ins: the fifth wrong guess locks, then 429 even when right.
    for _ in 2..=5 {
        let reply = change_password(&svc, &tokens.access, "guess-password", &unique_password());
        assert_problem(&reply, 403);
    }
    let reply = change_password(&svc, &tokens.access, &account.password, &unique_password());
    assert_problem(&reply, 429);
    let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{reply}");
    svc.sign_in(&account);
}

// --- sessions -----------------------------------------------------------------------

fn sessions_are_listed_and_revoked(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let stranger = svc.create_account();
    let first = svc.sign_in(&account);
    let second = tokens_of(
        svc.post("/auth/signin")
            .header("user-agent", "e2e-agent/2.0")
            .json(&json!({"email": account.email, "password": account.password}))
            .send()
            .expect_status(200),
    );
    let strangers = svc.sign_in(&stranger);
    let first_sid = session_id_of(&first.access);
    let second_sid = session_id_of(&second.access);

    let reply = svc
        .get("/auth/sessions")
        .access_cookie(&first.access)
        .send();
    reply.expect_status(200);
    assert_security_headers(&reply);
    let sessions = reply.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{reply}");
    let current: Vec<&serde_json::Value> =
        sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], first_sid.as_str());
    let listed_second = sessions
        .iter()
        .find(|s| s["id"] == second_sid.as_str())
        .unwrap();
    assert_eq!(listed_second["userAgent"], "e2e-agent/2.0");
    assert_eq!(listed_second["clientIp"], "127.0.0.1");
    for member in ["createdAt", "lastUsedAt", "expiresAt"] {
        assert!(listed_second[member].is_string(), "{member}: {reply}");
    }
    // Bearer works too.
    svc.get("/auth/sessions")
        .bearer(&first.access)
        .send()
        .expect_status(200);

    // Revoke the second session: 204, effective at once.
    let path = format!("/auth/sessions/{second_sid}");
    let reply = svc.delete(&path).access_cookie(&first.access).send();
    reply.expect_status(204);
    assert!(reply.body.is_empty());
    assert_security_headers(&reply);
    assert_problem(&svc.profile(&second.access), 401);
    assert_problem(&svc.refresh(&second.refresh), 401);
    assert_problem(&svc.delete(&path).access_cookie(&first.access).send(), 404);
    let listed = svc
        .get("/auth/sessions")
        .access_cookie(&first.access)
        .send();
    assert_eq!(listed.json()["sessions"].as_array().unwrap().len(), 1);

    // Another user's session: 404, and it lives on.
    let foreign = format!("/auth/sessions/{}", session_id_of(&strangers.access));
    assert_problem(
        &svc.delete(&foreign).access_cookie(&first.access).send(),
        404,
    );
    svc.profile(&strangers.access).expect_status(200);
    // Ids that are not ids.
    for id in [
        "not-an-id",
        "AAAAAAAAAAAAAAAAAAAAAA",
        "%2e%2e",
        &"x".repeat(300),
    ] {
        let reply = svc
            .delete(&format!("/auth/sessions/{id}"))
            .access_cookie(&first.access)
            .send();
        assert_problem(&reply, 404);
    }
    // No session, no access.
    assert_problem(&svc.get("/auth/sessions").send(), 401);
    assert_problem(&svc.delete(&foreign).send(), 401);
    svc.profile(&strangers.access).expect_status(200);
    // The methods of each form.
    let reply = svc
        .post("/auth/sessions")
        .access_cookie(&first.access)
        .send();
    assert_problem(&reply, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    let reply = svc.get(&path).access_cookie(&first.access).send();
    assert_problem(&reply, 405);
    assert_eq!(reply.header("allow"), Some("DELETE"));

    // Revoking one's own session signs it out.
    let own = format!("/auth/sessions/{first_sid}");
    svc.delete(&own)
        .access_cookie(&first.access)
        .send()
        .expect_status(204);
    assert_problem(&svc.profile(&first.access), 401);
    assert_eq!(
        count(
            &svc.db(),
            "SELECT count(*) FROM audit_events WHERE event = 'session_revoked' AND reason = 'revoked_by_user'"
        ),
        2
    );
}

// --- keys, health, readiness, environments ------------------------------------------

fn jwks_publishes_the_key_that_signs_the_tokens(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let reply = svc.get("/.well-known/jwks.json").send();
    reply.expect_status(200);
    assert_security_headers(&reply);
    assert_eq!(reply.header("cache-control"), Some("public, max-age=300"));
    let keys = reply.json()["keys"].as_array().unwrap().clone();
    assert!(!keys.is_empty());
    for key in &keys {
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none(), "a private key is published: {key}");
    }
    let (header, _) = jwt_parts(&tokens.access).unwrap();
    let key = keys
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("the token's kid {} is not published", header["kid"]));
    assert!(
        jwt_verifies_with(&tokens.access, key),
        "signature does not verify"
    );
    let mut bad = tokens.access.clone().into_bytes();
    let i = bad.len() - 20;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    assert!(!jwt_verifies_with(&String::from_utf8(bad).unwrap(), key));
    // The same key signs after a restart-free refresh.
    let refreshed = tokens_of(svc.refresh(&tokens.refresh).expect_status(200));
    assert!(jwt_verifies_with(&refreshed.access, key));
}

fn health_and_ready_answer(backend: Backend) {
    let svc = Service::start_default(backend);
    let reply = svc.get("/health").send();
    reply.expect_status(200);
    assert_security_headers(&reply);
    let body = reply.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["environment"], "development");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let head = svc.call("HEAD", "/health").send();
    head.expect_status(200);
    assert!(head.body.is_empty());
    let reply = svc.post("/health").send();
    assert_problem(&reply, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));

    let reply = svc.get("/ready").send();
    reply.expect_status(200);
    assert_security_headers(&reply);
    let body = reply.json();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"]["backend"], backend.db_type());
    assert_eq!(
        body["checks"]["database"]["schemaVersion"],
        body["checks"]["database"]["expectedSchemaVersion"]
    );
    assert_eq!(body["checks"]["signingKey"], "development");
}

fn ready_is_503_on_an_unmigrated_database(backend: Backend) {
    let svc = Options::new(backend).no_migrate().start();
    let reply = svc.get("/ready").send();
    let body = assert_problem(&reply, 503);
    assert_security_headers(&reply);
    assert!(reply.header("retry-after").is_some(), "{reply}");
    assert!(
        body["detail"].as_str().unwrap().contains("database"),
        "{reply}"
    );
    // Liveness does not depend on the database.
    svc.get("/health").send().expect_status(200);
    // Routes that need the schema answer 503 (retry later), not a 500.
    let reply = svc.signup(&unique_email("early"), &unique_password(), "Too Early");
    assert_problem(&reply, 503);
    assert!(reply.header("retry-after").is_some(), "{reply}");
}

fn a_signing_key_carrying_another_public_key_is_not_ready(backend: Backend) {
    // The test key's seed with the public key of another seed: components
    // that serve requests trust the carried key, so readiness must not.
    let (seed_part, _) = latch_e2e::test_signing_key()
        .rsplit_once(':')
        .map(|(head, tail)| (head.to_owned(), tail.to_owned()))
        .unwrap();
    let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]).verifying_key();
    let mismatched = format!("{seed_part}:{}", latch_e2e::b64url_encode(other.as_bytes()));
    let svc = Options::new(backend)
        .production()
        .var("signing_key", &mismatched)
        .start();
    let reply = svc.get("/ready").send();
    let body = assert_problem(&reply, 503);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("signing_key"), "{reply}");
    assert!(
        !detail.contains(&seed_part[seed_part.len() - 10..]),
        "{reply}"
    );

    // With the right public key carried, ready.
    let svc = Options::new(backend).production().start();
    svc.get("/ready").send().expect_status(200);
}

fn production_without_a_signing_key_is_unavailable(backend: Backend) {
    let svc = Options::new(backend).production_without_key().start();
    let reply = svc.get("/ready").send();
    let body = assert_problem(&reply, 503);
    assert!(
        body["detail"].as_str().unwrap().contains("signing_key"),
        "{reply}"
    );
    assert!(reply.header("retry-after").is_some());
    let health = svc.get("/health").send();
    health.expect_status(200);
    assert_eq!(health.json()["environment"], "production");

    // Sign-up needs no key; everything that signs or verifies a token is 503.
    let account = svc.create_account();
    let token_like = "A".repeat(42) + "Q";
    let replies = [
        svc.signin(&account.email, &account.password),
        svc.refresh(&token_like),
        svc.profile("some.access.token"),
        svc.post("/auth/signout")
            .access_cookie("some.access.token")
            .send(),
        svc.get("/auth/sessions")
            .access_cookie("some.access.token")
            .send(),
        change_password(
            &svc,
            "some.access.token",
            &account.password,
            &unique_password(),
        ),
        svc.get("/.well-known/jwks.json").send(),
    ];
    for reply in &replies {
        assert_problem(reply, 503);
        assert_security_headers(reply);
        assert!(reply.header("retry-after").is_some(), "{reply}");
        assert_no_cookies(reply);
    }
    // No key was generated behind the operator's back.
    assert_eq!(
        count(&svc.db(), "SELECT count(*) FROM development_signing_key"),
        0
    );
}

fn production_with_a_signing_key(backend: Backend) {
    let svc = Options::new(backend).production().start();
    let reply = svc.get("/ready").send();
    reply.expect_status(200);
    assert_eq!(reply.json()["checks"]["signingKey"], "configured");
    assert_eq!(
        svc.get("/health").send().json()["environment"],
        "production"
    );

    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let (header, _) = jwt_parts(&tokens.access).unwrap();
    assert_eq!(header["kid"], latch_e2e::TEST_KEY_ID);
    let keys = svc.get("/.well-known/jwks.json").send().json()["keys"].clone();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let expected_x = {
        use base64::Engine as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&latch_e2e::TEST_KEY_SEED);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes())
    };
    assert_eq!(keys[0]["kid"], latch_e2e::TEST_KEY_ID);
    assert_eq!(keys[0]["x"], expected_x.as_str());
    assert!(jwt_verifies_with(&tokens.access, &keys[0]));
    svc.profile(&tokens.access).expect_status(200);
    assert_eq!(
        count(&svc.db(), "SELECT count(*) FROM development_signing_key"),
        0
    );
}

// --- tokens ---------------------------------------------------------------------------

fn bearer_header_and_cookie_both_carry_the_access_token(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    svc.profile(&tokens.access).expect_status(200);
    svc.get("/user/profile")
        .bearer(&tokens.access)
        .send()
        .expect_status(200);
    svc.get("/user/profile")
        .header("authorization", &format!("bearer {}", tokens.access))
        .send()
        .expect_status(200);
    svc.put("/user/profile")
        .bearer(&tokens.access)
        .json(&json!({"fullName": "Bearer User"}))
        .send()
        .expect_status(200);
    svc.get("/auth/sessions")
        .bearer(&tokens.access)
        .send()
        .expect_status(200);
    let new_password = unique_password();
    svc.post("/auth/password")
        .bearer(&tokens.access)
        .json(&json!({"currentPassword": account.password, "newPassword": new_password}))
        .send()
        .expect_status(200);
    svc.post("/auth/signout")
        .bearer(&tokens.access)
        .send()
        .expect_status(200);
    assert_problem(&svc.get("/user/profile").bearer(&tokens.access).send(), 401);
}

fn token_types_cannot_be_swapped(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    // A refresh token is not an access token...
    assert_problem(
        &svc.get("/user/profile").bearer(&tokens.refresh).send(),
        401,
    );
    assert_problem(&svc.profile(&tokens.refresh), 401);
    assert_problem(
        &svc.get("/auth/sessions").bearer(&tokens.refresh).send(),
        401,
    );
    // ...and an access token is not a refresh token.
    let reply = svc.refresh(&tokens.access);
    assert_problem(&reply, 401);
    assert_cookies_cleared(&reply, true);
    // Neither mix-up harmed the session.
    svc.profile(&tokens.access).expect_status(200);
    svc.refresh(&tokens.refresh).expect_status(200);
}

fn access_and_refresh_tokens_expire(backend: Backend) {
    let svc = Options::new(backend)
        .var("access_token_ttl_seconds", "2")
        .var("refresh_token_ttl_seconds", "6")
        .start();
    let account = svc.create_account();
    let reply = svc.signin(&account.email, &account.password);
    // Measured from the answer: the tokens were issued before it.
    let signed_in = Instant::now();
    reply.expect_status(200);
    reply.set_cookie("token").assert_token_attributes(true, 2);
    reply
        .set_cookie("refreshToken")
        .assert_token_attributes(true, 6);
    let tokens = tokens_of(&reply);
    svc.profile(&tokens.access).expect_status(200);

    sleep_until(signed_in, Duration::from_millis(3200));
    let reply = svc.profile(&tokens.access);
    let body = assert_problem(&reply, 401);
    assert_eq!(body["detail"], "access token expired");
    // The refresh token (6 s) still works, and slides forward.
    let renewed = tokens_of(svc.refresh(&tokens.refresh).expect_status(200));
    let refreshed = Instant::now();
    svc.profile(&renewed.access).expect_status(200);

    // Unused for longer than its lifetime: the refresh token is dead too.
    sleep_until(refreshed, Duration::from_millis(7200));
    let reply = svc.refresh(&renewed.refresh);
    assert_problem(&reply, 401);
    assert_cookies_cleared(&reply, true);
    assert_problem(&svc.profile(&renewed.access), 401);
}

fn sleep_until(start: Instant, after: Duration) {
    if let Some(left) = after.checked_sub(start.elapsed()) {
        std::thread::sleep(left);
    }
}

fn tokens_in_body_for_non_browser_clients(backend: Backend) {
    let svc = Options::new(backend).var("tokens_in_body", "true").start();
    let account = svc.create_account();
    let reply = svc.signin(&account.email, &account.password);
    reply.expect_status(200);
    let body = reply.json();
    let cookies = tokens_of(&reply);
    assert_eq!(body["accessToken"], cookies.access.as_str());
    assert_eq!(body["refreshToken"], cookies.refresh.as_str());
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 900);
    assert_eq!(reply.header("cache-control"), Some("no-store"));

    // A client without cookies: Bearer for access, the JSON body for refresh.
    let access = body["accessToken"].as_str().unwrap();
    svc.get("/user/profile")
        .bearer(access)
        .send()
        .expect_status(200);
    let reply = svc
        .post("/auth/refresh")
        .json(&json!({"refreshToken": body["refreshToken"]}))
        .send();
    reply.expect_status(200);
    let renewed = reply.json();
    assert_eq!(renewed["tokenType"], "Bearer");
    let new_refresh = renewed["refreshToken"].as_str().unwrap();
    assert_ne!(new_refresh, cookies.refresh);
    svc.get("/user/profile")
        .bearer(renewed["accessToken"].as_str().unwrap())
        .send()
        .expect_status(200);
    // The retired token in the body is detected as reuse like in a cookie.
    let reply = svc
        .post("/auth/refresh")
        .json(&json!({"refreshToken": cookies.refresh}))
        .send();
    assert_problem(&reply, 401);
    // Malformed bodies.
    for raw in [r#"{"refreshToken": 5}"#, "{", "[]"] {
        let reply = svc
            .post("/auth/refresh")
            .body("application/json", raw.as_bytes().to_vec())
            .send();
        assert_problem(&reply, 400);
    }
    assert_problem(&svc.post("/auth/refresh").json(&json!({})).send(), 401);
}

fn inactive_users_lose_access_at_once(backend: Backend) {
    let svc = Service::start_default(backend);
    let account: Account = svc.create_account();
    let tokens = svc.sign_in(&account);
    svc.db()
        .execute(
            "UPDATE users SET is_active = 0 WHERE id = ?1",
            [&account.id],
        )
        .unwrap();
    assert_problem(&svc.profile(&tokens.access), 401);
    assert_problem(
        &svc.get("/auth/sessions")
            .access_cookie(&tokens.access)
            .send(),
        401,
    );
    assert_problem(&svc.refresh(&tokens.refresh), 401);
    assert_problem(
        &change_password(&svc, &tokens.access, &account.password, &unique_password()),
        401,
    );
    assert_problem(&svc.signin(&account.email, &account.password), 401);
    // Reactivated: the session was not revoked, only refused.
    svc.db()
        .execute(
            "UPDATE users SET is_active = 1 WHERE id = ?1",
            [&account.id],
        )
        .unwrap();
    svc.profile(&tokens.access).expect_status(200);
}
