//! Audit events: one row in the database (through the store) and one JSON
//! line on stdout per event. Neither ever holds a password, a token, a cookie
//! or a full email address.

use latch_domain::AuditEvent;
use latch_store::AuditRecord;

use crate::ApiError;
use crate::request::Ctx;

/// A record of `event` for this request, with a fresh id.
pub fn record(ctx: &Ctx, event: AuditEvent, now: i64) -> Result<AuditRecord, ApiError> {
    Ok(AuditRecord {
        id: crate::new_id()?,
        at: now,
        event,
        request_id: Some(ctx.request_id.clone()),
    })
}

/// Writes the event as one JSON line (Loki counts these; the runtime counts
/// `event`/`outcome` pairs as `latch_auth_events_total`).
pub fn log(ctx: &Ctx, record: &AuditRecord) {
    let event = &record.event;
    let mut line = serde_json::json!({
        "level": "info",
        "event": event.kind().as_str(),
        "outcome": event.outcome().as_str(),
        "route": ctx.route,
        "user_id": event.user_id(),
        "session_id": event.session_id(),
        "email": event.masked_email(),
        "client_ip": event.client_ip(),
        "reason": event.reason(),
        "request_id": ctx.request_id,
        "trace_id": ctx.trace_id,
        "audit_id": record.id,
        "ts": crate::time::rfc3339(record.at),
    });
    if let Some(actor) = event.actor_id() {
        line["actor_id"] = serde_json::Value::from(actor);
    }
    println!("{line}");
}
