//! `POST /auth/password/reset`: sets a new password with a recovery token.
//!
//! Body `{token, newPassword}`. The new password must pass the rules (400
//! with the field's error otherwise). Setting it, consuming the token,
//! revoking every session of the user and recording the event are one
//! atomic write: of racing resets with one token exactly one succeeds. 200
//! `{message}`; 400 `invalid_token` for a token that is unknown, used,
//! expired or superseded (one answer for all). One database round trip.

use latch_domain::{AuditEvent, AuditKind, Outcome, Password, parse_one_time_token};
use latch_web::request::{json_body, required};
use latch_web::{
    ApiError, Ctx, Fields, Method, Request, Response, audit, config, db, passwords, response, time,
};
use serde::Deserialize;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResetBody {
    token: Option<String>,
    new_password: Option<String>,
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/password/reset", &[Method::POST], reset).await;
}

async fn reset(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let body: ResetBody = json_body(&req)?;
    let mut fields = Fields::default();
    let token = fields.check(required(&body.token, "token"));
    let new = fields.check(required(&body.new_password, "newPassword").and_then(|p| {
        Password::parse(p).map_err(|mut e| {
            e.field = "newPassword";
            e
        })
    }));
    fields.finish()?;
    let (Some(token), Some(new)) = (token, new) else {
        return Err(ApiError::Internal("validated fields missing"));
    };
    // A token of the wrong shape cannot be current: the same answer as a used one.
    let token_hash = parse_one_time_token(token).map_err(|_| ApiError::INVALID_TOKEN)?;

    let new_hash = passwords::hash(&new)?;
    let now = time::now();
    let store = db::open()?;
    let client_ip = ctx.client_ip(config::flag("trust_forwarded_for")?);
    let event = |outcome| {
        let event = AuditEvent::new(AuditKind::PasswordReset, outcome);
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
        .reset_password(&token_hash, &new_hash, &done, &rejected, now)
        .await?
    {
        Some(user_id) => {
            let mut done = done;
            done.event = done.event.with_user(&user_id);
            audit::log(ctx, &done);
            Ok(response::json(
                200,
                &serde_json::json!({"message": "Password reset; every session was signed out"}),
            ))
        }
        None => {
            audit::log(ctx, &rejected);
            Err(ApiError::INVALID_TOKEN)
        }
    }
}
