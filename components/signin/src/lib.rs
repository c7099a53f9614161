//! `POST /auth/signin`: checks email and password, opens a session.
//!
//! Body `{email, password}`. 200 `{message, user: {id, email, fullName}}`
//! with the `token` and `refreshToken` cookies; 401 for a wrong password, an
//! unknown email or an inactive account alike (and in the same time); 429
//! with `Retry-After` while the account or the client address is locked out;
//! 403 `email_not_verified` for a right password while `require_verified_email`
//! is on and the address is not verified. For a user with a second factor,
//! a right password answers 200 `{mfaRequired: true, challenge}` and sets no
//! cookies: `POST /auth/mfa/verify` opens the session. Two database round trips.

use latch_domain::{
    Assurance, AuditEvent, AuditKind, Challenge, Email, Outcome, ThrottleKey, ThrottlePolicy,
};
use latch_store::{NewChallenge, Throttles};
use latch_web::request::{json_body, required};
use latch_web::{
    ApiError, Ctx, Method, Request, Response, audit, auth, config, db, passwords, response, time,
};
use serde::Deserialize;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

/// Longest password accepted for checking (sign-up allows 128 characters).
const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Deserialize)]
struct SigninBody {
    email: Option<String>,
    password: Option<String>,
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/signin", &[Method::POST], signin).await;
}

async fn signin(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let body: SigninBody = json_body(&req)?;
    let email = Email::parse(required(&body.email, "email")?)?;
    let password = required(&body.password, "password")?;
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::InvalidCredentials);
    }

    let now = time::now();
    let store = db::open()?;
    let policy = config::token_policy()?;
    let keys = auth::keys(&store, now).await?;
    auth::signing_key(&keys)?;
    let client_ip = ctx.client_ip(config::flag("trust_forwarded_for")?);
    let account_key = ThrottleKey::account(&email);
    let client_key = client_ip.map(ThrottleKey::client);
    let throttles = Throttles {
        account: (&account_key, &ThrottlePolicy::ACCOUNT),
        client: client_key
            .as_ref()
            .map(|key| (key, &ThrottlePolicy::CLIENT)),
    };
    let event = |kind, outcome| {
        let event = AuditEvent::new(kind, outcome).with_email(&email);
        match client_ip {
            Some(ip) => event.with_client_ip(ip),
            None => event,
        }
    };

    let attempt = latch_web::new_id()?;
    let refusal = audit::record(
        ctx,
        event(AuditKind::Signin, Outcome::Denied).with_reason("locked_out"),
        now,
    )?;
    let context = store
        .begin_signin(&email, throttles, &attempt, &refusal, now)
        .await?;

    // Locked: refused before any password is checked; the store recorded it.
    if context.refused {
        audit::log(ctx, &refusal);
        let retry_after_secs = std::iter::once((context.account, ThrottlePolicy::ACCOUNT))
            .chain(context.client.map(|c| (c, ThrottlePolicy::CLIENT)))
            .filter_map(|(counter, policy)| policy.check(&counter, now).err())
            .map(|throttled| throttled.retry_after_secs)
            .max()
            // The lock ended between the attempt and the read.
            .unwrap_or(1);
        return Err(ApiError::TooManyRequests { retry_after_secs });
    }

    // The same argon2 work whether or not the email exists.
    let known = context.credentials.is_some();
    let verified = passwords::verify(
        password,
        context
            .credentials
            .as_ref()
            .map(|c| c.password_hash.as_str()),
    )?;
    let credentials = context.credentials.filter(|c| verified && c.user.is_active);
    let Some(credentials) = credentials else {
        let reason = match (verified, known) {
            (_, false) => "unknown_email",
            (true, true) => "inactive_account",
            (false, true) => "wrong_password",
        };
        let failure = audit::record(
            ctx,
            event(AuditKind::Signin, Outcome::Failure).with_reason(reason),
            now,
        )?;
        let lockout = audit::record(
            ctx,
            event(AuditKind::Lockout, Outcome::Denied).with_reason("too_many_failures"),
            now,
        )?;
        // The lock-out is recorded only if this attempt is the one that earned it.
        let locked_out = store
            .fail_signin(throttles, &attempt, &failure, &lockout, now)
            .await?;
        audit::log(ctx, &failure);
        if locked_out {
            audit::log(ctx, &lockout);
        }
        return Err(ApiError::InvalidCredentials);
    };

    let user = credentials.user;
    if !user.email_verified && config::flag("require_verified_email")? {
        // The password was right: the attempt is given back, and no session opens.
        let refusal = audit::record(
            ctx,
            event(AuditKind::Signin, Outcome::Denied)
                .with_user(&user.id)
                .with_reason("email_not_verified"),
            now,
        )?;
        store
            .refuse_unverified_signin(&account_key, &refusal)
            .await?;
        audit::log(ctx, &refusal);
        return Err(ApiError::EMAIL_NOT_VERIFIED);
    }
    if user.mfa_enabled {
        return challenge(ctx, &store, &user, &attempt, &account_key, event, now).await;
    }
    let opening = auth::Opening::new(&keys, &policy, &user, Assurance::Password, now)?;
    let signed_in = audit::record(
        ctx,
        event(AuditKind::Signin, Outcome::Success)
            .with_user(&user.id)
            .with_session(&opening.session_id),
        now,
    )?;
    let client_ip_text = client_ip.map(|ip| ip.to_string());
    let session = opening.session(ctx, &user.id, client_ip_text.as_deref(), &policy, now);
    store.finish_signin(&session, throttles, &signed_in).await?;
    audit::log(ctx, &signed_in);
    opening.respond(ctx, &user, &policy)
}

/// The password was right and the user has a second factor: no session
/// yet, only a challenge that `POST /auth/mfa/verify` takes with a code.
async fn challenge(
    ctx: &Ctx,
    store: &latch_store::Store<db::Backend>,
    user: &latch_store::User,
    attempt: &str,
    account_key: &ThrottleKey,
    event: impl Fn(AuditKind, Outcome) -> AuditEvent,
    now: i64,
) -> Result<Response, ApiError> {
    let ttl = config::seconds("mfa_challenge_ttl_seconds", 1, 3600)?;
    let (challenge, hash) = Challenge::new(&user.id, latch_web::random()?);
    let record = audit::record(
        ctx,
        event(AuditKind::Signin, Outcome::Success)
            .with_user(&user.id)
            .with_reason("mfa_required"),
        now,
    )?;
    let new = NewChallenge {
        hash: &hash,
        user_id: &user.id,
        attempt_id: attempt,
        now,
        expires_at: now.saturating_add(ttl),
    };
    store.open_challenge(&new, account_key, &record).await?;
    audit::log(ctx, &record);
    Ok(response::json(
        200,
        &serde_json::json!({
            "message": "Enter a code from your authenticator app",
            "mfaRequired": true,
            "challenge": challenge.as_str(),
        }),
    ))
}
