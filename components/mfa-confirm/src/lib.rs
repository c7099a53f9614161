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
use latch_web::mfa::{self, CodeBody, Needs, SignedInCheck, Verified};
use latch_web::request::json_body;
use latch_web::{ApiError, Ctx, Method, Request, Response, audit, response};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/mfa/totp/confirm", &[Method::POST], confirm).await;
}

async fn confirm(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let body: CodeBody = json_body(&req)?;
    let presented = body.presented(false)?;
    let check = SignedInCheck::begin(ctx, Needs::PendingFactor).await?;
    let sealed = match &check.context.factor {
        None => return Err(mfa::NOT_PENDING),
        Some(factor) if factor.confirmed => return Err(mfa::ALREADY_ENABLED),
        Some(factor) => factor.secret_sealed.clone(),
    };
    let Verified::Totp { step } = check.verify(ctx, &presented).await? else {
        return Err(mfa::INVALID_CODE);
    };
    let (codes, hashes) = mfa::new_recovery_codes(&check.key, &check.claims.sub)?;
    let record = check.record(ctx, AuditKind::MfaEnrolled)?;
    let claims = &check.claims;
    let confirmed = check
        .store
        .confirm_factor(
            &claims.sid,
            &claims.sub,
            &sealed,
            step,
            &hashes,
            &check.attempt.key,
            check.now,
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
