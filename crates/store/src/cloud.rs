//! SQLite Cloud over its HTTP API ("Weblite"), sent with Spin's outbound
//! HTTP. Each call is one HTTP request: a single statement with positional
//! `bind` parameters, or a batch `BEGIN; ...; COMMIT; <read>` with parameters
//! inlined (binds across several statements are unconfirmed upstream), which
//! the gateway runs on one connection, stopping at the first error, so a
//! failure leaves nothing half-applied.

use std::time::Duration;

use latch_weblite::{
    DatabaseUrl, WebliteError, batch_request_body, decode_response, single_request_body,
};
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};

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
    let target = url.sql_url();
    let (scheme, rest) = target
        .split_once("://")
        .ok_or_else(|| StoreError::Misconfigured("database URL has no scheme".into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"application/json".to_vec()),
        ("accept".to_string(), b"application/json".to_vec()),
        (
            "authorization".to_string(),
            url.authorization_header().into_bytes(),
        ),
        (
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ),
    ])
    .map_err(|e| StoreError::Misconfigured(format!("request headers: {e:?}")))?;
    let request = OutgoingRequest::new(headers);
    let scheme = match scheme {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => {
            return Err(StoreError::Misconfigured(format!(
                "unsupported scheme `{other}`"
            )));
        }
    };
    let set = request
        .set_method(&Method::Post)
        .and(request.set_scheme(Some(&scheme)))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(path)));
    set.map_err(|()| {
        StoreError::Misconfigured("database URL is not a valid request target".into())
    })?;

    let outgoing_body = request
        .body()
        .map_err(|()| unavailable("request body already taken"))?;
    let options = RequestOptions::new();
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    // Unsupported options are refused by some hosts; the overall deadline
    // below still holds then.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));

    let future = outgoing_handler::handle(request, Some(options)).map_err(transport)?;
    {
        let stream = outgoing_body
            .write()
            .map_err(|()| unavailable("request body stream unavailable"))?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| unavailable(&format!("sending the request: {e:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing_body, None).map_err(transport)?;

    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(transport(code)),
        Some(Err(())) | None => return Err(unavailable("no response")),
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| unavailable("response body unavailable"))?;
    let stream = incoming
        .stream()
        .map_err(|()| unavailable("response body stream unavailable"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_RESPONSE_BYTES {
                    return Err(unavailable("response too large"));
                }
            }
            Err(wasi::io::streams::StreamError::Closed) => break,
            // A connection cut mid-response ends here: nothing is trusted from it.
            Err(e) => return Err(unavailable(&format!("reading the response: {e:?}"))),
        }
    }
    Ok((status, bytes))
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
