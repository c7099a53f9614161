//! Account recovery and email verification (issue 13), against both
//! backends, with a webhook receiver in the test that checks every message's
//! Standard Webhooks signature with the specification's reference crate (see
//! `latch_e2e::WebhookReceiver`).
//!
//! The timing of forgot for unknown and known addresses is measured alone,
//! in `recovery_timing.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use latch_e2e::{
    Account, Answer, Backend, Message, Options, Reply, Service, WebhookReceiver, assert_no_cookies,
    assert_problem, assert_security_headers, b64url, count, invariant_violations, jwt_parts,
    now_secs, refresh_hash, tokens_of, unique_email, unique_password,
};
use serde_json::json;

latch_e2e::both_backends!(
    recovery_resets_the_password_and_signs_out_every_session,
    a_recovery_token_works_once,
    recovery_and_verification_tokens_expire,
    only_the_newest_recovery_token_is_valid,
    racing_resets_of_one_token_have_one_winner,
    tokens_only_work_for_their_purpose,
    forgot_answers_alike_for_known_unknown_and_inactive_addresses,
    forgot_rejects_malformed_input,
    forgot_is_throttled_per_account_and_a_lock_out_still_answers_202,
    reset_checks_the_password_rules_before_the_token,
    signup_sends_a_verification_message_and_verify_marks_the_address,
    require_verified_email_refuses_sign_in_until_verified,
    resend_replaces_the_verification_token,
    resend_is_throttled_per_user,
    a_webhook_answering_500_still_gives_202_and_keeps_the_token,
    a_webhook_that_is_down_still_gives_202_and_keeps_the_token,
    a_hung_webhook_does_not_delay_the_answer,
    a_receiver_with_another_secret_rejects_the_messages,
    development_without_a_webhook_logs_the_link,
    production_without_a_webhook_refuses_the_flows,
);

/// How long a message may take to arrive (it is sent after the answer).
const WAIT: Duration = Duration::from_secs(15);
const FORGOT_MESSAGE: &str = "If an account exists for this address, a recovery link is on its way";
const RESET_MESSAGE: &str = "Password reset; every session was signed out";
const DEFAULT_PUBLIC_URL: &str = "http://localhost:3000";

// --- helpers -------------------------------------------------------------------------

fn start(backend: Backend) -> (WebhookReceiver, Service) {
    let receiver = WebhookReceiver::start();
    let svc = Options::new(backend).webhook(&receiver).start();
    (receiver, svc)
}

fn forgot(svc: &Service, email: &str) -> Reply {
    svc.post("/auth/password/forgot")
        .json(&json!({ "email": email }))
        .send()
}

fn reset(svc: &Service, token: &str, new_password: &str) -> Reply {
    svc.post("/auth/password/reset")
        .json(&json!({ "token": token, "newPassword": new_password }))
        .send()
}

fn verify(svc: &Service, token: &str) -> Reply {
    svc.post("/auth/email/verify")
        .json(&json!({ "token": token }))
        .send()
}

fn resend(svc: &Service, access: &str) -> Reply {
    svc.post("/auth/email/verify/resend")
        .access_cookie(access)
        .send()
}

/// Panics unless `reply` is forgot's one answer: 202, the fixed body.
fn assert_forgot_accepted(reply: &Reply) {
    reply.expect_status(202);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!({ "message": FORGOT_MESSAGE }),
        "{reply}"
    );
    assert_security_headers(reply);
    assert_no_cookies(reply);
}

/// Panics unless `reply` is the one answer to a bad, used, expired or
/// superseded token; returns the body without its request-specific members.
fn assert_invalid_token(reply: &Reply) -> serde_json::Value {
    let mut body = assert_problem(reply, 400);
    assert_eq!(body["code"], "invalid_token", "{reply}");
    assert_security_headers(reply);
    assert_no_cookies(reply);
    let object = body.as_object_mut().unwrap();
    object.remove("requestId");
    object.remove("instance");
    body
}

/// The database's name for a one-time token: hex SHA-256 of its 32 bytes.
fn token_hash(token: &str) -> String {
    refresh_hash(token)
}

/// Unix seconds of an RFC 3339 UTC time (`2026-12-04T09:00:00Z`, fractions
/// and a `+00:00` offset allowed).
fn rfc3339_secs(text: &str) -> i64 {
    parse_rfc3339(text).unwrap_or_else(|| panic!("not an RFC 3339 UTC time: {text:?}"))
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    let (date, time) = text.split_once('T')?;
    let time = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix("+00:00"))?;
    let numbers =
        |s: &str, sep: char| -> Option<Vec<i64>> { s.split(sep).map(|n| n.parse().ok()).collect() };
    let d = numbers(date, '-')?;
    let t = numbers(time.split('.').next()?, ':')?;
    let [y, m, day] = <[i64; 3]>::try_from(d).ok()?;
    let [h, min, sec] = <[i64; 3]>::try_from(t).ok()?;
    // Days from civil (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + sec)
}

