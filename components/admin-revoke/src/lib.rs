//! `POST /admin/users/:id/sessions/revoke`: signs a user out everywhere.
//!
//! Admins only (403 `admin_required` otherwise); 404 for an unknown id.
//! Revokes every active session of the user at once: their refresh tokens
//! stop working, and so do their access tokens on every route that checks
//! the session. Recorded as `admin_sessions_revoked` with the acting admin's
//! id. 200 `{message}`. One database round trip.

use latch_domain::AuditKind;
use latch_web::{ApiError, Ctx, Method, Request, Response, admin, audit, db, response, time};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(
        req,
        out,
        "/admin/users/:id/sessions/revoke",
        &[Method::POST],
        revoke,
    )
    .await;
}

async fn revoke(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let user_id = admin::target_id(&req)?;
    let now = time::now();
    let store = db::open()?;
    let claims = admin::caller(ctx, &store, now).await?;
    let record = audit::record(
        ctx,
        admin::action(ctx, AuditKind::AdminSessionsRevoked, &user_id, &claims)?,
        now,
    )?;
    store
        .admin_revoke_sessions(&admin::as_caller(&claims, now), &user_id, &record)
        .await?
        .map_err(admin::refused)?
        .ok_or_else(admin::no_such_user)?;
    audit::log(ctx, &record);
    Ok(response::json(
        200,
        &serde_json::json!({"message": "Every session of the user was revoked"}),
    ))
}
