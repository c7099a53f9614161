//! `POST /auth/password/forgot`: sends a recovery link to an address.
//!
//! Body `{email}`. Always 202 with the same body, and the same work, whether
//! or not an account has the address, whether it is active, and whether the
//! address or the client is locked out: the answer never says which. Requests
//! are counted per address and per client address (a lock-out sends
//! nothing). When an active account has the address, its recovery tokens are
//! replaced by a new one, sent by webhook after the answer. 400 only for a
//! missing or malformed address; 503 when the database is down or, in
//! production, no webhook is configured. One database round trip.

use latch_domain::{
    AuditEvent, AuditKind, Email, OneTimeToken, Outcome, ThrottleKey, ThrottlePolicy, TokenPurpose,
};
use latch_store::{NewToken, Throttles};
use latch_web::email::{self, Letter};
use latch_web::request::{json_body, required};
use latch_web::{ApiError, Ctx, Method, Request, Response, audit, config, db, response, time};
use serde::Deserialize;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[derive(Deserialize)]
struct ForgotBody {
    email: Option<String>,
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/auth/password/forgot", &[Method::POST], forgot).await;
}

async fn forgot(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let body: ForgotBody = json_body(&req)?;
    let email = Email::parse(required(&body.email, "email")?)?;
    let outbox = email::outbox()?;
    let ttl = config::seconds("recovery_token_ttl_seconds", 1, 86_400)?;

    let now = time::now();
    let store = db::open()?;
    let client_ip = ctx.client_ip(config::flag("trust_forwarded_for")?);
    let account_key = ThrottleKey::recovery(&email);
    let client_key = client_ip.map(ThrottleKey::recovery_client);
    let throttles = Throttles {
        account: (&account_key, &ThrottlePolicy::RECOVERY_ACCOUNT),
        client: client_key
            .as_ref()
            .map(|key| (key, &ThrottlePolicy::RECOVERY_CLIENT)),
    };
    let event = |outcome| {
        let event = AuditEvent::new(AuditKind::RecoveryRequested, outcome).with_email(&email);
        match client_ip {
            Some(ip) => event.with_client_ip(ip),
            None => event,
        }
    };
    let refusal = audit::record(ctx, event(Outcome::Denied).with_reason("locked_out"), now)?;
    let issued = audit::record(ctx, event(Outcome::Success), now)?;
    // Unknown address or inactive account: recorded, and logged, as an
    // issued token is, so both take the same time.
    let not_issued = audit::record(
        ctx,
        event(Outcome::Failure).with_reason("no_active_account"),
        now,
    )?;
    let (token, token_hash) = OneTimeToken::from_random(latch_web::random()?);
    let expires_at = now.saturating_add(ttl);
    let attempt = latch_web::new_id()?;
    let request = store
        .request_recovery(
            &email,
            throttles,
            &attempt,
            &refusal,
            &issued,
            &not_issued,
            NewToken {
                hash: &token_hash,
                expires_at,
            },
            now,
        )
        .await?;
    if request.refused {
        audit::log(ctx, &refusal);
    } else if !request.issued {
        audit::log(ctx, &not_issued);
    } else {
        audit::log(ctx, &issued);
        ctx.send_after_response(
            outbox,
            Letter {
                purpose: TokenPurpose::Recovery,
                to: email.as_str().to_string(),
                token,
                expires_at,
            },
        );
    }
    Ok(response::json(
        202,
        &serde_json::json!({
            "message": "If an account exists for this address, a recovery link is on its way"
        }),
    ))
}
