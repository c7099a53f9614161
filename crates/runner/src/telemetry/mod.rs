//! Spin 3.6's telemetry: spans, metrics and guest log records over OTLP
//! ([`otlp`]), and the same data as the Prometheus series the collector
//! derives from them ([`prometheus`], served by [`serve_metrics`]).
//!
//! The request path sees four handles, all cheap when nothing is enabled
//! (one branch, no allocation):
//! - [`ServerSpan`]: the `"{METHOD} {route}"` server span of one request;
//! - [`ComponentTelemetry`]: per component, built at load time
//!   (`spin.request_count`, the memory histograms, per-route series);
//! - [`InstanceTelemetry`]: the `execute_wasm_component` span of one
//!   instance, handed to the host interfaces for their client spans
//!   (`spin_sqlite.*`, `spin_outbound_http.send_request`) and guest log lines.
//!
//! Spans are made with the OpenTelemetry API directly rather than through
//! `tracing` and `tracing-opentelemetry`: a `tracing` layer is process-global,
//! while each [`crate::App`] here owns its exporters (two runners in one test
//! process export to two receivers), and the runner's own `tracing` log lines
//! stay what they are.

pub mod config;
mod otlp;
mod prometheus;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use http::{HeaderMap, Method, Uri};
use opentelemetry::logs::{LogRecord as _, Logger as _};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;

pub use config::{OtlpConfig, OtlpExporter, OtlpProtocol, TelemetryConfig};

use crate::host::stdio::Stream;
use otlp::Otel;
use prometheus::{ComponentMetrics, Kind, OutboundKey, Registry, SeriesMap, SpanLabels};

/// Span name of opening a database (Spin's `spin_sqlite.open`).
pub const SQLITE_OPEN: &str = "spin_sqlite.open";
/// Spin's tracing span name for a statement; its OTel name is the SQL text.
pub const SQLITE_EXECUTE: &str = "spin_sqlite.execute";

/// The telemetry of one application: exporters and in-process series.
#[derive(Clone)]
pub struct Telemetry(Arc<Shared>);

struct Shared {
    /// Anything enabled at all: the one branch the request path takes when not.
    active: bool,
    registry: Option<Registry>,
    otel: Option<Otel>,
    app_id: String,
    propagator: TraceContextPropagator,
    shut_down: AtomicBool,
}

impl Shared {
    fn tracer(&self) -> Option<&opentelemetry_sdk::trace::SdkTracer> {
        self.otel.as_ref().and_then(|o| o.tracer.as_ref())
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("prometheus", &self.0.registry.is_some())
            .field("otlp", &self.0.otel.is_some())
            .finish()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::disabled()
    }
}

impl Telemetry {
    /// Nothing recorded, nothing exported.
    pub fn disabled() -> Telemetry {
        Telemetry(Arc::new(Shared {
            active: false,
            registry: None,
            otel: None,
            app_id: String::new(),
            propagator: TraceContextPropagator::new(),
            shut_down: AtomicBool::new(false),
        }))
    }

    /// Starts what `config` asks for, for the application `app_name` (Spin's
    /// `app_id`). With a gRPC exporter, call it inside a Tokio runtime.
    pub fn start(config: &TelemetryConfig, app_name: &str) -> anyhow::Result<Telemetry> {
        let registry = config.prometheus.then(|| {
            Registry::new(
                config.prometheus_service_name(app_name),
                instance_id(config),
                app_name.to_string(),
            )
        });
        let otel = Otel::start(config)?;
        Ok(Telemetry(Arc::new(Shared {
            active: registry.is_some() || otel.is_some(),
            registry,
            otel,
            app_id: app_name.to_string(),
            propagator: TraceContextPropagator::new(),
            shut_down: AtomicBool::new(false),
        })))
    }

    pub fn is_enabled(&self) -> bool {
        self.0.active
    }

    /// The Prometheus text of every series, if `config.prometheus` was set.
    pub fn prometheus_text(&self) -> Option<String> {
        self.0.registry.as_ref().map(Registry::render)
    }

    /// Exports what is buffered and stops the exporters (once; later calls do
    /// nothing). Blocking: from async code, call it through `spawn_blocking`.
    pub fn shutdown(&self) {
        if self.0.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(otel) = &self.0.otel {
            otel.shutdown();
        }
    }

