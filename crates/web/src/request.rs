//! Reading a request: its context (ids, client address, cookies) and its
//! JSON body, with the limits and errors the API promises.

use std::net::IpAddr;

use crate::email::{Letter, Outbox};
use crate::{ApiError, Request};
use serde::de::DeserializeOwned;

/// Largest body any route accepts (every route takes JSON or nothing); the
/// entry point refuses larger ones with 413 before a handler runs.
pub const MAX_JSON_BODY: usize = 16 * 1024;

/// How long after answering letters are delivered.
const LETTER_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// What every route knows about the request it serves.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The route as in the manifest (`/auth/signin`), for logs.
    pub route: &'static str,
    /// The request path, for the problem's `instance`.
    pub path: String,
    /// The caller's `X-Request-Id` when it is sane, else a new one.
    pub request_id: String,
    /// The W3C trace id of the request, when it carries `traceparent`.
    pub trace_id: Option<String>,
    spin_client_addr: Option<String>,
    forwarded_for: Option<String>,
    user_agent: Option<String>,
    cookies: Option<String>,
    authorization: Option<String>,
    /// Whether cookies carry `Secure` (all but plain-HTTP development).
    pub secure_cookies: bool,
    /// Whether clients reach the service over HTTPS (`behind_tls`): answers
    /// then carry `Strict-Transport-Security`.
    pub behind_tls: bool,
    /// Messages to deliver once the answer is out ([`Ctx::send_after_response`]).
    letters: std::rc::Rc<std::cell::RefCell<Vec<(Outbox, Letter)>>>,
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A header the runtime sets (`spin-*`). Spin 3.6.3 keeps a client's own
/// `spin-*` headers and appends its values after them, so only the last value
/// is the runtime's; the first may be a client's forgery.
pub fn runtime_header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(name)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A boolean Spin variable, or `default` when the component does not have it
/// or its value is not a boolean.
fn flag(name: &'static str, default: bool) -> bool {
    spin_sdk::variables::get(name)
        .ok()
        .and_then(|v| latch_domain::config::parse_bool(name, &v).ok())
        .unwrap_or(default)
}

/// `cookie_secure`: true unless the deployment says plain HTTP (an invalid
/// value keeps cookies `Secure`).
fn secure_cookies() -> bool {
    flag("cookie_secure", true)
}

/// `behind_tls`: HSTS only where the deployment says clients use HTTPS.
fn behind_tls() -> bool {
    flag("behind_tls", false)
}

impl Ctx {
    pub fn new(req: &Request, route: &'static str) -> Ctx {
        let request_id = header(req, "x-request-id")
            .filter(|id| {
                !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            })
            .or_else(|| crate::new_id().ok())
            .unwrap_or_else(|| "unknown".to_string());
        Ctx {
            route,
            path: req.uri().path().to_string(),
            request_id,
            trace_id: header(req, "traceparent").and_then(|t| trace_id(&t)),
            spin_client_addr: runtime_header(req, "spin-client-addr"),
            forwarded_for: header(req, "x-forwarded-for"),
            user_agent: header(req, "user-agent").map(|ua| ua.chars().take(256).collect()),
            cookies: header(req, "cookie"),
            authorization: header(req, "authorization"),
            secure_cookies: secure_cookies(),
            behind_tls: behind_tls(),
            letters: Default::default(),
        }
    }

    /// The context of a request that could not even be read.
    pub fn unreadable(route: &'static str) -> Ctx {
        Ctx {
            route,
            path: route.to_string(),
            request_id: crate::new_id().unwrap_or_else(|_| "unknown".to_string()),
            trace_id: None,
            spin_client_addr: None,
            forwarded_for: None,
            user_agent: None,
            cookies: None,
            authorization: None,
            secure_cookies: secure_cookies(),
            behind_tls: behind_tls(),
            letters: Default::default(),
        }
    }

    /// The client's address: the socket peer, or the first `X-Forwarded-For`
    /// hop when a trusted proxy sets it.
    pub fn client_ip(&self, trust_forwarded_for: bool) -> Option<IpAddr> {
        latch_domain::client_ip(
            self.spin_client_addr.as_deref(),
            self.forwarded_for.as_deref(),
            trust_forwarded_for,
        )
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// Queues `letter` for delivery after the answer is out: the answer's
    /// timing and content never depend on the delivery.
    pub fn send_after_response(&self, outbox: Outbox, letter: Letter) {
        self.letters.borrow_mut().push((outbox, letter));
    }

    /// Drops the queued letters (the request failed after queuing them).
    pub fn discard_letters(&self) {
        self.letters.borrow_mut().clear();
    }

    /// Delivers the queued letters (the entry point calls this after answering).
    pub fn deliver_letters(&self) {
        let letters = std::mem::take(&mut *self.letters.borrow_mut());
        if letters.is_empty() {
            return;
        }
        // Let the answer leave first: the delivery's work (signing, connecting)
        // must not compete with writing it, or its timing would tell whether a
        // message was sent (forgot answers alike for known and unknown addresses).
        latch_send::pause(LETTER_DELAY);
        for (outbox, letter) in &letters {
            crate::email::deliver(self, outbox, letter);
        }
    }

    /// The value of a cookie, if sent.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.as_deref()?.split(';').find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"'))
        })
    }

    /// The `Authorization` header, if sent.
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// One JSON log line for a failure the client only sees as 500/503.
    pub fn log_error(&self, kind: &str, detail: &str) {
        let line = serde_json::json!({
            "level": "error",
            "event": kind,
            "route": self.route,
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "detail": detail,
        });
        eprintln!("{line}");
    }
}