fn is_url_safe(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks one message against the webhook contract: headers, type, data.
fn check_message(
    message: &Message,
    kind: &str,
    to: &str,
    public_url: &str,
    ttl_secs: i64,
    request_id: &str,
) {
    assert!(message.verified, "{message:#?}");
    assert_eq!(message.header("content-type"), Some("application/json"));
    let id = message.header("webhook-id").unwrap_or("");
    let id_rest = id.strip_prefix("msg_").unwrap_or("");
    assert!(
        id_rest.len() == 22 && is_url_safe(id_rest),
        "webhook-id {id:?}"
    );
    let sent_at: i64 = message
        .header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("webhook-timestamp: {message:#?}"));
    assert!(
        (sent_at - now_secs()).abs() <= 60,
        "webhook-timestamp {sent_at}"
    );
    let signature = message.header("webhook-signature").unwrap_or("");
    assert!(
        signature.starts_with("v1,"),
        "webhook-signature {signature:?}"
    );

    let body = &message.body;
    assert_eq!(body["type"], format!("email.{kind}"), "{body}");
    assert!((rfc3339_secs(body["timestamp"].as_str().unwrap()) - now_secs()).abs() <= 60);
    let data = message.data();
    assert_eq!(data["kind"], kind, "{body}");
    assert_eq!(data["to"], to.to_ascii_lowercase(), "{body}");
    let token = message.token();
    assert!(
        token.len() == 43 && is_url_safe(token),
        "token {token:?} is not 43 URL-safe characters"
    );
    assert_eq!(b64url(token).map(|b| b.len()), Some(32), "token {token:?}");
    let page = match kind {
        "recovery" => "reset-password",
        _ => "verify-email",
    };
    assert_eq!(message.link(), format!("{public_url}/{page}?token={token}"));
    let expires = rfc3339_secs(data["expiresAt"].as_str().unwrap());
    assert!(
        (expires - (now_secs() + ttl_secs)).abs() <= 60,
        "expiresAt {} is not about {ttl_secs} s from now",
        data["expiresAt"]
    );
    assert_eq!(data["requestId"], request_id, "{body}");
}

fn request_id(reply: &Reply) -> String {
    reply.header("x-request-id").unwrap().to_string()
}

/// The guest's `email_delivery` log lines.
fn delivery_lines(svc: &Service) -> Vec<serde_json::Value> {
    svc.guest_json_lines()
        .into_iter()
        .filter(|line| line["event"] == "email_delivery")
        .collect()
}

