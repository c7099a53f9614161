//! `POST /auth/email/verify`: marks an address verified with a verification token.
//!
//! Body `{token}`. 200 `{message, emailVerified: true}`; 400 `invalid_token`
//! for a token that is unknown, used, expired, superseded or was sent to an
//! address the account no longer has (one answer for all). Consuming the
//! token and marking the address are one atomic write. One database round
//! trip.

use latch_domain::{AuditEvent, AuditKind, Outcome, parse_one_time_token};
use latch_web::request::{json_body, required};
use latch_web::{ApiError, Ctx, Method, Request, Response, audit, config, db, response, time};
use serde::Deserialize;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[derive(Deserialize)]
struct VerifyBody {
    token: Option<String>,
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/email/verify", &[Method::POST], verify).await;
}

async fn verify(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let body: VerifyBody = json_body(&req)?;
    let token = required(&body.token, "token")?;
    let token_hash = parse_one_time_token(token).map_err(|_| ApiError::INVALID_TOKEN)?;

    let now = time::now();
    let store = db::open()?;
    let client_ip = ctx.client_ip(config::flag("trust_forwarded_for")?);
    let event = |outcome| {
        let event = AuditEvent::new(AuditKind::EmailVerified, outcome);
        match client_ip {
            Some(ip) => event.with_client_ip(ip),
            None => event,
        }
    };
    let done = audit::record(ctx, event(Outcome::Success), now)?;
    let rejected = audit::record(
        ctx,
        event(Outcome::Failure).with_reason("invalid_token"),
        now,
    )?;
    match store
        .verify_email(&token_hash, &done, &rejected, now)
        .await?
    {
        Some(user_id) => {
            let mut done = done;
            done.event = done.event.with_user(&user_id);
            audit::log(ctx, &done);
            Ok(response::json(
                200,
                &serde_json::json!({"message": "Email address verified", "emailVerified": true}),
            ))
        }
        None => {
            audit::log(ctx, &rejected);
            Err(ApiError::INVALID_TOKEN)
        }
    }
}
