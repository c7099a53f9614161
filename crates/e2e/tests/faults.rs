//! Database failures, on the SQLite Cloud backend through the stand-in's
//! fault injection. For every database request of every route (the k-th
//! SQL request a route makes, k = 1 ..= its round trips) and every fault
//! (HTTP 401, 403, 429, 500, 502, 503, 504; a paused node; a malformed body;
//! a connection cut mid-response; no answer within `database_timeout_ms`):
//!
//! - the answer is 503 `application/problem+json` with `Retry-After`;
//! - the fault was consumed, i.e. the route did make that request;
//! - a timeout answers within the timeout, long before the database would;
//! - the service keeps serving: the same route then succeeds;
//! - the data invariants hold (see `latch_e2e::invariant_violations`),
//!   also for faults after the SQL ran (cut, malformed) and for statements
//!   the stand-in runs after the service gave up waiting (timeout);
//! - and, at the end, the service's output holds no secret.
//!
//! One test per fault kind, each with its own stand-in and service.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use latch_e2e::{
    Account, Backend, Options, Reply, Service, Tokens, WebhookReceiver, assert_problem,
    b64url_encode, invariant_violations, session_id_of, unique_email, unique_password,
};
use serde_json::json;

/// `database_timeout_ms` of the service under the timeout fault. Low, but
/// with room for a loaded machine: every other request of that test must
/// still finish within it. (The other faults keep the 5 s default, so a
/// busy machine cannot turn their set-up requests into timeouts.)
const TIMEOUT_MS: u64 = 750;
/// How late a "timeout" fault lets the database answer (it still runs the SQL then).
const LATENCY_MS: u64 = 2000;

#[derive(Debug, Clone, Copy)]
enum Fault {
    Status(u16),
    Paused,
    Malformed,
    Cut,
    Timeout,
}

impl Fault {
    /// The stand-in's fault for the `skip + 1`-th SQL request from now.
    fn spec(self, skip: u64) -> serde_json::Value {
        match self {
            Fault::Status(status) => json!({"kind": "status", "status": status, "skip": skip}),
            Fault::Paused => json!({"kind": "paused", "skip": skip}),
            Fault::Malformed => json!({"kind": "malformed", "skip": skip}),
            Fault::Cut => json!({"kind": "cut", "skip": skip}),
            Fault::Timeout => json!({"kind": "latency", "latency_ms": LATENCY_MS, "skip": skip}),
        }
    }
}

/// One API call, and how many SQL requests it makes (queries.rs; the
/// round_trips test proves the counts).
#[derive(Debug, Clone, Copy)]
enum Step {
    Signup,
    SigninOk,
    SigninWrongPassword,
    Refresh,
    Signout,
    PasswordChange,
    SessionsList,
    SessionRevoke,
    ProfileGet,
    ProfilePut,
    Ready,
    Forgot,
    Reset,
    Verify,
    Resend,
    AdminUsers,
    AdminUserGet,
    AdminUserPatch,
    AdminUnlock,
    AdminSessionsRevoke,
    AdminAudit,
    // The second factor (issue 14).
    MfaEnroll,
    MfaConfirm,
    MfaRemove,
    MfaRecoveryCodes,
    MfaVerify,
    MfaVerifyRecoveryCode,
    MfaVerifyWrongCode,
    SigninMfa,
}

impl Step {
    /// Whether the step is a second-factor call (or sign-in with a factor).
    fn is_mfa(self) -> bool {
        matches!(
            self,
            Step::MfaEnroll
                | Step::MfaConfirm
                | Step::MfaRemove
                | Step::MfaRecoveryCodes
                | Step::MfaVerify
                | Step::MfaVerifyRecoveryCode
                | Step::MfaVerifyWrongCode
                | Step::SigninMfa
        )
    }

    /// Whether the step is an admin API call (made with an admin's token).
    fn is_admin(self) -> bool {
        matches!(
            self,
            Step::AdminUsers
                | Step::AdminUserGet
                | Step::AdminUserPatch
                | Step::AdminUnlock
                | Step::AdminSessionsRevoke
                | Step::AdminAudit
        )
    }
}

/// How long a webhook message may take to arrive while preparing a step.
const MESSAGE_WAIT: Duration = Duration::from_secs(15);

