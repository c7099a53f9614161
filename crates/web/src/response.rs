//! Building answers: JSON bodies, token cookies, and the headers every
//! response carries.

use http::header::{HeaderName, HeaderValue};
use serde::Serialize;

use crate::Response;
use crate::request::Ctx;

/// Cookie carrying the access token (the old service's name).
pub const ACCESS_COOKIE: &str = "token";
/// Cookie carrying the refresh token (the old service's name).
pub const REFRESH_COOKIE: &str = "refreshToken";

fn with_body(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

/// A JSON response.
pub fn json(status: u16, body: &impl Serialize) -> Response {
    let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    with_body(status, "application/json", body)
}

/// An empty response (204).
pub fn no_content() -> Response {
    let mut response = Response::new(Vec::new());
    *response.status_mut() = http::StatusCode::NO_CONTENT;
    response
}

/// A problem response (RFC 9457).
pub fn problem(status: u16, body: &serde_json::Value) -> Response {
    with_body(
        status,
        "application/problem+json",
        serde_json::to_vec(body).unwrap_or_default(),
    )
}

/// Sets (replaces) a header; values that are not valid header text are dropped.
pub fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
}

/// Sets the access and refresh cookies: HttpOnly, SameSite=Strict, Path=/,
/// Secure unless serving plain HTTP locally, each living as long as its token.
pub fn set_token_cookies(
    response: &mut Response,
    ctx: &Ctx,
    access: &str,
    access_ttl: i64,
    refresh: &str,
    refresh_ttl: i64,
) {
    append_cookie(
        response,
        &cookie(ACCESS_COOKIE, access, access_ttl, ctx.secure_cookies),
    );
    append_cookie(
        response,
        &cookie(REFRESH_COOKIE, refresh, refresh_ttl, ctx.secure_cookies),
    );
}

/// Clears both token cookies, with the attributes they were set with.
pub fn clear_token_cookies(response: &mut Response, ctx: &Ctx) {
    append_cookie(response, &cookie(ACCESS_COOKIE, "", 0, ctx.secure_cookies));
    append_cookie(response, &cookie(REFRESH_COOKIE, "", 0, ctx.secure_cookies));
}

fn cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let expires = if max_age <= 0 {
        "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    } else {
        ""
    };
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Max-Age={}; Path=/; HttpOnly; SameSite=Strict{secure}{expires}",
        max_age.max(0)
    )
}

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response
            .headers_mut()
            .append(http::header::SET_COOKIE, value);
    }
}

/// The headers every answer carries; token-bearing and user-specific
/// answers must not be cached (a route may set its own Cache-Control first).
pub fn finish(response: &mut Response, ctx: &Ctx) {
    let defaults: [(&'static str, &'static str); 6] = [
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("cross-origin-resource-policy", "same-origin"),
    ];
    for (name, value) in defaults {
        if !response.headers().contains_key(name) {
            set_header(response, name, value);
        }
    }
    if ctx.behind_tls {
        set_header(
            response,
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        );
    }
    set_header(response, "x-request-id", &ctx.request_id);
}

/// A 200 handing out a new token pair: both cookies, and, when the
/// `tokens_in_body` setting is on, the tokens in the JSON body as well.
pub fn with_tokens(
    ctx: &Ctx,
    mut body: serde_json::Value,
    access: &str,
    refresh: &str,
    policy: &latch_domain::TokenPolicy,
    tokens_in_body: bool,
) -> Response {
    if tokens_in_body {
        body["accessToken"] = access.into();
        body["refreshToken"] = refresh.into();
        body["tokenType"] = "Bearer".into();
        body["expiresIn"] = policy.access_ttl_secs.into();
    }
    let mut reply = json(200, &body);
    set_token_cookies(
        &mut reply,
        ctx,
        access,
        policy.access_ttl_secs,
        refresh,
        policy.refresh_ttl_secs,
    );
    reply
}
