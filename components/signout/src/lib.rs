//! `POST /auth/signout`: revokes the caller's session at once and clears the
//! token cookies. 200 `{message}`; 401 (cookies cleared too) without a valid
//! access token or when the session had already ended. One database round trip.

use latch_domain::{AuditEvent, AuditKind, Outcome};
use latch_web::{
    ApiError, Ctx, Method, Request, Response, audit, auth, config, db, response, time,
};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/signout", &[Method::POST], signout).await;
}

async fn signout(ctx: &Ctx, _req: Request) -> Result<Response, ApiError> {
    let now = time::now();
    let store = db::open()?;
    let (claims, _) = auth::verify(ctx, &store, now).await.map_err(|e| match e {
        ApiError::Unauthorized { detail, .. } => ApiError::Unauthorized {
            detail,
            clear_cookies: true,
        },
        other => other,
    })?;
    let mut event = AuditEvent::new(AuditKind::Signout, Outcome::Success)
        .with_user(&claims.sub)
        .with_session(&claims.sid);
    if let Some(ip) = ctx.client_ip(config::flag("trust_forwarded_for")?) {
        event = event.with_client_ip(ip);
    }
    let record = audit::record(ctx, event, now)?;
    if !store
        .sign_out(&claims.sid, &claims.sub, now, &record)
        .await?
    {
        return Err(auth::session_ended());
    }
    audit::log(ctx, &record);
    let mut reply = response::json(
        200,
        &serde_json::json!({"message": "Signed out successfully"}),
    );
    response::clear_token_cookies(&mut reply, ctx);
    Ok(reply)
}
