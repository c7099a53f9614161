//! Database round trips per route, measured on the SQLite Cloud backend: the
//! stand-in counts the SQL requests each API call causes, and each count
//! must be what `crates/store/src/queries.rs` documents. Production mode
//! with a configured signing key, so no development-key read is added
//! (those are measured separately at the end). The table is printed and
//! written to `target/e2e/round-trips.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use latch_e2e::{
    Backend, Options, Reply, Service, WebhookReceiver, b64url_encode, session_id_of, tokens_of,
    unique_email, unique_password,
};
use serde_json::json;

/// How long a webhook message may take to arrive.
const WAIT: Duration = Duration::from_secs(15);

struct Row {
    route: &'static str,
    case: &'static str,
    status: u16,
    expected: u64,
    measured: u64,
}

struct Meter<'a> {
    svc: &'a Service,
    mode: &'static str,
    rows: Vec<(&'static str, Row)>,
}

impl Meter<'_> {
    /// Runs `call` alone and records how many SQL requests it caused.
    fn measure(
        &mut self,
        route: &'static str,
        case: &'static str,
        expected: u64,
        status: u16,
        call: impl FnOnce() -> Reply,
    ) -> Reply {
        let standin = self.svc.standin();
        standin.reset_stats();
        let reply = call();
        let measured = standin.sql_requests();
        assert_eq!(reply.status, status, "{route} ({case}): {reply}");
        self.rows.push((
            self.mode,
            Row {
                route,
                case,
                status,
                expected,
                measured,
            },
        ));
        reply
    }
}

