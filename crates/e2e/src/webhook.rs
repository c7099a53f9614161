//! The email webhook's far end: a loopback HTTP/1.1 server that receives
//! what Latch sends to `email_webhook_url` (recovery and verification
//! messages), checks each request's Standard Webhooks signature, and keeps
//! the messages for the tests to wait on.
//!
//! The signature is checked with the `standardwebhooks` crate, the
//! specification's own reference library, and not with Latch's signing code
//! (crates/domain): a test that verified with the code under test would pass
//! whatever that code got wrong, as long as it got it wrong both ways. A
//! request whose signature does not verify is answered 401 and counted.
//!
//! A receiver can be told to answer every request with another status (500:
//! a broken relay), to hold requests unanswered (a hung relay), or to go
//! down (its port closed, kept-alive connections cut) and come back up on
//! the same port.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::Secrets;

/// The path messages are POSTed to (`email_webhook_url` is the origin and this).
pub const WEBHOOK_PATH: &str = "/hooks/email";

/// Largest request body accepted (a message is well under 2 KiB).
const MAX_BODY: usize = 1024 * 1024;
/// How long an idle kept-alive connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a held ("hung") request is held at most.
const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 204 to a verified message, 401 to any other.
    Accept,
    /// This status to every request (after recording it).
    Status(u16),
    /// No answer: the request is read, recorded and held until the service
    /// gives up (or the receiver's answer changes, or [`HOLD_LIMIT`]).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Message {
    /// Request headers, lower-case names, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as sent.
    pub raw: Vec<u8>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: serde_json::Value,
    /// Whether the signature verified with the receiver's secret.
    pub verified: bool,
    /// What the receiver answered (0: held, no answer).
    pub answered: u16,
    /// A repeat of a message already delivered (the same `webhook-id`):
    /// receivers deduplicate, as the specification asks, and so does this one.
    pub duplicate: bool,
    /// When it arrived.
    pub at: Instant,
}

impl Message {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body's `data` object.
    pub fn data(&self) -> &serde_json::Value {
        &self.body["data"]
    }

    fn data_str(&self, member: &str) -> &str {
        self.data()[member].as_str().unwrap_or("")
    }

    /// `data.kind`: `recovery` or `verification`.
    pub fn kind(&self) -> &str {
        self.data_str("kind")
    }

    /// `data.to`: the recipient.
    pub fn to(&self) -> &str {
        self.data_str("to")
    }

    /// `data.token`.
    pub fn token(&self) -> &str {
        self.data_str("token")
    }

    /// `data.link`.
    pub fn link(&self) -> &str {
        self.data_str("link")
    }

    /// Verifies the request's signature with `secret` (`whsec_...`), by the
    /// independent implementation, as a relay holding that secret would.
    pub fn verify_with(&self, secret: &str) -> Result<(), String> {
        verify(secret, &self.headers, &self.raw)
    }

    fn is(&self, kind: &str, to: &str) -> bool {
        self.kind() == kind && self.to().eq_ignore_ascii_case(to)
    }

    /// Verified, answered 2xx, and not a repeat.
    fn delivered(&self) -> bool {
        self.verified && (200..300).contains(&self.answered) && !self.duplicate
    }
}

/// Checks a Standard Webhooks signature with the `standardwebhooks` crate.
fn verify(secret: &str, headers: &[(String, String)], body: &[u8]) -> Result<(), String> {
    let webhook = standardwebhooks::Webhook::new(secret).map_err(|e| format!("secret: {e}"))?;
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) else {
            return Err(format!("unusable header {name}: {value}"));
        };
        map.append(name, value);
    }
    webhook.verify(body, &map).map_err(|e| e.to_string())
}

#[derive(Default)]
struct State {
    received: Vec<Message>,
    /// Bumped whenever the answer changes (wakes held requests).
    generation: u64,
}

