//! `POST /auth/mfa/recovery-codes`: replaces the recovery codes.
//!
//! Authenticated; body `{code}` from the authenticator app. 200
//! `{message, recoveryCodes}`: ten new single-use codes, shown this once;
//! the old ones stop working. 400 `invalid_mfa_code`; 404 `mfa_not_enabled`;
//! 429 while the user's codes are locked out. Two database round trips.

use latch_domain::AuditKind;
use latch_web::mfa::{self, CodeBody, Needs, SignedInCheck, Verified};
use latch_web::request::json_body;
use latch_web::{ApiError, Ctx, Method, Request, Response, audit, response};
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
    let check = SignedInCheck::begin(ctx, Needs::ConfirmedFactor).await?;
    let Verified::Totp { step } = check.verify(ctx, &presented).await? else {
        return Err(mfa::INVALID_CODE);
    };
    let (codes, hashes) = mfa::new_recovery_codes(&check.key, &check.claims.sub)?;
    let record = check.record(ctx, AuditKind::RecoveryCodesRegenerated)?;
    let claims = &check.claims;
    let done = check
        .store
        .regenerate_recovery_codes(
            &claims.sid,
            &claims.sub,
            step,
            &hashes,
            &check.attempt.key,
            check.now,
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