#[test]
fn round_trips_per_route_match_the_store() {
    let receiver = WebhookReceiver::start();
    let svc = Options::new(Backend::Cloud)
        .production()
        .var("mfa_encryption_key", &b64url_encode(&[42u8; 32]))
        .webhook(&receiver)
        .start();
    let mut m = Meter {
        svc: &svc,
        mode: "production",
        rows: Vec::new(),
    };
    let email = unique_email("rt");
    let password = unique_password();

    m.measure("GET /health", "ok", 0, 200, || svc.get("/health").send());
    m.measure("GET /ready", "ready", 1, 200, || svc.get("/ready").send());
    m.measure(
        "GET /.well-known/jwks.json",
        "keys from variables",
        0,
        200,
        || svc.get("/.well-known/jwks.json").send(),
    );
    m.measure("POST /auth/signup", "created", 1, 201, || {
        svc.signup(&email, &password, "Round Trip")
    });
    m.measure("POST /auth/signup", "email taken", 1, 409, || {
        svc.signup(&email, &unique_password(), "Round Trip")
    });
    m.measure("POST /auth/signup", "invalid fields", 0, 400, || {
        svc.post("/auth/signup").json(&json!({})).send()
    });
    let first = tokens_of(&m.measure("POST /auth/signin", "signed in", 2, 200, || {
        svc.signin(&email, &password)
    }));
    m.measure("POST /auth/signin", "wrong password", 2, 401, || {
        svc.signin(&email, "wrong-password-x")
    });
    m.measure("POST /auth/signin", "unknown email", 2, 401, || {
        svc.signin(&unique_email("nobody"), "wrong-password-x")
    });
    m.measure("POST /auth/signin", "invalid fields", 0, 400, || {
        svc.post("/auth/signin").json(&json!({})).send()
    });
    m.measure("GET /user/profile", "ok", 1, 200, || {
        svc.profile(&first.access)
    });
    m.measure("GET /user/profile", "no token", 0, 401, || {
        svc.get("/user/profile").send()
    });
    m.measure("PUT /user/profile", "updated", 1, 200, || {
        svc.put("/user/profile")
            .access_cookie(&first.access)
            .json(&json!({"fullName": "Round Trip Two"}))
            .send()
    });
    m.measure("GET /auth/sessions", "listed", 1, 200, || {
        svc.get("/auth/sessions")
            .access_cookie(&first.access)
            .send()
    });
    let second = tokens_of(&svc.signin(&email, &password));
    let second_path = format!("/auth/sessions/{}", session_id_of(&second.access));
    m.measure("DELETE /auth/sessions/:id", "revoked", 1, 204, || {
        svc.delete(&second_path).access_cookie(&first.access).send()
    });
    m.measure("DELETE /auth/sessions/:id", "not found", 1, 404, || {
        svc.delete(&second_path).access_cookie(&first.access).send()
    });
    m.measure("DELETE /auth/sessions/:id", "not an id", 0, 404, || {
        svc.delete("/auth/sessions/nope")
            .access_cookie(&first.access)
            .send()
    });
    m.measure("POST /auth/refresh", "rotated", 1, 200, || {
        svc.refresh(&first.refresh)
    });
    m.measure("POST /auth/refresh", "reuse detected", 1, 401, || {
        svc.refresh(&first.refresh)
    });
    m.measure("POST /auth/refresh", "malformed token", 0, 401, || {
        svc.refresh("garbage")
    });
    let third = tokens_of(&svc.signin(&email, &password));
    m.measure(
        "POST /auth/password",
        "wrong current password",
        2,
        403,
        || {
            svc.post("/auth/password")
            .access_cookie(&third.access)
            .json(&json!({"currentPassword": "wrong-password-x", "newPassword": unique_password()}))
            .send()
        },
    );
    let new_password = unique_password();
    m.measure("POST /auth/password", "changed", 2, 200, || {
        svc.post("/auth/password")
            .access_cookie(&third.access)
            .json(&json!({"currentPassword": password, "newPassword": new_password}))
            .send()
    });
    m.measure("POST /auth/signout", "signed out", 1, 200, || {
        svc.post("/auth/signout")
            .access_cookie(&third.access)
            .send()
    });
    m.measure(
        "POST /auth/signout",
        "session already ended",
        1,
        401,
        || {
            svc.post("/auth/signout")
                .access_cookie(&third.access)
                .send()
        },
    );
    for i in 0..5 {
        svc.signin(&email, &format!("wrong-password-{i}"));
    }
    m.measure("POST /auth/signin", "locked out", 1, 429, || {
        svc.signin(&email, &new_password)
    });

    // Recovery and verification (issue 13); messages go to the receiver
    // after the answer, so they add no round trip. Verification first: a
    // reset marks the address verified too.
    let email = unique_email("rtrcv");
    svc.signup(&email, &password, "Round Trip Recovery")
        .expect_status(201);
    let first_verification = receiver.wait_for("verification", &email, WAIT);
    let tokens = tokens_of(&svc.signin(&email, &password));
    let resend = |access: &str| {
        svc.post("/auth/email/verify/resend")
            .access_cookie(access)
            .send()
    };
    m.measure("POST /auth/email/verify/resend", "sent", 1, 202, || {
        resend(&tokens.access)
    });
    let second_verification = receiver
        .wait_for_count("verification", &email, 2, WAIT)
        .pop()
        .unwrap();
    let verify = |token: &str| {
        svc.post("/auth/email/verify")
            .json(&json!({ "token": token }))
            .send()
    };
    m.measure("POST /auth/email/verify", "invalid fields", 0, 400, || {
        svc.post("/auth/email/verify").json(&json!({})).send()
    });
    m.measure(
        "POST /auth/email/verify",
        "superseded token",
        1,
        400,
        || verify(first_verification.token()),
    );
    m.measure("POST /auth/email/verify", "verified", 1, 200, || {
        verify(second_verification.token())
    });
    m.measure(
        "POST /auth/email/verify/resend",
        "already verified",
        1,
        409,
        || resend(&tokens.access),
    );
    m.measure("POST /auth/email/verify/resend", "no token", 0, 401, || {
        svc.post("/auth/email/verify/resend").send()
    });

    let forgot = |address: &str| {
        svc.post("/auth/password/forgot")
            .json(&json!({ "email": address }))
            .send()
    };
    m.measure(
        "POST /auth/password/forgot",
        "known address",
        1,
        202,
        || forgot(&email),
    );
    let recovery = receiver.wait_for("recovery", &email, WAIT);
    m.measure(
        "POST /auth/password/forgot",
        "unknown address",
        1,
        202,
        || forgot(&unique_email("nobody")),
    );
    m.measure(
        "POST /auth/password/forgot",
        "invalid fields",
        0,
        400,
        || svc.post("/auth/password/forgot").json(&json!({})).send(),
    );
    let reset = |token: &str, new_password: &str| {
        svc.post("/auth/password/reset")
            .json(&json!({ "token": token, "newPassword": new_password }))
            .send()
    };
    m.measure(
        "POST /auth/password/reset",
        "invalid fields",
        0,
        400,
        || {
            svc.post("/auth/password/reset")
                .json(&json!({ "token": recovery.token() }))
                .send()
        },
    );
    m.measure("POST /auth/password/reset", "reset", 1, 200, || {
        reset(recovery.token(), &unique_password())
    });
    m.measure("POST /auth/password/reset", "used token", 1, 400, || {
        reset(recovery.token(), &unique_password())
    });

    // The admin API (issue 15): the token's role is checked without the
    // database, the caller's session and role again in each query.
    let (admin_account, admin) = svc.create_admin();
    let target = svc.create_account();
    let target_tokens = svc.sign_in(&target);
    let user_path = format!("/admin/users/{}", target.id);
    m.measure("GET /admin/users", "listed", 1, 200, || {
        svc.get("/admin/users?limit=5")
            .access_cookie(&admin.access)
            .send()
    });
    m.measure("GET /admin/users", "not an admin", 0, 403, || {
        svc.get("/admin/users")
            .access_cookie(&target_tokens.access)
            .send()
    });
    m.measure("GET /admin/users", "bad limit", 0, 400, || {
        svc.get("/admin/users?limit=0")
            .access_cookie(&admin.access)
            .send()
    });
    m.measure("GET /admin/users/:id", "found", 2, 200, || {
        svc.get(&user_path).access_cookie(&admin.access).send()
    });
    m.measure("GET /admin/users/:id", "unknown id", 1, 404, || {
        svc.get("/admin/users/AAAAAAAAAAAAAAAAAAAAAA")
            .access_cookie(&admin.access)
            .send()
    });
    m.measure("PATCH /admin/users/:id", "updated", 1, 200, || {
        svc.call("PATCH", &user_path)
            .access_cookie(&admin.access)
            .json(&json!({"roles": ["user"]}))
            .send()
    });
    m.measure("PATCH /admin/users/:id", "self-demotion", 0, 403, || {
        svc.call("PATCH", &format!("/admin/users/{}", admin_account.id))
            .access_cookie(&admin.access)
            .json(&json!({"isActive": false}))
            .send()
    });
    m.measure("POST /admin/users/:id/unlock", "unlocked", 2, 200, || {
        svc.post(&format!("{user_path}/unlock"))
            .access_cookie(&admin.access)
            .send()
    });
    m.measure("POST /admin/users/:id/unlock", "unknown id", 1, 404, || {
        svc.post("/admin/users/AAAAAAAAAAAAAAAAAAAAAA/unlock")
            .access_cookie(&admin.access)
            .send()
    });
    m.measure(
        "POST /admin/users/:id/sessions/revoke",
        "revoked",
        1,
        200,
        || {
            svc.post(&format!("{user_path}/sessions/revoke"))
                .access_cookie(&admin.access)
                .send()
        },
    );
    m.measure("GET /admin/audit", "listed", 1, 200, || {
        svc.get("/admin/audit?limit=5")
            .access_cookie(&admin.access)
            .send()
    });

    // The second factor (issue 14): enroll 1; confirm, remove,
    // recovery-codes, verify and sign-in with a factor 2 each; a wrong code
    // 2 (the read, then recording the failure). Refusals that need only the
    // first read (used challenge, step-up, no factor, locked out) take 1,
    // and malformed bodies none, as elsewhere in this table.
    let user = svc.create_account();
    let enrolment = svc.sign_in(&user);
    let (mut authenticator, _) = {
        let reply = m.measure("POST /auth/mfa/totp/enroll", "pending", 1, 200, || {
            svc.mfa_enroll(&enrolment.access)
        });
        let secret = reply.json()["secret"].as_str().unwrap().to_string();
        (latch_e2e::Authenticator::from_base32(&secret), secret)
    };
    let confirm = |code: &str| svc.mfa_confirm(&enrolment.access, code);
    m.measure(
        "POST /auth/mfa/totp/confirm",
        "invalid fields",
        0,
        400,
        || {
            svc.post("/auth/mfa/totp/confirm")
                .access_cookie(&enrolment.access)
                .json(&json!({}))
                .send()
        },
    );
    m.measure("POST /auth/mfa/totp/confirm", "wrong code", 2, 400, || {
        confirm(&authenticator.wrong_code())
    });
    m.measure("POST /auth/mfa/totp/confirm", "confirmed", 2, 200, || {
        confirm(&authenticator.fresh_code())
    });
    m.measure(
        "POST /auth/mfa/totp/enroll",
        "already enabled",
        1,
        409,
        || svc.mfa_enroll(&enrolment.access),
    );
    let challenge = |reply: &Reply| reply.json()["challenge"].as_str().unwrap().to_string();
    let first_challenge = challenge(&m.measure(
        "POST /auth/signin",
        "second factor required",
        2,
        200,
        || svc.signin(&user.email, &user.password),
    ));
    m.measure("POST /auth/mfa/verify", "invalid fields", 0, 400, || {
        svc.post("/auth/mfa/verify").json(&json!({})).send()
    });
    m.measure("POST /auth/mfa/verify", "wrong code", 2, 400, || {
        svc.mfa_verify(&first_challenge, &authenticator.wrong_code())
    });
    let stepped = tokens_of(&m.measure("POST /auth/mfa/verify", "code", 2, 200, || {
        svc.mfa_verify(&first_challenge, &authenticator.fresh_code())
    }));
    m.measure("POST /auth/mfa/verify", "used challenge", 1, 400, || {
        svc.mfa_verify(&first_challenge, &authenticator.peek_code())
    });
    let regenerate = |access: &str, code: &str| {
        svc.post("/auth/mfa/recovery-codes")
            .access_cookie(access)
            .json(&json!({ "code": code }))
            .send()
    };
    m.measure(
        "POST /auth/mfa/recovery-codes",
        "wrong code",
        2,
        400,
        || regenerate(&stepped.access, &authenticator.wrong_code()),
    );
    let codes = m.measure(
        "POST /auth/mfa/recovery-codes",
        "regenerated",
        2,
        200,
        || regenerate(&stepped.access, &authenticator.fresh_code()),
    );
    let codes: Vec<String> = codes.json()["recoveryCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let second_challenge = challenge(&svc.signin(&user.email, &user.password));
    m.measure("POST /auth/mfa/verify", "recovery code", 2, 200, || {
        svc.mfa_verify_recovery(&second_challenge, &codes[0])
    });
    let remove = |access: &str, body: serde_json::Value| {
        svc.delete("/auth/mfa/totp")
            .access_cookie(access)
            .json(&body)
            .send()
    };
    m.measure("DELETE /auth/mfa/totp", "aal1 session", 1, 403, || {
        remove(&enrolment.access, json!({ "recoveryCode": codes[1] }))
    });
    m.measure("DELETE /auth/mfa/totp", "removed", 2, 200, || {
        remove(&stepped.access, json!({ "recoveryCode": codes[1] }))
    });
    m.measure("DELETE /auth/mfa/totp", "no factor", 1, 404, || {
        remove(&stepped.access, json!({ "recoveryCode": codes[2] }))
    });
    // Locked out: five wrong codes, then even a right one is refused.
    let locked = svc.create_account();
    let locked_tokens = svc.sign_in(&locked);
    let (mut locked_authenticator, _) = svc.enable_mfa(&locked_tokens.access);
    let locked_challenge = challenge(&svc.signin(&locked.email, &locked.password));
    for _ in 0..5 {
        svc.mfa_verify(&locked_challenge, &locked_authenticator.wrong_code())
            .expect_status(400);
    }
    m.measure("POST /auth/mfa/verify", "locked out", 1, 429, || {
        svc.mfa_verify(&locked_challenge, &locked_authenticator.fresh_code())
    });

    // Development mode: no signing_key, the key lives in the database and
    // is read (and once stored) by every route that signs or verifies.
    let dev = Options::new(Backend::Cloud).start();
    let mut d = Meter {
        svc: &dev,
        mode: "development",
        rows: Vec::new(),
    };
    let email = unique_email("rtdev");
    dev.signup(&email, &password, "Dev Mode").expect_status(201);
    d.measure(
        "POST /auth/signin",
        "first ever (key generated)",
        4,
        200,
        || dev.signin(&email, &password),
    );
    let tokens = tokens_of(&d.measure("POST /auth/signin", "signed in", 3, 200, || {
        dev.signin(&email, &password)
    }));
    d.measure("GET /user/profile", "ok", 2, 200, || {
        dev.profile(&tokens.access)
    });
    d.measure("POST /auth/refresh", "rotated", 2, 200, || {
        dev.refresh(&tokens.refresh)
    });
    d.measure("POST /auth/email/verify/resend", "sent", 2, 202, || {
        dev.post("/auth/email/verify/resend")
            .access_cookie(&tokens.access)
            .send()
    });
    d.measure(
        "GET /.well-known/jwks.json",
        "key from the database",
        1,
        200,
        || dev.get("/.well-known/jwks.json").send(),
    );
    // The second factor's key derives from the development signing key.
    let reply = d.measure("POST /auth/mfa/totp/enroll", "pending", 2, 200, || {
        dev.mfa_enroll(&tokens.access)
    });
    let mut authenticator =
        latch_e2e::Authenticator::from_base32(reply.json()["secret"].as_str().unwrap());
    d.measure("POST /auth/mfa/totp/confirm", "confirmed", 3, 200, || {
        dev.mfa_confirm(&tokens.access, &authenticator.fresh_code())
    });
    let reply = d.measure(
        "POST /auth/signin",
        "second factor required",
        3,
        200,
        || dev.signin(&email, &password),
    );
    let dev_challenge = reply.json()["challenge"].as_str().unwrap().to_string();
    d.measure("POST /auth/mfa/verify", "code", 3, 200, || {
        dev.mfa_verify(&dev_challenge, &authenticator.fresh_code())
    });

    let rows: Vec<(&str, Row)> = m.rows.into_iter().chain(d.rows).collect();
    let mut table = String::from(
        "| Mode | Route | Case | Status | Round trips (queries.rs) | Measured |\n|---|---|---|---|---|---|\n",
    );
    for (mode, row) in &rows {
        table.push_str(&format!(
            "| {mode} | `{}` | {} | {} | {} | {}{} |\n",
            row.route,
            row.case,
            row.status,
            row.expected,
            row.measured,
            if row.measured == row.expected {
                ""
            } else {
                " MISMATCH"
            }
        ));
    }
    println!(
        "\nDatabase round trips per API call (SQLite Cloud backend, counted by the stand-in):\n\n{table}"
    );
    let dir = latch_e2e::repo_root().join("target/e2e");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("round-trips.md"), &table);
    }
    let mismatches: Vec<String> = rows
        .iter()
        .filter(|(_, r)| r.measured != r.expected)
        .map(|(mode, r)| {
            format!(
                "{mode} {} ({}): expected {}, measured {}",
                r.route, r.case, r.expected, r.measured
            )
        })
        .collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
