//! What the admin routes share: who may call them, the target user of a
//! `/admin/users/:id/...` route, and the listings' query parameters and
//! opaque cursors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latch_domain::{AccessClaims, Role};
use latch_store::{AdminAccess, AdminCaller};

use crate::db::Backend;
use crate::request::runtime_header;
use crate::{ApiError, Ctx, Request, auth};
use latch_store::Store;

/// Default page size of the listings.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size of the listings.
pub const MAX_LIMIT: u32 = 100;

/// 403 `admin_required`.
pub fn admin_required() -> ApiError {
    ApiError::Coded {
        status: 403,
        code: "admin_required",
        detail: "the admin role is required",
    }
}

/// The verified claims of an admin's access token (401 without a valid
/// token, 403 without the role). The store's queries check again, in the
/// database, that the session is active and the role still held.
pub async fn caller(ctx: &Ctx, store: &Store<Backend>, now: i64) -> Result<AccessClaims, ApiError> {
    let (claims, _) = auth::verify(ctx, store, now).await?;
    if !claims.has_role(Role::Admin) {
        return Err(admin_required());
    }
    Ok(claims)
}

/// The caller as the store's admin queries take it.
pub fn as_caller(claims: &AccessClaims, now: i64) -> AdminCaller<'_> {
    AdminCaller {
        session_id: &claims.sid,
        user_id: &claims.sub,
        now,
    }
}

/// The audit event of an admin action on `user_id` by the caller: who
/// acted, on whom, and from which client address.
pub fn action(
    ctx: &Ctx,
    kind: latch_domain::AuditKind,
    user_id: &str,
    claims: &AccessClaims,
) -> Result<latch_domain::AuditEvent, ApiError> {
    let event = latch_domain::AuditEvent::new(kind, latch_domain::Outcome::Success)
        .with_user(user_id)
        .with_actor(&claims.sub);
    Ok(
        match ctx.client_ip(crate::config::flag("trust_forwarded_for")?) {
            Some(ip) => event.with_client_ip(ip),
            None => event,
        },
    )
}

/// The answer when the database refused the caller.
pub fn refused(access: AdminAccess) -> ApiError {
    match access {
        AdminAccess::SessionEnded => auth::session_ended(),
        AdminAccess::NotAdmin => admin_required(),
        AdminAccess::SecondFactorRequired => crate::mfa::AAL2_REQUIRED,
    }
}

/// 404 for a user the route cannot find.
pub fn no_such_user() -> ApiError {
    ApiError::NotFound("no user has this id")
}

/// The `:id` of the route (Spin's `spin-path-match-id`); 404 unless it is
/// an id Latch could have made.
pub fn target_id(req: &Request) -> Result<String, ApiError> {
    runtime_header(req, "spin-path-match-id")
        .filter(|id| latch_domain::is_valid_id(id))
        .ok_or_else(no_such_user)
}

/// The query parameters, decoded; 400 for one given twice or unknown.
pub fn query(req: &Request, known: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        if !known.contains(&name.as_ref()) {
            return Err(bad_query("an unknown query parameter"));
        }
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(bad_query("a query parameter given twice"));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// The value of `name` in decoded `pairs`.
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn bad_query(detail: &'static str) -> ApiError {
    ApiError::Coded {
        status: 400,
        code: "invalid_query",
        detail,
    }
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn limit(pairs: &[(String, String)]) -> Result<u32, ApiError> {
    match param(pairs, "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| bad_query("limit must be a whole number from 1 to 100")),
    }
}

/// A user as the admin API shows it (email in full: admins need it).
pub fn user_summary(user: &latch_store::User) -> serde_json::Value {
    serde_json::json!({
        "id": user.id,
        "email": user.email,
        "fullName": user.full_name,
        "isActive": user.is_active,
        "emailVerified": user.email_verified,
        "roles": user.roles,
        "createdAt": crate::time::rfc3339(user.created_at),
    })
}

/// An opaque cursor: base64url of what the next page starts after.
pub fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position.as_bytes())
}

/// The position a cursor names; 400 for anything this service did not make
/// (a cursor is at most 512 characters).
pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let invalid = || bad_query("the cursor is not one this service gave");
    if cursor.len() > 512 {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(uri: &str) -> Request {
        http::Request::builder().uri(uri).body(Vec::new()).unwrap()
    }

    #[test]
    fn query_parameters_are_decoded_and_checked() {
        let req = request("/admin/users?query=ann%40example&limit=5");
        let pairs = query(&req, &["query", "limit", "cursor"]).unwrap();
        assert_eq!(param(&pairs, "query"), Some("ann@example"));
        assert_eq!(limit(&pairs).unwrap(), 5);
        assert!(query(&request("/x?limit=1&limit=2"), &["limit"]).is_err());
        assert!(query(&request("/x?other=1"), &["limit"]).is_err());
        for bad in ["0", "101", "-1", "ten", ""] {
            let pairs = vec![("limit".to_string(), bad.to_string())];
            assert!(limit(&pairs).is_err(), "{bad}");
        }
        assert_eq!(limit(&[]).unwrap(), DEFAULT_LIMIT);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = encode_cursor("ann@example.com");
        assert_eq!(decode_cursor(&cursor).unwrap(), "ann@example.com");
        assert!(decode_cursor("not base64!").is_err());
        assert!(decode_cursor(&"A".repeat(600)).is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])).is_err());
    }
}