const STEPS: [(Step, u64); 29] = [
    (Step::Signup, 1),
    (Step::SigninOk, 2),
    (Step::SigninWrongPassword, 2),
    (Step::Refresh, 1),
    (Step::Signout, 1),
    (Step::PasswordChange, 2),
    (Step::SessionsList, 1),
    (Step::SessionRevoke, 1),
    (Step::ProfileGet, 1),
    (Step::ProfilePut, 1),
    (Step::Ready, 1),
    (Step::Forgot, 1),
    (Step::Reset, 1),
    (Step::Verify, 1),
    (Step::Resend, 1),
    (Step::AdminUsers, 1),
    (Step::AdminUserGet, 2),
    (Step::AdminUserPatch, 1),
    (Step::AdminUnlock, 2),
    (Step::AdminSessionsRevoke, 1),
    (Step::AdminAudit, 1),
    (Step::MfaEnroll, 1),
    (Step::MfaConfirm, 2),
    (Step::MfaRemove, 2),
    (Step::MfaRecoveryCodes, 2),
    (Step::MfaVerify, 2),
    (Step::MfaVerifyRecoveryCode, 2),
    // A failing path: the read, then recording the failure.
    (Step::MfaVerifyWrongCode, 2),
    (Step::SigninMfa, 2),
];

/// `mfa_encryption_key` of the services here (production refuses the
/// second-factor routes without one).
fn mfa_key() -> String {
    b64url_encode(&[42u8; 32])
}

/// What a step needs, made while no fault is pending.
struct Prepared {
    email: String,
    password: String,
    account: Option<Account>,
    tokens: Option<Tokens>,
    other_session: Option<String>,
    /// A recovery (Reset) or verification (Verify) token from the webhook.
    one_time: Option<String>,
    /// The admin making an admin step (whose target is `account`).
    admin: Option<(Account, Tokens)>,
    /// Second-factor steps: the TOTP code (or recovery code) to present,
    /// the sign-in challenge, and what else was secret in the preparation.
    code: Option<String>,
    challenge: Option<String>,
    mfa_secrets: Vec<String>,
}

impl Prepared {
    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![self.email.clone(), self.password.clone()];
        if let Some(tokens) = &self.tokens {
            secrets.push(tokens.access.clone());
            secrets.push(tokens.refresh.clone());
        }
        secrets.extend(self.one_time.clone());
        secrets.extend(self.challenge.clone());
        secrets.extend(self.mfa_secrets.iter().cloned());
        if let Some((admin, tokens)) = &self.admin {
            secrets.extend([
                admin.email.clone(),
                admin.password.clone(),
                tokens.access.clone(),
                tokens.refresh.clone(),
            ]);
        }
        secrets
    }

    /// The admin's access token.
    fn admin(&self) -> &str {
        &self.admin.as_ref().unwrap().1.access
    }

    /// `/admin/users/<the target's id><rest>`.
    fn target_path(&self, rest: &str) -> String {
        format!("/admin/users/{}{rest}", self.account().id)
    }

    fn tokens(&self) -> &Tokens {
        self.tokens.as_ref().unwrap()
    }

    fn account(&self) -> &Account {
        self.account.as_ref().unwrap()
    }

    fn code(&self) -> &str {
        self.code.as_deref().unwrap()
    }

    fn challenge(&self) -> &str {
        self.challenge.as_deref().unwrap()
    }
}

/// Sets up the second factor a step needs, in the session `prepared.tokens`
/// of `account`.
fn prepare_mfa(svc: &Service, step: Step, account: &Account, prepared: &mut Prepared) {
    let access = prepared.tokens().access.clone();
    if matches!(step, Step::MfaEnroll) {
        return;
    }
    if matches!(step, Step::MfaConfirm) {
        let (mut authenticator, _) = svc.start_mfa(&access);
        prepared.mfa_secrets.push(authenticator.secret.clone());
        prepared.code = Some(authenticator.fresh_code());
        return;
    }
    let (mut authenticator, codes) = svc.enable_mfa(&access);
    prepared.mfa_secrets.push(authenticator.secret.clone());
    prepared.mfa_secrets.extend(codes.iter().cloned());
    match step {
        Step::MfaRemove => {
            // Removal needs a session that presented the factor.
            let tokens = svc.sign_in_mfa(account, &mut authenticator);
            prepared
                .mfa_secrets
                .extend([tokens.access.clone(), tokens.refresh.clone()]);
            prepared.tokens = Some(tokens);
            prepared.code = Some(authenticator.fresh_code());
        }
        Step::MfaRecoveryCodes => prepared.code = Some(authenticator.fresh_code()),
        Step::MfaVerify | Step::MfaVerifyRecoveryCode | Step::MfaVerifyWrongCode => {
            prepared.challenge = Some(svc.mfa_challenge(account));
            prepared.code = Some(match step {
                Step::MfaVerify => authenticator.fresh_code(),
                Step::MfaVerifyRecoveryCode => codes[0].clone(),
                _ => authenticator.wrong_code(),
            });
        }
        _ => {}
    }
}

