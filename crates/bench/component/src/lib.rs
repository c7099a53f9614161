//! Benchmark component: hashes a password with Latch's argon2id parameters
//! on every request and answers with the time the hash took inside the
//! component, so wasm and native hashing can be compared directly.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(_req: Request) -> anyhow::Result<impl IntoResponse> {
    let password = latch_domain::Password::parse("correct horse battery")?;
    let started = std::time::Instant::now();
    let hash = latch_domain::hash_password(&password, [7; 16])?;
    let micros = started.elapsed().as_micros();
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(format!("{micros}\n{hash}\n"))
        .build())
}