struct Shared {
    secret: String,
    state: Mutex<State>,
    changed: Condvar,
    answer: Mutex<Answer>,
    /// Open connections (clones, so going down can cut them), by number.
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
    /// The leak checks of the services this receiver serves.
    sinks: Mutex<Vec<Secrets>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The secrets a message carries: its token (and so its link).
    fn secrets_of(message: &Message) -> Vec<String> {
        [message.token(), message.link()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn record(&self, mut message: Message) {
        let secrets = Shared::secrets_of(&message);
        for sink in lock(&self.sinks).iter() {
            lock(sink).extend(secrets.iter().cloned());
        }
        let mut state = lock(&self.state);
        let id = message.header("webhook-id").unwrap_or("").to_string();
        message.duplicate = !id.is_empty()
            && state
                .received
                .iter()
                .any(|m| m.delivered() && m.header("webhook-id") == Some(id.as_str()));
        state.received.push(message);
        drop(state);
        self.changed.notify_all();
    }

    fn answer(&self) -> Answer {
        *lock(&self.answer)
    }
}

/// A listening accept loop.
struct Listening {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// A loopback webhook receiver (see the module's documentation). Dropping
/// it stops it.
pub struct WebhookReceiver {
    port: u16,
    shared: Arc<Shared>,
    listening: Mutex<Option<Listening>>,
}

/// A handle the service options keep, so the service's leak check learns
/// the tokens this receiver gets.
#[derive(Clone)]
pub(crate) struct ReceiverLink(Arc<Shared>);

impl std::fmt::Debug for ReceiverLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookReceiver")
    }
}

impl ReceiverLink {
    /// From now on, `secrets` holds every token this receiver gets (and
    /// those it got); and the receiver's secret.
    pub(crate) fn attach(&self, secrets: &Secrets) {
        let shared = &self.0;
        {
            let mut set = lock(secrets);
            set.extend(secret_forms(&shared.secret));
            for message in &lock(&shared.state).received {
                set.extend(Shared::secrets_of(message));
            }
        }
        lock(&shared.sinks).push(secrets.clone());
    }
}

/// A webhook secret and its key part (either in a log is a leak).
pub(crate) fn secret_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    if let Some(key) = secret.strip_prefix("whsec_") {
        forms.push(key.to_string());
    }
    forms.retain(|s| !s.is_empty());
    forms
}

