//! `POST /auth/signup`: creates an account with the `user` role.
//!
//! Body `{email, password, fullName}`. 201 `{message, userId}`; 400 on
//! invalid fields; 409 when the email is taken (also when two sign-ups race);
//! 429 with `Retry-After` once the client address has signed up
//! `signup_max_per_window` times in `signup_window_seconds` (default 10 an
//! hour), for a new and a taken email alike, so it tells nothing of accounts.
//! A verification message goes to the address after the answer.
//! One database round trip.

use latch_domain::{
    AuditEvent, AuditKind, Email, FullName, OneTimeToken, Outcome, Password, ThrottleKey,
    ThrottlePolicy, TokenPurpose,
};
use latch_store::{NewToken, NewUser, SignupOutcome, SignupThrottle};
use latch_web::email::{self, Letter};
use latch_web::request::{json_body, required};
use latch_web::{
    ApiError, Ctx, Fields, Method, Request, Response, audit, config, db, passwords, response, time,
};
use serde::Deserialize;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignupBody {
    email: Option<String>,
    password: Option<String>,
    full_name: Option<String>,
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/signup", &[Method::POST], signup).await;
}

async fn signup(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let body: SignupBody = json_body(&req)?;
    let mut fields = Fields::default();
    let email = fields.check(required(&body.email, "email").and_then(Email::parse));
    let password = fields.check(required(&body.password, "password").and_then(Password::parse));
    let full_name = fields.check(required(&body.full_name, "fullName").and_then(|name| {
        FullName::parse(name).map_err(|mut e| {
            e.field = "fullName";
            e
        })
    }));
    fields.finish()?;
    let (Some(email), Some(password), Some(full_name)) = (email, password, full_name) else {
        return Err(ApiError::Internal("validated fields missing"));
    };
    let verification_ttl = config::seconds("verification_token_ttl_seconds", 60, 30 * 86_400)?;
    let policy = ThrottlePolicy::signup(
        u32::try_from(config::seconds("signup_max_per_window", 1, 1_000_000)?)
            .map_err(|_| ApiError::Internal("bounded sign-up limit"))?,
        config::seconds("signup_window_seconds", 1, 7 * 86_400)?,
    );

    let password_hash = passwords::hash(&password)?;
    let now = time::now();
    let store = db::open()?;
    let user_id = latch_web::new_id()?;
    let (token, token_hash) = OneTimeToken::from_random(latch_web::random()?);
    let expires_at = now.saturating_add(verification_ttl);
    let client_ip = ctx.client_ip(config::flag("trust_forwarded_for")?);
    let event = |kind, outcome| {
        let event = AuditEvent::new(kind, outcome).with_email(&email);
        match client_ip {
            Some(ip) => event.with_client_ip(ip),
            None => event,
        }
    };
    let created = audit::record(
        ctx,
        event(AuditKind::Signup, Outcome::Success).with_user(&user_id),
        now,
    )?;
    let verification_issued = audit::record(
        ctx,
        event(AuditKind::VerificationRequested, Outcome::Success).with_user(&user_id),
        now,
    )?;
    let taken = audit::record(
        ctx,
        event(AuditKind::Signup, Outcome::Failure).with_reason("email_taken"),
        now,
    )?;
    let refusal = audit::record(
        ctx,
        event(AuditKind::Signup, Outcome::Denied).with_reason("throttled"),
        now,
    )?;
    let throttle_key = client_ip.map(ThrottleKey::signup_client);
    let attempt = latch_web::new_id()?;
    let throttle = throttle_key.as_ref().map(|key| SignupThrottle {
        key,
        policy: &policy,
        attempt_id: &attempt,
        refusal: &refusal,
    });
    let user = NewUser {
        id: &user_id,
        email: &email,
        password_hash: &password_hash,
        full_name: full_name.as_str(),
        now,
        verification: NewToken {
            hash: &token_hash,
            expires_at,
        },
    };
    match store
        .create_user(&user, throttle, &created, &verification_issued, &taken)
        .await?
    {
        SignupOutcome::Created => {
            audit::log(ctx, &created);
            audit::log(ctx, &verification_issued);
            if let Some(outbox) = email::outbox_or_log(ctx) {
                ctx.send_after_response(
                    outbox,
                    Letter {
                        purpose: TokenPurpose::Verification,
                        to: email.as_str().to_string(),
                        token,
                        expires_at,
                    },
                );
            }
            Ok(response::json(
                201,
                &serde_json::json!({"message": "User created successfully", "userId": user_id}),
            ))
        }
        SignupOutcome::Refused(counter) => {
            audit::log(ctx, &refusal);
            let retry_after_secs = policy
                .check(&counter, now)
                .err()
                // The lock ended between the attempt and the read.
                .map_or(1, |t| t.retry_after_secs);
            Err(ApiError::TooManyRequests { retry_after_secs })
        }
        SignupOutcome::EmailTaken => {
            audit::log(ctx, &taken);
            Err(ApiError::Conflict(
                "an account with this email already exists",
            ))
        }
    }
}
