//! HTTP as a client sees it: requests with explicit cookies and headers,
//! whole replies, and the checks every answer of the API must pass.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Longest any single request may take (the runner's own limit is 30 s).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Every secret a client sent or received: passwords, full email
/// addresses, tokens (and so cookie values).
pub(crate) type Secrets = Arc<Mutex<BTreeSet<String>>>;

/// Shortest values kept as secrets: shorter ones (a garbage password `x`)
/// would match unrelated log text, and so would plain words (the common
/// password `password` is in every `/auth/password` log line), so values
/// made of letters only are not kept either.
const MIN_SECRET_LEN: usize = 8;
/// JSON members that carry secrets, in requests and in answers.
const SECRET_MEMBERS: [&str; 11] = [
    "email",
    // Recovery and verification tokens (POST /auth/password/reset, /auth/email/verify).
    "token",
    "password",
    "currentPassword",
    "newPassword",
    "refreshToken",
    "accessToken",
    // The second factor (issue 14): the TOTP secret and the URI carrying it,
    // sign-in challenges, recovery codes (six-digit codes are too short to
    // look for).
    "secret",
    "otpauthUri",
    "challenge",
    "recoveryCode",
];
/// JSON members holding arrays of secrets.
const SECRET_ARRAYS: [&str; 1] = ["recoveryCodes"];

/// A client for one service (cheap to clone; share it across threads).
#[derive(Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    secrets: Secrets,
}

impl Client {
    pub(crate) fn new(base: String, secrets: Secrets) -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .allow_non_standard_methods(true)
            .max_redirects(0)
            .build()
            .into();
        Client {
            agent,
            base,
            secrets,
        }
    }

    fn remember(&self, secret: &str) {
        let secret = secret.trim();
        let long_enough = secret.chars().count() >= MIN_SECRET_LEN
            && !secret.chars().all(|c| c.is_ascii_alphabetic());
        // Emails are kept only when plausible (a masked form is fine to log).
        let plausible = !secret.contains('@') || (secret.contains('.') && !secret.contains('*'));
        if long_enough && plausible {
            let mut secrets = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
            secrets.insert(secret.to_string());
        }
    }

    fn remember_json(&self, body: &[u8]) {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        for member in SECRET_MEMBERS {
            if let Some(text) = value.get(member).and_then(serde_json::Value::as_str) {
                self.remember(text);
                // A challenge is `<user id>.<random part>`: the random part
                // alone is secret too (the user id is not).
                if member == "challenge"
                    && let Some((_, random)) = text.split_once('.')
                {
                    self.remember(random);
                }
            }
        }
        for member in SECRET_ARRAYS {
            if let Some(items) = value.get(member).and_then(serde_json::Value::as_array) {
                for text in items.iter().filter_map(serde_json::Value::as_str) {
                    self.remember(text);
                }
            }
        }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn call(&self, method: &str, path: &str) -> Call {
        Call {
            client: self.clone(),
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            cookies: Vec::new(),
            body: None,
        }
    }
}

