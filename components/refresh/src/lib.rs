//! `POST /auth/refresh`: trades the refresh token for a new access token AND
//! a new refresh token (rotation).
//!
//! The refresh token comes from the `refreshToken` cookie (or, when
//! `tokens_in_body` is on, a JSON body `{refreshToken}`). Presenting a token
//! that was already rotated revokes its whole session (reuse detection).
//! 200 `{message}` with new cookies; 401 with cleared cookies otherwise.
//! One database round trip.

use latch_domain::{AuditEvent, AuditKind, Outcome, RefreshToken, parse_refresh_token};
use latch_store::RefreshOutcome;
use latch_web::response::REFRESH_COOKIE;
use latch_web::{
    ApiError, Ctx, Method, Request, Response, audit, auth, config, db, response, time,
};
use serde::Deserialize;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshBody {
    refresh_token: Option<String>,
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/refresh", &[Method::POST], refresh).await;
}

fn rejected(detail: &'static str) -> ApiError {
    ApiError::Unauthorized {
        detail,
        clear_cookies: true,
    }
}

async fn refresh(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let tokens_in_body = config::flag("tokens_in_body")?;
    let presented = match ctx.cookie(REFRESH_COOKIE).filter(|t| !t.is_empty()) {
        Some(token) => token.to_string(),
        None if tokens_in_body && !req.body().is_empty() => {
            let body: RefreshBody = latch_web::request::json_body(&req)?;
            body.refresh_token
                .ok_or(rejected("refresh token required"))?
        }
        None => return Err(rejected("refresh token required")),
    };
    // Only an opaque refresh token parses here: an access token never does.
    let old = parse_refresh_token(&presented).map_err(|_| rejected("invalid refresh token"))?;

    let now = time::now();
    let store = db::open()?;
    let policy = config::token_policy()?;
    let keys = auth::keys(&store, now).await?;
    auth::signing_key(&keys)?;
    let client_ip = ctx.client_ip(config::flag("trust_forwarded_for")?);
    let event = |kind, outcome| {
        let event = AuditEvent::new(kind, outcome);
        match client_ip {
            Some(ip) => event.with_client_ip(ip),
            None => event,
        }
    };
    let (new_refresh, new_hash) = RefreshToken::from_random(latch_web::random()?);
    let rotated = audit::record(ctx, event(AuditKind::Refresh, Outcome::Success), now)?;
    let reused = audit::record(
        ctx,
        event(AuditKind::RefreshReuseDetected, Outcome::Denied)
            .with_reason("retired_token_presented"),
        now,
    )?;
    let outcome = store
        .rotate_refresh(
            &old,
            &new_hash,
            now,
            policy.refresh_expires_at(now),
            &rotated,
            &reused,
        )
        .await?;
    match outcome {
        RefreshOutcome::Rotated {
            session_id,
            user,
            assurance,
        } => {
            let access = auth::access_token(&keys, &policy, &user, &session_id, assurance, now)?;
            let mut logged = rotated;
            logged.event = logged.event.with_user(&user.id).with_session(&session_id);
            audit::log(ctx, &logged);
            Ok(response::with_tokens(
                ctx,
                serde_json::json!({"message": "Token refreshed successfully"}),
                &access,
                new_refresh.as_str(),
                &policy,
                tokens_in_body,
            ))
        }
        RefreshOutcome::Reused {
            session_id,
            user_id,
        } => {
            let mut logged = reused;
            logged.event = logged.event.with_user(&user_id).with_session(&session_id);
            audit::log(ctx, &logged);
            Err(rejected(
                "refresh token already used; the session has been revoked",
            ))
        }
        RefreshOutcome::Invalid => {
            let failed = audit::record(
                ctx,
                event(AuditKind::Refresh, Outcome::Failure).with_reason("invalid_token"),
                now,
            )?;
            audit::log(ctx, &failed);
            Err(rejected("invalid or expired refresh token"))
        }
    }
}
