//! The admin API (issue 15), against both backends: who may call it (an
//! access token with the `admin` role whose holder is still an active admin
//! in the database), the users listing and its keyset pagination under
//! concurrent sign-ups, one user's detail, unlocking, disabling, role
//! changes, self-demotion, revoking sessions and the audit trail.
//!
//! Admins are made as an operator would: sign up, the `user_roles` row
//! written into the database, sign in ([`Service::create_admin`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use latch_e2e::{
    Account, Backend, Reply, Service, assert_problem, b64url_encode, count, invariant_violations,
    jwt_parts, session_id_of, throttle_key_for_email, unique_email, unique_password,
};
use serde_json::{Value, json};

latch_e2e::both_backends!(
    non_admins_are_refused_on_every_admin_route,
    a_demoted_or_disabled_admin_is_refused_at_once,
    the_user_walk_meets_every_user_once_while_users_are_added,
    the_user_listing_filters_by_prefix_and_refuses_bad_parameters,
    user_detail_shows_roles_sessions_and_lock_out_and_unlock_lifts_it,
    disabling_a_user_ends_their_sessions_at_once_and_roles_can_change,
    patch_refuses_bad_bodies_and_unknown_users,
    self_demotion_is_refused_and_changes_nothing,
    revoking_a_users_sessions_ends_their_refresh,
    the_audit_trail_names_the_acting_admin_and_pages_once,
);

/// An id Latch could have made that no user has.
const UNKNOWN_ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

/// One admin API request: method, path (with query), JSON body.
type AdminCall = (&'static str, String, Option<Value>);

/// Every admin operation on `target`, each with a body a valid request has.
fn admin_calls(target: &str) -> Vec<AdminCall> {
    vec![
        ("GET", "/admin/users".into(), None),
        ("GET", "/admin/users?query=user&limit=5".into(), None),
        ("GET", format!("/admin/users/{target}"), None),
        (
            "PATCH",
            format!("/admin/users/{target}"),
            Some(json!({"isActive": false})),
        ),
        (
            "PATCH",
            format!("/admin/users/{target}"),
            Some(json!({"roles": ["user", "admin"]})),
        ),
        ("POST", format!("/admin/users/{target}/unlock"), None),
        (
            "POST",
            format!("/admin/users/{target}/sessions/revoke"),
            None,
        ),
        ("GET", "/admin/audit".into(), None),
        (
            "GET",
            format!("/admin/audit?userId={target}&kind=signup"),
            None,
        ),
    ]
}

/// Sends `call`, with `access` as the access cookie when given.
fn send(svc: &Service, call: &AdminCall, access: Option<&str>) -> Reply {
    let (method, path, body) = call;
    let mut request = svc.call(method, path);
    if let Some(access) = access {
        request = request.access_cookie(access);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send()
}

/// `GET path` with the access cookie.
fn get(svc: &Service, path: &str, access: &str) -> Reply {
    svc.get(path).access_cookie(access).send()
}

/// `PATCH /admin/users/{id}` with `body`.
fn patch(svc: &Service, id: &str, body: &Value, access: &str) -> Reply {
    svc.call("PATCH", &format!("/admin/users/{id}"))
        .access_cookie(access)
        .json(body)
        .send()
}

/// `POST path` with the access cookie and no body.
fn post(svc: &Service, path: &str, access: &str) -> Reply {
    svc.post(path).access_cookie(access).send()
}

/// Panics unless `reply` is a problem with `status` and `code`.
fn assert_coded(what: &str, reply: &Reply, status: u16, code: &str) {
    let body = assert_problem(reply, status);
    assert_eq!(body["code"], code, "{what}: {reply}");
}

/// A `users` or `events` array of an answer.
fn array<'a>(body: &'a Value, member: &str) -> &'a Vec<Value> {
    body[member]
        .as_array()
        .unwrap_or_else(|| panic!("no {member}[]: {body}"))
}

