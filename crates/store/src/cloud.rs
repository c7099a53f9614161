//! SQLite Cloud over its HTTP API ("Weblite"), sent with Spin's outbound
//! HTTP, each request written whole before it is handed to the host
//! ([`latch_send::post`]: no Nagle stall on a kept-alive connection). Each call is one HTTP request: a single statement with positional
//! `bind` parameters, or a batch `BEGIN; ...; COMMIT; <read>` with parameters
//! inlined (binds across several statements are unconfirmed upstream), which
//! the gateway runs on one connection, stopping at the first error, so a
//! failure leaves nothing half-applied.

use std::time::Duration;

use latch_send::SendError;
use latch_weblite::{
    DatabaseUrl, WebliteError, batch_request_body, decode_response, single_request_body,
};
use spin_sdk::wit::wasi::http0_2_0::types::ErrorCode;

use crate::{Database, Rows, Statement, StoreError};

/// Largest response body read; a SELECT of this service returns a few KiB.
const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// A SQLite Cloud database reached over HTTPS (or HTTP on loopback).
pub struct SqliteCloud {
    url: DatabaseUrl,
    timeout: Duration,
}

impl SqliteCloud {
    pub fn new(url: DatabaseUrl, timeout: Duration) -> SqliteCloud {
        SqliteCloud { url, timeout }
    }

    /// The database URL without its credential, for logs.
    pub fn redacted_url(&self) -> String {
        self.url.redacted()
    }

    fn send(&self, body: Vec<u8>) -> Result<Rows, StoreError> {
        let (status, response) = post(&self.url, body, self.timeout)?;
        match decode_response(status, &response) {
            Ok(result) => Ok(Rows {
                columns: result.columns,
                rows: result.rows,
            }),
            Err(e) => Err(from_weblite(e)),
        }
    }
}

impl Database for SqliteCloud {
    async fn query(&self, statement: &Statement) -> Result<Rows, StoreError> {
        let body = single_request_body(self.url.database(), statement)
            .map_err(|e| StoreError::Query(e.to_string()))?;
        self.send(body)
    }

    async fn batch(
        &self,
        writes: &[Statement],
        then: Option<&Statement>,
    ) -> Result<Rows, StoreError> {
        // One write and nothing to read back: a single statement is atomic by itself.
        let body = match (writes, then) {
            ([only], None) => single_request_body(self.url.database(), only),
            ([], Some(read)) => single_request_body(self.url.database(), read),
            _ => batch_request_body(self.url.database(), writes, then),
        }
        .map_err(|e| StoreError::Query(e.to_string()))?;
        self.send(body)
    }

    fn backend(&self) -> &'static str {
        "sqlitecloud"
    }
}

fn from_weblite(error: WebliteError) -> StoreError {
    if error.is_unique_violation() {
        StoreError::Conflict(error.to_string())
    } else if error.is_unavailable() {
        StoreError::Unavailable(error.to_string())
    } else if error.to_string().contains("no such table") {
        // The schema is not there yet (migrations not applied): not ready, not a defect.
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Query(error.to_string())
    }
}

/// POSTs a JSON body to the database's SQL endpoint; returns status and body.
fn post(url: &DatabaseUrl, body: Vec<u8>, timeout: Duration) -> Result<(u16, Vec<u8>), StoreError> {
    let headers = [
        ("content-type".to_string(), b"application/json".to_vec()),
        ("accept".to_string(), b"application/json".to_vec()),
        (
            "authorization".to_string(),
            url.authorization_header().into_bytes(),
        ),
    ];
    match latch_send::post(&url.sql_url(), &headers, &body, timeout, MAX_RESPONSE_BYTES) {
        Ok(answer) => Ok((answer.status, answer.body)),
        Err(SendError::Http(code)) => Err(transport(code)),
        Err(e @ (SendError::BadUrl(_) | SendError::Header(_))) => {
            Err(StoreError::Misconfigured(e.to_string()))
        }
        Err(e @ (SendError::Stream(_) | SendError::TooLarge(_))) => {
            Err(unavailable(&e.to_string()))
        }
    }
}

fn unavailable(message: &str) -> StoreError {
    StoreError::Unavailable(message.to_string())
}

fn transport(code: ErrorCode) -> StoreError {
    let kind = match code {
        ErrorCode::HttpRequestDenied => {
            "outbound request denied: the database host is not in allowed_outbound_hosts (set database_origin)"
                .to_string()
        }
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTimeout => "connection timeout".into(),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => "response timeout".into(),
        ErrorCode::ConnectionTerminated => "connection terminated".into(),
        ErrorCode::DnsError(_) | ErrorCode::DnsTimeout => "DNS lookup failed".into(),
        ErrorCode::TlsProtocolError | ErrorCode::TlsCertificateError | ErrorCode::TlsAlertReceived(_) => {
            "TLS failure".into()
        }
        other => format!("{other:?}"),
    };
    StoreError::Unavailable(kind)
}