fn prepare(svc: &Service, receiver: &WebhookReceiver, step: Step) -> Prepared {
    let mut prepared = Prepared {
        email: unique_email("fault"),
        password: unique_password(),
        account: None,
        tokens: None,
        other_session: None,
        one_time: None,
        admin: None,
        code: None,
        challenge: None,
        mfa_secrets: Vec::new(),
    };
    if matches!(step, Step::Signup | Step::Ready) {
        return prepared;
    }
    let account = svc.create_account();
    prepared.email = account.email.clone();
    prepared.password = account.password.clone();
    match step {
        Step::Verify => {
            let message = receiver.wait_for("verification", &account.email, MESSAGE_WAIT);
            prepared.one_time = Some(message.token().to_string());
        }
        Step::Reset => {
            svc.post("/auth/password/forgot")
                .json(&json!({"email": account.email}))
                .send()
                .expect_status(202);
            let message = receiver.wait_for("recovery", &account.email, MESSAGE_WAIT);
            prepared.one_time = Some(message.token().to_string());
        }
        _ => {}
    }
    if !matches!(
        step,
        Step::SigninOk | Step::SigninWrongPassword | Step::Forgot | Step::Reset | Step::Verify
    ) {
        prepared.tokens = Some(svc.sign_in(&account));
    }
    if matches!(step, Step::SessionRevoke) {
        prepared.other_session = Some(session_id_of(&svc.sign_in(&account).access));
    }
    if step.is_admin() {
        // The account (signed in above: a session to revoke) is the target.
        prepared.admin = Some(svc.create_admin());
    }
    if step.is_mfa() {
        prepare_mfa(svc, step, &account, &mut prepared);
    }
    prepared.account = Some(account);
    prepared
}

