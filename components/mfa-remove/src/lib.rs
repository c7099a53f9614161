//! `DELETE /auth/mfa/totp`: removes the TOTP factor.
//!
//! Authenticated; body `{code}` (from the authenticator app) or
//! `{recoveryCode}`. With the default `step_up_routes` the session must have
//! signed in with the second factor (403 `aal2_required` otherwise). 200
//! `{message}`: the factor, its recovery codes and open sign-in challenges
//! are gone. 400 `invalid_mfa_code`; 404 `mfa_not_enabled`; 429 while the
//! user's codes are locked out. Two database round trips.

use latch_domain::AuditKind;
use latch_web::mfa::{self, CodeBody, Needs, SignedInCheck};
use latch_web::request::json_body;
use latch_web::{ApiError, Ctx, Method, Request, Response, audit, response};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/mfa/totp", &[Method::DELETE], remove).await;
}

async fn remove(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let body: CodeBody = json_body(&req)?;
    let presented = body.presented(true)?;
    let check = SignedInCheck::begin(ctx, Needs::ConfirmedFactor).await?;
    let verified = check.verify(ctx, &presented).await?;
    let removed = check.record(ctx, AuditKind::MfaRemoved)?;
    let code_used = match verified.is_recovery_code() {
        true => Some(check.record(ctx, AuditKind::RecoveryCodeUsed)?),
        false => None,
    };
    let claims = &check.claims;
    let done = check
        .store
        .remove_factor(
            &claims.sid,
            &claims.sub,
            verified.proof(),
            &check.attempt.key,
            check.now,
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
