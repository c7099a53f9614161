//! Sending whole HTTP messages from a route component.
//!
//! Spin 3.6.3 leaves Nagle's algorithm on for the sockets it serves and for the
//! connections it opens to other services. If a message's head goes out while
//! its body is still being written, the two leave in separate TCP segments, and
//! the second waits for the peer's delayed acknowledgement of the first: about
//! 40 ms on Linux, on every request of a kept-alive connection.
//!
//! So every message a component sends is written into the host's buffer and
//! finished, with `content-length`, before its head is handed to the host
//! ([`respond`] for responses, [`post`] for outgoing requests). The host then
//! has the whole message at once and writes it in one go. A body larger than
//! the host's buffer (2 MiB in wasmtime-wasi-http: two queued writes of at most
//! 1 MiB) cannot wait for a reader that does not exist yet: what does not fit is
//! written after the head is handed over, as the peer reads.

#![forbid(unsafe_code)]

use std::time::Duration;

use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::{
    ErrorCode, Fields, FutureIncomingResponse, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, RequestOptions, ResponseOutparam, Scheme,
};
use wasi::io::streams::{OutputStream, StreamError};

/// Why a message could not be sent (or its answer read).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The target URL is not `http(s)://authority/path`.
    #[error("`{0}` is not a valid request target")]
    BadUrl(String),
    /// The host refused a header (a forbidden name, or a value it cannot carry).
    #[error("header refused: {0}")]
    Header(String),
    /// The host or the network refused the exchange (`wasi:http` error code).
    #[error("{0:?}")]
    Http(ErrorCode),
    /// A body stream failed or closed early.
    #[error("{0}")]
    Stream(String),
    /// The answer's body is larger than the caller accepts.
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
}

fn stream_error(what: &str, error: StreamError) -> SendError {
    match error {
        StreamError::Closed => SendError::Stream(format!("{what}: the stream is closed")),
        StreamError::LastOperationFailed(e) => {
            SendError::Stream(format!("{what}: {}", e.to_debug_string()))
        }
    }
}

/// Writes as much of `bytes` as the host accepts without anybody reading
/// (never blocks); returns what is left.
fn write_buffered<'a>(stream: &OutputStream, bytes: &'a [u8]) -> Result<&'a [u8], SendError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let permitted = stream
            .check_write()
            .map_err(|e| stream_error("writing the body", e))?;
        if permitted == 0 {
            break;
        }
        let n = rest
            .len()
            .min(usize::try_from(permitted).unwrap_or(usize::MAX));
        stream
            .write(&rest[..n])
            .map_err(|e| stream_error("writing the body", e))?;
        rest = &rest[n..];
    }
    Ok(rest)
}

/// Writes all of `bytes`, waiting for the reader whenever the host's buffer is full.
fn write_waiting(stream: &OutputStream, bytes: &[u8]) -> Result<(), SendError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        stream.subscribe().block();
        rest = write_buffered(stream, rest)?;
    }
    Ok(())
}

/// Writes `bytes` into `body` and finishes it; `hand_over` passes the head to
/// the host: after the whole body when it fits the host's buffer (one write on
/// the wire), else as soon as the buffer is full.
fn write_whole<T>(
    body: OutgoingBody,
    bytes: &[u8],
    hand_over: impl FnOnce() -> Result<T, SendError>,
) -> Result<T, SendError> {
    let stream = body
        .write()
        .map_err(|()| SendError::Stream("the body stream was already taken".into()))?;
    let rest = write_buffered(&stream, bytes)?;
    if rest.is_empty() {
        // The stream must be gone before the body is finished.
        drop(stream);
        OutgoingBody::finish(body, None).map_err(SendError::Http)?;
        hand_over()
    } else {
        let handed = hand_over()?;
        write_waiting(&stream, rest)?;
        drop(stream);
        OutgoingBody::finish(body, None).map_err(SendError::Http)?;
        Ok(handed)
    }
}

