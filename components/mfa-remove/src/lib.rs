//! `DELETE /auth/mfa/totp`: removes the TOTP factor.
//!
//! Authenticated; body `{code}` (from the authenticator app) or
//! `{recoveryCode}`. With the default `step_up_routes` the session must have
//! signed in with the second factor (403 `aal2_required` otherwise). 200
//! `{message}`: the factor, its recovery codes and open sign-in challenges
//! are gone. 400 `invalid_mfa_code`; 404 `mfa_not_enabled`; 429 while the
//! user's codes are locked out. Two database round trips.

use latch_domain::AuditKind;
use latch_web::mfa::{self, Attempt, CodeBody};
use latch_web::request::json_body;
use latch_web::{ApiError, Ctx, Method, Request, Response, audit, auth, db, response, time};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/mfa/totp", &[Method::DELETE], remove).await;
}

async fn remove(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let body: CodeBody = json_body(&req)?;
    let presented = body.presented(true)?;
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
    let verified = match mfa::check(&context, &key, &presented, now)? {
        Ok(verified) => verified,
        Err(reason) => return Err(attempt.failed(ctx, &store, reason).await?),
    };
    let removed = audit::record(ctx, attempt.event(AuditKind::MfaRemoved), now)?;
    let code_used = match verified.is_recovery_code() {
        true => Some(audit::record(
            ctx,
            attempt.event(AuditKind::RecoveryCodeUsed),
            now,
        )?),
        false => None,
    };
    let done = store
        .remove_factor(
            &claims.sid,
            &claims.sub,
            verified.proof(),
            &attempt.key,
            now,
            &removed,
            code_used.as_ref(),
        )
        .await?;
    if !done {
        // A racing request spent the code (or removed the factor) first.
        return Err(mfa::INVALID_CODE);
    }
    audit::log(ctx, &removed);
    if let Some(code_used) = &code_used {
        audit::log(ctx, code_used);
    }
    Ok(response::json(
        200,
        &serde_json::json!({"message": "Second factor removed"}),
    ))
}
