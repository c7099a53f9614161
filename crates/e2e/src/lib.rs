//! The harness of Latch's black-box API tests (`tests/*.rs`).
//!
//! Every test starts real processes and talks HTTP to them on loopback:
//! `latch up` serving the repository's `spin.toml` (the route components
//! built for `wasm32-wasip2`), or the real Spin's `spin up` when `SPIN`
//! names a `spin` binary (where the two runtimes legitimately differ, a test
//! says so through [`runtime`]), and for the SQLite Cloud backend the
//! `sqlitecloud-standin` with the schema applied by `latch migrate`. Nothing
//! is mocked: the tests see what a client sees, plus the database file and
//! the service's log, which they inspect to prove invariants.
//!
//! Build first (`scripts/e2e.sh` does it, then runs the tests):
//!
//! ```text
//! cargo build -p latch -p sqlitecloud-standin
//! cargo build --target wasm32-wasip2 --profile wasm -p route-<name>   # each components/<name>
//! ```
//!
//! `LATCH_BIN` and `STANDIN_BIN` override where the two binaries are found
//! (default: beside the test executable's profile directory, `target/debug`);
//! `LATCH_E2E_CACHE_DIR` where compiled components are cached (default
//! `target/e2e-cache`).
//!
//! The tests:
//! - `routes.rs`: every route's success and error answers;
//! - `admin.rs`: the admin API (admins made with [`Service::create_admin`]);
//! - `cross_cutting.rs`: error format, methods, bodies, garbage input,
//!   security headers, throttling by client address, races, audit, logs;
//! - `round_trips.rs`: database round trips per route (SQLite Cloud);
//! - `faults.rs`: every fault on every database request of every route;
//! - `enumeration_timing.rs`: sign-in timing, alone in its file;
//! - `recovery.rs`: account recovery and email verification, with a
//!   [`WebhookReceiver`] checking every message's signature;
//! - `recovery_timing.rs`: forgot's timing for known and unknown
//!   addresses, alone in its file;
//! - `mfa.rs`: the TOTP second factor (issue 14), codes computed by an
//!   [`Authenticator`] independent of Latch's own TOTP code.
//!
//! Cases of `routes.rs`, `admin.rs`, `recovery.rs`, `mfa.rs` and `cross_cutting.rs` are written once
//! and run on both backends ([`both_backends!`]). Every [`Service`] also checks, when
//! dropped, that its log holds none of the passwords, emails and tokens its
//! client sent or received, nor the tokens and secret of its email webhook.
//!
//! The harness panics with a message saying what failed (a test harness has
//! nobody to return an error to); it never leaves a process behind: every
//! process is owned by a guard that kills it on drop.

#![forbid(unsafe_code)]

mod client;
mod data;
mod mfa;
mod process;
mod webhook;

pub use client::{
    Call, KeptAlive, RawReply, Reply, SetCookie, assert_problem, assert_security_headers,
};
pub use data::{count, invariant_violations, open_database, throttle_key_for_email};
pub use mfa::{Authenticator, STEP_SECS, is_recovery_code};
pub use process::{
    Options, Runtime, STANDIN_API_KEY, Service, StandIn, Stream, latch_binary, repo_root, runtime,
    tokens_of,
};
pub use webhook::{Answer, Message, WEBHOOK_PATH, WebhookReceiver};

use std::sync::atomic::{AtomicU64, Ordering};

/// Where the service keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `db_type = sqlite`: the runner's embedded SQLite file.
    Embedded,
    /// `db_type = sqlitecloud`: the SQLite Cloud stand-in over HTTP.
    Cloud,
}

impl Backend {
    /// `"sqlite"` or `"sqlitecloud"` (the value of the `db_type` variable).
    pub fn db_type(self) -> &'static str {
        match self {
            Backend::Embedded => "sqlite",
            Backend::Cloud => "sqlitecloud",
        }
    }
}

/// Defines one `#[test]` per backend for each listed function taking a
/// [`Backend`]: `embedded::<name>` and `sqlitecloud::<name>`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::Backend::Embedded)
                }
            )+
        }
        mod sqlitecloud {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::Backend::Cloud)
                }
            )+
        }
    };
}

