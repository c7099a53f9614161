//! HTTP routing: the Weblite endpoints, faults, and the control API.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use rusqlite::types::Value as SqlValue;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::config::{Dialect, DialectUpdate, ErrorFormat, RowShape};
use crate::engine::{self, EngineError};
use crate::faults::{FaultKind, FaultSpec, Ledger, When};
use crate::render;

/// Request bodies above this are refused (the gateway has a limit too).
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

/// How long a cut response waits, after flushing its partial body, before
/// closing: long enough for the bytes to leave, short enough for tests.
const CUT_DELAY: Duration = Duration::from_millis(50);

const PAUSED_MESSAGE: &str = "Your free node has been paused due to inactivity. \
     Resume it from the SQLite Cloud dashboard to continue using it.";

/// The stand-in's own error codes (SQLite Cloud's range, 10000-99999). The
/// real gateway's codes are not documented; these only need to be in range.
mod code {
    pub const BAD_REQUEST: i64 = 10001;
    pub const DATABASE_NOT_FOUND: i64 = 10002;
    pub const BIND_WITH_SEVERAL_STATEMENTS: i64 = 10003;
    pub const DATABASE_EXISTS: i64 = 10004;
    pub const INVALID_DATABASE_NAME: i64 = 10005;
    pub const UNAUTHORIZED: i64 = 10006;
    pub const INTERNAL: i64 = 10008;
    pub const NOT_FOUND: i64 = 10009;
}

pub struct State {
    data_dir: PathBuf,
    api_key: String,
    dialect: Mutex<Dialect>,
    ledger: Mutex<Ledger>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub fn new(data_dir: PathBuf, api_key: String, dialect: Dialect) -> Self {
        State {
            data_dir,
            api_key,
            dialect: Mutex::new(dialect),
            ledger: Mutex::new(Ledger::default()),
        }
    }

    fn dialect(&self) -> Dialect {
        *lock(&self.dialect)
    }

    /// `Bearer <api-key>`, or the connection string as the bearer value:
    /// `Bearer sqlitecloud://host:port?apikey=<api-key>`.
    fn is_authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some((scheme, credential)) = value.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let credential = credential.trim();
        let key = match credential.strip_prefix("sqlitecloud://") {
            Some(rest) => rest
                .split_once('?')
                .and_then(|(_, query)| query_param(query, "apikey", false)),
            None => Some(credential.to_owned()),
        };
        key.is_some_and(|k| k == self.api_key)
    }
}

/// The body of every response: complete, or cut off mid-way.
pub enum ResponseBody {
    Full(Option<Bytes>),
    /// Sends `head`, waits, then fails, which makes hyper drop the
    /// connection before the announced Content-Length is reached.
    Cut {
        head: Option<Bytes>,
        close_after: Pin<Box<Sleep>>,
    },
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            ResponseBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResponseBody::Cut { head, close_after } => {
                if let Some(head) = head.take() {
                    return Poll::Ready(Some(Ok(Frame::data(head))));
                }
                match close_after.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the stand-in cut this response on purpose",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(Some(data)) => SizeHint::with_exact(data.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Cut { .. } => SizeHint::default(),
        }
    }
}

pub fn spawn_connection(
    graceful: &GracefulShutdown,
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(route(state, peer, request).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        // Cut responses end their connection with an error on purpose.
        if let Err(err) = connection.await {
            tracing::debug!(%peer, %err, "connection closed with an error");
        }
    });
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Full(Some(Bytes::from(body))));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn json_response(status: u16, body: Vec<u8>) -> Response<ResponseBody> {
    respond(status, "application/json", body)
}

fn error_response(
    format: ErrorFormat,
    status: u16,
    code: Option<i64>,
    detail: &str,
) -> Response<ResponseBody> {
    json_response(status, render::error_body(format, status, code, detail, -1))
}

async fn route(
    state: Arc<State>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    tracing::debug!(%peer, %method, %path, "request");
    if path.starts_with("/__standin/") {
        return control(&state, peer, request).await;
    }
    let format = state.dialect().errors;
    match (method, path.as_str()) {
        (Method::GET, "/v2/health") => json_response(
            200,
            json!({"data": {"status": "ok", "service": "sqlitecloud-standin"}})
                .to_string()
                .into_bytes(),
        ),
        (_, "/v2/weblite/sql") => sql(&state, request).await,
        (_, p) if p.starts_with("/v2/") => {
            if !state.is_authorized(request.headers()) {
                return unauthorized(format);
            }
            databases(&state, request).await
        }
        _ => error_response(format, 404, Some(code::NOT_FOUND), "no such endpoint"),
    }
}