/// Waits (bounded) for the `email_delivery` line of `outcome` logged for the
/// request `request_id`.
fn wait_for_delivery_line(svc: &Service, outcome: &str, request_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = delivery_lines(svc)
            .into_iter()
            .find(|l| l["outcome"] == outcome && l["request_id"] == request_id)
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no email_delivery {outcome} line for request {request_id} within {WAIT:?}; lines: {:#?}",
            delivery_lines(svc)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Panics unless a delivery failure line is what the contract says: an
/// error with a reason, and nothing of the message (no token, link or address).
fn check_failure_line(line: &serde_json::Value, kind: &str, secrets: &[&str]) {
    assert_eq!(line["level"], "error", "{line}");
    assert_eq!(line["kind"], kind, "{line}");
    assert!(
        line["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{line}"
    );
    for member in ["token", "link", "to", "email"] {
        assert!(line.get(member).is_none(), "`{member}` in {line}");
    }
    let text = line.to_string();
    for secret in secrets {
        assert!(
            !text.to_lowercase().contains(&secret.to_lowercase()),
            "{secret} in {line}"
        );
    }
    // Nothing that looks like a token either.
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
        assert!(
            word.len() != 43,
            "a token-like word {word:?} in the failure line {line}"
        );
    }
}

fn recovery_rows(svc: &Service, user_id: &str) -> i64 {
    count(
        &svc.db(),
        &format!(
            "SELECT count(*) FROM one_time_tokens WHERE user_id = '{user_id}' AND purpose = 'recovery'"
        ),
    )
}

/// Whether the database holds this token unused, for this user and purpose.
fn token_row_unused(svc: &Service, token: &str, user_id: &str, purpose: &str) -> bool {
    count(
        &svc.db(),
        &format!(
            "SELECT count(*) FROM one_time_tokens WHERE hash = '{}' AND user_id = '{user_id}' \
             AND purpose = '{purpose}' AND used_at IS NULL",
            token_hash(token)
        ),
    ) == 1
}

/// Requests a recovery message for `account` and returns it.
fn recovery_message(svc: &Service, receiver: &WebhookReceiver, account: &Account) -> Message {
    let before = receiver
        .messages()
        .iter()
        .filter(|m| m.kind() == "recovery" && m.to().eq_ignore_ascii_case(&account.email))
        .count();
    assert_forgot_accepted(&forgot(svc, &account.email));
    receiver
        .wait_for_count("recovery", &account.email, before + 1, WAIT)
        .pop()
        .unwrap()
}

fn assert_no_violations(svc: &Service) {
    assert_eq!(invariant_violations(&svc.db()), Vec::<String>::new());
}

// --- recovery ---------------------------------------------------------------------

fn recovery_resets_the_password_and_signs_out_every_session(backend: Backend) {
    let (receiver, svc) = start(backend);
    let account = svc.create_account();
    let bystander = svc.create_account();
    let bystander_tokens = svc.sign_in(&bystander);
    let first = svc.sign_in(&account);
    let second = svc.sign_in(&account);

    let reply = forgot(&svc, &account.email);
    assert_forgot_accepted(&reply);
    let message = receiver.wait_for("recovery", &account.email, WAIT);
    check_message(
        &message,
        "recovery",
        &account.email,
        DEFAULT_PUBLIC_URL,
        1800,
        &request_id(&reply),
    );
    let token = message.token().to_string();
    // Only the hash is stored, with its purpose, user and 30 minutes' life.
    let db = svc.db();
    let row: (String, String, i64, i64, Option<i64>) = db
        .query_row(
            "SELECT purpose, email, created_at, expires_at, used_at FROM one_time_tokens WHERE hash = ?1",
            [token_hash(&token)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(row.0, "recovery");
    assert_eq!(row.1, account.email.to_ascii_lowercase());
    assert_eq!(row.3 - row.2, 1800);
    assert_eq!(row.4, None);
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM one_time_tokens WHERE hash = '{token}'")
        ),
        0,
        "the token itself is stored"
    );
    let success = wait_for_delivery_line(&svc, "success", &request_id(&reply));
    assert_eq!(success["kind"], "recovery");

    let new_password = unique_password();
    let reply = reset(&svc, &token, &new_password);
    reply.expect_status(200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), json!({ "message": RESET_MESSAGE }), "{reply}");
    assert_security_headers(&reply);

    // Only the new password signs in.
    assert_problem(&svc.signin(&account.email, &account.password), 401);
    let after = svc.signin(&account.email, &new_password);
    after.expect_status(200);
    // Every session from before is gone, refresh and access tokens alike.
    for old in [&first, &second] {
        assert_problem(&svc.refresh(&old.refresh), 401);
        assert_problem(&svc.profile(&old.access), 401);
    }
    let fresh = tokens_of(&after);
    // The recovery link reached the address, so a reset verifies it too.
    let profile = svc.profile(&fresh.access);
    profile.expect_status(200);
    assert_eq!(profile.json()["user"]["emailVerified"], true, "{profile}");
    assert_eq!(jwt_parts(&fresh.access).unwrap().1["email_verified"], true);
    svc.refresh(&fresh.refresh).expect_status(200);
    // Other users are untouched.
    svc.profile(&bystander_tokens.access).expect_status(200);

    let db = svc.db();
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM sessions WHERE user_id = '{}' AND revoked_reason = 'password_reset'",
                account.id
            )
        ),
        2
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM one_time_tokens WHERE hash = '{}' AND used_at IS NOT NULL",
                token_hash(&token)
            )
        ),
        1
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM audit_events WHERE event = 'password_reset' AND outcome = 'success' AND user_id = '{}'",
                account.id
            )
        ),
        1
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM audit_events WHERE event = 'recovery_requested' AND outcome = 'success' AND user_id = '{}'",
                account.id
            )
        ),
        1
    );
    svc.wait_for_audit("password_reset", |lines| {
        lines
            .iter()
            .any(|l| l["event"] == "password_reset" && l["outcome"] == "success")
    });
    assert_no_violations(&svc);
}

fn a_recovery_token_works_once(backend: Backend) {
    let (receiver, svc) = start(backend);
    let account = svc.create_account();
    let token = recovery_message(&svc, &receiver, &account)
        .token()
        .to_string();
    let first_password = unique_password();
    reset(&svc, &token, &first_password).expect_status(200);

    // Used: refused, and the password stays the first reset's.
    let used = assert_invalid_token(&reset(&svc, &token, &unique_password()));
    svc.signin(&account.email, &first_password)
        .expect_status(200);

    // One answer for every bad token: used, unknown, malformed.
    let unknown = latch_e2e::b64url_encode(&[9u8; 32]);
    for bad in [unknown.as_str(), "not-a-token", "x"] {
        let body = assert_invalid_token(&reset(&svc, bad, &unique_password()));
        assert_eq!(body, used, "token {bad:?}");
    }
    svc.wait_for_audit("password_reset failure", |lines| {
        lines.iter().any(|l| {
            l["event"] == "password_reset"
                && l["outcome"] == "failure"
                && l["reason"] == "invalid_token"
        })
    });
    assert_no_violations(&svc);
}