fn fields(
    headers: &[(String, Vec<u8>)],
    content_length: Option<usize>,
) -> Result<Fields, SendError> {
    let mut entries = headers.to_vec();
    if let Some(length) = content_length {
        entries.retain(|(name, _)| !name.eq_ignore_ascii_case("content-length"));
        entries.push(("content-length".into(), length.to_string().into_bytes()));
    }
    Fields::from_list(&entries).map_err(|e| SendError::Header(format!("{e:?}")))
}

/// Sends a response whole. `content-length` is set from the body unless the
/// answer has no body by definition (`HEAD`, 1xx, 204, 304; `has_body` false),
/// where it would be wrong; a `content-length` among `headers` is replaced.
pub fn respond(
    out: ResponseOutparam,
    status: u16,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    has_body: bool,
) -> Result<(), SendError> {
    let length = has_body.then_some(body.len());
    let body = if has_body { body } else { &[] };
    let response = OutgoingResponse::new(fields(headers, length)?);
    response
        .set_status_code(status)
        .map_err(|()| SendError::Header(format!("status {status}")))?;
    let outgoing = response
        .body()
        .map_err(|()| SendError::Stream("the response body was already taken".into()))?;
    write_whole(outgoing, body, move || {
        ResponseOutparam::set(out, Ok(response));
        Ok(())
    })
}

/// An HTTP answer: status and whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// POSTs `body` whole to `url` (`http(s)://authority/path?query`) with
/// `content-length` and `headers`, and reads the answer, at most
/// `max_response_bytes` of it. `timeout` bounds connecting, the first byte
/// and each gap between bytes, where the host supports those options.
pub fn post(
    url: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    timeout: Duration,
    max_response_bytes: usize,
) -> Result<Answer, SendError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| SendError::BadUrl(redact(url)))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let scheme = match scheme {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return Err(SendError::BadUrl(redact(url))),
    };
    let request = OutgoingRequest::new(fields(headers, Some(body.len()))?);
    request
        .set_method(&Method::Post)
        .and(request.set_scheme(Some(&scheme)))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(path)))
        .map_err(|()| SendError::BadUrl(redact(url)))?;
    let options = RequestOptions::new();
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    // A host may refuse an option it does not support; the caller's own
    // deadline still holds then.
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));

    let outgoing = request
        .body()
        .map_err(|()| SendError::Stream("the request body was already taken".into()))?;
    let future = write_whole(outgoing, body, move || {
        outgoing_handler::handle(request, Some(options)).map_err(SendError::Http)
    })?;
    read_answer(&future, max_response_bytes)
}

/// Blocks the instance for `duration` (`wasi:clocks`), e.g. so that work
/// done after answering starts once the answer has left.
pub fn pause(duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    wasi::clocks::monotonic_clock::subscribe_duration(nanos).block();
}

/// Waits for the answer to a sent request and reads its whole body.
fn read_answer(future: &FutureIncomingResponse, max_bytes: usize) -> Result<Answer, SendError> {
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(SendError::Http(code)),
        Some(Err(())) | None => return Err(SendError::Stream("no response".into())),
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| SendError::Stream("the response body was already taken".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| SendError::Stream("the response body stream was already taken".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                body.extend_from_slice(&chunk);
                if body.len() > max_bytes {
                    return Err(SendError::TooLarge(max_bytes));
                }
            }
            Err(StreamError::Closed) => break,
            // A connection cut mid-answer ends here: nothing of it is trusted.
            Err(e) => return Err(stream_error("reading the response", e)),
        }
    }
    Ok(Answer { status, body })
}

/// `scheme://authority` of a URL: never its path or query, which may hold secrets.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or("");
            format!("{scheme}://{host}")
        }
        None => "<not a URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redaction_keeps_only_scheme_and_host() {
        assert_eq!(
            redact("https://user:secret@db.example.com:443/v2/x?apikey=k"),
            "https://db.example.com:443"
        );
        assert_eq!(redact("http://127.0.0.1:9/a"), "http://127.0.0.1:9");
        assert_eq!(redact("no url here"), "<not a URL>");
    }
}