    /// The series and instruments of a component, served by `routes`.
    pub fn component<'a>(
        &self,
        id: &str,
        routes: impl IntoIterator<Item = &'a str>,
    ) -> Arc<ComponentTelemetry> {
        let shared = &self.0;
        Arc::new(ComponentTelemetry {
            id: Arc::from(id),
            execute_name: format!("execute_wasm_component {id}"),
            prometheus: shared.registry.as_ref().map(|r| r.component(id)),
            request_attributes: vec![
                KeyValue::new("trigger_type", "http"),
                KeyValue::new("app_id", shared.app_id.clone()),
                KeyValue::new("component_id", id.to_string()),
            ],
            component_attributes: vec![KeyValue::new("component_id", id.to_string())],
            routes: routes
                .into_iter()
                .map(|route| RouteTelemetry {
                    route: Arc::from(route),
                    series: SeriesMap::default(),
                })
                .collect(),
            shared: shared.clone(),
        })
    }

    /// Starts the server span of a request (Spin's `handle_http_request`): the
    /// child of an incoming W3C `traceparent`, if any.
    pub fn server_span(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        client: SocketAddr,
    ) -> ServerSpan {
        let started = Instant::now();
        let method = method_name(method);
        if !self.0.active {
            return ServerSpan {
                shared: None,
                started,
                method,
                cx: None,
            };
        }
        let cx = self.0.tracer().map(|tracer| {
            let parent = self.0.propagator.extract(&HeaderExtractor(headers));
            let client_address = headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| client.ip().to_string());
            let span = tracer
                .span_builder(span_method_name(method))
                .with_kind(SpanKind::Server)
                .with_attributes([
                    KeyValue::new("http.request.method", method),
                    KeyValue::new("url.path", uri.path().to_string()),
                    KeyValue::new("url.scheme", "http"),
                    KeyValue::new("client.address", client_address),
                    KeyValue::new("network.peer.address", client.ip().to_string()),
                    KeyValue::new("network.peer.port", i64::from(client.port())),
                    KeyValue::new("network.protocol.name", "http"),
                ])
                .start_with_context(tracer, &parent);
            parent.with_span(span)
        });
        ServerSpan {
            shared: Some(self.0.clone()),
            started,
            method,
            cx,
        }
    }
}

/// The telemetry of one component, built when the application loads.
pub struct ComponentTelemetry {
    id: Arc<str>,
    execute_name: String,
    prometheus: Option<Arc<ComponentMetrics>>,
    request_attributes: Vec<KeyValue>,
    component_attributes: Vec<KeyValue>,
    routes: Vec<RouteTelemetry>,
    shared: Arc<Shared>,
}

impl ComponentTelemetry {
    /// Spin's `spin.request_count`: one per request routed to the component.
    pub fn count_request(&self) {
        if !self.shared.active {
            return;
        }
        if let Some(p) = &self.prometheus {
            p.count_request();
        }
        if let Some(i) = self
            .shared
            .otel
            .as_ref()
            .and_then(|o| o.instruments.as_ref())
        {
            i.request_count.add(1, &self.request_attributes);
        }
    }

