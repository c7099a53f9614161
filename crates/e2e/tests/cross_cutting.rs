//! What holds across routes, against both backends: the error format,
//! methods and bodies, garbage input, security headers, throttling by client
//! address, races, the audit trail and what the logs may never contain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use latch_e2e::{
    Backend, Options, Reply, Runtime, Service, Tokens, assert_problem, assert_security_headers,
    count, invariant_violations, session_id_of, tokens_of, unique_email, unique_password,
};
use serde_json::json;

latch_e2e::both_backends!(
    unsupported_methods_bodies_and_types_are_problems,
    garbage_never_causes_a_server_error,
    garbage_bytes_never_cause_a_server_error,
    every_answer_carries_the_security_headers,
    throttling_keys_on_the_socket_address_unless_told_otherwise,
    throttling_uses_the_first_forwarded_hop_when_trusted,
    health_and_ready_are_never_throttled,
    sign_ups_from_one_address_are_throttled_alike_for_new_and_taken_emails,
    fifty_concurrent_refreshes_of_one_token_rotate_it_once,
    concurrent_duplicate_signups_create_one_account,
    concurrent_password_guesses_cannot_slip_under_the_limit,
    concurrent_sign_ins_to_one_account_all_succeed,
    many_users_behind_one_address_are_never_refused,
    a_burst_of_guesses_from_one_address_stays_bounded,
    concurrent_password_changes_have_one_winner,
    every_audit_event_is_recorded_and_logged,
    logs_and_audit_rows_never_contain_secrets,
);

/// Every route with the methods it answers (`Allow`).
const ROUTES: [(&str, &str); 20] = [
    ("/health", "GET, HEAD"),
    ("/ready", "GET, HEAD"),
    ("/auth/signup", "POST"),
    ("/auth/signin", "POST"),
    ("/auth/refresh", "POST"),
    ("/auth/signout", "POST"),
    ("/auth/password", "POST"),
    ("/auth/sessions", "GET, HEAD"),
    ("/auth/sessions/AAAAAAAAAAAAAAAAAAAAAA", "DELETE"),
    ("/user/profile", "GET, PUT, HEAD"),
    ("/.well-known/jwks.json", "GET, HEAD"),
    ("/auth/password/forgot", "POST"),
    ("/auth/password/reset", "POST"),
    ("/auth/email/verify", "POST"),
    ("/auth/email/verify/resend", "POST"),
    ("/admin/users", "GET, HEAD"),
    ("/admin/users/AAAAAAAAAAAAAAAAAAAAAA", "GET, PATCH, HEAD"),
    ("/admin/users/AAAAAAAAAAAAAAAAAAAAAA/unlock", "POST"),
    (
        "/admin/users/AAAAAAAAAAAAAAAAAAAAAA/sessions/revoke",
        "POST",
    ),
    ("/admin/audit", "GET, HEAD"),
];

/// The routes that read a JSON body, with the method that does (each reads
/// it before checking who calls: the tests call them as a non-admin).
const BODY_ROUTES: [(&str, &str); 8] = [
    ("POST", "/auth/signup"),
    ("POST", "/auth/signin"),
    ("POST", "/auth/password"),
    ("PUT", "/user/profile"),
    ("POST", "/auth/password/forgot"),
    ("POST", "/auth/password/reset"),
    ("POST", "/auth/email/verify"),
    ("PATCH", "/admin/users/AAAAAAAAAAAAAAAAAAAAAA"),
];

fn unsupported_methods_bodies_and_types_are_problems(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    for (path, allow) in ROUTES {
        let allowed: Vec<&str> = allow.split(", ").collect();
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"] {
            if allowed.contains(&method) {
                continue;
            }
            let reply = svc.call(method, path).access_cookie(&tokens.access).send();
            let body = assert_problem(&reply, 405);
            assert_eq!(
                reply.header("allow"),
                Some(allow),
                "{method} {path}: {reply}"
            );
            assert_security_headers(&reply);
            assert_eq!(body["instance"], path, "{reply}");
        }
    }
    for (method, path) in BODY_ROUTES {
        let send = |content_type: &str, body: Vec<u8>| {
            svc.call(method, path)
                .access_cookie(&tokens.access)
                .body(content_type, body)
                .send()
        };
        // Malformed JSON.
        for raw in ["{", "{\"email\": }", "nul", "{\"a\":1}}"] {
            let reply = send("application/json", raw.as_bytes().to_vec());
            let body = assert_problem(&reply, 400);
            assert_eq!(
                body["detail"], "the body is not valid JSON",
                "{path}: {reply}"
            );
        }
        // Not JSON at all.
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ] {
            let reply = send(content_type, b"{}".to_vec());
            assert_problem(&reply, 415);
        }
        // JSON by another name is fine; parameters are ignored.
        let reply = send("application/json; charset=utf-8", b"{".to_vec());
        assert_problem(&reply, 400);
        // Over 16 KiB.
        let big = json!({"email": "a@b.co", "password": "x", "fullName": "y".repeat(16 * 1024)});
        let reply = send("application/json", big.to_string().into_bytes());
        let body = assert_problem(&reply, 413);
        assert!(
            body["detail"].as_str().unwrap().contains("16384"),
            "{reply}"
        );
        // Exactly at the limit is read (and then judged on its content).
        let padding = 16 * 1024 - r#"{"x":""}"#.len();
        let at_limit = format!(r#"{{"x":"{}"}}"#, "p".repeat(padding));
        assert_eq!(at_limit.len(), 16 * 1024);
        let reply = send("application/json", at_limit.into_bytes());
        assert!(matches!(reply.status, 400 | 401), "{path}: {reply}");
    }
    // A declared length far over the limit is refused from the Content-Length
    // alone, before any body is read: by `latch up` itself (its 1 MiB limit),
    // and under Spin, which has no limit of its own, by the component's entry
    // point (16 KiB). Either way a problem+json 413. (Raw, because a client
    // library writing the whole body races the server closing the connection.)
    let (status, answer) = svc.raw(
        b"POST /auth/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1048577\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // Unknown paths are the runner's 404.
    assert_eq!(svc.get("/nope").send().status, 404);
    assert_eq!(svc.get("/auth").send().status, 404);
}