fn perform(svc: &Service, step: Step, p: &Prepared) -> Reply {
    match step {
        Step::Signup => svc.signup(&p.email, &p.password, "Fault Case"),
        Step::SigninOk => svc.signin(&p.email, &p.password),
        Step::SigninWrongPassword => svc.signin(&p.email, "wrong-password-x"),
        Step::Refresh => svc.refresh(&p.tokens().refresh),
        Step::Signout => svc
            .post("/auth/signout")
            .access_cookie(&p.tokens().access)
            .send(),
        Step::PasswordChange => svc
            .post("/auth/password")
            .access_cookie(&p.tokens().access)
            .json(
                &json!({"currentPassword": p.account().password, "newPassword": unique_password()}),
            )
            .send(),
        Step::SessionsList => svc
            .get("/auth/sessions")
            .access_cookie(&p.tokens().access)
            .send(),
        Step::SessionRevoke => svc
            .delete(&format!(
                "/auth/sessions/{}",
                p.other_session.as_deref().unwrap()
            ))
            .access_cookie(&p.tokens().access)
            .send(),
        Step::ProfileGet => svc.profile(&p.tokens().access),
        Step::ProfilePut => svc
            .put("/user/profile")
            .access_cookie(&p.tokens().access)
            .json(&json!({"fullName": "Changed Name"}))
            .send(),
        Step::Ready => svc.get("/ready").send(),
        Step::Forgot => svc
            .post("/auth/password/forgot")
            .json(&json!({"email": p.email}))
            .send(),
        Step::Reset => svc
            .post("/auth/password/reset")
            .json(
                &json!({"token": p.one_time.as_deref().unwrap(), "newPassword": unique_password()}),
            )
            .send(),
        Step::Verify => svc
            .post("/auth/email/verify")
            .json(&json!({"token": p.one_time.as_deref().unwrap()}))
            .send(),
        Step::Resend => svc
            .post("/auth/email/verify/resend")
            .access_cookie(&p.tokens().access)
            .send(),
        Step::AdminUsers => svc
            .get("/admin/users?limit=5")
            .access_cookie(p.admin())
            .send(),
        Step::AdminUserGet => svc.get(&p.target_path("")).access_cookie(p.admin()).send(),
        Step::AdminUserPatch => svc
            .call("PATCH", &p.target_path(""))
            .access_cookie(p.admin())
            .json(&json!({"isActive": false}))
            .send(),
        Step::AdminUnlock => svc
            .post(&p.target_path("/unlock"))
            .access_cookie(p.admin())
            .send(),
        Step::AdminSessionsRevoke => svc
            .post(&p.target_path("/sessions/revoke"))
            .access_cookie(p.admin())
            .send(),
        Step::AdminAudit => svc
            .get("/admin/audit?limit=5")
            .access_cookie(p.admin())
            .send(),
        Step::MfaEnroll => svc.mfa_enroll(&p.tokens().access),
        Step::MfaConfirm => svc.mfa_confirm(&p.tokens().access, p.code()),
        Step::MfaRemove => svc
            .delete("/auth/mfa/totp")
            .access_cookie(&p.tokens().access)
            .json(&json!({"code": p.code()}))
            .send(),
        Step::MfaRecoveryCodes => svc
            .post("/auth/mfa/recovery-codes")
            .access_cookie(&p.tokens().access)
            .json(&json!({"code": p.code()}))
            .send(),
        Step::MfaVerify | Step::MfaVerifyWrongCode => svc.mfa_verify(p.challenge(), p.code()),
        Step::MfaVerifyRecoveryCode => svc.mfa_verify_recovery(p.challenge(), p.code()),
        Step::SigninMfa => svc.signin(&p.email, &p.password),
    }
}

/// What the step answers when the database works.
fn success_status(step: Step) -> u16 {
    match step {
        Step::Signup => 201,
        Step::SigninWrongPassword => 401,
        Step::MfaVerifyWrongCode => 400,
        Step::SessionRevoke => 204,
        Step::Forgot | Step::Resend => 202,
        _ => 200,
    }
}

/// The service under `fault`, sending its email webhook to a receiver
/// (production refuses recovery and verification without one).
fn start(fault: Fault) -> (WebhookReceiver, Service) {
    let receiver = WebhookReceiver::start();
    let options = Options::new(Backend::Cloud)
        .production()
        .var("mfa_encryption_key", &mfa_key())
        .webhook(&receiver);
    let svc = match fault {
        Fault::Timeout => options.var("database_timeout_ms", &TIMEOUT_MS.to_string()),
        _ => options,
    }
    .start();
    (receiver, svc)
}

/// What is wrong with a faulted answer (empty when it is right).
fn check_unavailable(reply: &Reply) -> Vec<String> {
    let mut problems = Vec::new();
    if reply.status != 503 {
        problems.push(format!(
            "status {} (expected 503): {}",
            reply.status,
            reply.text()
        ));
        return problems;
    }
    if let Err(panic) = std::panic::catch_unwind(|| assert_problem(reply, 503)) {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "not a problem response".into());
        problems.push(message);
    }
    match reply.header("retry-after").map(str::parse::<u64>) {
        Some(Ok(secs)) if secs >= 1 => {}
        other => problems.push(format!("Retry-After {other:?}")),
    }
    problems
}