/// The roles the database grants `user_id`, sorted.
fn roles_in_db(svc: &Service, user_id: &str) -> Vec<String> {
    let db = svc.db();
    let mut statement = db
        .prepare(
            "SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
             WHERE ur.user_id = ?1 ORDER BY r.name",
        )
        .unwrap();
    statement
        .query_map([user_id], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// What an admin action could change about `user_id`: active flag, roles,
/// active sessions.
fn state_of(svc: &Service, user_id: &str) -> (i64, Vec<String>, i64) {
    let db = svc.db();
    (
        count(
            &db,
            &format!("SELECT is_active FROM users WHERE id = '{user_id}'"),
        ),
        roles_in_db(svc, user_id),
        count(
            &db,
            &format!(
                "SELECT count(*) FROM sessions WHERE user_id = '{user_id}' AND revoked_at IS NULL"
            ),
        ),
    )
}

/// Audit rows of admin actions.
fn admin_audit_rows(svc: &Service) -> i64 {
    count(
        &svc.db(),
        "SELECT count(*) FROM audit_events WHERE event LIKE 'admin\\_%' ESCAPE '\\'",
    )
}

/// The roles claim of an access token.
fn token_roles(access: &str) -> Vec<String> {
    let (_, payload) = jwt_parts(access).unwrap();
    payload["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

fn assert_no_invariant_broken(svc: &Service) {
    assert_eq!(invariant_violations(&svc.db()), Vec::<String>::new());
}

// --- who may call ------------------------------------------------------------------

fn non_admins_are_refused_on_every_admin_route(backend: Backend) {
    let svc = Service::start_default(backend);
    let (_admin, admin_tokens) = svc.create_admin();
    let user = svc.create_account();
    let user_tokens = svc.sign_in(&user);
    assert_eq!(token_roles(&user_tokens.access), ["user"]);
    let target = svc.create_account();
    let target_tokens = svc.sign_in(&target);
    let before = state_of(&svc, &target.id);

    for call in admin_calls(&target.id) {
        let what = format!("{} {}", call.0, call.1);
        let reply = send(&svc, &call, Some(&user_tokens.access));
        assert_coded(&what, &reply, 403, "admin_required");
        // The Authorization header is refused alike.
        let (method, path, body) = &call;
        let mut bearer = svc.call(method, path).bearer(&user_tokens.access);
        if let Some(body) = body {
            bearer = bearer.json(body);
        }
        assert_coded(&what, &bearer.send(), 403, "admin_required");
        // No token, or one that is not a token: 401.
        assert_problem(&send(&svc, &call, None), 401);
        assert_problem(&send(&svc, &call, Some("not.a.token")), 401);
        // An unknown target changes nothing in the answer: 403 before any lookup.
        let unknown = (
            call.0,
            call.1.replace(&target.id, UNKNOWN_ID),
            call.2.clone(),
        );
        assert_coded(
            &what,
            &send(&svc, &unknown, Some(&user_tokens.access)),
            403,
            "admin_required",
        );
    }
    // Nothing was done: the target kept everything, no admin action was recorded.
    assert_eq!(state_of(&svc, &target.id), before);
    assert_eq!(admin_audit_rows(&svc), 0);
    svc.profile(&target_tokens.access).expect_status(200);
    // The refusals were about the caller: an admin's token is answered.
    let listing = get(&svc, "/admin/users", &admin_tokens.access);
    listing.expect_status(200);
    assert_eq!(array(&listing.json(), "users").len(), 3);
    assert_no_invariant_broken(&svc);
}

fn a_demoted_or_disabled_admin_is_refused_at_once(backend: Backend) {
    let svc = Service::start_default(backend);
    let (admin, tokens) = svc.create_admin();
    let target = svc.create_account();
    let target_tokens = svc.sign_in(&target);
    get(&svc, "/admin/users", &tokens.access).expect_status(200);
    let before = state_of(&svc, &target.id);

    // Demoted in the database: the token still says admin, the database does not.
    let removed = svc
        .db()
        .execute(
            "DELETE FROM user_roles WHERE user_id = ?1 AND role_id = 'role-admin'",
            [&admin.id],
        )
        .unwrap();
    assert_eq!(removed, 1);
    assert!(token_roles(&tokens.access).contains(&"admin".to_string()));
    for call in admin_calls(&target.id) {
        let reply = send(&svc, &call, Some(&tokens.access));
        assert_coded(
            &format!("demoted: {} {}", call.0, call.1),
            &reply,
            403,
            "admin_required",
        );
    }
    assert_eq!(state_of(&svc, &target.id), before);
    assert_eq!(admin_audit_rows(&svc), 0);
    svc.profile(&target_tokens.access).expect_status(200);

    // Granted again: the same token works again (the role is read per request).
    svc.grant_admin(&admin.id);
    get(&svc, "/admin/users", &tokens.access).expect_status(200);

    // Disabled: the session has ended, 401 everywhere.
    svc.db()
        .execute("UPDATE users SET is_active = 0 WHERE id = ?1", [&admin.id])
        .unwrap();
    for call in admin_calls(&target.id) {
        let reply = send(&svc, &call, Some(&tokens.access));
        assert_problem(&reply, 401);
    }
    assert_eq!(state_of(&svc, &target.id), before);
    assert_eq!(admin_audit_rows(&svc), 0);

    // An admin who signed out is refused with that session's token.
    let (_other, other_tokens) = svc.create_admin();
    get(&svc, "/admin/audit", &other_tokens.access).expect_status(200);
    svc.post("/auth/signout")
        .access_cookie(&other_tokens.access)
        .send()
        .expect_status(200);
    for call in admin_calls(&target.id) {
        assert_problem(&send(&svc, &call, Some(&other_tokens.access)), 401);
    }
    assert_eq!(state_of(&svc, &target.id), before);
    assert_no_invariant_broken(&svc);
}

// --- the users listing -------------------------------------------------------------

/// How many users the walk starts with, and its page size.
const WALK_USERS: usize = 25;
const WALK_LIMIT: usize = 4;
/// Most users added during the walk.
const MOST_ADDED: usize = 40;

fn the_user_walk_meets_every_user_once_while_users_are_added(backend: Backend) {
    let svc = Service::start_default(backend);
    let (admin, tokens) = svc.create_admin();
    for _ in 0..WALK_USERS {
        let email = unique_email("walk");
        svc.signup(&email, &unique_password(), "Walk User")
            .expect_status(201);
    }
    let existing: BTreeMap<String, String> = {
        let db = svc.db();
        let mut statement = db.prepare("SELECT id, email FROM users").unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(existing.len(), WALK_USERS + 1);

    let added = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let mut seen: Vec<Value> = Vec::new();
    let mut pages = 0;
    std::thread::scope(|scope| {
        // Sign-ups during the walk, sorting before every existing email
        // (`a-...`: they would shift an offset) and after (`zz-...`).
        let adder = scope.spawn(|| {
            let mut n = 0;
            while !done.load(Ordering::Acquire) && n < MOST_ADDED {
                let tag = if n % 2 == 0 { "a-added" } else { "zz-added" };
                svc.signup(&unique_email(tag), &unique_password(), "Added Meanwhile")
                    .expect_status(201);
                n += 1;
                added.store(n, Ordering::Release);
            }
        });
        let mut cursor: Option<String> = None;
        loop {
            let before = added.load(Ordering::Acquire);
            let path = match &cursor {
                None => format!("/admin/users?limit={WALK_LIMIT}"),
                Some(cursor) => format!("/admin/users?limit={WALK_LIMIT}&cursor={cursor}"),
            };
            let reply = get(&svc, &path, &tokens.access);
            reply.expect_status(200);
            let body = reply.json();
            let users = array(&body, "users");
            assert!(users.len() <= WALK_LIMIT, "{reply}");
            pages += 1;
            assert!(pages < 100, "the walk does not end");
            seen.extend(users.iter().cloned());
            match body["nextCursor"].as_str() {
                None => {
                    assert!(body["nextCursor"].is_null(), "{reply}");
                    break;
                }
                Some(next) => {
                    assert_eq!(
                        users.len(),
                        WALK_LIMIT,
                        "a short page before the end: {reply}"
                    );
                    cursor = Some(next.to_string());
                }
            }
            // At least one more user signs up before the next page.
            let deadline = Instant::now() + Duration::from_secs(30);
            while added.load(Ordering::Acquire) == before && !adder.is_finished() {
                assert!(Instant::now() < deadline, "no sign-up during the walk");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        done.store(true, Ordering::Release);
        adder.join().unwrap();
    });
    let added = added.into_inner();
    assert!(
        added >= pages - 1,
        "only {added} sign-ups during a walk of {pages} pages"
    );

    // Ordered by email, nobody twice, everybody who was there once.
    let emails: Vec<&str> = seen.iter().map(|u| u["email"].as_str().unwrap()).collect();
    let mut sorted = emails.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(emails, sorted, "not in email order, or a user twice");
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    for user in &seen {
        *times.entry(user["id"].as_str().unwrap()).or_default() += 1;
    }
    assert!(times.values().all(|&n| n == 1), "a user twice: {times:?}");
    for (id, email) in &existing {
        assert_eq!(
            times.get(id.as_str()),
            Some(&1),
            "{email} (there before the walk) missed"
        );
    }
    let total = count(&svc.db(), "SELECT count(*) FROM users");
    assert_eq!(total, i64::try_from(existing.len() + added).unwrap());
    assert!(seen.len() <= existing.len() + added);

    // Each user as the listing shows it, email in full.
    let me = seen.iter().find(|u| u["id"] == admin.id.as_str()).unwrap();
    assert_eq!(me["email"], admin.email.as_str());
    assert_eq!(me["fullName"], admin.full_name.as_str());
    assert_eq!(me["isActive"], true);
    assert_eq!(me["emailVerified"], false);
    assert_eq!(me["roles"], json!(["admin", "user"]));
    assert!(me["createdAt"].as_str().unwrap().contains('T'), "{me}");
    for user in seen.iter().filter(|u| u["id"] != admin.id.as_str()) {
        assert_eq!(user["roles"], json!(["user"]), "{user}");
        let id = user["id"].as_str().unwrap();
        let email = user["email"].as_str().unwrap();
        match existing.get(id) {
            Some(known) => assert_eq!(known, email),
            // Not there before: one of those signed up during the walk.
            None => assert!(
                email.starts_with("a-added-") || email.starts_with("zz-added-"),
                "{user}"
            ),
        }
    }
    assert_no_invariant_broken(&svc);
}

fn the_user_listing_filters_by_prefix_and_refuses_bad_parameters(backend: Backend) {
    let svc = Service::start_default(backend);
    let (_admin, tokens) = svc.create_admin();
    // `PreFix-<pid>-<n>@...`: stored in lower case.
    let prefix = format!("prefix-{}-", std::process::id());
    let mut wanted = BTreeSet::new();
    for _ in 0..5 {
        let email = unique_email("PreFix");
        let reply = svc.signup(&email, &unique_password(), "Prefix User");
        reply.expect_status(201);
        wanted.insert(reply.json()["userId"].as_str().unwrap().to_string());
    }
    for _ in 0..3 {
        svc.create_account();
    }
    let list = |query: &str| {
        let reply = get(&svc, &format!("/admin/users?{query}"), &tokens.access);
        reply.expect_status(200);
        reply.json()
    };
    let ids = |body: &Value| -> BTreeSet<String> {
        array(body, "users")
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    };

    // Case-insensitive prefix, surrounding spaces ignored.
    for query in [
        prefix.clone(),
        prefix.to_uppercase(),
        format!("%20%20{}%20", prefix.to_uppercase()),
    ] {
        let body = list(&format!("query={query}"));
        assert_eq!(ids(&body), wanted, "query={query}: {body}");
        assert!(body["nextCursor"].is_null(), "{body}");
        for user in array(&body, "users") {
            assert!(user["email"].as_str().unwrap().starts_with(&prefix));
        }
    }
    // The prefix with pages: the cursor keeps the filter.
    let mut walked = Vec::new();
    let mut next = list(&format!("query={}&limit=2", prefix.to_uppercase()));
    loop {
        walked.extend(ids(&next));
        let Some(cursor) = next["nextCursor"].as_str().map(str::to_string) else {
            break;
        };
        assert!(walked.len() < 10, "the walk does not end");
        next = list(&format!("limit=2&cursor={cursor}&query={prefix}"));
    }
    assert_eq!(walked.len(), 5);
    assert_eq!(walked.into_iter().collect::<BTreeSet<_>>(), wanted);
    // A whole address finds its user; nothing matches nothing.
    let one = list("query=user-");
    assert_eq!(array(&one, "users").len(), 4, "{one}"); // the admin and 3 others
    let body = list("query=nobody-has-this-prefix");
    assert_eq!(body, json!({"users": [], "nextCursor": null}));
    // Without a limit: up to 50, all here.
    assert_eq!(array(&list(""), "users").len(), 9);
    assert_eq!(array(&list("limit=100"), "users").len(), 9);
    assert_eq!(array(&list("limit=1"), "users").len(), 1);

    // Bad parameters: 400 invalid_query, on both listings.
    let long_query = "a".repeat(255);
    let long_cursor = "A".repeat(600);
    for query in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=ten",
        "limit=",
        "limit=1.5",
        "limit=1&limit=2",
        "cursor=not%20base64%21",
        &format!("cursor={long_cursor}"),
        "offset=5",
        "page=2",
        &format!("query={long_query}"),
    ] {
        let reply = get(&svc, &format!("/admin/users?{query}"), &tokens.access);
        assert_coded(&format!("users?{query}"), &reply, 400, "invalid_query");
    }
    assert_no_invariant_broken(&svc);
}

// --- one user ----------------------------------------------------------------------

/// `GET /admin/users/{id}`'s `user`.
fn detail(svc: &Service, id: &str, access: &str) -> Value {
    let reply = get(svc, &format!("/admin/users/{id}"), access);
    reply.expect_status(200);
    reply.json()["user"].clone()
}

fn user_detail_shows_roles_sessions_and_lock_out_and_unlock_lifts_it(backend: Backend) {
    let svc = Service::start_default(backend);
    let (admin, tokens) = svc.create_admin();
    let target = svc.create_account();
    let first = svc.sign_in(&target);
    let second = svc.sign_in(&target);

    let user = detail(&svc, &target.id, &tokens.access);
    assert_eq!(user["id"], target.id.as_str());
    assert_eq!(user["email"], target.email.as_str());
    assert_eq!(user["fullName"], target.full_name.as_str());
    assert_eq!(user["isActive"], true);
    assert_eq!(user["emailVerified"], false);
    assert_eq!(user["roles"], json!(["user"]));
    assert!(user["createdAt"].as_str().unwrap().contains('T'), "{user}");
    assert_eq!(user["lockedOut"], false);
    assert!(user["lockedUntil"].is_null(), "{user}");
    let sessions: BTreeSet<&str> = array(&user, "sessions")
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<String> = [&first, &second]
        .iter()
        .map(|t| session_id_of(&t.access))
        .collect();
    assert_eq!(
        sessions,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    for session in array(&user, "sessions") {
        for member in ["createdAt", "lastUsedAt", "expiresAt"] {
            assert!(session[member].as_str().unwrap().contains('T'), "{session}");
        }
        assert!(session.get("clientIp").is_some() && session.get("userAgent").is_some());
    }
    // The admin's own detail shows the admin role.
    assert_eq!(
        detail(&svc, &admin.id, &tokens.access)["roles"],
        json!(["admin", "user"])
    );
    // A signed-out session is no longer listed.
    svc.post("/auth/signout")
        .access_cookie(&second.access)
        .send()
        .expect_status(200);
    let user = detail(&svc, &target.id, &tokens.access);
    assert_eq!(array(&user, "sessions").len(), 1);
    assert_eq!(user["sessions"][0]["id"], session_id_of(&first.access));

    // Locked out by five wrong passwords: even the right one is refused.
    for i in 0..5 {
        assert_problem(
            &svc.signin(&target.email, &format!("wrong-password-{i}")),
            401,
        );
    }
    assert_problem(&svc.signin(&target.email, &target.password), 429);
    let user = detail(&svc, &target.id, &tokens.access);
    assert_eq!(user["lockedOut"], true, "{user}");
    assert!(
        user["lockedUntil"].as_str().unwrap().contains('T'),
        "{user}"
    );

    // Unlocked: the right password signs in at once.
    let reply = post(
        &svc,
        &format!("/admin/users/{}/unlock", target.id),
        &tokens.access,
    );
    reply.expect_status(200);
    let body = reply.json();
    assert!(body["message"].is_string(), "{reply}");
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only a message: {reply}"
    );
    svc.signin(&target.email, &target.password)
        .expect_status(200);
    let user = detail(&svc, &target.id, &tokens.access);
    assert_eq!(user["lockedOut"], false, "{user}");
    assert!(user["lockedUntil"].is_null(), "{user}");
    assert_eq!(
        count(
            &svc.db(),
            &format!(
                "SELECT count(*) FROM throttle WHERE key = '{}'",
                throttle_key_for_email(&target.email)
            )
        ),
        0
    );

    // The password check's lock (five wrong current passwords) is lifted too.
    let change = |current: &str| {
        svc.post("/auth/password")
            .access_cookie(&first.access)
            .json(&json!({"currentPassword": current, "newPassword": unique_password()}))
            .send()
    };
    for i in 0..5 {
        assert_problem(&change(&format!("wrong-current-{i}")), 403);
    }
    assert_problem(&change(&target.password), 429);
    assert_eq!(detail(&svc, &target.id, &tokens.access)["lockedOut"], true);
    post(
        &svc,
        &format!("/admin/users/{}/unlock", target.id),
        &tokens.access,
    )
    .expect_status(200);
    assert_eq!(detail(&svc, &target.id, &tokens.access)["lockedOut"], false);
    change(&target.password).expect_status(200);

    // Unknown and impossible ids: 404.
    for id in [UNKNOWN_ID, "nope"] {
        assert_problem(
            &get(&svc, &format!("/admin/users/{id}"), &tokens.access),
            404,
        );
        assert_problem(
            &post(&svc, &format!("/admin/users/{id}/unlock"), &tokens.access),
            404,
        );
    }
    // Recorded with the acting admin.
    let db = svc.db();
    let unlocks = count(
        &db,
        &format!(
            "SELECT count(*) FROM audit_events WHERE event = 'admin_unlock' AND outcome = 'success' \
             AND actor_id = '{}' AND user_id = '{}'",
            admin.id, target.id
        ),
    );
    assert_eq!(unlocks, 2);
    assert_eq!(admin_audit_rows(&svc), 2);
    assert_no_invariant_broken(&svc);
}

fn disabling_a_user_ends_their_sessions_at_once_and_roles_can_change(backend: Backend) {
    let svc = Service::start_default(backend);
    let (admin, tokens) = svc.create_admin();
    let target = svc.create_account();
    let first = svc.sign_in(&target);
    let second = svc.sign_in(&target);
    svc.profile(&first.access).expect_status(200);

    // Disabled: refresh and access tokens stop working at once.
    let reply = patch(
        &svc,
        &target.id,
        &json!({"isActive": false}),
        &tokens.access,
    );
    reply.expect_status(200);
    let user = reply.json()["user"].clone();
    assert_eq!(user["id"], target.id.as_str());
    assert_eq!(user["email"], target.email.as_str());
    assert_eq!(user["isActive"], false);
    assert_eq!(user["roles"], json!(["user"]));
    assert_problem(&svc.refresh(&first.refresh), 401);
    assert_problem(&svc.refresh(&second.refresh), 401);
    assert_problem(&svc.profile(&first.access), 401);
    assert_problem(&svc.profile(&second.access), 401);
    assert_problem(&svc.signin(&target.email, &target.password), 401);
    let db = svc.db();
    let revoked = count(
        &db,
        &format!(
            "SELECT count(*) FROM sessions WHERE user_id = '{}' AND revoked_reason = 'admin_disabled'",
            target.id
        ),
    );
    assert_eq!(revoked, 2);
    assert_eq!(state_of(&svc, &target.id), (0, vec!["user".to_string()], 0));
    let shown = detail(&svc, &target.id, &tokens.access);
    assert_eq!(shown["isActive"], false);
    assert_eq!(shown["sessions"], json!([]));

    // Enabled again: signing in works; the old sessions stay revoked.
    let reply = patch(&svc, &target.id, &json!({"isActive": true}), &tokens.access);
    assert_eq!(reply.json()["user"]["isActive"], true, "{reply}");
    let plain = svc.sign_in(&target);
    assert_problem(&svc.refresh(&second.refresh), 401);

    // Made an admin: the next sign-in's token carries the role.
    let reply = patch(
        &svc,
        &target.id,
        &json!({"roles": ["user", "admin"]}),
        &tokens.access,
    );
    reply.expect_status(200);
    assert_eq!(reply.json()["user"]["roles"], json!(["admin", "user"]));
    assert_eq!(roles_in_db(&svc, &target.id), ["admin", "user"]);
    assert_coded(
        "a token from before the grant",
        &get(&svc, "/admin/users", &plain.access),
        403,
        "admin_required",
    );
    let promoted = svc.sign_in(&target);
    assert_eq!(token_roles(&promoted.access), ["admin", "user"]);
    get(&svc, "/admin/users", &promoted.access).expect_status(200);

    // Demoted again: that token is refused at once.
    let reply = patch(
        &svc,
        &target.id,
        &json!({"roles": ["user"]}),
        &tokens.access,
    );
    assert_eq!(reply.json()["user"]["roles"], json!(["user"]), "{reply}");
    assert_coded(
        "a token from before the demotion",
        &get(&svc, "/admin/users", &promoted.access),
        403,
        "admin_required",
    );
    // Both at once, a repeated role counted once.
    let reply = patch(
        &svc,
        &target.id,
        &json!({"isActive": true, "roles": ["user", "user"]}),
        &tokens.access,
    );
    assert_eq!(reply.json()["user"]["roles"], json!(["user"]), "{reply}");

    // Each change recorded once, with the acting admin.
    let updates = count(
        &db,
        &format!(
            "SELECT count(*) FROM audit_events WHERE event = 'admin_user_updated' \
             AND outcome = 'success' AND actor_id = '{}' AND user_id = '{}'",
            admin.id, target.id
        ),
    );
    assert_eq!(updates, 5);
    assert_eq!(admin_audit_rows(&svc), 5);
    assert_no_invariant_broken(&svc);
}

fn patch_refuses_bad_bodies_and_unknown_users(backend: Backend) {
    let svc = Service::start_default(backend);
    let (_admin, tokens) = svc.create_admin();
    let target = svc.create_account();
    let target_tokens = svc.sign_in(&target);
    let before = state_of(&svc, &target.id);
    for body in [
        json!({}),
        json!({"roles": ["user", "root"]}),
        json!({"roles": ["Admin"]}),
        json!({"roles": "admin"}),
        json!({"roles": [1]}),
        json!({"isActive": "no"}),
        json!({"isActive": 0}),
        json!({"isActive": null, "roles": null}),
        json!({"isActive": true, "superuser": true}),
    ] {
        let reply = patch(&svc, &target.id, &body, &tokens.access);
        assert_problem(&reply, 400);
    }
    let reply = patch(
        &svc,
        &target.id,
        &json!({"roles": ["user", "root"]}),
        &tokens.access,
    );
    let body = assert_problem(&reply, 400);
    assert_eq!(body["errors"][0]["field"], "roles", "{reply}");
    for id in [UNKNOWN_ID, "nope"] {
        assert_problem(
            &patch(&svc, id, &json!({"isActive": false}), &tokens.access),
            404,
        );
    }
    assert_eq!(state_of(&svc, &target.id), before);
    assert_eq!(admin_audit_rows(&svc), 0);
    svc.profile(&target_tokens.access).expect_status(200);

    // Every account keeps `user`: an empty list, or one without it, is refused.
    for body in [json!({"roles": []}), json!({"roles": ["admin"]})] {
        let reply = patch(&svc, &target.id, &body, &tokens.access);
        let problem = assert_problem(&reply, 400);
        assert_eq!(problem["errors"][0]["code"], "user_required", "{reply}");
        assert_eq!(roles_in_db(&svc, &target.id), vec!["user".to_string()]);
    }
    assert_no_invariant_broken(&svc);
}

fn self_demotion_is_refused_and_changes_nothing(backend: Backend) {
    let svc = Service::start_default(backend);
    let (admin, tokens) = svc.create_admin();
    let before = state_of(&svc, &admin.id);
    assert_eq!(
        before,
        (1, vec!["admin".to_string(), "user".to_string()], 1)
    );
    for body in [
        json!({"roles": ["user"]}),
        json!({"isActive": false}),
        json!({"isActive": false, "roles": ["user", "admin"]}),
        json!({"isActive": true, "roles": ["user"]}),
    ] {
        let reply = patch(&svc, &admin.id, &body, &tokens.access);
        assert_coded(&format!("self {body}"), &reply, 403, "self_demotion");
        assert_eq!(state_of(&svc, &admin.id), before, "after {body}");
    }
    assert_eq!(admin_audit_rows(&svc), 0);
    get(&svc, "/admin/users", &tokens.access).expect_status(200);
    // What keeps the role and the account is allowed on oneself.
    for body in [
        json!({"isActive": true}),
        json!({"roles": ["admin", "user"]}),
    ] {
        patch(&svc, &admin.id, &body, &tokens.access).expect_status(200);
    }
    assert_eq!(state_of(&svc, &admin.id), before);
    // Another admin may demote this one; then this one's token is refused.
    let (other, other_tokens) = svc.create_admin();
    patch(
        &svc,
        &admin.id,
        &json!({"roles": ["user"]}),
        &other_tokens.access,
    )
    .expect_status(200);
    assert_coded(
        "demoted by another admin",
        &get(&svc, "/admin/users", &tokens.access),
        403,
        "admin_required",
    );
    // ...and disable it: 401 at once.
    patch(
        &svc,
        &admin.id,
        &json!({"isActive": false}),
        &other_tokens.access,
    )
    .expect_status(200);
    assert_problem(&get(&svc, "/admin/users", &tokens.access), 401);
    let db = svc.db();
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM audit_events WHERE event = 'admin_user_updated' \
                 AND actor_id = '{}' AND user_id = '{}'",
                other.id, admin.id
            )
        ),
        2
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM audit_events WHERE event = 'admin_user_updated' \
                 AND actor_id = '{}'",
                admin.id
            )
        ),
        2
    );
    assert_no_invariant_broken(&svc);
}

// --- sessions ----------------------------------------------------------------------

fn revoking_a_users_sessions_ends_their_refresh(backend: Backend) {
    let svc = Service::start_default(backend);
    let (admin, tokens) = svc.create_admin();
    let target = svc.create_account();
    let first = svc.sign_in(&target);
    let second = svc.sign_in(&target);
    let path = format!("/admin/users/{}/sessions/revoke", target.id);

    let reply = post(&svc, &path, &tokens.access);
    reply.expect_status(200);
    let body = reply.json();
    assert!(body["message"].is_string(), "{reply}");
    for session in [&first, &second] {
        assert_problem(&svc.refresh(&session.refresh), 401);
        assert_problem(&svc.profile(&session.access), 401);
    }
    let db = svc.db();
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM sessions WHERE user_id = '{}' AND revoked_reason = 'admin_revoked'",
                target.id
            )
        ),
        2
    );
    // Again, three times over (calls within one second among them): each
    // call ends the session opened since, and a call with none left is fine.
    for round in 1..=3 {
        let fresh = svc.sign_in(&target);
        post(&svc, &path, &tokens.access).expect_status(200);
        post(&svc, &path, &tokens.access).expect_status(200);
        assert_problem(&svc.refresh(&fresh.refresh), 401);
        assert_eq!(
            count(
                &db,
                &format!(
                    "SELECT count(*) FROM sessions WHERE user_id = '{}' AND revoked_reason = 'admin_revoked'",
                    target.id
                )
            ),
            2 + round
        );
    }
    // The account itself still signs in.
    let fresh = svc.sign_in(&target);
    svc.profile(&fresh.access).expect_status(200);
    assert_eq!(
        array(&detail(&svc, &target.id, &tokens.access), "sessions").len(),
        1
    );
    // The admin's own session is untouched.
    get(&svc, "/admin/users", &tokens.access).expect_status(200);
    for id in [UNKNOWN_ID, "nope"] {
        assert_problem(
            &post(
                &svc,
                &format!("/admin/users/{id}/sessions/revoke"),
                &tokens.access,
            ),
            404,
        );
    }
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) FROM audit_events WHERE event = 'admin_sessions_revoked' \
                 AND outcome = 'success' AND actor_id = '{}' AND user_id = '{}'",
                admin.id, target.id
            )
        ),
        7
    );
    assert_eq!(admin_audit_rows(&svc), 7);
    assert_no_invariant_broken(&svc);
}