fn recovery_and_verification_tokens_expire(backend: Backend) {
    let receiver = WebhookReceiver::start();
    let svc = Options::new(backend)
        .webhook(&receiver)
        .var("recovery_token_ttl_seconds", "1")
        .start();
    let account = svc.create_account();
    let verification = receiver.wait_for("verification", &account.email, WAIT);
    let reply = forgot(&svc, &account.email);
    assert_forgot_accepted(&reply);
    let asked = Instant::now();
    let recovery = receiver.wait_for("recovery", &account.email, WAIT);
    check_message(
        &recovery,
        "recovery",
        &account.email,
        DEFAULT_PUBLIC_URL,
        1,
        &request_id(&reply),
    );
    // Both tokens are stored, unused.
    assert!(token_row_unused(
        &svc,
        recovery.token(),
        &account.id,
        "recovery"
    ));
    assert!(token_row_unused(
        &svc,
        verification.token(),
        &account.id,
        "verification"
    ));
    if let Some(left) = Duration::from_millis(2200).checked_sub(asked.elapsed()) {
        std::thread::sleep(left);
    }
    let expired = assert_invalid_token(&reset(&svc, recovery.token(), &unique_password()));
    let unknown = assert_invalid_token(&reset(
        &svc,
        &latch_e2e::b64url_encode(&[3u8; 32]),
        &unique_password(),
    ));
    assert_eq!(expired, unknown);
    // Verification tokens live at least a minute (the variable's lower
    // bound), so this one is made to expire in the database.
    svc.db()
        .execute(
            "UPDATE one_time_tokens SET expires_at = ?1 WHERE hash = ?2",
            (now_secs() - 1, token_hash(verification.token())),
        )
        .unwrap();
    assert_invalid_token(&verify(&svc, verification.token()));
    // Nothing changed.
    let (_, claims) = jwt_parts(&svc.sign_in(&account).access).unwrap();
    assert_eq!(claims["email_verified"], false);
    assert_no_violations(&svc);
}

fn only_the_newest_recovery_token_is_valid(backend: Backend) {
    let (receiver, svc) = start(backend);
    let account = svc.create_account();
    let older = recovery_message(&svc, &receiver, &account);
    let newer = recovery_message(&svc, &receiver, &account);
    assert_ne!(older.token(), newer.token());
    // The older one is gone from the database.
    assert_eq!(recovery_rows(&svc, &account.id), 1);
    assert!(token_row_unused(
        &svc,
        newer.token(),
        &account.id,
        "recovery"
    ));

    assert_invalid_token(&reset(&svc, older.token(), &unique_password()));
    let new_password = unique_password();
    reset(&svc, newer.token(), &new_password).expect_status(200);
    svc.signin(&account.email, &new_password).expect_status(200);
    assert_no_violations(&svc);
}

fn racing_resets_of_one_token_have_one_winner(backend: Backend) {
    let (receiver, svc) = start(backend);
    if backend == Backend::Cloud {
        // Hold each batch's commit open a little, so the racers do overlap.
        svc.standin().configure(&json!({"commit_gap_ms": 30}));
    }
    let account = svc.create_account();
    let old = svc.sign_in(&account);
    let token = recovery_message(&svc, &receiver, &account)
        .token()
        .to_string();
    let passwords: Vec<String> = (0..6).map(|_| unique_password()).collect();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(passwords.len()));
    let threads: Vec<_> = passwords
        .iter()
        .map(|password| {
            let call = svc
                .post("/auth/password/reset")
                .json(&json!({ "token": token, "newPassword": password }));
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                call.send()
            })
        })
        .collect();
    let replies: Vec<Reply> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    let mut winner = None;
    for (reply, password) in replies.iter().zip(&passwords) {
        if reply.status == 200 {
            winner = Some(password.clone());
        } else {
            assert_invalid_token(reply);
        }
    }
    // The winner's password is the one set; no loser's is.
    let winner = winner.unwrap();
    svc.signin(&account.email, &winner).expect_status(200);
    for password in passwords.iter().filter(|p| **p != winner) {
        assert_problem(&svc.signin(&account.email, password), 401);
    }
    assert_problem(&svc.refresh(&old.refresh), 401);
    assert_eq!(
        count(
            &svc.db(),
            "SELECT count(*) FROM audit_events WHERE event = 'password_reset' AND outcome = 'success'"
        ),
        1
    );
    assert_no_violations(&svc);
}