/// Bodies no client should send, with the content type they claim.
fn garbage_bodies() -> Vec<(Vec<u8>, &'static str)> {
    let json = "application/json";
    let mut bodies: Vec<(Vec<u8>, &'static str)> = [
        "",
        "{",
        "}",
        "null",
        "true",
        "-0",
        "[]",
        "\"text\"",
        "\u{feff}{}",
        r#"{"email":null,"password":null,"fullName":null,"name":null}"#,
        r#"{"email":{},"password":[],"fullName":1.5,"currentPassword":false,"newPassword":{}}"#,
        r#"{"email":"a@b.co","password":1e400}"#,
        r#"{"email":"\u0000@x.co","password":"\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000","fullName":"\u0000\u0000"}"#,
        r#"{"email":"\ud800@x.co","password":"\udfff"}"#,
        r#"{"email":"a@b.co","email":"c@d.co","password":"xxxxxxxxxx"}"#,
        r#"{"email":"ä@ö.de","password":"päßwörd-ünïcode","fullName":"Zoë 🚀","name":"🚀🚀"}"#,
        r#"{"email":"@","password":"","fullName":"","currentPassword":"","newPassword":"","refreshToken":""}"#,
        r#"{"email":"a@b.co\r\nBcc: x@y.z","password":"' OR 1=1 --","fullName":"Robert'); DROP TABLE users;--"}"#,
        r#"{"refreshToken":"../../../../etc/passwd","name":"<script>alert(1)</script>"}"#,
        "email=a%40b.co&password=x",
    ]
    .iter()
    .map(|b| (b.as_bytes().to_vec(), json))
    .collect();
    bodies.push(("[".repeat(5000).into_bytes(), json));
    bodies.push(("{\"a\":".repeat(3000).into_bytes(), json));
    bodies.push((vec![0xff, 0xfe, b'{', b'}', 0x80], json));
    bodies.push((
        json!({"email": format!("{}@x.co", "a".repeat(15_000)), "password": "x"})
            .to_string()
            .into_bytes(),
        json,
    ));
    bodies.push((
        json!({"email": "a@b.co", "password": "p".repeat(2000), "fullName": "n".repeat(5000)})
            .to_string()
            .into_bytes(),
        json,
    ));
    for content_type in [
        "text/plain",
        "APPLICATION/JSON",
        "application/problem+json",
        "application/json; charset=utf-16",
        ";;;",
        "application/",
    ] {
        bodies.push((
            br#"{"email":"a@b.co","password":"x"}"#.to_vec(),
            content_type,
        ));
    }
    bodies
}

/// Replies must never be a server error; component answers must be well-formed.
fn assert_client_safe(what: &str, reply: &Reply) {
    assert!(reply.status < 500, "{what}: {reply}");
    match reply.header("content-type") {
        Some("application/problem+json") if reply.status >= 400 => {
            assert_problem(reply, reply.status);
            assert_security_headers(reply);
        }
        Some("application/json") => assert_security_headers(reply),
        _ => {}
    }
}

fn garbage_never_causes_a_server_error(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let bodies = garbage_bodies();
    let mut sent = 0;
    for (path, _) in ROUTES {
        for method in ["POST", "PUT", "DELETE", "PATCH", "GET"] {
            for (i, (body, content_type)) in bodies.iter().enumerate() {
                // Half with a valid session, so bodies get past authentication.
                let mut call = svc.call(method, path).body(content_type, body.clone());
                if i % 2 == 0 {
                    call = call.access_cookie(&tokens.access);
                }
                let reply = call.send();
                assert_client_safe(&format!("{method} {path} body #{i}"), &reply);
                sent += 1;
            }
        }
    }

    // Headers no client should send.
    let long = "x".repeat(6000);
    let headers: Vec<(&str, String)> = vec![
        ("cookie", "token=;;;refreshToken==;=;;token".into()),
        ("cookie", "token=\"quoted\"; refreshToken=\"q\"".into()),
        ("cookie", "token=a.b.c; refreshToken=a.b.c".into()),
        ("cookie", format!("token={long}; refreshToken={long}")),
        ("cookie", format!("refreshToken={}", tokens.access)),
        ("authorization", "Bearer ".into()),
        ("authorization", "Bearer a b".into()),
        ("authorization", "Bearer .....".into()),
        (
            "authorization",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.".into(),
        ),
        ("authorization", format!("Bearer {long}")),
        ("authorization", "Digest username=x".into()),
        ("x-forwarded-for", "garbage, ::::, 999.1.1.1".into()),
        ("x-forwarded-for", format!("{long},1.2.3.4")),
        ("x-request-id", "../../etc/passwd".into()),
        ("x-request-id", long.clone()),
        ("traceparent", "00-zzzz-yyyy-01".into()),
        ("user-agent", "u".repeat(10_000)),
        ("content-length", "0".into()),
    ];
    for (path, allow) in ROUTES {
        let method = allow.split(", ").next().unwrap();
        for (name, value) in &headers {
            let reply = svc.call(method, path).header(name, value).send();
            assert_client_safe(&format!("{method} {path} with {name}"), &reply);
            sent += 1;
        }
    }

    // Paths no client should send.
    for path in [
        "/auth/sessions/%00",
        "/auth/sessions/%ff%fe",
        "/auth/sessions/a/b/c",
        "/auth/sessions//",
        "/auth/sessions/..%2f..%2fhealth",
        "/auth/sessions/%",
        "/user/profile?%%%=&&&",
        "/user/profile/",
        "/auth/signin?email=a@b.co&password=x",
    ] {
        for method in ["GET", "DELETE", "POST"] {
            let reply = svc.call(method, path).access_cookie(&tokens.access).send();
            assert_client_safe(&format!("{method} {path}"), &reply);
            sent += 1;
        }
    }

    println!("{sent} garbage requests, none answered 5xx");

    // Still serving, data intact.
    svc.get("/health").send().expect_status(200);
    svc.get("/ready").send().expect_status(200);
    // (The garbage included sign-outs with the valid session.)
    let fresh = svc.sign_in(&account);
    svc.profile(&fresh.access).expect_status(200);
    assert_eq!(invariant_violations(&svc.db()), Vec::<String>::new());
    assert!(!svc.output().contains("\"status\":500"), "a 500 was logged");
}

