//! `GET /admin/audit?userId=&kind=&cursor=&limit=`: the audit trail.
//!
//! Admins only (403 `admin_required` otherwise). Newest first; `userId` and
//! `kind` (an event name, 400 if unknown) filter; `limit` 1-100 (default
//! 50); `cursor` is the previous page's `nextCursor` (keyset on insertion
//! order, no OFFSET). Emails are as stored: masked. 200 `{events, nextCursor}`.
//! One database round trip.

use latch_domain::AuditKind;
use latch_store::AuditFilter;
use latch_web::admin::{self, decode_cursor, encode_cursor, limit, param};
use latch_web::{ApiError, Ctx, Method, Request, Response, db, response, time};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/admin/audit", &[Method::GET], list).await;
}

fn bad(detail: &'static str) -> ApiError {
    ApiError::Coded {
        status: 400,
        code: "invalid_query",
        detail,
    }
}

async fn list(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let pairs = admin::query(&req, &["userId", "kind", "cursor", "limit"])?;
    let user_id = param(&pairs, "userId");
    if user_id.is_some_and(|id| !latch_domain::is_valid_id(id)) {
        return Err(bad("userId is not a user id"));
    }
    let kind = param(&pairs, "kind")
        .map(|name| AuditKind::parse(name).ok_or_else(|| bad("kind is not an audit event name")))
        .transpose()?;
    // The cursor is the previous page's last event's place in the trail.
    let before = param(&pairs, "cursor")
        .map(|cursor| {
            decode_cursor(cursor)?
                .parse::<i64>()
                .map_err(|_| bad("the cursor is not one this service gave"))
        })
        .transpose()?;
    let limit = limit(&pairs)?;

    let now = time::now();
    let store = db::open()?;
    let claims = admin::caller(ctx, &store, now).await?;
    let filter = AuditFilter {
        user_id,
        event: kind.map(AuditKind::as_str),
        before,
    };
    let page = store
        .admin_audit(&admin::as_caller(&claims, now), &filter, limit)
        .await?
        .map_err(admin::refused)?;
    let events: Vec<_> = page
        .events
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": e.id,
                "at": time::rfc3339(e.at),
                "event": e.event,
                "outcome": e.outcome,
                "userId": e.user_id,
                "actorId": e.actor_id,
                "sessionId": e.session_id,
                "email": e.email,
                "clientIp": e.client_ip,
                "reason": e.reason,
                "requestId": e.request_id,
            })
        })
        .collect();
    Ok(response::json(
        200,
        &serde_json::json!({
            "events": events,
            "nextCursor": page
                .next_after
                .map(|seq| encode_cursor(&seq.to_string())),
        }),
    ))
}
