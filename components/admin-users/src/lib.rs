//! `GET /admin/users?query=&cursor=&limit=`: the users, a page at a time.
//!
//! Admins only (403 `admin_required` otherwise). Ordered by email; `query`
//! keeps the emails that start with it (case-insensitive); `limit` 1-100
//! (default 50); `cursor` is the previous page's `nextCursor`. Keyset
//! pagination (no OFFSET): a walk meets every user that existed throughout
//! it exactly once, however many are added meanwhile. 200 `{users,
//! nextCursor}` with emails in full. One database round trip.

use latch_web::admin::{self, decode_cursor, encode_cursor, limit, param};
use latch_web::{ApiError, Ctx, Method, Request, Response, db, response, time};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

/// Longest `query` accepted (an email is at most 254 characters).
const MAX_QUERY_LEN: usize = 254;

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "/admin/users", &[Method::GET], list).await;
}

async fn list(ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    let pairs = admin::query(&req, &["query", "cursor", "limit"])?;
    let prefix = param(&pairs, "query").unwrap_or("").trim().to_lowercase();
    if prefix.len() > MAX_QUERY_LEN {
        return Err(ApiError::Coded {
            status: 400,
            code: "invalid_query",
            detail: "query is longer than an email can be",
        });
    }
    let after = param(&pairs, "cursor").map(decode_cursor).transpose()?;
    let limit = limit(&pairs)?;

    let now = time::now();
    let store = db::open()?;
    let claims = admin::caller(ctx, &store, now).await?;
    let page = store
        .admin_list_users(
            &admin::as_caller(&claims, now),
            &prefix,
            after.as_deref(),
            limit,
        )
        .await?
        .map_err(admin::refused)?;
    let users: Vec<_> = page.users.iter().map(admin::user_summary).collect();
    Ok(response::json(
        200,
        &serde_json::json!({
            "users": users,
            "nextCursor": page.next_after.as_deref().map(encode_cursor),
        }),
    ))
}