fn tokens_only_work_for_their_purpose(backend: Backend) {
    let (receiver, svc) = start(backend);
    let account = svc.create_account();
    let verification = receiver.wait_for("verification", &account.email, WAIT);
    let recovery = recovery_message(&svc, &receiver, &account);
    // Swapped, each is refused, and neither is consumed by the attempt.
    assert_invalid_token(&reset(&svc, verification.token(), &unique_password()));
    assert_invalid_token(&verify(&svc, recovery.token()));
    assert!(token_row_unused(
        &svc,
        recovery.token(),
        &account.id,
        "recovery"
    ));
    assert!(token_row_unused(
        &svc,
        verification.token(),
        &account.id,
        "verification"
    ));
    svc.sign_in(&account);
    // Each works where it belongs.
    verify(&svc, verification.token()).expect_status(200);
    reset(&svc, recovery.token(), &unique_password()).expect_status(200);
    assert_no_violations(&svc);
}

/// The headers of an answer without the ones that differ per request.
fn comparable_headers(reply: &Reply) -> Vec<(String, String)> {
    const PER_REQUEST: [&str; 4] = ["x-request-id", "date", "traceparent", "tracestate"];
    let mut headers: Vec<(String, String)> = reply
        .headers
        .iter()
        .filter(|(name, _)| !PER_REQUEST.contains(&name.as_str()))
        .cloned()
        .collect();
    headers.sort();
    headers
}

fn forgot_answers_alike_for_known_unknown_and_inactive_addresses(backend: Backend) {
    let (receiver, svc) = start(backend);
    let known = svc.create_account();
    let inactive = svc.create_account();
    svc.db()
        .execute(
            "UPDATE users SET is_active = 0 WHERE id = ?1",
            [inactive.id.as_str()],
        )
        .unwrap();
    let unknown = unique_email("nobody");

    let replies = [
        forgot(&svc, &unknown),
        forgot(&svc, &inactive.email),
        forgot(&svc, &known.email),
        forgot(&svc, &format!("  {}  ", known.email.to_uppercase())),
    ];
    for reply in &replies {
        assert_forgot_accepted(reply);
    }
    let reference = &replies[2];
    for reply in &replies {
        assert_eq!(reply.status, reference.status);
        assert_eq!(reply.body, reference.body, "{reply}\n---\n{reference}");
        assert_eq!(
            comparable_headers(reply),
            comparable_headers(reference),
            "{reply}\n---\n{reference}"
        );
    }
    // The known address got two messages (case and spaces do not matter);
    // the others none, and nothing was stored for them.
    receiver.wait_for_count("recovery", &known.email, 2, WAIT);
    receiver.assert_nothing_for("recovery", &unknown, Duration::from_millis(500));
    receiver.assert_nothing_for("recovery", &inactive.email, Duration::ZERO);
    assert_eq!(recovery_rows(&svc, &inactive.id), 0);
    assert_eq!(
        count(
            &svc.db(),
            "SELECT count(*) FROM one_time_tokens WHERE purpose = 'recovery'"
        ),
        1
    );
    assert_no_violations(&svc);
}

