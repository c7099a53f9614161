//! `POST /auth/mfa/verify`: the second step of signing in with a factor.
//!
//! Body `{challenge, code}` or `{challenge, recoveryCode}`: the challenge
//! that `POST /auth/signin` answered with (single use, short-lived) and a
//! code from the authenticator app or a recovery code. 200 as sign-in, with
//! the session at `aal2` (`amr` `["pwd","otp"]` or `["pwd","recovery"]`).
//! 400 `invalid_challenge` (unknown, used or expired; sign in again) or
//! `invalid_mfa_code` (the challenge stays usable); 429 while the user's
//! codes are locked out. Two database round trips.

use latch_domain::{Assurance, AuditKind, parse_challenge};
use latch_web::mfa::{self, Attempt, CodeBody};
use latch_web::request::{json_body, required};
use latch_web::{ApiError, Ctx, Method, Request, Response, audit, auth, config, db, time};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/mfa/verify", &[Method::POST], verify).await;
}

async fn verify(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let body: CodeBody = json_body(&req)?;
    let challenge = required(&body.challenge, "challenge")?;
    let presented = body.presented(true)?;
    let Some((user_id, challenge_hash)) = parse_challenge(challenge) else {
        return Err(mfa::INVALID_CHALLENGE);
    };

    let now = time::now();
    let store = db::open()?;
    let policy = config::token_policy()?;
    let keys = auth::keys(&store, now).await?;
    auth::signing_key(&keys)?;
    let key = mfa::sealing_key(&keys)?;
    let attempt = Attempt::new(ctx, user_id, None, now)?;
    let context = store
        .begin_challenge_check(&challenge_hash, user_id, attempt.counted(), now)
        .await?
        .ok_or(mfa::INVALID_CHALLENGE)?;
    attempt.refused(ctx, &context)?;
    let verified = match mfa::check(&context, &key, &presented, now)? {
        Ok(verified) => verified,
        Err(reason) => return Err(attempt.failed(ctx, &store, reason).await?),
    };

    let (assurance, code_used) = match verified.is_recovery_code() {
        true => (
            Assurance::PasswordAndRecoveryCode,
            Some(audit::record(
                ctx,
                attempt.event(AuditKind::RecoveryCodeUsed),
                now,
            )?),
        ),
        false => (Assurance::PasswordAndOtp, None),
    };
    let user = &context.user;
    let opening = auth::Opening::new(&keys, &policy, user, assurance, now)?;
    let mut event = attempt
        .event(AuditKind::MfaVerified)
        .with_session(&opening.session_id);
    if verified.is_recovery_code() {
        event = event.with_reason("recovery_code");
    }
    let record = audit::record(ctx, event, now)?;
    let client_ip = ctx
        .client_ip(config::flag("trust_forwarded_for")?)
        .map(|ip| ip.to_string());
    let session = opening.session(ctx, &user.id, client_ip.as_deref(), &policy, now);
    let opened = store
        .finish_challenge(
            &challenge_hash,
            verified.proof(),
            &session,
            &attempt.key,
            &record,
            code_used.as_ref(),
        )
        .await?;
    if !opened {
        // A racing verification used the challenge (or the code) first.
        return Err(mfa::INVALID_CHALLENGE);
    }
    audit::log(ctx, &record);
    if let Some(code_used) = &code_used {
        audit::log(ctx, code_used);
    }
    opening.respond(ctx, user, &policy)
}