fn garbage_bytes_never_cause_a_server_error(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    // Bytes an HTTP library would not produce.
    let raw: Vec<Vec<u8>> = vec![
        b"POST /auth/signin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec(),
        b"POST http://evil.example/auth/signin HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(),
        b"GET /health HTTP/1.0\r\n\r\n".to_vec(),
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ".iter().copied().chain(std::iter::repeat_n(b'a', 200_000)).chain(b"\r\nConnection: close\r\n\r\n".iter().copied()).collect(),
    ];
    let mut failures = Vec::new();
    for request in &raw {
        let (status, answer) = svc.raw(request);
        if !(status == 0 || (200..500).contains(&status)) {
            failures.push(format!(
                "{:?}\n=> {answer}",
                String::from_utf8_lossy(&request[..request.len().min(160)])
            ));
        }
    }
    // A header value that is not UTF-8 is the one garbage the runtime itself
    // answers with 500: Spin 3.6.3 hands header values to a component as
    // text and fails the request (empty body) before any component runs, and
    // `latch up` answers as Spin does. No component code can change that
    // (docs/api.md, "Known limits of the runtime").
    let not_text: [&[u8]; 3] = [
        b"GET /user/profile HTTP/1.1\r\nHost: x\r\nCookie: token=\xff\xfe\xfd\r\nConnection: close\r\n\r\n",
        b"GET /user/profile HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x80\x81\r\nConnection: close\r\n\r\n",
        b"POST /auth/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\xff\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    ];
    for request in not_text {
        let (status, answer) = svc.raw(request);
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        if status != 500 || !body.is_empty() {
            failures.push(format!(
                "{:?}\n=> expected the runtime's empty 500, got {answer}",
                String::from_utf8_lossy(request)
            ));
        }
    }
    svc.profile(&tokens.access).expect_status(200);
    assert!(
        failures.is_empty(),
        "server errors for client garbage:\n{}",
        failures.join("\n\n")
    );
}

fn every_answer_carries_the_security_headers(backend: Backend) {
    // Behind TLS (`behind_tls`), every answer carries HSTS as well.
    let svc = Options::new(backend).var("behind_tls", "true").start();
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let second = svc.sign_in(&account);
    let mut replies: Vec<(&str, Reply)> = vec![
        ("health", svc.get("/health").send()),
        ("ready", svc.get("/ready").send()),
        ("jwks", svc.get("/.well-known/jwks.json").send()),
        (
            "signup 201",
            svc.signup(&unique_email("h"), &unique_password(), "Header Check"),
        ),
        (
            "signup 409",
            svc.signup(&account.email, &unique_password(), "Header Check"),
        ),
        (
            "signup 400",
            svc.post("/auth/signup").json(&json!({})).send(),
        ),
        ("signin 401", svc.signin(&account.email, "wrong-password-x")),
        (
            "signin 415",
            svc.post("/auth/signin")
                .body("text/plain", b"x".to_vec())
                .send(),
        ),
        ("profile 200", svc.profile(&tokens.access)),
        ("profile 401", svc.get("/user/profile").send()),
        ("profile 405", svc.post("/user/profile").send()),
        (
            "sessions 200",
            svc.get("/auth/sessions")
                .access_cookie(&tokens.access)
                .send(),
        ),
        (
            "password 403",
            svc.post("/auth/password")
                .access_cookie(&tokens.access)
                .json(&json!({"currentPassword": "wrong-one-x", "newPassword": unique_password()}))
                .send(),
        ),
        (
            "session 404",
            svc.delete("/auth/sessions/AAAAAAAAAAAAAAAAAAAAAA")
                .access_cookie(&tokens.access)
                .send(),
        ),
    ];
    let refreshed = svc.refresh(&tokens.refresh);
    let renewed = tokens_of(&refreshed);
    replies.push(("refresh 200", refreshed));
    replies.push(("refresh 401", svc.refresh("garbage")));
    replies.push((
        "session 204",
        svc.delete(&format!("/auth/sessions/{}", session_id_of(&second.access)))
            .access_cookie(&renewed.access)
            .send(),
    ));
    replies.push((
        "signout 200",
        svc.post("/auth/signout")
            .access_cookie(&renewed.access)
            .send(),
    ));
    replies.push(("signout 401", svc.post("/auth/signout").send()));
    let (_admin, admin) = svc.create_admin();
    let user = svc.sign_in(&account);
    replies.push((
        "admin 200",
        svc.get("/admin/users").access_cookie(&admin.access).send(),
    ));
    replies.push((
        "admin 403",
        svc.get("/admin/audit").access_cookie(&user.access).send(),
    ));
    replies.push(("admin 401", svc.get("/admin/users").send()));
    let mut statuses = BTreeSet::new();
    for (what, reply) in &replies {
        assert_security_headers(reply);
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains"),
            "{what}: {reply}"
        );
        let cache = reply.header("cache-control").unwrap();
        if *what == "jwks" {
            assert_eq!(cache, "public, max-age=300");
        } else {
            assert_eq!(cache, "no-store", "{what}: {reply}");
        }
        statuses.insert(reply.status);
    }
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        [200, 201, 204, 400, 401, 403, 404, 405, 409, 415]
    );
    // A caller's request id is echoed when sane, replaced otherwise.
    let reply = svc
        .get("/health")
        .header("x-request-id", "trace-me-123")
        .send();
    assert_eq!(reply.header("x-request-id"), Some("trace-me-123"));
    let reply = svc
        .get("/health")
        .header("x-request-id", "bad id\"<>")
        .send();
    assert_ne!(reply.header("x-request-id"), Some("bad id\"<>"));
}