fn forgot_rejects_malformed_input(backend: Backend) {
    let (receiver, svc) = start(backend);
    for body in [
        json!({}),
        json!({ "email": "" }),
        json!({ "email": "not-an-email" }),
    ] {
        let reply = svc.post("/auth/password/forgot").json(&body).send();
        let problem = assert_problem(&reply, 400);
        assert_eq!(problem["code"], "FST_ERR_VALIDATION", "{body}: {reply}");
        assert_security_headers(&reply);
    }
    // Not even the right shape (as every route answers it).
    let reply = svc
        .post("/auth/password/forgot")
        .json(&json!({ "email": 42 }))
        .send();
    assert_problem(&reply, 400);
    for body in [json!({}), json!({ "token": "" }), json!({ "token": 7 })] {
        let reply = svc.post("/auth/email/verify").json(&body).send();
        assert_problem(&reply, 400);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(receiver.received().is_empty(), "{:#?}", receiver.received());
}

fn forgot_is_throttled_per_account_and_a_lock_out_still_answers_202(backend: Backend) {
    let (receiver, svc) = start(backend);
    let account = svc.create_account();
    let first = forgot(&svc, &account.email);
    assert_forgot_accepted(&first);
    for _ in 1..5 {
        assert_forgot_accepted(&forgot(&svc, &account.email));
    }
    receiver.wait_for_count("recovery", &account.email, 5, WAIT);
    // The sixth within the hour: locked out, the same answer, nothing sent.
    let locked = forgot(&svc, &account.email);
    assert_forgot_accepted(&locked);
    assert_eq!(locked.body, first.body);
    assert_eq!(comparable_headers(&locked), comparable_headers(&first));
    std::thread::sleep(Duration::from_millis(1000));
    let messages = receiver
        .messages()
        .into_iter()
        .filter(|m| m.kind() == "recovery")
        .count();
    assert_eq!(messages, 5);
    svc.wait_for_audit("recovery_requested denied", |lines| {
        lines.iter().any(|l| {
            l["event"] == "recovery_requested"
                && l["outcome"] == "denied"
                && l["reason"] == "locked_out"
        })
    });
    assert_eq!(
        count(
            &svc.db(),
            "SELECT count(*) FROM throttle WHERE key LIKE 'rcv:%' AND locked_until > 0"
        ),
        1
    );
    // Sign-in is a separate counter: the account still signs in.
    svc.sign_in(&account);
    assert_no_violations(&svc);
}

fn reset_checks_the_password_rules_before_the_token(backend: Backend) {
    let (receiver, svc) = start(backend);
    let account = svc.create_account();
    let token = recovery_message(&svc, &receiver, &account)
        .token()
        .to_string();
    for body in [
        json!({ "token": token, "newPassword": "short" }),
        json!({ "token": token }),
        json!({ "newPassword": unique_password() }),
    ] {
        let reply = svc.post("/auth/password/reset").json(&body).send();
        let problem = assert_problem(&reply, 400);
        assert_eq!(problem["code"], "FST_ERR_VALIDATION", "{reply}");
    }
    // A rule failure does not use the token up.
    assert!(token_row_unused(&svc, &token, &account.id, "recovery"));
    reset(&svc, &token, &unique_password()).expect_status(200);
}

// --- verification -------------------------------------------------------------------

fn signup_sends_a_verification_message_and_verify_marks_the_address(backend: Backend) {
    let receiver = WebhookReceiver::start();
    let public_url = "https://app.example.test";
    let svc = Options::new(backend)
        .webhook(&receiver)
        .var("public_url", public_url)
        .start();
    let email = unique_email("verify");
    let password = unique_password();
    let signup = svc.signup(&email, &password, "Veri Fication");
    signup.expect_status(201);
    let user_id = signup.json()["userId"].as_str().unwrap().to_string();
    let message = receiver.wait_for("verification", &email, WAIT);
    check_message(
        &message,
        "verification",
        &email,
        public_url,
        86_400,
        &request_id(&signup),
    );
    assert!(token_row_unused(
        &svc,
        message.token(),
        &user_id,
        "verification"
    ));

    let tokens = tokens_of(svc.signin(&email, &password).expect_status(200));
    let (_, claims) = jwt_parts(&tokens.access).unwrap();
    assert_eq!(claims["email_verified"], false, "{claims}");
    let profile = svc.profile(&tokens.access);
    profile.expect_status(200);
    assert_eq!(profile.json()["user"]["emailVerified"], false, "{profile}");

    let reply = verify(&svc, message.token());
    reply.expect_status(200);
    assert_eq!(
        reply.json(),
        json!({ "message": "Email address verified", "emailVerified": true }),
        "{reply}"
    );
    assert_security_headers(&reply);

    let profile = svc.profile(&tokens.access);
    assert_eq!(profile.json()["user"]["emailVerified"], true, "{profile}");
    let fresh = tokens_of(svc.signin(&email, &password).expect_status(200));
    let (_, claims) = jwt_parts(&fresh.access).unwrap();
    assert_eq!(claims["email_verified"], true, "{claims}");
    // Once only.
    assert_invalid_token(&verify(&svc, message.token()));

    let db = svc.db();
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM users WHERE id = '{user_id}' AND email_verified_at IS NOT NULL"
            )
        ),
        1
    );
    svc.wait_for_audit("email_verified", |lines| {
        lines
            .iter()
            .any(|l| l["event"] == "email_verified" && l["outcome"] == "success")
    });
    assert_no_violations(&svc);
}

fn require_verified_email_refuses_sign_in_until_verified(backend: Backend) {
    let receiver = WebhookReceiver::start();
    let svc = Options::new(backend)
        .webhook(&receiver)
        .require_verified_email()
        .start();
    let account = svc.create_account();
    let message = receiver.wait_for("verification", &account.email, WAIT);

    let refused = svc.signin(&account.email, &account.password);
    let body = assert_problem(&refused, 403);
    assert_eq!(body["code"], "email_not_verified", "{refused}");
    assert_no_cookies(&refused);
    assert_security_headers(&refused);
    // A wrong password still says only that.
    assert_problem(&svc.signin(&account.email, "wrong-password-x"), 401);
    svc.wait_for_audit("signin denied email_not_verified", |lines| {
        lines.iter().any(|l| {
            l["event"] == "signin"
                && l["outcome"] == "denied"
                && l["reason"] == "email_not_verified"
        })
    });
    assert_eq!(
        count(
            &svc.db(),
            &format!(
                "SELECT count(*) FROM sessions WHERE user_id = '{}'",
                account.id
            )
        ),
        0
    );

    verify(&svc, message.token()).expect_status(200);
    let tokens = svc.sign_in(&account);
    let (_, claims) = jwt_parts(&tokens.access).unwrap();
    assert_eq!(claims["email_verified"], true);
    assert_no_violations(&svc);
}

