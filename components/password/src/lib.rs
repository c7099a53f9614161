//! `POST /auth/password`: changes the caller's password.
//!
//! Body `{currentPassword, newPassword}`. The current password must be right
//! (attempts are counted and locked out like sign-ins, so a stolen access
//! token cannot guess it); every other session of the user is revoked.
//! 200 `{message}`; 400 for an unacceptable new password; 401 without a valid
//! session; 403 for a wrong current password, or `aal2_required` when the
//! user has a second factor and the session did not present it (the
//! variable `step_up_routes`); 429 while locked out.
//! Two database round trips.

use latch_domain::{AuditEvent, AuditKind, Outcome, Password, ThrottleKey, ThrottlePolicy};
use latch_web::request::{json_body, required};
use latch_web::{
    ApiError, Ctx, Fields, Method, Request, Response, audit, auth, config, db, passwords, response,
    time,
};
use serde::Deserialize;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordBody {
    current_password: Option<String>,
    new_password: Option<String>,
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/password", &[Method::POST], change).await;
}

async fn change(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let body: PasswordBody = json_body(&req)?;
    let mut fields = Fields::default();
    let current = fields.check(required(&body.current_password, "currentPassword"));
    let new = fields.check(required(&body.new_password, "newPassword").and_then(|p| {
        Password::parse(p).map_err(|mut e| {
            e.field = "newPassword";
            e
        })
    }));
    fields.finish()?;
    let (Some(current), Some(new)) = (current, new) else {
        return Err(ApiError::Internal("validated fields missing"));
    };

    let now = time::now();
    let store = db::open()?;
    let (claims, _) = auth::verify(ctx, &store, now).await?;
    let client_ip = ctx.client_ip(config::flag("trust_forwarded_for")?);
    let event = |kind, outcome| {
        let event = AuditEvent::new(kind, outcome)
            .with_user(&claims.sub)
            .with_session(&claims.sid);
        match client_ip {
            Some(ip) => event.with_client_ip(ip),
            None => event,
        }
    };
    let throttle_key = ThrottleKey::password_check(&claims.sub);
    let policy = ThrottlePolicy::ACCOUNT;
    let attempt = latch_web::new_id()?;
    let refusal = audit::record(
        ctx,
        event(AuditKind::PasswordChange, Outcome::Denied).with_reason("locked_out"),
        now,
    )?;
    let check = store
        .begin_password_check(
            &claims.sid,
            &claims.sub,
            (&throttle_key, &policy),
            &attempt,
            &refusal,
            now,
        )
        .await?
        .ok_or_else(auth::session_ended)?;
    if check.refused {
        audit::log(ctx, &refusal);
        let retry_after_secs = policy
            .check(&check.counter, now)
            .err()
            // The lock ended between the attempt and the read.
            .map_or(1, |t| t.retry_after_secs);
        return Err(ApiError::TooManyRequests { retry_after_secs });
    }
    let credentials = check.credentials;
    latch_web::mfa::require_step_up(ctx, &claims, credentials.user.mfa_enabled)?;
    if !passwords::verify(current, Some(&credentials.password_hash))? {
        let failure = audit::record(
            ctx,
            event(AuditKind::PasswordChange, Outcome::Failure)
                .with_reason("wrong_current_password"),
            now,
        )?;
        let lockout = audit::record(
            ctx,
            event(AuditKind::Lockout, Outcome::Denied).with_reason("too_many_failures"),
            now,
        )?;
        // The lock-out is recorded only if this attempt is the one that earned it.
        let locked_out = store
            .record_failed_check(&throttle_key, &attempt, &failure, &lockout, now)
            .await?;
        audit::log(ctx, &failure);
        if locked_out {
            audit::log(ctx, &lockout);
        }
        return Err(ApiError::Forbidden("the current password is incorrect"));
    }

    let new_hash = passwords::hash(&new)?;
    let record = audit::record(ctx, event(AuditKind::PasswordChange, Outcome::Success), now)?;
    let changed = store
        .change_password(
            &claims.sid,
            &claims.sub,
            &credentials.password_hash,
            &new_hash,
            &throttle_key,
            now,
            &record,
        )
        .await?;
    if !changed {
        return Err(ApiError::Conflict(
            "the password was changed by another request; try again",
        ));
    }
    audit::log(ctx, &record);
    Ok(response::json(
        200,
        &serde_json::json!({"message": "Password changed successfully; other sessions were signed out"}),
    ))
}