/// A fresh number, unique in this test process.
pub fn next_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh email address, unique across test processes (and so easy to
/// look for in logs): `<tag>-<pid>-<n>@e2e.example.com`.
pub fn unique_email(tag: &str) -> String {
    format!(
        "{tag}-{}-{}@e2e.example.com",
        std::process::id(),
        next_number()
    )
}

/// A fresh password that passes the rules (and is easy to look for in logs).
pub fn unique_password() -> String {
    format!("Pw-{}-{}-staple-battery", std::process::id(), next_number())
}

/// A signed-up account.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub password: String,
    pub full_name: String,
}

/// The tokens of one session, as the sign-in (or refresh) cookies carried them.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// The fixed Ed25519 seed the tests configure as `signing_key` in production mode.
pub const TEST_KEY_SEED: [u8; 32] = [7; 32];
/// Its key id.
pub const TEST_KEY_ID: &str = "e2e-2026-01";

/// `<kid>:<base64url seed>:<base64url public key>`, the `signing_key`
/// variable of production mode (the public key carried, as deployments
/// should; the seed-only form is the domain's unit tests' to cover).
pub fn test_signing_key() -> String {
    let public = ed25519_dalek::SigningKey::from_bytes(&TEST_KEY_SEED).verifying_key();
    format!(
        "{TEST_KEY_ID}:{}:{}",
        b64url_encode(&TEST_KEY_SEED),
        b64url_encode(public.as_bytes())
    )
}

/// Encodes unpadded base64url (key variables).
pub fn b64url_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url (JWT parts, JWK members).
pub fn b64url(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

/// The JSON header and payload of a JWT, without checking anything.
pub fn jwt_parts(token: &str) -> Option<(serde_json::Value, serde_json::Value)> {
    let mut parts = token.split('.');
    let header = serde_json::from_slice(&b64url(parts.next()?)?).ok()?;
    let payload = serde_json::from_slice(&b64url(parts.next()?)?).ok()?;
    Some((header, payload))
}

/// Whether `token`'s Ed25519 signature verifies with the JWK `jwk`
/// (`{"kty": "OKP", "crv": "Ed25519", "x": ...}`).
pub fn jwt_verifies_with(token: &str, jwk: &serde_json::Value) -> bool {
    let Some(x) = jwk["x"].as_str().and_then(b64url) else {
        return false;
    };
    let Ok(x) = <[u8; 32]>::try_from(x.as_slice()) else {
        return false;
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&x) else {
        return false;
    };
    let Some((signing_input, signature)) = token.rsplit_once('.') else {
        return false;
    };
    let Some(signature) = b64url(signature) else {
        return false;
    };
    let Ok(signature) = ed25519_dalek::Signature::from_slice(&signature) else {
        return false;
    };
    key.verify_strict(signing_input.as_bytes(), &signature)
        .is_ok()
}

/// Median of some durations, in milliseconds.
pub fn median_ms(samples: &[std::time::Duration]) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    match ms.len() {
        0 => 0.0,
        n if n % 2 == 1 => ms[n / 2],
        n => (ms[n / 2 - 1] + ms[n / 2]) / 2.0,
    }
}

/// The session id (`sid` claim) of an access token.
pub fn session_id_of(access_token: &str) -> String {
    jwt_parts(access_token)
        .and_then(|(_, payload)| payload["sid"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no sid in the access token"))
}

/// What the database stores for a refresh token: lower-case hex SHA-256 of
/// its 32 decoded bytes.
pub fn refresh_hash(refresh_token: &str) -> String {
    use sha2::Digest as _;
    let bytes = b64url(refresh_token).unwrap_or_else(|| panic!("refresh token is not base64url"));
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Unix time in seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Panics unless `reply` clears both token cookies (empty value, `Max-Age=0`,
/// an `Expires` in the past) with the attributes they were set with.
pub fn assert_cookies_cleared(reply: &Reply, secure: bool) {
    for name in ["token", "refreshToken"] {
        let cookie = reply.set_cookie(name);
        assert_eq!(cookie.value, "", "{name} not emptied: {reply}");
        cookie.assert_token_attributes(secure, 0);
        assert_eq!(
            cookie.attr("expires"),
            Some("Thu, 01 Jan 1970 00:00:00 GMT"),
            "{reply}"
        );
    }
}

/// Panics if `reply` sets any cookie.
pub fn assert_no_cookies(reply: &Reply) {
    assert!(
        reply.headers_named("set-cookie").is_empty(),
        "unexpected Set-Cookie: {reply}"
    );
}