fn resend_replaces_the_verification_token(backend: Backend) {
    let (receiver, svc) = start(backend);
    let account = svc.create_account();
    let first = receiver.wait_for("verification", &account.email, WAIT);
    let tokens = svc.sign_in(&account);

    assert_problem(&svc.post("/auth/email/verify/resend").send(), 401);
    let reply = resend(&svc, &tokens.access);
    reply.expect_status(202);
    assert_eq!(
        reply.json(),
        json!({ "message": "Verification email sent" }),
        "{reply}"
    );
    assert_security_headers(&reply);
    let second = receiver
        .wait_for_count("verification", &account.email, 2, WAIT)
        .pop()
        .unwrap();
    check_message(
        &second,
        "verification",
        &account.email,
        DEFAULT_PUBLIC_URL,
        86_400,
        &request_id(&reply),
    );
    assert_ne!(first.token(), second.token());
    // The Authorization header works as well as the cookie.
    svc.post("/auth/email/verify/resend")
        .bearer(&tokens.access)
        .send()
        .expect_status(202);
    let third = receiver
        .wait_for_count("verification", &account.email, 3, WAIT)
        .pop()
        .unwrap();

    assert_invalid_token(&verify(&svc, first.token()));
    assert_invalid_token(&verify(&svc, second.token()));
    verify(&svc, third.token()).expect_status(200);
    // Verified: nothing more to send.
    let already = resend(&svc, &tokens.access);
    assert_problem(&already, 409);
    assert_no_violations(&svc);
}

fn resend_is_throttled_per_user(backend: Backend) {
    let (receiver, svc) = start(backend);
    let account = svc.create_account();
    let other = svc.create_account();
    let tokens = svc.sign_in(&account);
    for _ in 0..5 {
        resend(&svc, &tokens.access).expect_status(202);
    }
    let throttled = resend(&svc, &tokens.access);
    assert_problem(&throttled, 429);
    let retry: u64 = throttled
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {throttled}"));
    assert!(retry >= 1, "{throttled}");
    // Sign-up's message and the five resent ones; not the refused one.
    receiver.wait_for_count("verification", &account.email, 6, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        receiver
            .messages()
            .iter()
            .filter(|m| m.to().eq_ignore_ascii_case(&account.email))
            .count(),
        6
    );
    // Per user: another account is not throttled.
    let other_tokens = svc.sign_in(&other);
    resend(&svc, &other_tokens.access).expect_status(202);
    assert_no_violations(&svc);
}

// --- delivery failures ----------------------------------------------------------------

fn a_webhook_answering_500_still_gives_202_and_keeps_the_token(backend: Backend) {
    let (receiver, svc) = start(backend);
    let account = svc.create_account();
    receiver.wait_for("verification", &account.email, WAIT);
    let tokens = svc.sign_in(&account);
    receiver.set_answer(Answer::Status(500));
    let before = receiver.received().len();

    let reply = forgot(&svc, &account.email);
    assert_forgot_accepted(&reply);
    let attempt = receiver.wait_for_requests(before + 1, WAIT)[before].clone();
    assert!(attempt.verified, "{attempt:#?}");
    assert_eq!(attempt.answered, 500);
    assert_eq!(attempt.kind(), "recovery");
    let token = attempt.token().to_string();
    // The token is kept.
    assert!(token_row_unused(&svc, &token, &account.id, "recovery"));
    let line = wait_for_delivery_line(&svc, "failure", &request_id(&reply));
    check_failure_line(&line, "recovery", &[&token, &account.email]);

    // Resend too: 202, the failure logged.
    let reply = resend(&svc, &tokens.access);
    reply.expect_status(202);
    let line = wait_for_delivery_line(&svc, "failure", &request_id(&reply));
    check_failure_line(&line, "verification", &[&account.email]);

    // The kept token works.
    receiver.set_answer(Answer::Accept);
    reset(&svc, &token, &unique_password()).expect_status(200);
    assert_no_violations(&svc);
}

fn a_webhook_that_is_down_still_gives_202_and_keeps_the_token(backend: Backend) {
    let (receiver, svc) = start(backend);
    let account = svc.create_account();
    receiver.wait_for("verification", &account.email, WAIT);
    receiver.go_down();

    let reply = forgot(&svc, &account.email);
    assert_forgot_accepted(&reply);
    let line = wait_for_delivery_line(&svc, "failure", &request_id(&reply));
    check_failure_line(&line, "recovery", &[&account.email]);
    assert_eq!(recovery_rows(&svc, &account.id), 1);
    assert_eq!(
        count(
            &svc.db(),
            &format!(
                "SELECT count(*) FROM one_time_tokens WHERE user_id = '{}' AND purpose = 'recovery' AND used_at IS NULL",
                account.id
            )
        ),
        1
    );
    assert_no_violations(&svc);

    // Back up: the next request is delivered.
    receiver.go_up();
    let message = recovery_message(&svc, &receiver, &account);
    reset(&svc, message.token(), &unique_password()).expect_status(200);
    assert_no_violations(&svc);
}