impl WebhookReceiver {
    /// A fresh `whsec_<base64 of 32 random bytes>` secret.
    pub fn random_secret() -> String {
        use base64::Engine as _;
        let key: [u8; 32] = rand::random();
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    /// A receiver with a random secret, answering [`Answer::Accept`].
    pub fn start() -> WebhookReceiver {
        WebhookReceiver::with_secret(&WebhookReceiver::random_secret())
    }

    /// A receiver verifying with `secret` (`whsec_<base64>`).
    pub fn with_secret(secret: &str) -> WebhookReceiver {
        if let Err(e) = standardwebhooks::Webhook::new(secret) {
            panic!("not a webhook secret ({e}): {secret}");
        }
        let listener = match TcpListener::bind("127.0.0.1:0") {
            Ok(listener) => listener,
            Err(e) => panic!("binding the webhook receiver: {e}"),
        };
        let port = match listener.local_addr() {
            Ok(address) => address.port(),
            Err(e) => panic!("the webhook receiver's address: {e}"),
        };
        let shared = Arc::new(Shared {
            secret: secret.to_string(),
            state: Mutex::default(),
            changed: Condvar::new(),
            answer: Mutex::new(Answer::Accept),
            connections: Mutex::default(),
            next_connection: AtomicU64::new(0),
            sinks: Mutex::default(),
        });
        let receiver = WebhookReceiver {
            port,
            shared,
            listening: Mutex::new(None),
        };
        *lock(&receiver.listening) = Some(receiver.listen(listener));
        receiver
    }

    fn listen(&self, listener: TcpListener) -> Listening {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = self.shared.clone();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Acquire) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve_connection(&shared, stream));
            }
        });
        Listening { stop, thread }
    }

    pub(crate) fn link(&self) -> ReceiverLink {
        ReceiverLink(self.shared.clone())
    }

    /// The secret it verifies with.
    pub fn secret(&self) -> &str {
        &self.shared.secret
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` (the service's `email_webhook_origin`).
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/hooks/email` (the service's `email_webhook_url`).
    pub fn url(&self) -> String {
        format!("{}{WEBHOOK_PATH}", self.origin())
    }

    /// Changes how requests are answered from now on.
    pub fn set_answer(&self, answer: Answer) {
        *lock(&self.shared.answer) = answer;
        lock(&self.shared.state).generation += 1;
        self.shared.changed.notify_all();
    }

    /// Closes the port and cuts every open connection: deliveries fail to
    /// connect. [`WebhookReceiver::go_up`] opens the same port again.
    pub fn go_down(&self) {
        self.stop();
        // Nothing accepts there any more.
        let refused = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(2),
        );
        assert!(refused.is_err(), "port {} still accepts", self.port);
    }

    fn stop(&self) {
        let listening = lock(&self.listening).take();
        if let Some(Listening { stop, thread }) = listening {
            stop.store(true, Ordering::Release);
            // Wake the accept loop, which then drops the listener.
            let _ = TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], self.port)),
                Duration::from_secs(2),
            );
            let _ = thread.join();
        }
        for (_, stream) in lock(&self.shared.connections).drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Release held requests (their connections are cut anyway).
        lock(&self.shared.state).generation += 1;
        self.shared.changed.notify_all();
    }

    /// Listens on the same port again after [`WebhookReceiver::go_down`].
    pub fn go_up(&self) {
        let mut listening = lock(&self.listening);
        if listening.is_some() {
            return;
        }
        let listener = match TcpListener::bind(("127.0.0.1", self.port)) {
            Ok(listener) => listener,
            Err(e) => panic!("re-binding the webhook receiver's port {}: {e}", self.port),
        };
        *listening = Some(self.listen(listener));
    }

    /// Every request received so far, in arrival order.
    pub fn received(&self) -> Vec<Message> {
        lock(&self.shared.state).received.clone()
    }

    /// The delivered messages: verified, answered 2xx, and not repeats of
    /// an earlier one (by `webhook-id`).
    pub fn messages(&self) -> Vec<Message> {
        self.received()
            .into_iter()
            .filter(Message::delivered)
            .collect()
    }

    /// The requests whose signature did not verify.
    pub fn rejected(&self) -> Vec<Message> {
        self.received()
            .into_iter()
            .filter(|m| !m.verified)
            .collect()
    }

    /// Waits until `predicate` holds for the requests received; returns them.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&[Message]) -> bool,
    ) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.shared.state);
        loop {
            if predicate(&state.received) {
                return state.received.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "the webhook receiver got no {what} within {timeout:?}; it got: {:#?}",
                    state
                        .received
                        .iter()
                        .map(|m| (m.answered, m.verified, m.body.clone()))
                        .collect::<Vec<_>>()
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until at least `n` messages of `kind` to `to` were delivered;
    /// returns them all (oldest first).
    pub fn wait_for_count(
        &self,
        kind: &str,
        to: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Message> {
        let delivered = |m: &Message| m.delivered() && m.is(kind, to);
        self.wait_until(&format!("{n} x {kind} to {to}"), timeout, |all| {
            all.iter().filter(|m| delivered(m)).count() >= n
        })
        .into_iter()
        .filter(delivered)
        .collect()
    }

    /// Waits until a message of `kind` (`recovery`, `verification`) to `to`
    /// was delivered; returns the newest such message. (After sending a
    /// second one, wait with [`WebhookReceiver::wait_for_count`].)
    pub fn wait_for(&self, kind: &str, to: &str, timeout: Duration) -> Message {
        let mut all = self.wait_for_count(kind, to, 1, timeout);
        match all.pop() {
            Some(message) => message,
            None => panic!("no {kind} message to {to}"),
        }
    }

    /// Waits until at least `n` requests arrived (whatever was answered).
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Message> {
        self.wait_until(&format!("{n} requests"), timeout, |all| all.len() >= n)
    }

    /// Panics if, within `window` from now, a request of `kind` about `to`
    /// arrives (or already arrived); for flows that must send nothing.
    pub fn assert_nothing_for(&self, kind: &str, to: &str, window: Duration) {
        let about = |all: &[Message]| -> Vec<serde_json::Value> {
            all.iter()
                .filter(|m| m.is(kind, to))
                .map(|m| m.body.clone())
                .collect()
        };
        std::thread::sleep(window);
        let found = about(&lock(&self.shared.state).received);
        assert!(found.is_empty(), "{kind} messages to {to}: {found:#?}");
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A parsed request head.
struct Head {
    method: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request head; `None` at the end of the connection.
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Head> {
    let mut line = String::new();
    // Tolerate empty lines before a request (RFC 9112, 2.2).
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) if line.trim().is_empty() => continue,
            Ok(_) => break,
        }
    }
    let method = line.split_whitespace().next()?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Some(Head { method, headers })
}

/// Reads a request body (by `content-length`, or chunked).
fn read_body(reader: &mut BufReader<TcpStream>, head: &Head) -> Option<Vec<u8>> {
    if head
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line).ok()?;
            let size =
                usize::from_str_radix(size_line.trim().split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut trailer = String::new();
                    if reader.read_line(&mut trailer).ok()? == 0 || trailer.trim().is_empty() {
                        return Some(body);
                    }
                }
            }
            if body.len() + size > MAX_BODY {
                return None;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let length: usize = match head.header("content-length") {
        Some(length) => length.parse().ok()?,
        None => 0,
    };
    if length > MAX_BODY {
        return None;
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn respond(stream: &mut TcpStream, status: u16, body: &str) -> bool {
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).is_ok()
        && stream.write_all(body.as_bytes()).is_ok()
        && stream.flush().is_ok()
}

/// Serves one connection, request after request (HTTP/1.1 keep-alive: the
/// runner's outbound client pools its connections).
fn serve_connection(shared: &Arc<Shared>, stream: TcpStream) {
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let (Ok(mut writer), Ok(reader_stream), Ok(kept)) =
        (stream.try_clone(), stream.try_clone(), stream.try_clone())
    else {
        return;
    };
    lock(&shared.connections).insert(id, kept);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let mut reader = BufReader::new(reader_stream);
    while let Some(head) = read_head(&mut reader) {
        if head
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
            && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            break;
        }
        let Some(raw) = read_body(&mut reader, &head) else {
            let _ = respond(&mut writer, 400, r#"{"error":"unreadable request"}"#);
            break;
        };
        if head.method != "POST" {
            if !respond(&mut writer, 405, r#"{"error":"POST only"}"#) {
                break;
            }
            continue;
        }
        let verified = verify(&shared.secret, &head.headers, &raw).is_ok();
        let answer = shared.answer();
        let status = match answer {
            Answer::Accept if verified => 204,
            Answer::Accept => 401,
            Answer::Status(status) => status,
            Answer::Hang => 0,
        };
        let body = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
        shared.record(Message {
            headers: head.headers.clone(),
            raw,
            body,
            verified,
            answered: status,
            duplicate: false,
            at: Instant::now(),
        });
        if answer == Answer::Hang {
            hold(shared);
            break;
        }
        let text = if status == 401 {
            r#"{"error":"signature does not verify"}"#
        } else {
            ""
        };
        if !respond(&mut writer, status, text) {
            break;
        }
        if head
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    lock(&shared.connections).remove(&id);
}

/// Holds a request unanswered until the receiver's answer changes (or
/// [`HOLD_LIMIT`]); the connection is then closed without an answer.
fn hold(shared: &Shared) {
    let deadline = Instant::now() + HOLD_LIMIT;
    let mut state = lock(&shared.state);
    let generation = state.generation;
    while state.generation == generation {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        state = shared
            .changed
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn post(
        receiver: &WebhookReceiver,
        headers: &[(&str, String)],
        body: &str,
    ) -> Result<u16, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent
            .post(receiver.url())
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        request
            .send(body.as_bytes())
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }

    fn signed(secret: &str, id: &str, body: &str) -> Vec<(&'static str, String)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signature = standardwebhooks::Webhook::new(secret)
            .unwrap()
            .sign(id, now, body.as_bytes())
            .unwrap();
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", signature),
        ]
    }

    const BODY: &str = r#"{"type":"email.recovery","data":{"kind":"recovery","to":"a@example.com","token":"tok-123456789"}}"#;

    #[test]
    fn verifies_rejects_fails_and_goes_down_and_up() {
        let receiver = WebhookReceiver::start();
        let secret = receiver.secret().to_string();

        // A good signature is delivered.
        assert_eq!(
            post(&receiver, &signed(&secret, "msg_1", BODY), BODY),
            Ok(204)
        );
        let message = receiver.wait_for("recovery", "A@example.com", Duration::from_secs(5));
        assert_eq!(message.token(), "tok-123456789");
        assert!(message.verify_with(&secret).is_ok());
        // A repeat of the same webhook-id is answered but not delivered twice.
        assert_eq!(
            post(&receiver, &signed(&secret, "msg_1", BODY), BODY),
            Ok(204)
        );
        assert!(receiver.received()[1].duplicate);
        assert_eq!(receiver.messages().len(), 1);

        // Another secret, a changed body, no signature: 401, counted, not delivered.
        let other = WebhookReceiver::random_secret();
        assert_ne!(other, secret);
        assert_eq!(
            post(&receiver, &signed(&other, "msg_2", BODY), BODY),
            Ok(401)
        );
        let tampered = BODY.replace("a@example", "b@example");
        assert_eq!(
            post(&receiver, &signed(&secret, "msg_3", BODY), &tampered),
            Ok(401)
        );
        assert_eq!(post(&receiver, &[], BODY), Ok(401));
        assert_eq!(receiver.rejected().len(), 3);
        assert_eq!(receiver.messages().len(), 1);
        assert!(receiver.rejected()[0].verify_with(&other).is_ok());

        // Told to fail: 500, recorded, not delivered.
        receiver.set_answer(Answer::Status(500));
        assert_eq!(
            post(&receiver, &signed(&secret, "msg_4", BODY), BODY),
            Ok(500)
        );
        assert_eq!(receiver.received().len(), 6);
        assert_eq!(receiver.messages().len(), 1);
        receiver.set_answer(Answer::Accept);

        // Down: refused; up again: delivered.
        receiver.go_down();
        assert!(post(&receiver, &signed(&secret, "msg_5", BODY), BODY).is_err());
        receiver.go_up();
        assert_eq!(
            post(&receiver, &signed(&secret, "msg_6", BODY), BODY),
            Ok(204)
        );
        assert_eq!(
            receiver
                .wait_for_count("recovery", "a@example.com", 2, Duration::from_secs(5))
                .len(),
            2
        );
    }

    #[test]
    fn a_hung_answer_is_released_when_the_answer_changes() {
        let receiver = WebhookReceiver::start();
        let secret = receiver.secret().to_string();
        receiver.set_answer(Answer::Hang);
        let headers = signed(&secret, "msg_1", BODY);
        let url_receiver = &receiver;
        std::thread::scope(|scope| {
            let pending = scope.spawn(|| post(url_receiver, &headers, BODY));
            receiver.wait_for_requests(1, Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(200));
            assert!(!pending.is_finished(), "a held request was answered");
            receiver.set_answer(Answer::Accept);
            // Released without an answer.
            assert!(pending.join().unwrap().is_err());
        });
    }
}
