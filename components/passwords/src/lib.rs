//! Private: argon2id hashing for the routes that handle passwords, reached
//! only through Spin's service chaining (`http://passwords.spin.internal`,
//! `route = { private = true }` in spin.toml; never through the ingress).
//!
//! argon2id needs 19 MiB of memory, and a WebAssembly instance never gives
//! memory back before it ends. Done inside sign-in, the 19 MiB stayed with
//! every sign-in until its last database round trip, so a pod's memory grew
//! with the number of sign-ins in flight, and Spin has no limit on those. Here
//! the instance ends as soon as the hash is done: a pod holds at most one
//! hash's memory per thread that runs one (docs/hpa-testing.md).
//!
//! - `POST /hash {password}`: 200 `{hash}` (a PHC string, fresh random salt).
//! - `POST /verify {password, hash}`: 200 `{valid}`. A null `hash` is checked
//!   against a dummy hash so that the answer takes the same time (sign-in with
//!   an unknown email); it is never valid.
//!
//! The password rules are the caller's: `/hash` takes what the route accepted.

use latch_domain::{Password, hash_password, verify_password_or_dummy};
use latch_web::request::json_body;
use latch_web::{ApiError, Ctx, Method, Request, Response, response};
use serde::Deserialize;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};

#[derive(Deserialize)]
struct HashBody {
    password: String,
}

#[derive(Deserialize)]
struct VerifyBody {
    password: String,
    hash: Option<String>,
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    latch_web::run(req, out, "passwords (private)", &[Method::POST], passwords).await;
}

async fn passwords(_ctx: &Ctx, req: Request) -> Result<Response, ApiError> {
    match req.uri().path() {
        "/hash" => {
            let body: HashBody = json_body(&req)?;
            let password = Password::parse(&body.password)?;
            let hash = hash_password(&password, latch_web::random()?)?;
            Ok(response::json(200, &serde_json::json!({ "hash": hash })))
        }
        "/verify" => {
            let body: VerifyBody = json_body(&req)?;
            let valid = verify_password_or_dummy(&body.password, body.hash.as_deref());
            Ok(response::json(200, &serde_json::json!({ "valid": valid })))
        }
        _ => Err(ApiError::NotFound("no such operation")),
    }
}