fn a_hung_webhook_does_not_delay_the_answer(backend: Backend) {
    let receiver = WebhookReceiver::start();
    let svc = Options::new(backend)
        .webhook(&receiver)
        .var("email_webhook_timeout_ms", "3000")
        .start();
    let account = svc.create_account();
    receiver.wait_for("verification", &account.email, WAIT);
    receiver.set_answer(Answer::Hang);
    let before = receiver.received().len();

    let started = Instant::now();
    let reply = forgot(&svc, &account.email);
    let took = started.elapsed();
    assert_forgot_accepted(&reply);
    // The answer was out before the delivery even started waiting.
    assert!(
        took < Duration::from_millis(2000),
        "forgot took {took:?} with a webhook that never answers"
    );
    receiver.wait_for_requests(before + 1, WAIT);
    let line = wait_for_delivery_line(&svc, "failure", &request_id(&reply));
    check_failure_line(&line, "recovery", &[&account.email]);
    receiver.set_answer(Answer::Accept);
    assert_eq!(recovery_rows(&svc, &account.id), 1);
    assert_no_violations(&svc);
}

fn a_receiver_with_another_secret_rejects_the_messages(backend: Backend) {
    let receiver = WebhookReceiver::start();
    let service_secret = WebhookReceiver::random_secret();
    let svc = Options::new(backend)
        .webhook(&receiver)
        .var("email_webhook_secret", &service_secret)
        .start();
    let account = svc.create_account();
    let reply = forgot(&svc, &account.email);
    assert_forgot_accepted(&reply);
    let rejected = receiver.wait_until("two rejected messages", WAIT, |all| {
        all.iter().filter(|m| !m.verified).count() >= 2
    });
    assert!(receiver.messages().is_empty());
    for message in rejected {
        assert_eq!(message.answered, 401);
        // The signature is real: it verifies with the service's secret.
        message.verify_with(&service_secret).unwrap();
        assert!(message.verify_with(receiver.secret()).is_err());
    }
    // The service saw the refusal.
    let line = wait_for_delivery_line(&svc, "failure", &request_id(&reply));
    check_failure_line(&line, "recovery", &[&account.email]);
}

// --- configuration ----------------------------------------------------------------

fn development_without_a_webhook_logs_the_link(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let reply = forgot(&svc, &account.email);
    assert_forgot_accepted(&reply);
    let id = request_id(&reply);
    let line = wait_for_delivery_line(&svc, "logged", &id);
    assert_eq!(line["level"], "warn", "{line}");
    assert_eq!(line["kind"], "recovery", "{line}");
    assert!(
        line["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("DEVELOPMENT ONLY")),
        "{line}"
    );
    let link = line["link"].as_str().unwrap();
    let token = link
        .strip_prefix(&format!("{DEFAULT_PUBLIC_URL}/reset-password?token="))
        .unwrap_or_else(|| panic!("link {link}"));
    // The logged link is the stored token's (not used here: that would put
    // it among the secrets the log must not hold).
    assert!(token_row_unused(&svc, token, &account.id, "recovery"));
    assert!(
        !line.to_string().contains(&account.email),
        "the address in {line}"
    );
    // Sign-up's verification link too.
    assert!(
        delivery_lines(&svc)
            .iter()
            .any(|l| l["outcome"] == "logged" && l["kind"] == "verification"),
        "{:#?}",
        delivery_lines(&svc)
    );
}

fn production_without_a_webhook_refuses_the_flows(backend: Backend) {
    let svc = Options::new(backend).production().start();
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let reply = forgot(&svc, &account.email);
    assert_problem(&reply, 503);
    let reply = resend(&svc, &tokens.access);
    assert_problem(&reply, 503);
    // No recovery token, and no verification token but sign-up's.
    let db = svc.db();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM one_time_tokens WHERE purpose = 'recovery'"
        ),
        0
    );
    assert!(count(&db, "SELECT count(*) FROM one_time_tokens") <= 1);
    // (Logged on the components' stderr.)
    let configuration_errors = svc
        .output()
        .lines()
        .filter(|l| l.contains("misconfigured") && l.contains("email_webhook_url"))
        .count();
    assert!(
        configuration_errors >= 2,
        "no configuration error logged:\n{}",
        svc.output()
    );
    // Nothing was logged as sent or shown.
    assert!(
        delivery_lines(&svc).is_empty(),
        "{:#?}",
        delivery_lines(&svc)
    );
}
