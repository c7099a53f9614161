//! `GET /auth/sessions` lists the caller's active sessions;
//! `DELETE /auth/sessions/:id` revokes one of them (204), at once.
//! 401 without a valid session; 404 for an id that is not an active session
//! of the caller. One database round trip each.

use latch_domain::{AuditEvent, AuditKind, Outcome, is_valid_id};
use latch_store::RevokeOutcome;
use latch_web::{
    ApiError, Ctx, Method, Request, Response, audit, auth, config, db, response, time,
};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    // The manifest routes `/auth/sessions/...` here; the rest of the path picks
    // the action. The runtime's value is the last one (a client may send its own
    // first: see `latch_web::request::runtime_header`).
    let rest = req
        .headers()
        .get("spin-path-info")
        .last()
        .map(|v| String::from_utf8_lossy(v).trim_end_matches('/').to_string())
        .unwrap_or_default();
    if rest.is_empty() {
        latch_web::run(req, out, "/auth/sessions", &[Method::GET], list).await;
    } else {
        latch_web::run(
            req,
            out,
            "/auth/sessions/:id",
            &[Method::DELETE],
            async move |ctx, req| revoke(ctx, req, &rest[1..]).await,
        )
        .await;
    }
}

async fn list(ctx: &Ctx, _req: Request) -> Result<Response, ApiError> {
    let now = time::now();
    let store = db::open()?;
    let (claims, _) = auth::verify(ctx, &store, now).await?;
    let sessions = store
        .list_sessions(&claims.sid, &claims.sub, now)
        .await?
        .ok_or_else(auth::session_ended)?;
    let sessions: Vec<serde_json::Value> = sessions
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id,
                "createdAt": time::rfc3339(s.created_at),
                "lastUsedAt": time::rfc3339(s.last_used_at),
                "expiresAt": time::rfc3339(s.expires_at),
                "clientIp": s.client_ip,
                "userAgent": s.user_agent,
                "current": s.current,
            })
        })
        .collect();
    Ok(response::json(
        200,
        &serde_json::json!({"sessions": sessions}),
    ))
}

async fn revoke(ctx: &Ctx, _req: Request, target: &str) -> Result<Response, ApiError> {
    let now = time::now();
    let store = db::open()?;
    let (claims, _) = auth::verify(ctx, &store, now).await?;
    if !is_valid_id(target) {
        return Err(ApiError::NotFound("no such session"));
    }
    let mut event = AuditEvent::new(AuditKind::SessionRevoked, Outcome::Success)
        .with_user(&claims.sub)
        .with_session(target)
        .with_reason("revoked_by_user");
    if let Some(ip) = ctx.client_ip(config::flag("trust_forwarded_for")?) {
        event = event.with_client_ip(ip);
    }
    let record = audit::record(ctx, event, now)?;
    match store
        .revoke_session(&claims.sid, &claims.sub, target, now, &record)
        .await?
    {
        RevokeOutcome::Revoked => {
            audit::log(ctx, &record);
            Ok(response::no_content())
        }
        RevokeOutcome::NotFound => Err(ApiError::NotFound("no such session")),
        RevokeOutcome::CallerInactive => Err(auth::session_ended()),
    }
}