fn unauthorized(format: ErrorFormat) -> Response<ResponseBody> {
    error_response(
        format,
        401,
        Some(code::UNAUTHORIZED),
        "missing or invalid API key",
    )
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, String> {
    Limited::new(request.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|err| format!("could not read the request body: {err}"))
}

/// A parsed SQL request.
struct SqlRequest {
    sql: String,
    database: Option<String>,
    bind: Vec<SqlValue>,
    row: Option<RowShape>,
}

fn row_shape(value: &str) -> Result<RowShape, String> {
    match value {
        "array" | "arrays" => Ok(RowShape::Arrays),
        "dictionary" | "object" | "objects" => Ok(RowShape::Objects),
        other => Err(format!(
            "row must be \"array\" or \"dictionary\", not {other:?}"
        )),
    }
}

fn bind_value(value: &serde_json::Value) -> Result<SqlValue, String> {
    Ok(match value {
        serde_json::Value::Null => SqlValue::Null,
        serde_json::Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => SqlValue::Text(s.clone()),
        _ => return Err("bind values must be null, booleans, numbers or strings".to_owned()),
    })
}

fn parse_post(body: &[u8]) -> Result<SqlRequest, String> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| format!("the body is not JSON: {err}"))?;
    let object = json.as_object().ok_or("the body must be a JSON object")?;
    let sql = object
        .get("sql")
        .and_then(serde_json::Value::as_str)
        .ok_or("sql (a string) is required")?
        .to_owned();
    let database = match object.get("database") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(name)) => Some(name.clone()),
        Some(_) => return Err("database must be a string".to_owned()),
    };
    let bind = match object.get("bind") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(values)) => {
            values.iter().map(bind_value).collect::<Result<_, _>>()?
        }
        Some(_) => return Err("bind must be an array".to_owned()),
    };
    let row = match object.get("row") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(shape)) => Some(row_shape(shape)?),
        Some(_) => return Err("row must be a string".to_owned()),
    };
    Ok(SqlRequest {
        sql,
        database,
        bind,
        row,
    })
}

fn parse_get(query: &str) -> Result<SqlRequest, String> {
    let sql = query_param(query, "sql", true).ok_or("the sql query parameter is required")?;
    let row = query_param(query, "row", true)
        .map(|shape| row_shape(&shape))
        .transpose()?;
    Ok(SqlRequest {
        sql,
        database: query_param(query, "database", true),
        bind: Vec::new(),
        row,
    })
}

/// The first value of `name` in a query string, percent-decoded.
fn query_param(query: &str, name: &str, plus_is_space: bool) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| percent_decode(key, plus_is_space).as_deref() == Some(name))
        .and_then(|(_, value)| percent_decode(value, plus_is_space))
}

fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn sql(state: &State, request: Request<Incoming>) -> Response<ResponseBody> {
    let started = Instant::now();
    let authorized = state.is_authorized(request.headers());
    let parsed = match *request.method() {
        Method::GET => parse_get(request.uri().query().unwrap_or("")),
        Method::POST => match read_body(request).await {
            Ok(body) => parse_post(&body),
            Err(err) => Err(err),
        },
        _ => Err("use GET or POST".to_owned()),
    };
    let database = parsed.as_ref().ok().and_then(|r| r.database.clone());
    let plan = lock(&state.ledger).begin_sql_request(database.as_deref());
    let dialect = state.dialect();

    sleep_ms(dialect.latency_ms + plan.delay_before_ms).await;
    if let Some(fault) = plan.failure.as_ref().filter(|f| f.when() == When::Before) {
        tracing::info!(kind = ?fault.kind, "injecting a fault before executing");
        return fault_response(fault, dialect, None);
    }
    let (status, body) = run_sql(state, dialect, authorized, parsed, started).await;
    sleep_ms(plan.delay_after_ms).await;
    if let Some(fault) = plan.failure.as_ref().filter(|f| f.when() == When::After) {
        tracing::info!(kind = ?fault.kind, "injecting a fault after executing");
        return fault_response(fault, dialect, Some((status, body)));
    }
    json_response(status, body)
}

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Runs an SQL request and returns the status and body of the real answer.
async fn run_sql(
    state: &State,
    dialect: Dialect,
    authorized: bool,
    parsed: Result<SqlRequest, String>,
    started: Instant,
) -> (u16, Vec<u8>) {
    let format = dialect.errors;
    let error = |status: u16, code: i64, detail: &str| {
        (
            status,
            render::error_body(format, status, Some(code), detail, -1),
        )
    };
    if !authorized {
        return error(401, code::UNAUTHORIZED, "missing or invalid API key");
    }
    let request = match parsed {
        Ok(request) => request,
        Err(detail) => return error(400, code::BAD_REQUEST, &detail),
    };
    let Some(database) = request.database.as_deref() else {
        return error(400, code::BAD_REQUEST, "database is required");
    };
    let Some(path) = engine::database_path(&state.data_dir, database) else {
        return error(400, code::INVALID_DATABASE_NAME, "invalid database name");
    };
    let sql_text = request.sql;
    let binds = request.bind;
    let commit_gap = Duration::from_millis(dialect.commit_gap_ms);
    let result =
        tokio::task::spawn_blocking(move || engine::execute(&path, &sql_text, &binds, commit_gap))
            .await;
    match result {
        Ok(Ok(outcome)) => (
            200,
            render::result_body(
                &outcome,
                request.row.unwrap_or(dialect.rows),
                dialect.write_shape,
                started.elapsed(),
            ),
        ),
        Ok(Err(EngineError::Sqlite {
            code,
            message,
            offset,
        })) => (
            400,
            render::error_body(format, 400, Some(i64::from(code)), &message, offset),
        ),
        Ok(Err(EngineError::UnknownDatabase)) => error(
            404,
            code::DATABASE_NOT_FOUND,
            &format!("database {database:?} not found"),
        ),
        Ok(Err(err @ EngineError::BindWithSeveralStatements)) => {
            error(400, code::BIND_WITH_SEVERAL_STATEMENTS, &err.to_string())
        }
        Ok(Err(err @ EngineError::NoStatement)) => error(400, code::BAD_REQUEST, &err.to_string()),
        Err(join_error) => {
            tracing::error!(%join_error, "SQL task failed");
            error(500, code::INTERNAL, "internal error")
        }
    }
}

