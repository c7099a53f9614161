//! The HTTP trigger: accept connections, route each request to its
//! component, run a fresh instance of it, answer with what it returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::app::{App, ComponentSlot};
use crate::instance::{self, Failure};
use crate::router::RouteMatch;
use crate::telemetry::ServerSpan;

/// Limits and timeouts of the HTTP trigger.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Wall-clock limit of one request, guest work and host I/O included.
    pub request_timeout: Duration,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Instances that may run at once; more requests wait for a free one.
    pub max_instances: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 1 << 20,
            max_instances: 256,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

const HEALTH_PATH: &str = "/.well-known/spin/health";

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let local_addr = listener.local_addr()?;
    let trigger = Arc::new(Trigger {
        permits: Arc::new(Semaphore::new(options.max_instances)),
        app,
        options: options.clone(),
        local_addr,
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(30));

    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Spin 3.6.3 leaves Nagle on; so does latch, unless told to be faster.
        if trigger.app.tcp_nodelay {
            let _ = stream.set_nodelay(true);
        }
        let trigger = trigger.clone();
        let service = hyper::service::service_fn(move |req| {
            let trigger = trigger.clone();
            async move { Ok::<_, std::convert::Infallible>(trigger.handle(req, client).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%client, "connection ended: {e}");
            }
        });
    }

    drop(listener);
    tracing::info!("shutting down: draining requests in flight");
    match tokio::time::timeout(options.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            "requests still in flight after {:?}; closing them",
            options.shutdown_grace
        ),
    }
    Ok(())
}

struct Trigger {
    app: Arc<App>,
    options: ServeOptions,
    permits: Arc<Semaphore>,
    local_addr: SocketAddr,
}

/// The runner's answer when the component gave none.
fn failure_response(failure: Failure, component: &str) -> Response<HyperOutgoingBody> {
    let (status, title, detail) = match &failure {
        Failure::Trapped => (
            500,
            "Internal Server Error",
            format!("component `{component}` failed (trap)"),
        ),
        Failure::OutOfMemory => (
            500,
            "Internal Server Error",
            format!("component `{component}` exceeded its memory limit"),
        ),
        Failure::TimedOut => (
            500,
            "Internal Server Error",
            format!("component `{component}` exceeded its time limit"),
        ),
        Failure::NoResponse => (
            500,
            "Internal Server Error",
            format!("component `{component}` returned no response"),
        ),
        Failure::GuestError(_) => (
            500,
            "Internal Server Error",
            format!("component `{component}` reported an error"),
        ),
        Failure::Busy => (
            503,
            "Service Unavailable",
            "no instance became free in time".to_string(),
        ),
        Failure::Internal(_) => (
            500,
            "Internal Server Error",
            "the runner could not run the component".to_string(),
        ),
    };
    problem(status, title, &detail)
}

