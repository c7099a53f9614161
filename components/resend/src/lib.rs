//! `POST /auth/email/verify/resend`: sends the caller a new verification link.
//!
//! Needs a valid access token (cookie or bearer) of an active session. The
//! user's earlier verification tokens stop working; the new one is sent by
//! webhook after the answer. 202 `{message}`; 409 when the address is
//! already verified; 401 without a valid session; 429 with `Retry-After`
//! after 5 requests in an hour; 503 when the database is down or, in
//! production, no webhook is configured. One database round trip (plus the
//! development key's read in development).

use latch_domain::{
    AuditEvent, AuditKind, OneTimeToken, Outcome, ThrottleKey, ThrottlePolicy, TokenPurpose,
};
use latch_store::NewToken;
use latch_web::email::{self, Letter};
use latch_web::{
    ApiError, Ctx, Method, Request, Response, audit, auth, config, db, response, time,
};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(
        req,
        out,
        "/auth/email/verify/resend",
        &[Method::POST],
        resend,
    )
    .await;
}

async fn resend(ctx: &Ctx, _req: Request) -> Result<Response, ApiError> {
    let now = time::now();
    let store = db::open()?;
    let (claims, _) = auth::verify(ctx, &store, now).await?;
    let outbox = email::outbox()?;
    let ttl = config::seconds("verification_token_ttl_seconds", 60, 30 * 86_400)?;
    let client_ip = ctx.client_ip(config::flag("trust_forwarded_for")?);
    let event = |outcome| {
        let event = AuditEvent::new(AuditKind::VerificationRequested, outcome)
            .with_user(&claims.sub)
            .with_session(&claims.sid);
        match client_ip {
            Some(ip) => event.with_client_ip(ip),
            None => event,
        }
    };
    let refusal = audit::record(ctx, event(Outcome::Denied).with_reason("locked_out"), now)?;
    let issued = audit::record(ctx, event(Outcome::Success), now)?;
    let throttle_key = ThrottleKey::verification_resend(&claims.sub);
    let policy = ThrottlePolicy::VERIFICATION_RESEND;
    let (token, token_hash) = OneTimeToken::from_random(latch_web::random()?);
    let expires_at = now.saturating_add(ttl);
    let attempt = latch_web::new_id()?;
    let request = store
        .request_verification(
            &claims.sid,
            &claims.sub,
            (&throttle_key, &policy),
            &attempt,
            &refusal,
            &issued,
            NewToken {
                hash: &token_hash,
                expires_at,
            },
            now,
        )
        .await?
        .ok_or_else(auth::session_ended)?;
    if request.refused {
        audit::log(ctx, &refusal);
        let retry_after_secs = policy
            .check(&request.counter, now)
            .err()
            // The lock ended between the attempt and the read.
            .map_or(1, |t| t.retry_after_secs);
        return Err(ApiError::TooManyRequests { retry_after_secs });
    }
    if request.already_verified {
        return Err(ApiError::Conflict("the email address is already verified"));
    }
    if !request.issued {
        return Err(ApiError::Internal("the verification token was not stored"));
    }
    audit::log(ctx, &issued);
    ctx.send_after_response(
        outbox,
        Letter {
            purpose: TokenPurpose::Verification,
            to: request.email,
            token,
            expires_at,
        },
    );
    Ok(response::json(
        202,
        &serde_json::json!({"message": "Verification email sent"}),
    ))
}