/// A request being built; [`Call::send`] sends it (clone it to send it again).
#[derive(Clone)]
pub struct Call {
    client: Client,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    cookies: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Call {
    /// Adds a header (repeatable).
    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends a cookie (all cookies go in one `Cookie` header).
    pub fn cookie(mut self, name: &str, value: &str) -> Call {
        self.cookies.push((name.to_string(), value.to_string()));
        self
    }

    /// The access token as the `token` cookie.
    pub fn access_cookie(self, token: &str) -> Call {
        self.cookie("token", token)
    }

    /// The refresh token as the `refreshToken` cookie.
    pub fn refresh_cookie(self, token: &str) -> Call {
        self.cookie("refreshToken", token)
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Call {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, body: &serde_json::Value) -> Call {
        self.body("application/json", body.to_string().into_bytes())
    }

    /// A body with the given content type (empty: no `Content-Type`).
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Call {
        if !content_type.is_empty() {
            self.headers
                .push(("content-type".to_string(), content_type.to_string()));
        }
        self.body = Some(body);
        self
    }

    /// Sends the request; panics only if no HTTP answer came back at all.
    pub fn send(self) -> Reply {
        match self.try_send() {
            Ok(reply) => reply,
            Err(e) => panic!("{} {}: no HTTP answer: {e}", self.method, self.path),
        }
    }

    /// Sends the request; an error when no HTTP answer came back.
    pub fn try_send(&self) -> Result<Reply, String> {
        let client = &self.client;
        if let Some(body) = &self.body {
            client.remember_json(body);
        }
        for (_, value) in &self.cookies {
            client.remember(value);
        }
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("authorization") {
                client.remember(value.split_once(' ').map_or(value.as_str(), |(_, v)| v));
            }
        }
        let url = format!("{}{}", self.client.base, self.path);
        let mut builder = ureq::http::Request::builder()
            .method(self.method.as_str())
            .uri(&url);
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            builder = builder.header("cookie", cookie);
        }
        let response = match &self.body {
            Some(body) => builder
                .body(body.clone())
                .map_err(|e| e.to_string())
                .and_then(|req| self.client.agent.run(req).map_err(|e| e.to_string())),
            None => builder
                .body(())
                .map_err(|e| e.to_string())
                .and_then(|req| self.client.agent.run(req).map_err(|e| e.to_string())),
        }?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .read_to_vec()
            .map_err(|e| format!("reading the body: {e}"))?;
        let reply = Reply {
            status,
            headers,
            body,
        };
        for cookie in reply.set_cookies() {
            client.remember(&cookie.value);
        }
        client.remember_json(&reply.body);
        Ok(reply)
    }
}

/// A whole HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Lower-case names, in the order received (repeated headers repeated).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (showing the reply) if it is not.
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(value) => value,
            Err(e) => panic!("the body is not JSON ({e}): {self}"),
        }
    }

    /// Every `Set-Cookie`, parsed.
    pub fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers_named("set-cookie")
            .into_iter()
            .map(SetCookie::parse)
            .collect()
    }

    /// The `Set-Cookie` of one cookie; panics if there is not exactly one.
    pub fn set_cookie(&self, name: &str) -> SetCookie {
        let mut found: Vec<SetCookie> = self
            .set_cookies()
            .into_iter()
            .filter(|c| c.name == name)
            .collect();
        match found.len() {
            1 => found.remove(0),
            n => panic!("expected one Set-Cookie for {name}, got {n}: {self}"),
        }
    }

    /// Panics (showing the reply) unless the status is `status`.
    pub fn expect_status(&self, status: u16) -> &Reply {
        assert_eq!(self.status, status, "unexpected status: {self}");
        self
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        write!(f, "\n{}", self.text())
    }
}

/// One `Set-Cookie` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// Attributes with lower-case names (`httponly`, `max-age`...), values as sent.
    pub attributes: Vec<(String, String)>,
}

impl SetCookie {
    pub fn parse(header: &str) -> SetCookie {
        let mut parts = header.split(';');
        let (name, value) = parts
            .next()
            .and_then(|pair| pair.trim().split_once('='))
            .unwrap_or(("", ""));
        let attributes = parts
            .map(|attr| {
                let attr = attr.trim();
                match attr.split_once('=') {
                    Some((n, v)) => (n.trim().to_ascii_lowercase(), v.trim().to_string()),
                    None => (attr.to_ascii_lowercase(), String::new()),
                }
            })
            .collect();
        SetCookie {
            name: name.to_string(),
            value: value.to_string(),
            attributes,
        }
    }

    /// An attribute's value (`""` for flags), if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.attributes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Panics unless the cookie has the attributes every token cookie must
    /// have: HttpOnly, SameSite=Strict, Path=/, `Secure` exactly when
    /// `secure`, and `Max-Age=max_age`.
    pub fn assert_token_attributes(&self, secure: bool, max_age: i64) {
        assert!(self.attr("httponly").is_some(), "no HttpOnly: {self:?}");
        assert_eq!(self.attr("samesite"), Some("Strict"), "{self:?}");
        assert_eq!(self.attr("path"), Some("/"), "{self:?}");
        assert_eq!(self.attr("secure").is_some(), secure, "Secure: {self:?}");
        assert_eq!(
            self.attr("max-age"),
            Some(max_age.to_string().as_str()),
            "{self:?}"
        );
    }
}