/// An RFC 9457 problem response from the runner itself.
pub fn problem(status: u16, title: &str, detail: &str) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    })
    .to_string();
    let mut response = Response::new(full(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

fn full(body: impl Into<Bytes>) -> HyperOutgoingBody {
    Full::new(body.into())
        .map_err(wasmtime_wasi_http::Error::from)
        .boxed_unsync()
}

fn plain(status: StatusCode, body: &'static str) -> Response<HyperOutgoingBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if !body.is_empty() {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    response
}

impl Trigger {
    async fn handle(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<HyperOutgoingBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let span = self
            .app
            .telemetry
            .server_span(req.method(), req.uri(), req.headers(), client);
        if path == HEALTH_PATH {
            span.finish(None, 200, None);
            return plain(StatusCode::OK, "OK");
        }
        let Some(matched) = self.app.router.route(&path) else {
            tracing::info!(%method, %path, status = 404, "no route");
            span.finish(None, 404, None);
            return plain(StatusCode::NOT_FOUND, "");
        };
        let slot = matched.target.clone();
        let route = matched.pattern.raw().to_string();
        slot.telemetry.count_request();
        let response = self.run(req, &matched, &slot, client, &span).await;
        let (response, error_type) = match response {
            Ok(response) => (response, None),
            Err(failure) => {
                tracing::warn!(component_id = %slot.id, %route, "request failed: {}", failure.log_detail());
                let error_type = failure.error_type();
                (failure_response(failure, &slot.id), Some(error_type))
            }
        };
        span.finish(
            slot.telemetry.route(&route),
            response.status().as_u16(),
            error_type,
        );
        tracing::info!(
            %method,
            %route,
            component_id = %slot.id,
            status = response.status().as_u16(),
            duration_us = started.elapsed().as_micros() as u64,
            "request"
        );
        response
    }

    async fn run(
        &self,
        req: Request<Incoming>,
        matched: &RouteMatch<'_, Arc<ComponentSlot>>,
        slot: &Arc<ComponentSlot>,
        client: SocketAddr,
        span: &ServerSpan,
    ) -> Result<Response<HyperOutgoingBody>, Failure> {
        let (mut parts, body) = req.into_parts();
        // Spin 3.6.3 passes header values to a component as text and fails the
        // whole request when one is not UTF-8: 500 with an empty body, before
        // any component runs. Production answers so; latch does too.
        if parts
            .headers
            .values()
            .any(|value| std::str::from_utf8(value.as_bytes()).is_err())
        {
            return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, ""));
        }
        if let Some(length) = parts.headers.get(CONTENT_LENGTH)
            && length
                .to_str()
                .ok()
                .and_then(|l| l.parse::<u64>().ok())
                .is_some_and(|l| l > self.options.max_body_bytes as u64)
        {
            return Ok(too_large(self.options.max_body_bytes));
        }
        let body = match Limited::new(body, self.options.max_body_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Ok(too_large(self.options.max_body_bytes));
            }
            // A body the client framed wrongly (bad chunking, cut short) is the client's error.
            Err(e) => {
                tracing::debug!("unreadable request body: {e}");
                return Ok(problem(
                    400,
                    "Bad Request",
                    "the request body could not be read",
                ));
            }
        };

        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| self.local_addr.to_string());
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        let full_url = format!("http://{host}{path_and_query}");
        parts.uri = full_url
            .parse()
            .map_err(|e| Failure::Internal(format!("building the request URI: {e}")))?;
        set_spin_headers(&mut parts.headers, matched, &full_url, client);
        let request = Request::from_parts(parts, Full::new(body));

        let permit = tokio::time::timeout(
            self.options.request_timeout,
            self.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| Failure::Busy)?
        .map_err(|_| Failure::Busy)?;
        let request =
            request.map(|body| body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
        let telemetry = span.instance(&slot.telemetry);
        instance::run(
            &self.app.runtime.engine,
            slot,
            request,
            self.options.request_timeout,
            Some(permit),
            telemetry,
        )
        .await
    }
}

fn too_large(limit: usize) -> Response<HyperOutgoingBody> {
    problem(
        413,
        "Content Too Large",
        &format!("the request body exceeds {limit} bytes"),
    )
}

/// The `spin-*` headers of a routed request (see [`append_spin_headers`]).
fn set_spin_headers(
    headers: &mut HeaderMap,
    matched: &RouteMatch<'_, Arc<ComponentSlot>>,
    full_url: &str,
    client: SocketAddr,
) {
    let raw = matched.pattern.raw();
    append_spin_headers(
        headers,
        &SpinHeaders {
            full_url,
            path_info: &matched.path_info,
            matched_route: raw,
            component_route: matched.pattern.without_wildcard(),
            client,
            params: &matched.params,
        },
    );
}

/// What Spin tells a component about how its request was routed.
pub(crate) struct SpinHeaders<'a> {
    pub full_url: &'a str,
    pub path_info: &'a str,
    /// The route as written in the manifest (`spin-matched-route` and
    /// `spin-raw-component-route`).
    pub matched_route: &'a str,
    /// The route without its trailing wildcard.
    pub component_route: &'a str,
    pub client: SocketAddr,
    /// `:name` segments and their values.
    pub params: &'a [(String, String)],
}

/// Appends Spin's `spin-*` headers as Spin 3.6.3 does: after any `spin-*`
/// header of the same name the client sent, which stays. So a component must
/// take the last value (a client must not choose its own `spin-client-addr`);
/// latch keeps the forgery in place to show what Spin shows.
pub(crate) fn append_spin_headers(headers: &mut HeaderMap, spin: &SpinHeaders<'_>) {
    let mut set = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    };
    set("spin-full-url", spin.full_url);
    set("spin-path-info", spin.path_info);
    set("spin-matched-route", spin.matched_route);
    set("spin-raw-component-route", spin.matched_route);
    set("spin-component-route", spin.component_route);
    set("spin-base-path", "/");
    set("spin-client-addr", &spin.client.to_string());
    for (name, value) in spin.params {
        set(
            &format!("spin-path-match-{}", name.replace('_', "-")),
            value,
        );
    }
}
