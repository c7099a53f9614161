//! argon2id work, done by the private `passwords` component through Spin's
//! service chaining, so the 19 MiB a hash needs lives in an instance that
//! ends as soon as the hash is done (see `components/passwords`). Routes that
//! call these must list `http://passwords.spin.internal` in their
//! `allowed_outbound_hosts`.

use std::time::Duration;

use latch_domain::Password;
use serde::Deserialize;

use crate::ApiError;

/// Where the component answers (`<component id>.spin.internal`).
const PASSWORDS: &str = "http://passwords.spin.internal";
/// A hash takes tens of milliseconds; this bounds a stuck call.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Its answers are a few hundred bytes.
const MAX_ANSWER: usize = 4096;

fn unavailable(reason: String) -> ApiError {
    ApiError::Unavailable {
        reason,
        kind: "password_hasher",
    }
}

fn call<T: serde::de::DeserializeOwned>(
    operation: &str,
    body: &serde_json::Value,
) -> Result<T, ApiError> {
    let body =
        serde_json::to_vec(body).map_err(|_| ApiError::Internal("encoding a hash request"))?;
    let headers = [("content-type".to_string(), b"application/json".to_vec())];
    let answer = latch_send::post(
        &format!("{PASSWORDS}/{operation}"),
        &headers,
        &body,
        TIMEOUT,
        MAX_ANSWER,
    )
    .map_err(|e| unavailable(format!("password hasher ({operation}): {e}")))?;
    if answer.status != 200 {
        return Err(unavailable(format!(
            "password hasher ({operation}) answered {}",
            answer.status
        )));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|_| unavailable(format!("password hasher ({operation}): unreadable answer")))
}

/// A PHC string of `password` with a fresh random salt.
pub fn hash(password: &Password) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    struct Hashed {
        hash: String,
    }
    let hashed: Hashed = call(
        "hash",
        &serde_json::json!({ "password": password.expose() }),
    )?;
    Ok(hashed.hash)
}

/// Whether `candidate` matches `phc`; with no `phc` (an unknown account) the
/// same work is done against a dummy hash and the answer is `false`.
pub fn verify(candidate: &str, phc: Option<&str>) -> Result<bool, ApiError> {
    #[derive(Deserialize)]
    struct Verified {
        valid: bool,
    }
    let verified: Verified = call(
        "verify",
        &serde_json::json!({ "password": candidate, "hash": phc }),
    )?;
    Ok(verified.valid)
}
