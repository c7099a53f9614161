//! `POST /auth/mfa/totp/confirm`: activates the pending TOTP factor.
//!
//! Authenticated; body `{code}`, a code from the authenticator app. 200
//! `{message, recoveryCodes}`: ten single-use recovery codes, shown this
//! once (only their hashes are stored). Every other session of the user is
//! revoked; from now on sign-in asks for a code. 400 `invalid_mfa_code`;
//! 409 `mfa_not_pending` with nothing to confirm, `mfa_already_enabled` when
//! confirmed already; 429 while the user's codes are locked out. Two
//! database round trips.

use latch_domain::AuditKind;
use latch_web::mfa::{self, Attempt, CodeBody, Verified};
use latch_web::request::json_body;
use latch_web::{ApiError, Ctx, Method, Request, Response, audit, auth, db, response, time};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/mfa/totp/confirm", &[Method::POST], confirm).await;
}

async fn confirm(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
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
    let sealed = match &context.factor {
        None => return Err(mfa::NOT_PENDING),
        Some(factor) if factor.confirmed => return Err(mfa::ALREADY_ENABLED),
        Some(factor) => factor.secret_sealed.clone(),
    };
    let step = match mfa::check(&context, &key, &presented, now)? {
        Ok(Verified::Totp { step }) => step,
        Ok(Verified::RecoveryCode { .. }) => return Err(mfa::INVALID_CODE),
        Err(reason) => return Err(attempt.failed(ctx, &store, reason).await?),
    };
    let (codes, hashes) = mfa::new_recovery_codes()?;
    let record = audit::record(ctx, attempt.event(AuditKind::MfaEnrolled), now)?;
    let confirmed = store
        .confirm_factor(
            &claims.sid,
            &claims.sub,
            &sealed,
            step,
            &hashes,
            &attempt.key,
            now,
            &record,
        )
        .await?;
    if !confirmed {
        return Err(ApiError::Conflict(
            "the factor changed while it was being confirmed; enrol again",
        ));
    }
    audit::log(ctx, &record);
    Ok(response::json(
        200,
        &serde_json::json!({
            "message": "Second factor enabled; keep these recovery codes somewhere safe, they are shown once",
            "recoveryCodes": codes,
        }),
    ))
}