/// Fails sign-ins with unknown emails, each optionally from a forwarded address.
fn fail_signins(svc: &Service, n: usize, forwarded_for: impl Fn(usize) -> Option<String>) {
    for i in 0..n {
        let mut call = svc.post("/auth/signin").json(&json!({
            "email": unique_email("ghost"),
            "password": "wrong-password-x",
        }));
        if let Some(xff) = forwarded_for(i) {
            call = call.header("x-forwarded-for", &xff);
        }
        assert_problem(&call.send(), 401);
    }
}

fn signin_from(svc: &Service, email: &str, password: &str, xff: Option<&str>) -> Reply {
    let mut call = svc
        .post("/auth/signin")
        .json(&json!({"email": email, "password": password}));
    if let Some(xff) = xff {
        call = call.header("x-forwarded-for", xff);
    }
    call.send()
}

fn throttling_keys_on_the_socket_address_unless_told_otherwise(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    // 20 failures, each claiming another address (through X-Forwarded-For,
    // and through the runtime's own header): neither claim is trusted.
    for i in 0..20 {
        let reply = svc
            .post("/auth/signin")
            .header("x-forwarded-for", &format!("198.51.100.{}", i + 1))
            .header("spin-client-addr", &format!("192.0.2.{}:4000", i + 1))
            .json(&json!({"email": unique_email("ghost"), "password": "wrong-password-x"}))
            .send();
        assert_problem(&reply, 401);
    }
    let reply = signin_from(
        &svc,
        &account.email,
        &account.password,
        Some("203.0.113.99"),
    );
    assert_problem(&reply, 429);
    let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{reply}");
    assert_problem(
        &signin_from(&svc, &account.email, &account.password, None),
        429,
    );

    let db = svc.db();
    let (failures, locked_until): (i64, i64) = db
        .query_row(
            "SELECT failures, locked_until FROM throttle WHERE key = 'ip:127.0.0.1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(failures, 20);
    assert!(locked_until > latch_e2e::now_secs());
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM throttle WHERE key LIKE 'ip:%' AND key <> 'ip:127.0.0.1'"
        ),
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE client_ip IS NOT NULL AND client_ip <> '127.0.0.1'"
        ),
        0
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE event = 'lockout'"
        ) >= 1
    );
}

fn throttling_uses_the_first_forwarded_hop_when_trusted(backend: Backend) {
    let svc = Options::new(backend)
        .var("trust_forwarded_for", "true")
        .start();
    let account = svc.create_account();
    let attacker = "203.0.113.7";
    fail_signins(&svc, 20, |_| Some(attacker.to_string()));
    for xff in [
        attacker.to_string(),
        format!("{attacker}, 10.9.8.7"),
        format!(" {attacker}:4711 "),
    ] {
        let reply = signin_from(&svc, &account.email, &account.password, Some(&xff));
        assert_problem(&reply, 429);
        assert!(reply.header("retry-after").is_some());
    }
    // Another client (first hop), or no proxy header: not locked.
    let reply = signin_from(
        &svc,
        &account.email,
        &account.password,
        Some(&format!("10.9.8.7, {attacker}")),
    );
    reply.expect_status(200);
    let tokens = tokens_of(&reply);
    svc.sign_in(&account);
    // The session and the audit trail name the forwarded client.
    let sessions = svc
        .get("/auth/sessions")
        .access_cookie(&tokens.access)
        .send()
        .json();
    let mine = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()
        .clone();
    assert_eq!(mine["clientIp"], "10.9.8.7");
    let db = svc.db();
    assert_eq!(
        count(
            &db,
            &format!("SELECT failures FROM throttle WHERE key = 'ip:{attacker}'")
        ),
        20
    );
    assert!(
        count(
            &db,
            &format!("SELECT count(*) FROM audit_events WHERE client_ip = '{attacker}'")
        ) >= 20
    );

    // IPv6 clients are counted per /64: changing the host part does not help.
    fail_signins(&svc, 20, |i| Some(format!("2001:db8:1:2::{:x}", i + 1)));
    let reply = signin_from(
        &svc,
        &account.email,
        &account.password,
        Some("2001:db8:1:2:ffff:ffff:ffff:ffff"),
    );
    assert_problem(&reply, 429);
    signin_from(
        &svc,
        &account.email,
        &account.password,
        Some("2001:db8:1:3::1"),
    )
    .expect_status(200);
}