fn run(fault: Fault) {
    let (receiver, svc) = start(fault);
    let standin = svc.standin();
    let mut failures: Vec<String> = Vec::new();
    let mut secrets: Vec<String> = vec![latch_e2e::STANDIN_API_KEY.to_string(), mfa_key()];
    let mut cases = 0;
    let begun = Instant::now();
    for (step, requests) in STEPS {
        for k in 1..=requests {
            cases += 1;
            let case = format!("{fault:?} on request {k}/{requests} of {step:?}");
            let prepared = prepare(&svc, &receiver, step);
            secrets.extend(prepared.secrets());
            standin.clear_faults();
            standin.add_faults(&fault.spec(k - 1));
            let started = Instant::now();
            let reply = perform(&svc, step, &prepared);
            let took = started.elapsed();
            for problem in check_unavailable(&reply) {
                failures.push(format!("{case}: {problem}"));
            }
            if standin.pending_faults() != 0 {
                failures.push(format!("{case}: the route never made request {k}"));
                standin.clear_faults();
            }
            if matches!(fault, Fault::Timeout) {
                if took >= Duration::from_millis(LATENCY_MS - 500) {
                    failures.push(format!(
                        "{case}: answered after {took:?}, not within the {TIMEOUT_MS} ms timeout"
                    ));
                }
                // The stand-in still runs the SQL when its delay is over.
                if let Some(left) =
                    Duration::from_millis(LATENCY_MS + 150).checked_sub(started.elapsed())
                {
                    std::thread::sleep(left);
                }
            }
            // The service keeps serving: the same call succeeds now.
            let again = prepare(&svc, &receiver, step);
            secrets.extend(again.secrets());
            let reply = perform(&svc, step, &again);
            if reply.status != success_status(step) {
                failures.push(format!(
                    "{case}: afterwards the same call answered {} (expected {}): {}",
                    reply.status,
                    success_status(step),
                    reply.text()
                ));
            }
            for violation in invariant_violations(&svc.db()) {
                failures.push(format!("{case}: invariant broken: {violation}"));
            }
        }
    }
    // Still ready, and nothing secret in the logs (database errors included).
    let ready = svc.get("/ready").send();
    if ready.status != 200 {
        failures.push(format!("/ready afterwards: {ready}"));
    }
    let output = svc.output();
    for secret in &secrets {
        if output.contains(secret.as_str()) {
            failures.push(format!("the log holds a secret or an email: {secret}"));
        }
    }
    println!(
        "{fault:?}: {cases} cases in {:.1} s, {} failures",
        begun.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn http_401_unauthorized() {
    run(Fault::Status(401));
}

#[test]
fn http_403_forbidden() {
    run(Fault::Status(403));
}

#[test]
fn http_429_rate_limited() {
    run(Fault::Status(429));
}

#[test]
fn http_500_server_error() {
    run(Fault::Status(500));
}

#[test]
fn http_502_bad_gateway() {
    run(Fault::Status(502));
}

#[test]
fn http_503_unavailable() {
    run(Fault::Status(503));
}

#[test]
fn http_504_gateway_timeout() {
    run(Fault::Status(504));
}

#[test]
fn paused_node() {
    run(Fault::Paused);
}

#[test]
fn malformed_body() {
    run(Fault::Malformed);
}

#[test]
fn connection_cut_mid_response() {
    run(Fault::Cut);
}

#[test]
fn no_answer_within_the_timeout() {
    run(Fault::Timeout);
}

/// A database that stays down: /ready says so every time, every route
/// answers 503 (liveness stays 200), and all recover once it is back.
#[test]
fn ready_reports_a_sustained_outage_and_everything_recovers() {
    let (_receiver, svc) = start(Fault::Status(503));
    let account = svc.create_account();
    let tokens = svc.sign_in(&account);
    let standin = svc.standin();
    standin.add_faults(&json!({"kind": "status", "status": 503, "times": 1000}));
    for _ in 0..3 {
        let reply = svc.get("/ready").send();
        assert!(check_unavailable(&reply).is_empty(), "{reply}");
        let body = reply.json();
        assert!(
            body["detail"].as_str().unwrap().contains("database"),
            "{reply}"
        );
        svc.get("/health").send().expect_status(200);
    }
    for reply in [
        svc.signup(&unique_email("down"), &unique_password(), "Down Time"),
        svc.signin(&account.email, &account.password),
        svc.refresh(&tokens.refresh),
        svc.profile(&tokens.access),
        svc.post("/auth/password/forgot")
            .json(&json!({"email": account.email}))
            .send(),
        svc.mfa_enroll(&tokens.access),
    ] {
        assert!(check_unavailable(&reply).is_empty(), "{reply}");
    }
    standin.clear_faults();
    svc.get("/ready").send().expect_status(200);
    svc.profile(&tokens.access).expect_status(200);
    svc.refresh(&tokens.refresh).expect_status(200);
    svc.sign_in(&account);
    assert_eq!(invariant_violations(&svc.db()), Vec::<String>::new());
}