// --- the audit trail ---------------------------------------------------------------

fn audit(svc: &Service, query: &str, access: &str) -> Value {
    let reply = get(svc, &format!("/admin/audit?{query}"), access);
    reply.expect_status(200);
    reply.json()
}

fn the_audit_trail_names_the_acting_admin_and_pages_once(backend: Backend) {
    let svc = Service::start_default(backend);
    let (admin, tokens) = svc.create_admin();
    let target: Account = svc.create_account();
    svc.sign_in(&target);
    patch(
        &svc,
        &target.id,
        &json!({"roles": ["user", "admin"]}),
        &tokens.access,
    )
    .expect_status(200);
    patch(
        &svc,
        &target.id,
        &json!({"roles": ["user"]}),
        &tokens.access,
    )
    .expect_status(200);
    post(
        &svc,
        &format!("/admin/users/{}/unlock", target.id),
        &tokens.access,
    )
    .expect_status(200);
    post(
        &svc,
        &format!("/admin/users/{}/sessions/revoke", target.id),
        &tokens.access,
    )
    .expect_status(200);

    let all = audit(&svc, "limit=100", &tokens.access);
    let events = array(&all, "events");
    assert!(all["nextCursor"].is_null(), "{all}");
    let rows = count(&svc.db(), "SELECT count(*) FROM audit_events");
    assert_eq!(events.len(), usize::try_from(rows).unwrap());
    // Newest first: the four admin actions, in reverse order.
    let newest: Vec<&str> = events[..4]
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        newest,
        [
            "admin_sessions_revoked",
            "admin_unlock",
            "admin_user_updated",
            "admin_user_updated"
        ]
    );
    for event in &events[..4] {
        assert_eq!(event["actorId"], admin.id.as_str(), "{event}");
        assert_eq!(event["userId"], target.id.as_str(), "{event}");
        assert_eq!(event["outcome"], "success", "{event}");
        assert!(event["requestId"].is_string(), "{event}");
        assert!(event["at"].as_str().unwrap().contains('T'), "{event}");
    }
    for event in events {
        for member in [
            "id",
            "at",
            "event",
            "outcome",
            "userId",
            "actorId",
            "sessionId",
            "email",
            "clientIp",
            "reason",
            "requestId",
        ] {
            assert!(event.get(member).is_some(), "no {member}: {event}");
        }
        if !event["event"].as_str().unwrap().starts_with("admin_") {
            assert!(event["actorId"].is_null(), "{event}");
        }
        // Emails as stored: masked.
        if let Some(email) = event["email"].as_str() {
            assert!(email.contains("***@"), "{event}");
        }
    }
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());

    // Filters: by kind, by user, both.
    let updated = audit(&svc, "kind=admin_user_updated", &tokens.access);
    assert_eq!(array(&updated, "events").len(), 2, "{updated}");
    let signups = audit(&svc, "kind=signup", &tokens.access);
    assert_eq!(array(&signups, "events").len(), 2, "{signups}");
    assert!(
        array(&signups, "events")
            .iter()
            .all(|e| e["event"] == "signup")
    );
    let theirs = audit(&svc, &format!("userId={}", target.id), &tokens.access);
    let in_db = count(
        &svc.db(),
        &format!(
            "SELECT count(*) FROM audit_events WHERE user_id = '{}'",
            target.id
        ),
    );
    assert_eq!(
        array(&theirs, "events").len(),
        usize::try_from(in_db).unwrap()
    );
    assert!(
        array(&theirs, "events")
            .iter()
            .all(|e| e["userId"] == target.id.as_str())
    );
    let both = audit(
        &svc,
        &format!("userId={}&kind=admin_unlock", target.id),
        &tokens.access,
    );
    assert_eq!(array(&both, "events").len(), 1, "{both}");
    let none = audit(
        &svc,
        &format!("userId={UNKNOWN_ID}&kind=admin_unlock"),
        &tokens.access,
    );
    assert_eq!(none, json!({"events": [], "nextCursor": null}));

    // Pages of three meet every event once, in order, though events are
    // added meanwhile (newer ones, which the walk does not reach).
    let mut walked: Vec<String> = Vec::new();
    let mut page = audit(&svc, "limit=3", &tokens.access);
    let mut pages = 1;
    loop {
        let events = array(&page, "events");
        assert!(events.len() <= 3, "{page}");
        walked.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        let Some(cursor) = page["nextCursor"].as_str().map(str::to_string) else {
            break;
        };
        assert_eq!(events.len(), 3, "a short page before the end: {page}");
        svc.sign_in(&target);
        page = audit(&svc, &format!("cursor={cursor}&limit=3"), &tokens.access);
        pages += 1;
        assert!(pages < 100, "the walk does not end");
    }
    assert_eq!(walked, ids);
    // A filtered walk keeps its filter.
    let first = audit(&svc, "kind=admin_user_updated&limit=1", &tokens.access);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = audit(
        &svc,
        &format!("kind=admin_user_updated&limit=1&cursor={cursor}"),
        &tokens.access,
    );
    assert_eq!(array(&second, "events").len(), 1);
    assert_eq!(second["events"][0]["event"], "admin_user_updated");
    assert_ne!(second["events"][0]["id"], first["events"][0]["id"]);
    assert!(second["nextCursor"].is_null(), "{second}");

    // Bad parameters: 400 invalid_query.
    let not_a_number = b64url_encode(b"abc");
    for query in [
        "kind=nope",
        "kind=",
        "kind=ADMIN_UNLOCK",
        "userId=not-an-id!",
        "cursor=not%20base64%21",
        &format!("cursor={not_a_number}"),
        "limit=0",
        "limit=101",
        "limit=x",
        "actorId=someone",
        "kind=signup&kind=signin",
    ] {
        let reply = get(&svc, &format!("/admin/audit?{query}"), &tokens.access);
        assert_coded(&format!("audit?{query}"), &reply, 400, "invalid_query");
    }

    // Each admin action was logged too, with the acting admin.
    svc.wait_for_audit("the admin actions", |lines| {
        [
            "admin_user_updated",
            "admin_unlock",
            "admin_sessions_revoked",
        ]
        .iter()
        .all(|kind| {
            lines
                .iter()
                .any(|l| l["event"] == *kind && l["actor_id"] == admin.id.as_str())
        })
    });
    assert_no_invariant_broken(&svc);
    // The invariant an admin action without its actor would break is checked.
    svc.db()
        .execute(
            "INSERT INTO audit_events (id, at, event, outcome, user_id) \
             VALUES ('e2e-no-actor', 0, 'admin_unlock', 'success', ?1)",
            [&target.id],
        )
        .unwrap();
    let violations = invariant_violations(&svc.db());
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("actor_id"), "{violations:?}");
}