fn health_and_ready_are_never_throttled(backend: Backend) {
    let svc = Service::start_default(backend);
    // Lock this client address out of sign-in first.
    fail_signins(&svc, 20, |_| None);
    assert_problem(
        &signin_from(&svc, &unique_email("x"), "whatever-pass", None),
        429,
    );
    // Probes hammer both endpoints from the same address, concurrently.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let health = svc.get("/health");
            let ready = svc.get("/ready");
            std::thread::spawn(move || {
                (0..60)
                    .map(|i| {
                        let (path, call) = if (i + t) % 2 == 0 {
                            ("/health", &health)
                        } else {
                            ("/ready", &ready)
                        };
                        (path, call.clone().send().status)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut total = 0;
    for thread in threads {
        for (path, status) in thread.join().unwrap() {
            assert_eq!(status, 200, "{path}");
            total += 1;
        }
    }
    assert_eq!(total, 480);
    assert_problem(
        &signin_from(&svc, &unique_email("x"), "whatever-pass", None),
        429,
    );
}

fn fifty_concurrent_refreshes_of_one_token_rotate_it_once(backend: Backend) {
    let svc = start_for_races(backend);
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let replies = race(
        (0..50)
            .map(|_| svc.post("/auth/refresh").refresh_cookie(&tokens.refresh))
            .collect(),
    );
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_problem(reply, 401);
    }
    let winner: Tokens = tokens_of(winners[0]);
    let sid = session_id_of(&tokens.access);
    let db = svc.db();
    let generation = count(
        &db,
        &format!("SELECT generation FROM sessions WHERE id = '{sid}'"),
    );
    assert_eq!(generation, 1, "rotated exactly once");
    // The losers presented a retired token: reuse detection ended the session,
    // so even the winner's new tokens are refused.
    let reason: Option<String> = db
        .query_row(
            "SELECT revoked_reason FROM sessions WHERE id = ?1",
            [&sid],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reason.as_deref(), Some("refresh_reuse"));
    assert_problem(&svc.refresh(&winner.refresh), 401);
    assert_problem(&svc.profile(&winner.access), 401);
    assert_eq!(invariant_violations(&db), Vec::<String>::new());
}

fn concurrent_duplicate_signups_create_one_account(backend: Backend) {
    let svc = start_for_races(backend);
    let email = unique_email("race");
    let calls = (0..10)
        .map(|i| {
            // Case variants of one address race too.
            let variant = if i % 2 == 0 {
                email.clone()
            } else {
                email.to_uppercase()
            };
            svc.post("/auth/signup").json(&json!({
                "email": variant,
                "password": unique_password(),
                "fullName": format!("Racer {i}"),
            }))
        })
        .collect();
    let replies = race(calls);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    for reply in replies.iter().filter(|r| r.status != 201) {
        assert_problem(reply, 409);
    }
    let db = svc.db();
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM users WHERE email = '{}'",
                email.to_lowercase()
            )
        ),
        1
    );
    assert_eq!(invariant_violations(&db), Vec::<String>::new());
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE event = 'signup' AND outcome = 'failure' AND reason = 'email_taken'"
        ),
        9
    );
}

/// The default service for a race. On SQLite Cloud another request may
/// write between a batch's COMMIT and its trailing read; the stand-in holds
/// that gap open for 30 ms so the racing requests do get in.
fn start_for_races(backend: Backend) -> Service {
    let svc = Service::start_default(backend);
    if backend == Backend::Cloud {
        svc.standin().configure(&json!({"commit_gap_ms": 30}));
    }
    svc
}

/// Sends `calls` all at once (threads released together); returns the replies.
fn race(calls: Vec<latch_e2e::Call>) -> Vec<Reply> {
    let barrier = Arc::new(Barrier::new(calls.len()));
    let threads: Vec<_> = calls
        .into_iter()
        .map(|call| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                call.send()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn concurrent_password_guesses_cannot_slip_under_the_limit(backend: Backend) {
    let svc = start_for_races(backend);
    let account = svc.create_account();
    let calls = (0..12)
        .map(|i| {
            svc.post("/auth/signin").json(&json!({
                "email": account.email,
                "password": format!("parallel-guess-{i}"),
            }))
        })
        .collect();
    let replies = race(calls);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    // Every attempt is counted (and the lock set) before any password is
    // checked: exactly five guesses are evaluated, the rest are refused.
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        7,
        "{statuses:?}"
    );
    for reply in &replies {
        assert_problem(reply, reply.status);
    }
    let key = latch_e2e::throttle_key_for_email(&account.email);
    assert_eq!(
        count(
            &svc.db(),
            &format!("SELECT failures FROM throttle WHERE key = '{key}'")
        ),
        5
    );
    // One lock, earned by one of the five: one lock-out event.
    assert_eq!(
        count(
            &svc.db(),
            "SELECT count(*) FROM audit_events WHERE event = 'lockout' AND reason = 'too_many_failures'"
        ),
        1
    );
    assert_problem(&svc.signin(&account.email, &account.password), 429);
}

/// Attempts in flight count against the account's limit, but no lock is
/// reached here: none may be refused. SQLite Cloud reads a batch's result
/// after its COMMIT, when other attempts may already have changed the
/// counters, so whether an attempt was refused must not be read from them.
fn concurrent_sign_ins_to_one_account_all_succeed(backend: Backend) {
    let svc = start_for_races(backend);
    let account = svc.create_account();
    for round in 0..5 {
        let calls = (0..4)
            .map(|_| {
                svc.post("/auth/signin")
                    .json(&json!({"email": account.email, "password": account.password}))
            })
            .collect();
        let statuses: Vec<u16> = race(calls).iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200; 4], "round {round}");
    }
    assert_eq!(
        count(
            &svc.db(),
            "SELECT count(*) FROM audit_events WHERE event = 'signin' AND outcome = 'success'"
        ),
        20
    );
}

