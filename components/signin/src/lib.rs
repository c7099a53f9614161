//! `POST /auth/signin`: checks email and password, opens a session.
//!
//! Body `{email, password}`. 200 `{message, user: {id, email, fullName}}`
//! with the `token` and `refreshToken` cookies; 401 for a wrong password, an
//! unknown email or an inactive account alike (and in the same time); 429
//! with `Retry-After` while the account or the client address is locked out;
//! 403 `email_not_verified` for a right password while `require_verified_email`
//! is on and the address is not verified. Two database round trips.

use latch_domain::{
    AuditEvent, AuditKind, Email, Outcome, RefreshToken, ThrottleKey, ThrottlePolicy,
};
use latch_store::{NewSession, Throttles};
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
    let session_id = latch_web::new_id()?;
    let (refresh, refresh_hash) = RefreshToken::from_random(latch_web::random()?);
    let access = auth::access_token(&keys, &policy, &user, &session_id, now)?;
    let signed_in = audit::record(
        ctx,
        event(AuditKind::Signin, Outcome::Success)
            .with_user(&user.id)
            .with_session(&session_id),
        now,
    )?;
    let client_ip_text = client_ip.map(|ip| ip.to_string());
    let session = NewSession {
        id: &session_id,
        user_id: &user.id,
        refresh_hash: &refresh_hash,
        now,
        expires_at: policy.refresh_expires_at(now),
        client_ip: client_ip_text.as_deref(),
        user_agent: ctx.user_agent(),
    };
    store.finish_signin(&session, throttles, &signed_in).await?;
    audit::log(ctx, &signed_in);

    Ok(response::with_tokens(
        ctx,
        serde_json::json!({
            "message": "Signed in successfully",
            "user": {"id": user.id, "email": user.email, "fullName": user.full_name},
        }),
        &access,
        refresh.as_str(),
        &policy,
        config::flag("tokens_in_body")?,
    ))
}
