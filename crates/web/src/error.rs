//! Errors as the API answers them: RFC 9457 `application/problem+json` with
//! the right status, plus the old service's `statusCode`/`error`/`message`
//! members so its clients still read them.

use http::Method;
use latch_domain::{DomainError, FieldError};
use latch_store::StoreError;
use serde_json::json;

use crate::{Response, response::set_header};

use crate::request::Ctx;
use crate::response;

/// Seconds a client should wait after a 503.
const UNAVAILABLE_RETRY_AFTER: u64 = 5;

/// Every way a request can fail.
#[derive(Debug)]
pub enum ApiError {
    /// Fields failed validation (400, with each field's error).
    Validation(Vec<FieldError>),
    /// The body is not the JSON it should be (400).
    MalformedBody(String),
    /// The body is not `application/json` (415).
    UnsupportedMediaType,
    /// The body is over the limit (413).
    PayloadTooLarge(usize),
    /// The route does not answer this method (405, with `Allow`).
    MethodNotAllowed(&'static [Method]),
    /// No valid credentials, token or session (401). `clear_cookies` also
    /// clears the token cookies, for browsers holding dead ones.
    Unauthorized {
        detail: &'static str,
        clear_cookies: bool,
    },
    /// Email or password wrong, or the account is inactive (401, the same
    /// answer for all three so none can be told apart).
    InvalidCredentials,
    /// Authenticated, but this is not allowed (403).
    Forbidden(&'static str),
    /// A refusal clients tell apart by its stable `code` member (e.g. 400
    /// `invalid_token`, 403 `email_not_verified`).
    Coded {
        status: u16,
        code: &'static str,
        detail: &'static str,
    },
    /// Nothing there for this caller (404).
    NotFound(&'static str),
    /// The request conflicts with existing data (409).
    Conflict(&'static str),
    /// Throttled (429, with `Retry-After`).
    TooManyRequests { retry_after_secs: u64 },
    /// A dependency is down or unconfigured (503, with `Retry-After`); the
    /// reason is logged, never sent.
    Unavailable { reason: String, kind: &'static str },
    /// A defect on our side (500); the reason is logged, never sent.
    Internal(&'static str),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(_) => {
                ApiError::Conflict("the request conflicts with existing data")
            }
            StoreError::Unavailable(reason) => ApiError::Unavailable {
                reason,
                kind: "database_unavailable",
            },
            StoreError::Misconfigured(reason) => ApiError::Unavailable {
                reason,
                kind: "database_misconfigured",
            },
            StoreError::Query(_) => ApiError::Internal("a database query failed"),
            StoreError::Shape(_) => ApiError::Internal("a database result had an unexpected shape"),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Validation(errors) => ApiError::Validation(errors),
            DomainError::InvalidCredentials => ApiError::InvalidCredentials,
            DomainError::Token(_) | DomainError::RefreshTokenReused => ApiError::Unauthorized {
                detail: "invalid or expired token",
                clear_cookies: false,
            },
            DomainError::Conflict(_) => {
                ApiError::Conflict("the request conflicts with existing data")
            }
            DomainError::NotFound => ApiError::NotFound("not found"),
            DomainError::Forbidden => ApiError::Forbidden("not allowed"),
            DomainError::Throttled { retry_after_secs } => {
                ApiError::TooManyRequests { retry_after_secs }
            }
            DomainError::PasswordHashing => ApiError::Internal("password hashing failed"),
            DomainError::Key(e) => ApiError::Unavailable {
                reason: e.to_string(),
                kind: "signing_key",
            },
            DomainError::Config(e) => ApiError::Unavailable {
                reason: e.to_string(),
                kind: "misconfigured",
            },
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::Validation(vec![error])
    }
}

impl ApiError {
    /// 400 `invalid_token`: a one-time token that is unknown, used, expired
    /// or superseded (one answer, so none can be told apart).
    pub const INVALID_TOKEN: ApiError = ApiError::Coded {
        status: 400,
        code: "invalid_token",
        detail: "the link is invalid or has expired; ask for a new one",
    };

    /// 403 `email_not_verified`: sign-in waits for the address to be verified.
    pub const EMAIL_NOT_VERIFIED: ApiError = ApiError::Coded {
        status: 403,
        code: "email_not_verified",
        detail: "verify your email address before signing in",
    };

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Validation(_) | ApiError::MalformedBody(_) => 400,
            ApiError::Unauthorized { .. } | ApiError::InvalidCredentials => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::Coded { status, .. } => *status,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Conflict(_) => 409,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable { .. } => 503,
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Validation(errors) => match errors.as_slice() {
                [one] => format!("{}: {}", one.field, one.message),
                _ => "the request has invalid fields".to_string(),
            },
            ApiError::MalformedBody(detail) => detail.clone(),
            ApiError::UnsupportedMediaType => "the body must be application/json".to_string(),
            ApiError::PayloadTooLarge(limit) => format!("the body exceeds {limit} bytes"),
            ApiError::MethodNotAllowed(_) => "this route does not answer that method".to_string(),
            ApiError::Unauthorized { detail, .. } => (*detail).to_string(),
            ApiError::InvalidCredentials => "Invalid email or password".to_string(),
            ApiError::Forbidden(detail)
            | ApiError::Coded { detail, .. }
            | ApiError::NotFound(detail)
            | ApiError::Conflict(detail) => (*detail).to_string(),
            ApiError::TooManyRequests { retry_after_secs } => {
                format!("too many attempts; retry after {retry_after_secs} seconds")
            }
            ApiError::Unavailable { .. } => "the service is temporarily unavailable".to_string(),
            ApiError::Internal(_) => "an internal error occurred".to_string(),
        }
    }

    /// The problem response; logs what the client is not told.
    pub fn into_response(self, ctx: &Ctx) -> Response {
        let status = self.status();
        match &self {
            ApiError::Unavailable { reason, kind } => ctx.log_error(kind, reason),
            ApiError::Internal(what) => ctx.log_error("internal_error", what),
            _ => {}
        }
        let title = reason_phrase(status);
        let detail = self.detail();
        let mut body = json!({
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": ctx.path,
            "requestId": ctx.request_id,
            // The old service's members.
            "statusCode": status,
            "error": title,
            "message": detail,
        });
        if let ApiError::Coded { code, .. } = &self {
            body["code"] = json!(code);
        }
        if let ApiError::Validation(errors) = &self {
            body["code"] = json!("FST_ERR_VALIDATION");
            body["errors"] = errors
                .iter()
                .map(|e| json!({"field": e.field, "code": e.code, "message": e.message}))
                .collect();
        }
        let mut response = response::problem(status, &body);
        match &self {
            ApiError::MethodNotAllowed(methods) => {
                let mut allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
                if methods.contains(&Method::GET) {
                    allow.push("HEAD");
                }
                set_header(&mut response, "allow", &allow.join(", "));
            }
            ApiError::TooManyRequests { retry_after_secs } => {
                set_header(
                    &mut response,
                    "retry-after",
                    &retry_after_secs.max(&1).to_string(),
                );
            }
            ApiError::Unavailable { .. } => {
                set_header(
                    &mut response,
                    "retry-after",
                    &UNAVAILABLE_RETRY_AFTER.to_string(),
                );
            }
            _ => {}
        }
        if status == 401 {
            // RFC 9110: a 401 names how to authenticate (RFC 6750 for bearer tokens).
            let challenge = match &self {
                ApiError::InvalidCredentials => r#"Bearer realm="latch""#,
                _ => r#"Bearer realm="latch", error="invalid_token""#,
            };
            set_header(&mut response, "www-authenticate", challenge);
        }
        if let ApiError::Unauthorized {
            clear_cookies: true,
            ..
        } = &self
        {
            response::clear_token_cookies(&mut response, ctx);
        }
        response
    }
}

/// The standard reason phrase (the problem's `title`).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}