/// What a faulted SQL request answers. `real` is the answer that was
/// computed, for faults applied after executing.
fn fault_response(
    fault: &FaultSpec,
    dialect: Dialect,
    real: Option<(u16, Vec<u8>)>,
) -> Response<ResponseBody> {
    let format = dialect.errors;
    match fault.kind {
        FaultKind::Status => {
            let status = fault.status();
            let mut response = match status {
                // What a load balancer in front of the gateway would send.
                502 | 504 => {
                    let title = StatusCode::from_u16(status)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Error");
                    respond(
                        status,
                        "text/html",
                        format!(
                            "<html><head><title>{status} {title}</title></head><body><center><h1>{status} {title}</h1></center></body></html>\n"
                        )
                        .into_bytes(),
                    )
                }
                401 | 403 => error_response(
                    format,
                    status,
                    Some(code::UNAUTHORIZED),
                    "missing or invalid API key",
                ),
                429 => error_response(format, status, None, "too many requests, slow down"),
                _ => error_response(
                    format,
                    status,
                    None,
                    "the service is temporarily unavailable",
                ),
            };
            if matches!(status, 429 | 503) {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            response
        }
        FaultKind::Paused => json_response(
            fault.status(),
            json!({"message": PAUSED_MESSAGE}).to_string().into_bytes(),
        ),
        FaultKind::Malformed => {
            let body = fault
                .body
                .clone()
                .unwrap_or_else(|| r#"{"data": [{"id": "u1", "email": "#.to_owned());
            json_response(fault.status(), body.into_bytes())
        }
        FaultKind::Cut => {
            let (real_status, full) = real.unwrap_or_else(|| {
                (
                    200,
                    json!({"data": [{"id": "cut-before-executing", "padding": "x".repeat(64)}]})
                        .to_string()
                        .into_bytes(),
                )
            });
            let status = fault.status.unwrap_or(real_status);
            cut_response(status, full)
        }
        // Latency faults only delay; they never reach here as failures.
        FaultKind::Latency => real.map_or_else(
            || json_response(200, b"{}".to_vec()),
            |(status, body)| json_response(status, body),
        ),
    }
}

/// Announces the whole body, sends its first half, then closes the connection.
fn cut_response(status: u16, full: Vec<u8>) -> Response<ResponseBody> {
    let announced = full.len().max(2);
    let sent = (announced / 2).min(full.len());
    let head = Bytes::from(full).slice(..sent);
    let mut response = Response::new(ResponseBody::Cut {
        head: Some(head),
        close_after: Box::pin(tokio::time::sleep(CUT_DELAY)),
    });
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(announced));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `/v2/weblite/databases` and `/v2/weblite/<db>` (already authorized).
async fn databases(state: &State, request: Request<Incoming>) -> Response<ResponseBody> {
    let dialect = state.dialect();
    let format = dialect.errors;
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if path == "/v2/weblite/databases" {
        if method != Method::GET {
            return error_response(format, 405, Some(code::BAD_REQUEST), "use GET");
        }
        return match list_databases(&state.data_dir) {
            Ok(names) => json_response(200, render::names_body(&names, dialect.rows)),
            Err(err) => {
                tracing::error!(%err, "listing databases failed");
                error_response(
                    format,
                    500,
                    Some(code::INTERNAL),
                    "could not list databases",
                )
            }
        };
    }
    let Some(name) = path
        .strip_prefix("/v2/weblite/")
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        .and_then(|raw| percent_decode(raw, false))
    else {
        return error_response(
            format,
            404,
            Some(code::NOT_FOUND),
            "no such endpoint (row endpoints are not implemented by the stand-in)",
        );
    };
    let Some(file) = engine::database_path(&state.data_dir, &name) else {
        return error_response(
            format,
            400,
            Some(code::INVALID_DATABASE_NAME),
            "invalid database name",
        );
    };
    match method {
        Method::POST => {
            match read_body(request).await {
                Ok(body) if body.is_empty() => {}
                Ok(_) => {
                    return error_response(
                        format,
                        400,
                        Some(code::BAD_REQUEST),
                        "uploading a database is not supported: POST an empty body to create one",
                    );
                }
                Err(detail) => {
                    return error_response(format, 400, Some(code::BAD_REQUEST), &detail);
                }
            }
            match tokio::task::spawn_blocking(move || engine::create_database(&file)).await {
                Ok(Ok(true)) => json_response(
                    200,
                    json!({"data": {"name": name, "created": true}})
                        .to_string()
                        .into_bytes(),
                ),
                Ok(Ok(false)) => error_response(
                    format,
                    409,
                    Some(code::DATABASE_EXISTS),
                    &format!("database {name:?} already exists"),
                ),
                Ok(Err(err)) => error_response(format, 500, Some(code::INTERNAL), &err.to_string()),
                Err(_) => error_response(format, 500, Some(code::INTERNAL), "internal error"),
            }
        }
        Method::DELETE => {
            match tokio::task::spawn_blocking(move || engine::delete_database(&file)).await {
                Ok(Ok(true)) => json_response(
                    200,
                    json!({"data": {"name": name, "deleted": true}})
                        .to_string()
                        .into_bytes(),
                ),
                Ok(Ok(false)) => error_response(
                    format,
                    404,
                    Some(code::DATABASE_NOT_FOUND),
                    &format!("database {name:?} not found"),
                ),
                Ok(Err(err)) => error_response(format, 500, Some(code::INTERNAL), &err.to_string()),
                Err(_) => error_response(format, 500, Some(code::INTERNAL), "internal error"),
            }
        }
        _ => error_response(
            format,
            405,
            Some(code::BAD_REQUEST),
            "use POST (create) or DELETE; downloads are not implemented by the stand-in",
        ),
    }
}

fn list_databases(data_dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let file_name = entry?.file_name();
        if let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".sqlite")) {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn control_json(status: u16, body: serde_json::Value) -> Response<ResponseBody> {
    json_response(status, body.to_string().into_bytes())
}

fn control_error(status: u16, message: &str) -> Response<ResponseBody> {
    control_json(status, json!({"error": message}))
}

/// The control API: faults, counters and dialect switches. No auth, so
/// loopback peers only.
async fn control(
    state: &State,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    if !peer.ip().to_canonical().is_loopback() {
        return control_error(403, "the control API answers loopback peers only");
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match (method, path.as_str()) {
        (Method::POST, "/__standin/faults") => {
            let body = match read_body(request).await {
                Ok(body) => body,
                Err(err) => return control_error(400, &err),
            };
            let specs = match parse_faults(&body) {
                Ok(specs) => specs,
                Err(err) => return control_error(400, &err),
            };
            let mut ledger = lock(&state.ledger);
            let queued = ledger.add_faults(specs);
            let pending = ledger.pending_faults().len();
            control_json(200, json!({"queued": queued, "pending": pending}))
        }
        (Method::GET, "/__standin/faults") => {
            let ledger = lock(&state.ledger);
            control_json(200, json!({"pending": ledger.pending_faults()}))
        }
        (Method::DELETE, "/__standin/faults") => {
            let cleared = lock(&state.ledger).clear_faults();
            control_json(200, json!({"cleared": cleared}))
        }
        (Method::GET, "/__standin/stats") => control_json(200, json!(lock(&state.ledger).stats())),
        (Method::POST, "/__standin/stats/reset") => {
            let mut ledger = lock(&state.ledger);
            ledger.reset_stats();
            control_json(200, json!(ledger.stats()))
        }
        (Method::GET, "/__standin/config") => control_json(200, json!(state.dialect())),
        (Method::POST, "/__standin/config") => {
            let body = match read_body(request).await {
                Ok(body) => body,
                Err(err) => return control_error(400, &err),
            };
            let update: DialectUpdate = match serde_json::from_slice(&body) {
                Ok(update) => update,
                Err(err) => return control_error(400, &format!("invalid config: {err}")),
            };
            let mut dialect = lock(&state.dialect);
            dialect.apply(update);
            tracing::info!(dialect = ?*dialect, "dialect changed");
            control_json(200, json!(*dialect))
        }
        _ => control_error(404, "no such control endpoint"),
    }
}

/// A JSON list of faults, or a single fault object.
fn parse_faults(body: &[u8]) -> Result<Vec<FaultSpec>, String> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| format!("invalid JSON: {err}"))?;
    let specs: Vec<FaultSpec> = if json.is_array() {
        serde_json::from_value(json)
    } else {
        serde_json::from_value(json).map(|spec| vec![spec])
    }
    .map_err(|err| format!("invalid fault: {err}"))?;
    for spec in &specs {
        spec.validate()?;
    }
    Ok(specs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let q = "sql=SELECT+1%2C%20%27a%27&database=auth&row=array";
        assert_eq!(
            query_param(q, "sql", true).as_deref(),
            Some("SELECT 1, 'a'")
        );
        assert_eq!(query_param(q, "database", true).as_deref(), Some("auth"));
        assert_eq!(query_param(q, "missing", true), None);
        assert_eq!(
            query_param("apikey=a+b", "apikey", false).as_deref(),
            Some("a+b")
        );
        assert_eq!(percent_decode("%zz", false), None);
    }

    #[test]
    fn authorization_forms() {
        let state = State::new(
            PathBuf::from("/nonexistent"),
            "k3y".to_owned(),
            Dialect {
                rows: RowShape::Objects,
                write_shape: crate::config::WriteShape::Object,
                errors: ErrorFormat::Old,
                latency_ms: 0,
                commit_gap_ms: 0,
            },
        );
        let check = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            state.is_authorized(&headers)
        };
        assert!(check("Bearer k3y"));
        assert!(check("bearer k3y"));
        assert!(check("Bearer sqlitecloud://h.sqlite.cloud:8860?apikey=k3y"));
        assert!(check("Bearer sqlitecloud://h:8860/db?timeout=5&apikey=k3y"));
        assert!(!check("Bearer wrong"));
        assert!(!check("Basic k3y"));
        assert!(!check("Bearer sqlitecloud://h:8860?apikey=wrong"));
        assert!(!check("Bearer sqlitecloud://h:8860"));
        assert!(!state.is_authorized(&HeaderMap::new()));
    }

    #[test]
    fn post_bodies() {
        let request = parse_post(
            br#"{"sql": "SELECT ?", "database": "db", "bind": [1, 2.5, "x", null, true], "row": "array"}"#,
        )
        .unwrap();
        assert_eq!(
            request.bind,
            [
                SqlValue::Integer(1),
                SqlValue::Real(2.5),
                SqlValue::Text("x".into()),
                SqlValue::Null,
                SqlValue::Integer(1)
            ]
        );
        assert_eq!(request.row, Some(RowShape::Arrays));
        for bad in [
            &br#"{"database": "db"}"#[..],
            br#"{"sql": 1}"#,
            br#"{"sql": "x", "bind": {}}"#,
            br#"{"sql": "x", "bind": [[1]]}"#,
            br#"{"sql": "x", "row": "table"}"#,
            br#"[]"#,
            b"{",
        ] {
            assert!(parse_post(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn fault_lists() {
        assert_eq!(
            parse_faults(br#"[{"kind": "cut"}, {"kind": "paused"}]"#)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(parse_faults(br#"{"kind": "latency"}"#).unwrap().len(), 1);
        assert!(parse_faults(br#"[{"kind": "explode"}]"#).is_err());
        assert!(parse_faults(br#"[{"kind": "status", "status": 99}]"#).is_err());
    }
}