/// Users behind one NAT or proxy share an address. Their correct passwords,
/// all in flight at once, count nothing on it: more than the address's limit
/// of 20 sign in together and none is refused.
fn many_users_behind_one_address_are_never_refused(backend: Backend) {
    let svc = start_for_races(backend);
    let accounts: Vec<_> = (0..30).map(|_| svc.create_account()).collect();
    let calls = accounts
        .iter()
        .map(|account| {
            svc.post("/auth/signin")
                .json(&json!({"email": account.email, "password": account.password}))
        })
        .collect();
    let statuses: Vec<u16> = race(calls).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200; 30]);
    assert_eq!(
        count(
            &svc.db(),
            "SELECT count(*) FROM throttle WHERE key = 'ip:127.0.0.1'"
        ),
        0
    );
}

/// Guessing from one address stays bounded: a parallel burst at thirty
/// accounts is evaluated (the address counts failures after the check), every
/// evaluated guess counts, and the overshoot lengthens the lock, so the next
/// attempt from the address, even with a correct password, waits it out.
fn a_burst_of_guesses_from_one_address_stays_bounded(backend: Backend) {
    let svc = start_for_races(backend);
    let account = svc.create_account();
    let calls = (0..30)
        .map(|i| {
            svc.post("/auth/signin").json(&json!({
                "email": unique_email("sprayed"),
                "password": format!("spray-guess-{i}"),
            }))
        })
        .collect();
    let replies = race(calls);
    let evaluated = replies.iter().filter(|r| r.status == 401).count();
    let refused = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(evaluated + refused, 30, "only 401 or 429");
    assert!(evaluated >= 20, "{evaluated} evaluated");
    let db = svc.db();
    let (failures, locked_until): (i64, i64) = db
        .query_row(
            "SELECT failures, locked_until FROM throttle WHERE key = 'ip:127.0.0.1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(failures, i64::try_from(evaluated).unwrap());
    // 60 s at the twentieth failure, doubled by each one past it (1 h at most).
    let expected_lock = (60_i64 << (failures - 20).min(6)).min(3_600);
    let remaining = locked_until - latch_e2e::now_secs();
    assert!(
        (expected_lock - 10..=expected_lock).contains(&remaining),
        "{remaining} s left, expected about {expected_lock} s"
    );
    let reply = svc.signin(&account.email, &account.password);
    assert_problem(&reply, 429);
    let retry: i64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > expected_lock - 10, "{reply}");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE event = 'lockout' AND reason = 'too_many_failures'"
        ),
        1
    );
}

fn concurrent_password_changes_have_one_winner(backend: Backend) {
    let svc = start_for_races(backend);
    let account = svc.create_account();
    let sessions: Vec<Tokens> = (0..4).map(|_| svc.sign_in(&account)).collect();
    let passwords: Vec<String> = (0..4).map(|_| unique_password()).collect();
    let calls = sessions
        .iter()
        .zip(&passwords)
        .map(|(tokens, new)| {
            svc.post("/auth/password")
                .access_cookie(&tokens.access)
                .json(&json!({"currentPassword": account.password, "newPassword": new}))
        })
        .collect();
    let replies = race(calls);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let winners: Vec<usize> = (0..4).filter(|i| statuses[*i] == 200).collect();
    assert_eq!(winners.len(), 1, "{statuses:?}");
    for reply in replies.iter().filter(|r| r.status != 200) {
        // Lost the race (409), or its session was revoked by the winner (401).
        assert!(matches!(reply.status, 401 | 409), "{reply}");
        assert_problem(reply, reply.status);
    }
    let winner = winners[0];
    svc.signin(&account.email, &passwords[winner])
        .expect_status(200);
    for (i, password) in passwords.iter().enumerate() {
        if i != winner {
            assert_problem(&svc.signin(&account.email, password), 401);
        }
    }
    // Only the winner's session survived.
    svc.profile(&sessions[winner].access).expect_status(200);
    for (i, tokens) in sessions.iter().enumerate() {
        if i != winner {
            assert_problem(&svc.profile(&tokens.access), 401);
        }
    }
    assert_eq!(invariant_violations(&svc.db()), Vec::<String>::new());
}

