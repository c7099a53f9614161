//! `POST /admin/users/:id/unlock`: lifts every lock-out of an account.
//!
//! Admins only (403 `admin_required` otherwise); 404 for an unknown id.
//! Deletes the account's throttle counters (sign-in, password check,
//! recovery requests, second-factor codes), so a locked account can sign in
//! at once; its client addresses' counters are left alone. Recorded as `admin_unlock` with the
//! acting admin's id. 200 `{message}`. Two database round trips (the email,
//! from which the counters' keys derive; then the deletion).

use latch_domain::{AuditKind, ThrottleKey};
use latch_web::{ApiError, Ctx, Method, Request, Response, admin, audit, db, response, time};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/admin/users/:id/unlock", &[Method::POST], unlock).await;
}

async fn unlock(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let user_id = admin::target_id(&req)?;
    let now = time::now();
    let store = db::open()?;
    let claims = admin::caller(ctx, &store, now).await?;
    let caller = admin::as_caller(&claims, now);
    let email = store
        .admin_user_email(&caller, &user_id)
        .await?
        .map_err(admin::refused)?
        .ok_or_else(admin::no_such_user)?;
    let keys = ThrottleKey::of_account(&user_id, &email);
    let record = audit::record(
        ctx,
        admin::action(ctx, AuditKind::AdminUnlock, &user_id, &claims)?,
        now,
    )?;
    if !store
        .admin_unlock(&caller, &user_id, &keys, &record)
        .await?
    {
        // The caller lost the role, or the user went, between the two round trips.
        return Err(admin::admin_required());
    }
    audit::log(ctx, &record);
    Ok(response::json(
        200,
        &serde_json::json!({"message": "Throttle counters cleared; the account can sign in"}),
    ))
}
