//! `POST /auth/mfa/recovery-codes`: replaces the recovery codes.
//!
//! Authenticated; body `{code}` from the authenticator app. 200
//! `{message, recoveryCodes}`: ten new single-use codes, shown this once;
//! the old ones stop working. 400 `invalid_mfa_code`; 404 `mfa_not_enabled`;
//! 429 while the user's codes are locked out. Two database round trips.

use latch_domain::AuditKind;
use latch_web::mfa::{self, Attempt, CodeBody, Verified};
use latch_web::request::json_body;
use latch_web::{ApiError, Ctx, Method, Request, Response, audit, auth, db, response, time};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(
        req,
        out,
        "/auth/mfa/recovery-codes",
        &[Method::POST],
        regenerate,
    )
    .await;
}

async fn regenerate(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let body: CodeBody = json_body(&req)?;
    let presented = body.presented(false)?;
    let now = time::now();
    let store = db::open()?;
    let (claims, keys) = auth::verify(ctx, &store, now).await?;
    let key = mfa::sealing_key(&keys)?;
    let attempt = Attempt::new(ctx, &claims.sub, Some(&claims.sid), now)?;
    let context = store
        .begin_factor_check(&claims.sid, &claims.sub, attempt.counted(), now)
        .await?
        .ok_or_else(auth::session_ended)?;
    attempt.refused(ctx, &context)?;
    mfa::require_step_up(ctx, &claims, context.user.mfa_enabled)?;
    if !context.user.mfa_enabled {
        return Err(mfa::NOT_ENABLED);
    }
    let step = match mfa::check(&context, &key, &presented, now)? {
        Ok(Verified::Totp { step }) => step,
        Ok(Verified::RecoveryCode { .. }) => return Err(mfa::INVALID_CODE),
        Err(reason) => return Err(attempt.failed(ctx, &store, reason).await?),
    };
    let (codes, hashes) = mfa::new_recovery_codes()?;
    let record = audit::record(ctx, attempt.event(AuditKind::RecoveryCodesRegenerated), now)?;
    let done = store
        .regenerate_recovery_codes(
            &claims.sid,
            &claims.sub,
            step,
            &hashes,
            &attempt.key,
            now,
            &record,
        )
        .await?;
    if !done {
        // A racing request spent the code (or removed the factor) first.
        return Err(mfa::INVALID_CODE);
    }
    audit::log(ctx, &record);
    Ok(response::json(
        200,
        &serde_json::json!({
            "message": "New recovery codes issued; the old ones no longer work",
            "recoveryCodes": codes,
        }),
    ))
}
