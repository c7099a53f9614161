//! Recovery and verification messages, delivered by a signed webhook
//! (Standard Webhooks) to whatever sends the mail.
//!
//! A route queues a [`Letter`] on its [`Ctx`]; the entry point delivers it
//! after the answer is out, so an answer never waits on, or tells anything
//! of, the delivery. A failed delivery keeps the token (the user can use a
//! later message's, or ask again) and is logged as one JSON line, without the
//! token, the link or the address, which the runtime counts as
//! `latch_auth_events_total{event="email_delivery", outcome="failure"}`.

use std::time::Duration;

use latch_domain::{Environment, OneTimeToken, TokenPurpose, WebhookSecret, config as settings};

use latch_send::SendError;
use spin_sdk::wit::wasi::http0_2_0::types::ErrorCode;

use crate::{ApiError, Ctx, config};

/// Largest answer read from the webhook (its body is ignored).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where messages go.
#[derive(Debug, Clone)]
pub enum Outbox {
    /// `email_webhook_url` is set: POST each message there, signed.
    Webhook {
        url: String,
        secret: WebhookSecret,
        timeout: Duration,
        public_url: String,
    },
    /// Development without a webhook: the link is written to the log,
    /// marked as such.
    DevelopmentLog { public_url: String },
}

/// One message to deliver.
#[derive(Debug, Clone)]
pub struct Letter {
    pub purpose: TokenPurpose,
    pub to: String,
    pub token: OneTimeToken,
    pub expires_at: i64,
}

fn misconfigured(reason: String) -> ApiError {
    ApiError::Unavailable {
        reason,
        kind: "misconfigured",
    }
}

/// The outbox of this deployment. Production without `email_webhook_url`
/// refuses (503, logged as a configuration error) before any flow starts.
pub fn outbox() -> Result<Outbox, ApiError> {
    let url = config::var("email_webhook_url")?;
    let url = url.trim();
    let public_url = config::var("public_url")?;
    if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
        return Err(misconfigured(
            "variable `public_url` must be an http(s) URL".to_string(),
        ));
    }
    if url.is_empty() {
        return match config::environment()? {
            Environment::Development => Ok(Outbox::DevelopmentLog { public_url }),
            Environment::Production => Err(misconfigured(
                "variable `email_webhook_url` is required in production: recovery and verification messages cannot be sent".to_string(),
            )),
        };
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(misconfigured(
            "variable `email_webhook_url` must be an http(s) URL".to_string(),
        ));
    }
    let secret = WebhookSecret::parse(
        "email_webhook_secret",
        &config::var("email_webhook_secret")?,
    )
    .map_err(|e| misconfigured(e.to_string()))?;
    let millis = settings::parse_bounded(
        "email_webhook_timeout_ms",
        &config::var("email_webhook_timeout_ms")?,
        100,
        60_000,
    )
    .map_err(|e| misconfigured(e.to_string()))?;
    Ok(Outbox::Webhook {
        url: url.to_string(),
        secret,
        timeout: Duration::from_millis(millis),
        public_url,
    })
}

/// The outbox, or `None` after logging why there is none: for sign-up,
/// whose account must not depend on mail (a verification message can be
/// asked for again once the webhook is configured).
pub fn outbox_or_log(ctx: &Ctx) -> Option<Outbox> {
    match outbox() {
        Ok(outbox) => Some(outbox),
        Err(ApiError::Unavailable { reason, kind }) => {
            ctx.log_error(kind, &reason);
            None
        }
        Err(_) => None,
    }
}

/// The Standard Webhooks message body.
fn payload(ctx: &Ctx, letter: &Letter, public_url: &str) -> serde_json::Value {
    serde_json::json!({
        "type": format!("email.{}", letter.purpose.as_str()),
        "timestamp": crate::time::rfc3339(crate::time::now()),
        "data": {
            "kind": letter.purpose.as_str(),
            "to": letter.to,
            "token": letter.token.as_str(),
            "link": letter.token.link(public_url, letter.purpose),
            "expiresAt": crate::time::rfc3339(letter.expires_at),
            "requestId": ctx.request_id,
        },
    })
}

/// Delivers `letter` now (the entry point calls this after answering).
pub fn deliver(ctx: &Ctx, outbox: &Outbox, letter: &Letter) {
    match outbox {
        Outbox::DevelopmentLog { public_url } => {
            let line = serde_json::json!({
                "level": "warn",
                "event": "email_delivery",
                "outcome": "logged",
                "kind": letter.purpose.as_str(),
                "route": ctx.route,
                "request_id": ctx.request_id,
                "note": "DEVELOPMENT ONLY: no email_webhook_url is set, so this link was not sent",
                "link": letter.token.link(public_url, letter.purpose),
            });
            println!("{line}");
        }
        Outbox::Webhook {
            url,
            secret,
            timeout,
            public_url,
        } => {
            let outcome = post(
                ctx,
                url,
                secret,
                *timeout,
                &payload(ctx, letter, public_url),
            );
            let mut line = serde_json::json!({
                "level": if outcome.is_ok() { "info" } else { "error" },
                "event": "email_delivery",
                "outcome": if outcome.is_ok() { "success" } else { "failure" },
                "kind": letter.purpose.as_str(),
                "route": ctx.route,
                "request_id": ctx.request_id,
                "trace_id": ctx.trace_id,
            });
            if let Err(reason) = outcome {
                line["reason"] = serde_json::Value::String(reason);
            }
            println!("{line}");
        }
    }
}

/// POSTs the signed message; the reason for the log if it was not accepted.
fn post(
    ctx: &Ctx,
    url: &str,
    secret: &WebhookSecret,
    timeout: Duration,
    payload: &serde_json::Value,
) -> Result<(), String> {
    let body = serde_json::to_vec(payload).map_err(|_| "the message could not be encoded")?;
    let message_id = format!(
        "msg_{}",
        crate::new_id().map_err(|_| "no randomness available")?
    );
    let timestamp = crate::time::now();
    let signature = secret.sign(&message_id, timestamp, &body);
    let headers = [
        ("content-type".to_string(), b"application/json".to_vec()),
        ("webhook-id".to_string(), message_id.into_bytes()),
        (
            "webhook-timestamp".to_string(),
            timestamp.to_string().into_bytes(),
        ),
        ("webhook-signature".to_string(), signature.into_bytes()),
        (
            "x-request-id".to_string(),
            ctx.request_id.clone().into_bytes(),
        ),
    ];
    let mut sent = latch_send::post(url, &headers, &body, timeout, MAX_ANSWER_BYTES);
    if let Err(SendError::Http(ErrorCode::HttpProtocolError | ErrorCode::ConnectionTerminated)) =
        &sent
    {
        // A kept-alive connection the receiver had closed (it restarted): the
        // same message once more, on a new connection. Receivers deduplicate
        // by `webhook-id`, so a message that did arrive is not delivered twice.
        sent = latch_send::post(url, &headers, &body, timeout, MAX_ANSWER_BYTES);
    }
    match sent {
        Ok(answer) if (200..300).contains(&answer.status) => Ok(()),
        Ok(answer) => Err(format!("the webhook answered {}", answer.status)),
        Err(error) => Err(format!("the webhook could not be reached: {error}")),
    }
}