/// id, event, outcome, reason, email, user_id.
type AuditRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn every_audit_event_is_recorded_and_logged(backend: Backend) {
    let svc = Service::start_default(backend);
    let account = svc.create_account();
    svc.signup(&account.email, &unique_password(), "Again")
        .expect_status(409);
    let first = svc.sign_in(&account);
    let second = svc.sign_in(&account);
    assert_problem(&svc.signin(&account.email, "wrong-password-1"), 401);
    assert_problem(
        &svc.signin(&unique_email("nobody"), "wrong-password-1"),
        401,
    );
    let refreshed = tokens_of(svc.refresh(&first.refresh).expect_status(200));
    assert_problem(&svc.refresh(&first.refresh), 401); // reuse
    // Well-formed but never issued: reaches the database, logged as invalid.
    assert_problem(&svc.refresh(&("A".repeat(42) + "Q")), 401);
    let third = svc.sign_in(&account);
    svc.delete(&format!("/auth/sessions/{}", session_id_of(&second.access)))
        .access_cookie(&third.access)
        .send()
        .expect_status(204);
    let change = |current: &str, new: &str| {
        svc.post("/auth/password")
            .access_cookie(&third.access)
            .json(&json!({"currentPassword": current, "newPassword": new}))
            .send()
    };
    assert_problem(&change("wrong-password-2", &unique_password()), 403);
    let new_password = unique_password();
    change(&account.password, &new_password).expect_status(200);
    svc.post("/auth/signout")
        .access_cookie(&third.access)
        .send()
        .expect_status(200);
    for i in 0..5 {
        assert_problem(
            &svc.signin(&account.email, &format!("wrong-password-{i}")),
            401,
        );
    }
    assert_problem(&svc.signin(&account.email, &new_password), 429);
    drop(refreshed);

    let expected: [(&str, &str, Option<&str>); 14] = [
        ("signup", "success", None),
        ("signup", "failure", Some("email_taken")),
        ("signin", "success", None),
        ("signin", "failure", Some("wrong_password")),
        ("signin", "failure", Some("unknown_email")),
        ("signin", "denied", Some("locked_out")),
        ("lockout", "denied", Some("too_many_failures")),
        ("refresh", "success", None),
        (
            "refresh_reuse_detected",
            "denied",
            Some("retired_token_presented"),
        ),
        ("session_revoked", "success", Some("revoked_by_user")),
        ("password_change", "failure", Some("wrong_current_password")),
        ("password_change", "success", None),
        ("signout", "success", None),
        // Logged only: an unknown refresh token has no session to record it against.
        ("refresh", "failure", Some("invalid_token")),
    ];
    let db = svc.db();
    let mut rows = db
        .prepare("SELECT id, event, outcome, reason, email, user_id FROM audit_events")
        .unwrap();
    let rows: Vec<AuditRow> = rows
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let lines = svc.wait_for_audit("every recorded event", |lines| {
        rows.iter()
            .all(|row| lines.iter().any(|l| l["audit_id"] == row.0.as_str()))
            && lines.iter().any(|l| l["reason"] == "invalid_token")
    });
    for (event, outcome, reason) in expected {
        let in_db = rows
            .iter()
            .any(|r| r.1 == event && r.2 == outcome && r.3.as_deref() == reason);
        let logged = lines.iter().any(|l| {
            l["event"] == event && l["outcome"] == outcome && l["reason"].as_str() == reason
        });
        assert!(
            logged,
            "no audit line for {event}/{outcome}/{reason:?}: {lines:#?}"
        );
        if reason != Some("invalid_token") {
            assert!(
                in_db,
                "no audit row for {event}/{outcome}/{reason:?}: {rows:#?}"
            );
        }
    }
    // Rows and lines agree, and name the user where there is one.
    for (id, event, outcome, _, email, user) in &rows {
        let line = lines.iter().find(|l| l["audit_id"] == id.as_str()).unwrap();
        assert_eq!(line["event"], event.as_str());
        assert_eq!(line["outcome"], outcome.as_str());
        assert!(
            line["request_id"].is_string() && line["route"].is_string() && line["ts"].is_string()
        );
        if let Some(email) = email {
            assert!(
                email.contains("***@"),
                "unmasked email in the audit row: {email}"
            );
        }
        if outcome == "success" {
            assert!(user.is_some(), "{event}/{outcome} without a user");
        }
    }
}