/// The trace id of a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`).
fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace.bytes().any(|b| b != b'0'))
    .then(|| trace.to_ascii_lowercase())
}

/// Parses the JSON body: 415 if it is not JSON, 400 if malformed or of the
/// wrong shape (a body over [`MAX_JSON_BODY`] never gets here: 413).
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media_type != "application/json" && !media_type.ends_with("+json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = req.body();
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::MalformedBody("the body is not valid JSON".to_string()))?;
    // serde would also read a struct from an array; the API takes objects only.
    if !value.is_object() {
        return Err(ApiError::MalformedBody(
            "the body must be a JSON object".to_string(),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        // serde names the field and the expected type (and echoes a non-string value
        // back to its sender; nothing of it is logged).
        ApiError::MalformedBody(format!("the body does not have the expected shape: {e}"))
    })
}

/// A required string field: 400 naming the field when it is missing.
pub fn required<'a>(
    value: &'a Option<String>,
    field: &'static str,
) -> Result<&'a str, latch_domain::FieldError> {
    value.as_deref().ok_or_else(|| {
        latch_domain::FieldError::new(
            field,
            latch_domain::error::codes::REQUIRED,
            format!("{field} is required"),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_parsed_strictly() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id("garbage"), None);
    }

    /// Property tests of what a client controls: the JSON body and its media
    /// type, the `Cookie` header and the `Authorization` header. Whatever
    /// arrives, the answer is a value or a typed 4xx error, never a panic.
    mod untrusted_input {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct SignUp {
            email: Option<String>,
            password: Option<String>,
            #[serde(rename = "fullName")]
            full_name: Option<String>,
        }

        fn ctx(cookies: Option<String>, authorization: Option<String>) -> Ctx {
            Ctx {
                route: "/test",
                path: "/test".to_string(),
                request_id: "test".to_string(),
                trace_id: None,
                spin_client_addr: None,
                forwarded_for: None,
                user_agent: None,
                cookies,
                authorization,
                secure_cookies: true,
                behind_tls: false,
                letters: Default::default(),
            }
        }

        /// JSON values up to a few levels deep, of every kind.
        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(serde_json::Value::from),
                any::<String>().prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("email".to_string()),
                            Just("password".to_string()),
                            Just("fullName".to_string()),
                            any::<String>(),
                        ],
                        inner,
                        0..6,
                    )
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
                ]
            })
        }

        fn request(content_type: &str, body: Vec<u8>) -> Option<Request> {
            http::Request::builder()
                .method("POST")
                .uri("/test")
                .header("content-type", content_type)
                .body(body)
                .ok()
        }

        fn assert_client_error(error: ApiError) -> Result<(), TestCaseError> {
            prop_assert!(
                matches!(
                    error,
                    ApiError::UnsupportedMediaType | ApiError::MalformedBody(_)
                ),
                "{error:?}"
            );
            let response = error.into_response(&ctx(None, None));
            prop_assert!(matches!(response.status().as_u16(), 400 | 415));
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn any_body_bytes_parse_or_get_a_4xx(
                body in prop::collection::vec(any::<u8>(), 0..256),
                content_type in prop_oneof![
                    Just("application/json".to_string()),
                    Just("application/problem+json; charset=utf-8".to_string()),
                    "[ -~]{0,40}",
                ],
            ) {
                let Some(request) = request(&content_type, body) else { return Ok(()) };
                if let Err(error) = json_body::<SignUp>(&request) {
                    assert_client_error(error)?;
                }
            }

            #[test]
            fn any_json_value_parses_or_gets_a_400(value in json_value()) {
                let body = serde_json::to_vec(&value).unwrap_or_default();
                let Some(request) = request("application/json", body) else { return Ok(()) };
                match json_body::<SignUp>(&request) {
                    Ok(_) => prop_assert!(value.is_object()),
                    Err(error) => assert_client_error(error)?,
                }
            }

            #[test]
            fn cookie_headers_give_a_part_of_themselves(header in "[ -~]{0,200}|\\PC{0,100}") {
                let ctx = ctx(Some(header.clone()), None);
                for name in ["token", "refreshToken"] {
                    if let Some(value) = ctx.cookie(name) {
                        prop_assert!(header.contains(value));
                        prop_assert!(!value.contains(';'));
                    }
                }
            }

            #[test]
            fn presented_tokens_come_from_the_request_or_are_refused(
                cookie in prop::option::of("[ -~]{0,120}"),
                authorization in prop::option::of("[ -~]{0,120}|\\PC{0,60}"),
            ) {
                let ctx = ctx(cookie.clone(), authorization.clone());
                match crate::auth::presented_token(&ctx) {
                    Ok(token) => {
                        let sources = [cookie.unwrap_or_default(), authorization.unwrap_or_default()];
                        prop_assert!(sources.iter().any(|s| s.contains(token)));
                    }
                    Err(error) => prop_assert!(
                        matches!(error, ApiError::Unauthorized { .. }),
                        "{error:?}"
                    ),
                }
            }
        }
    }
}