    /// The telemetry of one of the component's routes (by its manifest text).
    pub fn route(&self, route: &str) -> Option<&RouteTelemetry> {
        self.routes.iter().find(|r| &*r.route == route)
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Per route: the series of its server spans, by method and status.
pub struct RouteTelemetry {
    route: Arc<str>,
    series: SeriesMap<(&'static str, u16)>,
}

/// The server span of one request; [`ServerSpan::finish`] ends it.
pub struct ServerSpan {
    shared: Option<Arc<Shared>>,
    started: Instant,
    method: &'static str,
    cx: Option<Context>,
}

impl ServerSpan {
    /// Starts the `execute_wasm_component <id>` span of the instance serving
    /// the request; the host interfaces get it for their own spans.
    pub fn instance(&self, component: &Arc<ComponentTelemetry>) -> InstanceTelemetry {
        let Some(shared) = &self.shared else {
            return InstanceTelemetry(None);
        };
        let cx = match (shared.tracer(), &self.cx) {
            (Some(tracer), Some(parent)) => {
                let span = tracer
                    .span_builder(component.execute_name.clone())
                    .with_kind(SpanKind::Internal)
                    .start_with_context(tracer, parent);
                Some(parent.with_span(span))
            }
            _ => None,
        };
        InstanceTelemetry(Some(Arc::new(Instance {
            shared: shared.clone(),
            component: component.clone(),
            started: Instant::now(),
            cx,
        })))
    }

    /// Ends the span: `route` is the matched one (none for a 404 or Spin's
    /// health check, whose span is named after the method alone, as Spin's);
    /// `error_type` says why the runner failed the request. A 5xx is an error.
    pub fn finish(self, route: Option<&RouteTelemetry>, status: u16, error_type: Option<&str>) {
        let Some(shared) = self.shared else {
            return;
        };
        let nanos = elapsed_nanos(self.started);
        let error = status >= 500;
        let method = self.method;
        if let Some(registry) = &shared.registry {
            let make = |route: Option<&str>| {
                let name = match route {
                    Some(route) => format!("{} {route}", span_method_name(method)),
                    None => span_method_name(method).to_string(),
                };
                registry.span_series(SpanLabels {
                    span_name: &name,
                    kind: Kind::Server,
                    error,
                    method: Some(method),
                    route,
                    status: Some(status),
                    db_system: None,
                    server_address: None,
                })
            };
            let key = (method, status);
            let series = match route {
                Some(r) => r
                    .series
                    .get_or_insert(&key, || key, || make(Some(&r.route))),
                None => registry.unrouted.get_or_insert(&key, || key, || make(None)),
            };
            if let Some(series) = series {
                series.observe(nanos);
            }
        }
        if let Some(cx) = self.cx {
            let span = cx.span();
            if let Some(route) = route {
                span.update_name(format!("{} {}", span_method_name(method), route.route));
                span.set_attribute(KeyValue::new("http.route", route.route.to_string()));
            }
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            let error_type = error_type
                .map(str::to_string)
                .or_else(|| error.then(|| status.to_string()));
            if let Some(error_type) = &error_type {
                span.set_attribute(KeyValue::new("error.type", error_type.clone()));
            }
            if error {
                span.set_status(Status::error(error_type.unwrap_or_default()));
            }
            span.end();
        }
    }
}

/// The telemetry of one component instance (one request), shared by its host
/// interfaces. `Default` is the disabled one.
#[derive(Clone, Default)]
pub struct InstanceTelemetry(Option<Arc<Instance>>);

struct Instance {
    shared: Arc<Shared>,
    component: Arc<ComponentTelemetry>,
    started: Instant,
    /// The `execute_wasm_component` span, when traces are exported.
    cx: Option<Context>,
}

impl InstanceTelemetry {
    /// Ends the `execute_wasm_component` span (`error_type`: why the guest
    /// failed) and records the instance's memory (Spin does it as the store
    /// is dropped): the peak, and what instantiation alone took.
    pub fn finish(&self, error_type: Option<&str>, memory_used: usize, memory_used_on_init: usize) {
        let Some(instance) = &self.0 else {
            return;
        };
        let component = &instance.component;
        if let Some(p) = &component.prometheus {
            p.execute[usize::from(error_type.is_some())].observe(elapsed_nanos(instance.started));
            p.memory_used.observe(memory_used as u64);
            p.memory_used_on_init.observe(memory_used_on_init as u64);
        }
        if let Some(i) = instance
            .shared
            .otel
            .as_ref()
            .and_then(|o| o.instruments.as_ref())
        {
            i.memory_used
                .record(memory_used as u64, &component.component_attributes);
            i.memory_used_on_init
                .record(memory_used_on_init as u64, &component.component_attributes);
        }
        if let Some(cx) = &instance.cx {
            let span = cx.span();
            if let Some(error_type) = error_type {
                span.set_attribute(KeyValue::new("error.type", error_type.to_string()));
                span.set_status(Status::error(error_type.to_string()));
            }
            span.end();
        }
    }

    /// Runs one SQLite operation inside its client span: `name` is
    /// [`SQLITE_OPEN`] or, as in Spin, the statement's text.
    pub fn sqlite<T, E: std::fmt::Debug>(
        &self,
        name: &str,
        op: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(instance) = &self.0 else {
            return op();
        };
        let started = Instant::now();
        let span = match (instance.shared.tracer(), &instance.cx) {
            (Some(tracer), Some(parent)) => Some(
                tracer
                    .span_builder(name.to_string())
                    .with_kind(SpanKind::Client)
                    .with_attributes([KeyValue::new("db.system", "sqlite")])
                    .start_with_context(tracer, parent),
            ),
            _ => None,
        };
        let result = op();
        let nanos = elapsed_nanos(started);
        if let Some(series) = instance
            .shared
            .registry
            .as_ref()
            .and_then(|r| r.sqlite_series(name, result.is_err()))
        {
            series.observe(nanos);
        }
        if let Some(mut span) = span {
            if let Err(e) = &result {
                let text = format!("{e:?}");
                span.set_attribute(KeyValue::new("error.type", text.clone()));
                span.set_status(Status::error(text));
            }
            span.end();
        }
        result
    }

    /// Starts the client span of an outbound request and puts its
    /// `traceparent` in the request's headers.
    pub fn outbound<B>(&self, request: &mut http::Request<B>) -> OutboundSpan {
        let Some(instance) = &self.0 else {
            return OutboundSpan(None);
        };
        let method = method_name(request.method());
        let uri = request.uri();
        let host: Box<str> = uri.host().unwrap_or("").into();
        let cx = match (instance.shared.tracer(), &instance.cx) {
            (Some(tracer), Some(parent)) => {
                let port = uri.port_u16().or_else(|| match uri.scheme_str() {
                    Some("https") => Some(443),
                    Some("http") => Some(80),
                    _ => None,
                });
                let mut attributes = vec![
                    KeyValue::new("http.request.method", method),
                    KeyValue::new("url.full", url_without_secrets(uri)),
                    KeyValue::new("server.address", host.to_string()),
                ];
                if let Some(port) = port {
                    attributes.push(KeyValue::new("server.port", i64::from(port)));
                }
                let span = tracer
                    .span_builder(span_method_name(method))
                    .with_kind(SpanKind::Client)
                    .with_attributes(attributes)
                    .start_with_context(tracer, parent);
                let cx = parent.with_span(span);
                instance
                    .shared
                    .propagator
                    .inject_context(&cx, &mut HeaderInjector(request.headers_mut()));
                Some(cx)
            }
            _ => None,
        };
        OutboundSpan(Some(Outbound {
            instance: instance.clone(),
            started: Instant::now(),
            method,
            host,
            cx,
        }))
    }

    /// One line the guest wrote: an OTLP log record (Spin's: body = the line,
    /// attribute `component_id`, here also the request's trace), and, for a
    /// JSON object with string `event` and `outcome`, one
    /// `latch_auth_events_total` (the collector's count connector).
    pub fn guest_line(&self, _stream: Stream, line: &str) {
        let Some(instance) = &self.0 else {
            return;
        };
        if let Some(p) = &instance.component.prometheus
            && line.trim_start().starts_with('{')
            && let Ok(audit) = serde_json::from_str::<AuditLine<'_>>(line)
            && let (Some(event), Some(outcome)) = (audit.event, audit.outcome)
        {
            p.count_auth_event(&event, &outcome);
        }
        if let Some(logger) = instance
            .shared
            .otel
            .as_ref()
            .and_then(|o| o.logger.as_ref())
        {
            let mut record = logger.create_log_record();
            let now = SystemTime::now();
            record.set_timestamp(now);
            record.set_observed_timestamp(now);
            record.set_body(line.to_string().into());
            record.add_attribute("component_id", instance.component.id.to_string());
            if let Some(cx) = &instance.cx {
                let span = cx.span();
                let sc = span.span_context();
                record.set_trace_context(sc.trace_id(), sc.span_id(), Some(sc.trace_flags()));
            }
            logger.emit(record);
        }
    }
}

/// The fields of an audit line the counter needs; anything else is ignored.
#[derive(serde::Deserialize)]
struct AuditLine<'a> {
    #[serde(default, borrow)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    outcome: Option<std::borrow::Cow<'a, str>>,
}

/// The client span of one outbound request.
pub struct OutboundSpan(Option<Outbound>);

struct Outbound {
    instance: Arc<Instance>,
    started: Instant,
    method: &'static str,
    host: Box<str>,
    cx: Option<Context>,
}

impl OutboundSpan {
    /// Ends the span with the response's status, or the error that stopped it.
    pub fn finish(self, status: Option<u16>, error_type: Option<&str>) {
        let Some(o) = self.0 else {
            return;
        };
        let nanos = elapsed_nanos(o.started);
        let error = error_type.is_some();
        if let Some(registry) = &o.instance.shared.registry {
            let key = OutboundKey {
                method: o.method,
                host: o.host.clone(),
                status,
                error,
            };
            let series = registry.outbound.get_or_insert(
                &key,
                || key.clone(),
                || {
                    registry.span_series(SpanLabels {
                        span_name: span_method_name(o.method),
                        kind: Kind::Client,
                        error,
                        method: Some(o.method),
                        route: None,
                        status,
                        db_system: None,
                        server_address: Some(&o.host),
                    })
                },
            );
            if let Some(series) = series {
                series.observe(nanos);
            }
        }
        if let Some(cx) = &o.cx {
            let span = cx.span();
            if let Some(status) = status {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            if let Some(error_type) = error_type {
                span.set_attribute(KeyValue::new("error.type", error_type.to_string()));
                span.set_status(Status::error(error_type.to_string()));
            }
            span.end();
        }
    }
}

/// `scheme://host[:port]/path` of a URI: no user info, query or fragment,
/// which may carry credentials (an API key in a query string).
pub fn url_without_secrets(uri: &Uri) -> String {
    let mut url = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.host().unwrap_or("")
    );
    if let Some(port) = uri.port_u16() {
        url.push_str(&format!(":{port}"));
    }
    url.push_str(uri.path());
    url
}

/// The method as OpenTelemetry records it: the known ones, else `_OTHER`
/// (which also bounds the series a client can create).
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// In span names an unknown method is `HTTP` (semantic conventions).
fn span_method_name(method: &'static str) -> &'static str {
    if method == "_OTHER" { "HTTP" } else { method }
}

fn elapsed_nanos(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// `service.instance.id` from the resource attributes, else a random UUID.
fn instance_id(config: &TelemetryConfig) -> String {
    if let Some((_, id)) = config
        .resource_attributes
        .iter()
        .rev()
        .find(|(k, _)| k == "service.instance.id")
    {
        return id.clone();
    }
    let bits: u128 = rand::random();
    // Version 4, variant 1.
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Serves `GET /metrics` (Prometheus text format 0.0.4) on `listener` until
/// `shutdown` resolves.
pub async fn serve_metrics(
    telemetry: Telemetry,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;

    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let telemetry = telemetry.clone();
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let telemetry = telemetry.clone();
                async move {
                    let (status, content_type, body) = match (req.method(), req.uri().path()) {
                        (&Method::GET, "/metrics") => match telemetry.prometheus_text() {
                            Some(text) => (200, "text/plain; version=0.0.4; charset=utf-8", text),
                            None => (404, "text/plain", "metrics are not enabled\n".to_string()),
                        },
                        (_, "/metrics") => (405, "text/plain", "GET only\n".to_string()),
                        _ => (404, "text/plain", "not found: try /metrics\n".to_string()),
                    };
                    let mut response = http::Response::new(Full::new(bytes::Bytes::from(body)));
                    *response.status_mut() =
                        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(content_type),
                    );
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!("metrics connection ended: {e}");
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_query_and_fragment() {
        let uri: Uri = "https://user:pw@db.example.com:8860/v2/sql?apikey=SECRET#frag"
            .parse()
            .unwrap();
        assert_eq!(
            url_without_secrets(&uri),
            "https://db.example.com:8860/v2/sql"
        );
        let uri: Uri = "http://127.0.0.1/".parse().unwrap();
        assert_eq!(url_without_secrets(&uri), "http://127.0.0.1/");
    }

    #[test]
    fn instance_ids_are_uuids_unless_given() {
        let id = instance_id(&TelemetryConfig::default());
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        let given = TelemetryConfig {
            resource_attributes: vec![("service.instance.id".into(), "pod-1".into())],
            ..TelemetryConfig::default()
        };
        assert_eq!(instance_id(&given), "pod-1");
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method_name(&Method::from_bytes(b"BREW").unwrap()), "_OTHER");
        assert_eq!(
            span_method_name(method_name(&Method::from_bytes(b"BREW").unwrap())),
            "HTTP"
        );
        assert_eq!(method_name(&Method::POST), "POST");
    }

    #[test]
    fn disabled_telemetry_records_nothing() {
        let t = Telemetry::disabled();
        assert!(!t.is_enabled());
        assert!(t.prometheus_text().is_none());
        let c = t.component("c", ["/a"]);
        c.count_request();
        let span = t.server_span(
            &Method::GET,
            &"/a".parse().unwrap(),
            &HeaderMap::new(),
            "127.0.0.1:1".parse().unwrap(),
        );
        let instance = span.instance(&c);
        assert!(instance.0.is_none());
        assert_eq!(instance.sqlite("SELECT 1", || Ok::<_, ()>(7)), Ok(7));
        span.finish(c.route("/a"), 200, None);
    }
}