fn logs_and_audit_rows_never_contain_secrets(backend: Backend) {
    let svc = Options::new(backend).var("tokens_in_body", "true").start();
    let mut secrets: Vec<String> = Vec::new();
    let mut emails: Vec<String> = Vec::new();
    let account = svc.create_account();
    secrets.push(account.password.clone());
    emails.push(account.email.clone());
    let mut tokens = svc.sign_in(&account);
    let upper = account.email.to_uppercase();
    svc.signin(&upper, &account.password).expect_status(200);
    emails.push(upper);
    let mut retired = Vec::new();
    for _ in 0..3 {
        secrets.push(tokens.access.clone());
        secrets.push(tokens.refresh.clone());
        svc.profile(&tokens.access).expect_status(200);
        svc.get("/user/profile")
            .bearer(&tokens.access)
            .send()
            .expect_status(200);
        retired.push(tokens.refresh.clone());
        tokens = tokens_of(svc.refresh(&tokens.refresh).expect_status(200));
    }
    secrets.push(tokens.access.clone());
    secrets.push(tokens.refresh.clone());
    // Failures carry the secrets too: wrong passwords, unknown emails, bad tokens.
    for i in 0..3 {
        let wrong = format!("{}-wrong-{i}", unique_password());
        assert_problem(&svc.signin(&account.email, &wrong), 401);
        secrets.push(wrong);
        let ghost = unique_email("ghost");
        assert_problem(&svc.signin(&ghost, &account.password), 401);
        emails.push(ghost);
    }
    let taken = svc.signup(&account.email, "Another-Secret-Pass-77", "Dup");
    assert_problem(&taken, 409);
    secrets.push("Another-Secret-Pass-77".into());
    let new_password = unique_password();
    let wrong_current = format!("{}-nope", unique_password());
    let reply = svc
        .post("/auth/password")
        .access_cookie(&tokens.access)
        .json(&json!({"currentPassword": wrong_current, "newPassword": new_password}))
        .send();
    assert_problem(&reply, 403);
    secrets.push(wrong_current);
    svc.post("/auth/password")
        .access_cookie(&tokens.access)
        .json(&json!({"currentPassword": account.password, "newPassword": new_password}))
        .send()
        .expect_status(200);
    secrets.push(new_password.clone());
    let last = svc.sign_in(&latch_e2e::Account {
        password: new_password,
        ..account.clone()
    });
    secrets.push(last.access.clone());
    secrets.push(last.refresh.clone());
    svc.post("/auth/signout")
        .access_cookie(&last.access)
        .refresh_cookie(&last.refresh)
        .send()
        .expect_status(200);
    // A retired refresh token comes back (reuse detection logs it).
    assert_problem(&svc.refresh(&retired[1]), 401);
    if backend == Backend::Cloud {
        secrets.push(latch_e2e::STANDIN_API_KEY.to_string());
    }
    // Let the last lines arrive.
    svc.wait_for_audit("the reuse", |lines| {
        lines.iter().any(|l| l["event"] == "refresh_reuse_detected")
    });
    std::thread::sleep(Duration::from_millis(100));

    let output = svc.output();
    // Proof the log was captured: latch's own per-request lines; Spin writes
    // none, so there the components' audit lines it copies.
    let captured = match svc.runtime() {
        Runtime::Latch => "\"request\"",
        Runtime::Spin => "audit_id",
    };
    assert!(
        output.contains(captured),
        "the log was not captured: {output}"
    );
    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "the log holds a secret: {secret}"
        );
    }
    for email in &emails {
        assert!(
            !output.to_lowercase().contains(&email.to_lowercase()),
            "the log holds a full email address: {email}"
        );
    }
    // Nor does the audit table (nor anything but hashes in sessions).
    let db = svc.db();
    let dump: Vec<String> = db
        .prepare(
            "SELECT coalesce(id,'')||' '||coalesce(email,'')||' '||coalesce(reason,'')||' '||coalesce(client_ip,'')||' '||coalesce(request_id,'') FROM audit_events \
             UNION ALL SELECT refresh_hash||' '||coalesce(user_agent,'') FROM sessions \
             UNION ALL SELECT hash FROM retired_refresh_tokens UNION ALL SELECT key FROM throttle",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let dump = dump.join("\n").to_lowercase();
    for secret in &secrets {
        assert!(
            !dump.contains(&secret.to_lowercase()),
            "the database holds a secret: {secret}"
        );
    }
    for email in &emails {
        assert!(
            !dump.contains(&email.to_lowercase()),
            "an audit row holds a full email: {email}"
        );
    }
}

/// Sign-up with the manifest's limit (10 an hour per client address): the
/// eleventh from one address is refused with 429 and `Retry-After`, for a
/// new email and a taken one alike (so the answer tells nothing of
/// accounts), and nothing is written; another address is not affected.
fn sign_ups_from_one_address_are_throttled_alike_for_new_and_taken_emails(backend: Backend) {
    let svc = Options::new(backend)
        .manifest_signup_limit()
        .var("trust_forwarded_for", "true")
        .start();
    let from = |address: &str, email: &str| {
        svc.post("/auth/signup")
            .header("x-forwarded-for", address)
            .json(
                &json!({"email": email, "password": unique_password(), "fullName": "Ada Lovelace"}),
            )
            .send()
    };
    let taken = unique_email("throttle-taken");
    from("198.51.100.7", &taken).expect_status(201);
    // A taken email counts as much as a new one.
    from("198.51.100.7", &taken).expect_status(409);
    for _ in 0..8 {
        from("198.51.100.7", &unique_email("throttle")).expect_status(201);
    }
    let users = latch_e2e::count(&svc.db(), "SELECT count(*) FROM users");
    let new = from("198.51.100.7", &unique_email("throttle-refused"));
    let again = from("198.51.100.7", &taken);
    for reply in [&new, &again] {
        let body = assert_problem(reply, 429);
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((3_500..=3_600).contains(&retry), "{reply}");
        assert_eq!(body["status"], 429);
    }
    assert_eq!(new.json()["detail"], again.json()["detail"]);
    assert_eq!(
        latch_e2e::count(&svc.db(), "SELECT count(*) FROM users"),
        users
    );
    assert_eq!(
        latch_e2e::count(
            &svc.db(),
            "SELECT count(*) FROM audit_events WHERE event = 'signup' AND outcome = 'denied' AND reason = 'throttled'"
        ),
        2
    );
    from("203.0.113.9", &unique_email("throttle-other")).expect_status(201);
}

/// Replicas share the sign-up counter: two processes on one SQLite Cloud
/// database (the stand-in) count one address's sign-ups together.
#[test]
fn two_processes_on_one_database_share_the_sign_up_limit() {
    let options = Options::new(Backend::Cloud)
        .var("signup_max_per_window", "4")
        .var("trust_forwarded_for", "true");
    let first = options.clone().start();
    let second = options.on_database_of(&first).start();
    let sign_up = |svc: &Service| {
        svc.post("/auth/signup")
            .header("x-forwarded-for", "198.51.100.44")
            .json(&json!({
                "email": unique_email("shared-limit"),
                "password": unique_password(),
                "fullName": "Ada Lovelace",
            }))
            .send()
    };
    for svc in [&first, &second, &first, &second] {
        sign_up(svc).expect_status(201);
    }
    for svc in [&second, &first] {
        let reply = sign_up(svc);
        assert_problem(&reply, 429);
        assert!(reply.header("retry-after").is_some(), "{reply}");
    }
    assert_eq!(count(&first.db(), "SELECT count(*) FROM users"), 4);
}