/// Panics unless `reply` is an `application/problem+json` answer with
/// `status` carrying the RFC 9457 members and the old service's
/// `statusCode`/`error`/`message`, consistently; returns the body.
pub fn assert_problem(reply: &Reply, status: u16) -> serde_json::Value {
    assert_eq!(reply.status, status, "unexpected status: {reply}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json"),
        "not a problem: {reply}"
    );
    let body = reply.json();
    for member in ["type", "title", "detail", "error", "message"] {
        assert!(body[member].is_string(), "no string `{member}`: {reply}");
    }
    assert_eq!(body["status"], status, "{reply}");
    assert_eq!(body["statusCode"], status, "{reply}");
    assert_eq!(body["title"], body["error"], "{reply}");
    assert_eq!(body["detail"], body["message"], "{reply}");
    body
}

/// Panics unless `reply` carries the headers every answer of Latch carries.
pub fn assert_security_headers(reply: &Reply) {
    let expect = |name: &str, value: &str| {
        assert_eq!(reply.header(name), Some(value), "header {name}: {reply}");
    };
    expect("x-content-type-options", "nosniff");
    expect("x-frame-options", "DENY");
    expect("referrer-policy", "no-referrer");
    expect(
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    );
    expect("cross-origin-resource-policy", "same-origin");
    assert!(reply.header("cache-control").is_some(), "{reply}");
    assert!(
        reply
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty()),
        "{reply}"
    );
}

/// Sends raw bytes on a new connection and returns the status code of the
/// answer (0 if none could be parsed) and the whole answer as text. For
/// requests an HTTP client library refuses to produce.
pub(crate) fn raw_exchange(address: &str, request: &[u8]) -> (u16, String) {
    let mut stream = match TcpStream::connect(address) {
        Ok(stream) => stream,
        Err(e) => panic!("connecting to {address}: {e}"),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    if let Err(e) = stream.write_all(request) {
        // The server may answer and close before reading everything.
        eprintln!("raw request to {address}: write failed: {e}");
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// One kept-alive HTTP/1.1 connection, used one request at a time, as an
/// ingress controller uses its upstream connections. It writes each request
/// in one write and reads each answer whole (by `content-length`, or to the
/// last chunk), so what it times is the server's doing.
pub struct KeptAlive {
    stream: TcpStream,
    buffered: Vec<u8>,
}

/// An answer read from a [`KeptAlive`] connection.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl KeptAlive {
    pub fn connect(address: &str) -> KeptAlive {
        let stream = match TcpStream::connect(address) {
            Ok(stream) => stream,
            Err(e) => panic!("connecting to {address}: {e}"),
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        KeptAlive {
            stream,
            buffered: Vec::new(),
        }
    }

    /// Sends `GET path` with the extra header lines (`name: value`) and reads the answer.
    pub fn get(&mut self, path: &str, headers: &[&str]) -> RawReply {
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n");
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        if let Err(e) = self.stream.write_all(request.as_bytes()) {
            panic!("writing the request: {e}");
        }
        self.read_reply()
    }

    /// Reads until `have(buffered)` says how many bytes make up the item.
    fn fill_until(&mut self, have: impl Fn(&[u8]) -> Option<usize>) -> Vec<u8> {
        loop {
            if let Some(n) = have(&self.buffered) {
                return self.buffered.drain(..n).collect();
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "the server closed the connection mid-answer: {:?}",
                    String::from_utf8_lossy(&self.buffered)
                ),
                Ok(n) => self.buffered.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("reading the answer: {e}"),
            }
        }
    }

    fn read_reply(&mut self) -> RawReply {
        let head = self.fill_until(|b| b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4));
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = head
            .get(9..12)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {head:?}"));
        let header = |name: &str| {
            head.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_ascii_lowercase())
            })
        };
        let body = if let Some(length) = header("content-length") {
            let length: usize = length
                .parse()
                .unwrap_or_else(|_| panic!("bad content-length: {head:?}"));
            self.fill_until(|b| (b.len() >= length).then_some(length))
        } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let line =
                    self.fill_until(|b| b.windows(2).position(|w| w == b"\r\n").map(|i| i + 2));
                let size_text = String::from_utf8_lossy(&line);
                let size =
                    usize::from_str_radix(size_text.trim().split(';').next().unwrap_or(""), 16)
                        .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
                let chunk = self.fill_until(|b| (b.len() >= size + 2).then_some(size + 2));
                body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
            body
        } else {
            // 204, 304 and the like: no body.
            Vec::new()
        };
        RawReply { status, head, body }
    }
}
