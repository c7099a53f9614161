//! Telemetry, end to end: the runner exports OTLP to a receiver started here
//! (hyper on loopback, protobuf decoded with opentelemetry-proto), and serves
//! the Prometheus series of dashboards/metric-contract.txt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use latch_runner::TelemetryConfig;
use latch_runner::telemetry::{OtlpConfig, OtlpExporter, OtlpProtocol};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use support::{Options, TestApp, fixtures, probe_manifest};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// One request a [`Recorder`] received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Bytes,
}

/// A loopback HTTP/1.1 server that answers 200 with an empty body (a valid
/// OTLP/HTTP export response) and keeps every request.
struct Recorder {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let store = store.clone();
                    let service =
                        hyper::service::service_fn(move |req: http::Request<Incoming>| {
                            let store = store.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                store.lock().unwrap().push(Received {
                                    path: parts.uri.path().to_string(),
                                    headers: parts
                                        .headers
                                        .iter()
                                        .map(|(k, v)| {
                                            (k.to_string(), v.to_str().unwrap_or("").to_string())
                                        })
                                        .collect(),
                                    body,
                                });
                                let mut response = http::Response::new(Full::new(Bytes::new()));
                                response.headers_mut().insert(
                                    http::header::CONTENT_TYPE,
                                    http::HeaderValue::from_static("application/x-protobuf"),
                                );
                                Ok::<_, Infallible>(response)
                            }
                        });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Recorder { addr, received }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn bodies(&self, path: &str) -> Vec<Bytes> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.body.clone())
            .collect()
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn otlp_to(receiver: &Recorder) -> OtlpConfig {
    let exporter = |path: &str| {
        Some(OtlpExporter {
            endpoint: format!("http://{}/{path}", receiver.addr),
            protocol: OtlpProtocol::HttpProtobuf,
            headers: vec![("x-test".to_string(), "yes".to_string())],
            timeout: Duration::from_secs(5),
        })
    };
    OtlpConfig {
        traces: exporter("v1/traces"),
        metrics: exporter("v1/metrics"),
        logs: exporter("v1/logs"),
        metric_export_interval: None,
    }
}

/// A probe serving `/p/...` that may use SQLite and reach `upstream`.
fn manifest(upstream: &Recorder) -> String {
    let extra = format!(
        "[component.probe]\nsource = \"{}\"\nsqlite_databases = [\"default\"]\nallowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\n",
        fixtures().probe.display(),
        upstream.port()
    );
    probe_manifest(&[("/p/...", "probe")], &extra)
}

fn get_with_traceparent(app: &TestApp, path: &str, trace_id: &str) -> support::Reply {
    let reply = support::agent()
        .get(&app.url(path))
        .header("traceparent", &format!("00-{trace_id}-{PARENT_ID}-01"))
        .call()
        .unwrap();
    let status = reply.status().as_u16();
    let body = reply.into_body().read_to_string().unwrap_or_default();
    support::Reply {
        status,
        headers: HashMap::new(),
        body,
    }
}

// --- OTLP ------------------------------------------------------------------

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn attr_str<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attr_int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attributes, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

const KIND_INTERNAL: i32 = 1;
const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;
const STATUS_ERROR: i32 = 2;

#[test]
fn otlp_export_carries_spins_spans_metrics_and_logs() {
    let collector = Recorder::start();
    let upstream = Recorder::start();
    let mut app = TestApp::start_with(
        &manifest(&upstream),
        Options {
            telemetry: TelemetryConfig {
                otlp: otlp_to(&collector),
                ..TelemetryConfig::default()
            },
            ..Options::default()
        },
    );

    // An incoming trace, continued through the component to its outbound request.
    let fetch_url = format!(
        "http://127.0.0.1:{}/upstream%3Fapikey%3Dsecret",
        upstream.port()
    );
    let fetched = get_with_traceparent(&app, &format!("/p/fetch?url={fetch_url}"), TRACE_ID);
    assert_eq!((fetched.status, fetched.body.as_str()), (200, "status=200"));
    let sql = app.get("/p/sqlite?db=default&sql=SELECT%2042");
    assert_eq!((sql.status, sql.body.as_str()), (200, "42"));
    let audit_trace = "0af7651916cd43dd8448eb211c80319c";
    assert_eq!(
        get_with_traceparent(&app, "/p/audit", audit_trace).status,
        401
    );
    assert_eq!(app.get("/p/trap").status, 500);
    assert_eq!(app.get("/nowhere").status, 404);

    // Stopping flushes every exporter.
    app.shutdown().join().unwrap();

    let exports: Vec<ExportTraceServiceRequest> = collector
        .bodies("/v1/traces")
        .iter()
        .map(|b| ExportTraceServiceRequest::decode(&b[..]).unwrap())
        .collect();
    assert!(!exports.is_empty(), "no traces exported");
    let resource = exports[0].resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(
        attr_str(&resource.attributes, "service.name"),
        Some("spin"),
        "Spin's default service name"
    );
    let spans: Vec<Span> = exports
        .iter()
        .flat_map(|e| &e.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| ss.spans.clone())
        .collect();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let in_trace = |trace: &str| -> Vec<&Span> {
        spans.iter().filter(|s| hex(&s.trace_id) == trace).collect()
    };

    // The server span: a child of the incoming traceparent.
    let fetch_trace = in_trace(TRACE_ID);
    let server = fetch_trace
        .iter()
        .find(|s| s.kind == KIND_SERVER)
        .unwrap_or_else(|| panic!("no server span in the incoming trace: {spans:#?}"));
    assert_eq!(server.name, "GET /p/...");
    assert_eq!(
        hex(&server.parent_span_id),
        PARENT_ID,
        "the incoming traceparent is the parent"
    );
    let a = &server.attributes;
    assert_eq!(attr_str(a, "http.request.method"), Some("GET"));
    assert_eq!(attr_str(a, "url.path"), Some("/p/fetch"));
    assert_eq!(attr_str(a, "url.scheme"), Some("http"));
    assert_eq!(attr_str(a, "http.route"), Some("/p/..."));
    assert_eq!(attr_int(a, "http.response.status_code"), Some(200));
    assert_eq!(attr_str(a, "client.address"), Some("127.0.0.1"));
    assert!(attr(a, "error.type").is_none());

    // The component's execution, its child.
    let execute = fetch_trace
        .iter()
        .find(|s| s.name == "execute_wasm_component probe")
        .expect("execute_wasm_component span");
    assert_eq!(execute.kind, KIND_INTERNAL);
    assert_eq!(execute.parent_span_id, server.span_id);

    // The outbound request: a client span under the execution, its traceparent sent along.
    let outbound = fetch_trace
        .iter()
        .find(|s| s.kind == KIND_CLIENT && s.name == "GET")
        .expect("outbound HTTP client span");
    assert_eq!(outbound.parent_span_id, execute.span_id);
    let a = &outbound.attributes;
    assert_eq!(attr_str(a, "http.request.method"), Some("GET"));
    assert_eq!(attr_str(a, "server.address"), Some("127.0.0.1"));
    assert_eq!(attr_int(a, "server.port"), Some(i64::from(upstream.port())));
    assert_eq!(attr_int(a, "http.response.status_code"), Some(200));
    assert_eq!(
        attr_str(a, "url.full"),
        Some(format!("http://127.0.0.1:{}/upstream", upstream.port()).as_str()),
        "url.full keeps no query string"
    );
    let sent = upstream.requests();
    let traceparent = sent
        .iter()
        .find(|r| r.path == "/upstream")
        .and_then(|r| r.headers.get("traceparent"))
        .expect("traceparent on the outbound request");
    assert_eq!(
        traceparent,
        &format!("00-{TRACE_ID}-{}-01", hex(&outbound.span_id))
    );

    // SQLite: open and the statement, client spans named as Spin names them.
    let sql_span = spans
        .iter()
        .find(|s| s.name == "SELECT 42")
        .expect("SQLite statement span");
    assert_eq!(sql_span.kind, KIND_CLIENT);
    assert_eq!(attr_str(&sql_span.attributes, "db.system"), Some("sqlite"));
    let sql_execute = spans
        .iter()
        .find(|s| s.span_id == sql_span.parent_span_id)
        .expect("the statement's parent");
    assert_eq!(sql_execute.name, "execute_wasm_component probe");
    assert!(spans.iter().any(|s| s.name == "spin_sqlite.open"
        && s.kind == KIND_CLIENT
        && s.trace_id == sql_span.trace_id));

    // A trap: 500, error status and error.type on the server and execution spans.
    let trap = spans
        .iter()
        .find(|s| s.kind == KIND_SERVER && attr_str(&s.attributes, "url.path") == Some("/p/trap"))
        .expect("the trap's server span");
    assert_eq!(trap.name, "GET /p/...");
    assert_eq!(
        attr_int(&trap.attributes, "http.response.status_code"),
        Some(500)
    );
    assert_eq!(attr_str(&trap.attributes, "error.type"), Some("trap"));
    assert_eq!(trap.status.as_ref().map(|s| s.code), Some(STATUS_ERROR));
    let trap_execute = spans
        .iter()
        .find(|s| s.parent_span_id == trap.span_id)
        .unwrap();
    assert_eq!(
        trap_execute.status.as_ref().map(|s| s.code),
        Some(STATUS_ERROR)
    );

    // No route: a server span named after the method alone, as Spin's.
    let miss = spans
        .iter()
        .find(|s| attr_str(&s.attributes, "url.path") == Some("/nowhere"))
        .expect("the 404's span");
    assert_eq!(
        (
            miss.name.as_str(),
            attr_int(&miss.attributes, "http.response.status_code")
        ),
        ("GET", Some(404))
    );
    assert!(attr(&miss.attributes, "http.route").is_none());

    // Metrics: Spin's instruments and attributes.
    let metrics: Vec<_> = collector
        .bodies("/v1/metrics")
        .iter()
        .map(|b| ExportMetricsServiceRequest::decode(&b[..]).unwrap())
        .flat_map(|e| e.resource_metrics)
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .collect();
    let requests = metrics
        .iter()
        .find(|m| m.name == "spin.request_count")
        .expect("spin.request_count");
    let Some(metric::Data::Sum(sum)) = &requests.data else {
        panic!("spin.request_count is not a sum: {requests:?}")
    };
    assert!(sum.is_monotonic);
    let point = sum.data_points.last().unwrap();
    assert_eq!(attr_str(&point.attributes, "trigger_type"), Some("http"));
    assert_eq!(attr_str(&point.attributes, "app_id"), Some("test"));
    assert_eq!(attr_str(&point.attributes, "component_id"), Some("probe"));
    assert_eq!(
        point.value,
        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(4))
    );
    for name in [
        "spin.component_memory_used",
        "spin.component_memory_used_on_init",
    ] {
        let memory = metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(memory.unit, "By", "{name}");
        let Some(metric::Data::Histogram(h)) = &memory.data else {
            panic!("{name} is not a histogram")
        };
        let point = h.data_points.last().unwrap();
        assert_eq!(attr_str(&point.attributes, "component_id"), Some("probe"));
        assert_eq!(point.count, 4, "{name}: one per instance");
        assert!(point.sum.unwrap() > 0.0, "{name}");
    }

    // Logs: each guest line, with the component and the request's trace.
    let records: Vec<_> = collector
        .bodies("/v1/logs")
        .iter()
        .map(|b| ExportLogsServiceRequest::decode(&b[..]).unwrap())
        .flat_map(|e| e.resource_logs)
        .flat_map(|rl| rl.scope_logs)
        .flat_map(|sl| sl.log_records)
        .collect();
    let audit = records
        .iter()
        .find(|r| {
            matches!(r.body.as_ref().and_then(|b| b.value.as_ref()),
                Some(any_value::Value::StringValue(s)) if s.starts_with("{\"event\":\"signin\""))
        })
        .unwrap_or_else(|| panic!("no audit record in {records:#?}"));
    assert_eq!(attr_str(&audit.attributes, "component_id"), Some("probe"));
    assert_eq!(hex(&audit.trace_id), audit_trace);
    assert_eq!(audit.span_id.len(), 8);

    // The configured headers went with every export.
    assert!(
        collector
            .requests()
            .iter()
            .all(|r| r.headers.get("x-test").map(String::as_str) == Some("yes"))
    );
}

#[test]
fn without_an_endpoint_nothing_is_exported_and_propagation_is_off() {
    let upstream = Recorder::start();
    let app = TestApp::start(&manifest(&upstream));
    assert!(!app.app.telemetry.is_enabled());
    let fetch_url = format!("http://127.0.0.1:{}/upstream", upstream.port());
    assert_eq!(
        get_with_traceparent(&app, &format!("/p/fetch?url={fetch_url}"), TRACE_ID).status,
        200
    );
    let sent = upstream.requests();
    assert!(!sent[0].headers.contains_key("traceparent"), "{sent:?}");
}

/// A loopback gRPC endpoint for the trace service: HTTP/2, one
/// length-prefixed protobuf message each way, `grpc-status` in the trailers.
fn grpc_receiver() -> Recorder {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let store = store.clone();
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let store = store.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        store.lock().unwrap().push(Received {
                            path: parts.uri.path().to_string(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect(),
                            // The message without its 5-byte gRPC prefix (uncompressed).
                            body: body.slice(5.min(body.len())..),
                        });
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let frames = vec![
                            Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from_static(&[
                                0, 0, 0, 0, 0,
                            ]))),
                            Ok(hyper::body::Frame::trailers(trailers)),
                        ];
                        let mut response = http::Response::new(http_body_util::StreamBody::new(
                            futures::stream::iter(frames),
                        ));
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/grpc"),
                        );
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                });
            }
        });
    });
    Recorder { addr, received }
}

#[test]
fn otlp_grpc_export_works_too() {
    let collector = grpc_receiver();
    let upstream = Recorder::start();
    let telemetry = TelemetryConfig {
        service_name: Some("latch".into()),
        otlp: OtlpConfig {
            traces: Some(OtlpExporter {
                endpoint: format!("http://{}", collector.addr),
                protocol: OtlpProtocol::Grpc,
                headers: vec![("x-test".to_string(), "grpc".to_string())],
                timeout: Duration::from_secs(5),
            }),
            ..OtlpConfig::default()
        },
        ..TelemetryConfig::default()
    };
    // The gRPC channel lives on the runtime it is built in (as in `latch up`,
    // which loads the app inside its runtime).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let entered = runtime.enter();
    let mut app = TestApp::start_with(
        &manifest(&upstream),
        Options {
            telemetry,
            ..Options::default()
        },
    );
    drop(entered);
    assert_eq!(app.get("/p/version").status, 200);
    app.shutdown().join().unwrap();

    let requests = collector.requests();
    let export = requests
        .iter()
        .find(|r| r.path == "/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        .unwrap_or_else(|| panic!("no gRPC export: {requests:?}"));
    assert_eq!(
        export.headers.get("x-test").map(String::as_str),
        Some("grpc")
    );
    let request = ExportTraceServiceRequest::decode(&export.body[..]).unwrap();
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(
        attr_str(&resource.attributes, "service.name"),
        Some("latch")
    );
    let names: BTreeSet<&str> = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        names.contains("GET /p/...") && names.contains("execute_wasm_component probe"),
        "{names:?}"
    );
    drop(runtime);
}

// --- Prometheus --------------------------------------------------------------

/// One sample of the text format.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format strictly enough to catch mistakes:
/// HELP/TYPE before samples, quoted and escaped label values, float values.
fn parse_exposition(text: &str) -> (Vec<Sample>, HashMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE {name} twice"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i..]),
            None => line.split_at(line.find(' ').unwrap()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name {name}"
        );
        let mut labels = BTreeMap::new();
        let mut chars = rest.chars().peekable();
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                let key: String =
                    std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != '}')).collect();
                if chars.next() == Some('}') {
                    assert!(key.is_empty(), "{line}");
                    break;
                }
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().unwrap() {
                        '\\' => match chars.next().unwrap() {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                assert!(
                    labels.insert(key.clone(), value).is_none(),
                    "label {key} twice: {line}"
                );
                match chars.next() {
                    Some(',') => continue,
                    Some('}') => break,
                    other => panic!("{other:?} in {line}"),
                }
            }
        }
        let value: String = chars.collect();
        let value = match value.trim() {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    (samples, types)
}

/// dashboards/metric-contract.txt: metric -> its labels.
fn contract() -> BTreeMap<String, BTreeSet<String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../dashboards/metric-contract.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            (
                fields[0].to_string(),
                fields[2].split(',').map(str::to_string).collect(),
            )
        })
        .collect()
}

fn has(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[test]
fn metrics_endpoint_exposes_the_contract_series() {
    let upstream = Recorder::start();
    let extra = format!(
        "[component.probe]\nsource = \"{}\"\nsqlite_databases = [\"default\"]\nallowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\n",
        fixtures().probe.display(),
        upstream.port()
    );
    let manifest = probe_manifest(&[("/p/...", "probe"), ("/health", "health")], &extra)
        .replace("name = \"test\"", "name = \"latch\"");
    let app = TestApp::start_with(
        &manifest,
        Options {
            telemetry: TelemetryConfig {
                prometheus: true,
                ..TelemetryConfig::default()
            },
            metrics: true,
            ..Options::default()
        },
    );
    assert_eq!(
        app.get("/health/version").status,
        404,
        "exact route: no match"
    );
    assert_eq!(
        app.get("/health").status,
        404,
        "the probe knows no `health` probe"
    );
    assert_eq!(app.get("/p/audit").status, 401);
    assert_eq!(app.get("/p/audit").status, 401);
    assert_eq!(app.get("/p/status?code=503").status, 503);
    assert_eq!(app.get("/p/sqlite?db=default&sql=SELECT%201").status, 200);
    assert_eq!(
        app.get("/p/sqlite?db=default&sql=SELECT%20nope").status,
        500
    );
    let fetch = app.get(&format!(
        "/p/fetch?url=http://127.0.0.1:{}/x",
        upstream.port()
    ));
    assert_eq!(fetch.status, 200);
    // Not JSON, or without both fields as strings: not counted.
    assert_eq!(app.get("/p/stdout").status, 200);

    let metrics_url = format!("http://{}/metrics", app.metrics_addr.unwrap());
    let reply = support::get(&metrics_url);
    assert_eq!(reply.status, 200);
    assert!(reply.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    let (samples, types) = parse_exposition(&reply.body);

    // Every series of the contract, with exactly its labels (a label absent
    // when the span lacks the attribute), and nothing else.
    let contract = contract();
    for (name, labels) in &contract {
        let series: Vec<&Sample> = samples.iter().filter(|s| &s.name == name).collect();
        assert!(!series.is_empty(), "no {name} in\n{}", reply.body);
        for s in &series {
            let keys: BTreeSet<String> = s.labels.keys().cloned().collect();
            assert!(
                keys.is_subset(labels),
                "{name}: labels {keys:?} not in the contract {labels:?}"
            );
            if !name.starts_with("traces_span_metrics") {
                assert_eq!(&keys, labels, "{name}");
            }
        }
    }
    for s in &samples {
        assert!(
            contract.contains_key(&s.name),
            "{} is not in the contract",
            s.name
        );
    }
    for (family, kind) in [
        ("spin_request_count_total", "counter"),
        ("spin_component_memory_used_bytes", "histogram"),
        ("spin_component_memory_used_on_init_bytes", "histogram"),
        ("traces_span_metrics_calls_total", "counter"),
        ("traces_span_metrics_duration_milliseconds", "histogram"),
        ("latch_auth_events_total", "counter"),
        ("target_info", "gauge"),
    ] {
        assert_eq!(
            types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }

    // Values as production would have them.
    let probe = [
        ("trigger_type", "http"),
        ("app_id", "latch"),
        ("component_id", "probe"),
    ];
    assert_eq!(has(&samples, "spin_request_count_total", &probe), Some(7.0));
    assert_eq!(
        has(
            &samples,
            "spin_request_count_total",
            &[("component_id", "health")]
        ),
        Some(1.0)
    );
    assert_eq!(
        has(
            &samples,
            "latch_auth_events_total",
            &[
                ("service_name", "latch"),
                ("component_id", "probe"),
                ("event", "signin"),
                ("outcome", "failure")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.name == "latch_auth_events_total")
            .count(),
        1
    );
    let server = |route: &str, status: &str, code: &str| {
        has(
            &samples,
            "traces_span_metrics_calls_total",
            &[
                ("service_name", "latch"),
                ("span_name", &format!("GET {route}")),
                ("span_kind", "SPAN_KIND_SERVER"),
                ("status_code", status),
                ("http_request_method", "GET"),
                ("http_route", route),
                ("http_response_status_code", code),
            ],
        )
    };
    assert_eq!(server("/p/...", "STATUS_CODE_UNSET", "401"), Some(2.0));
    assert_eq!(server("/p/...", "STATUS_CODE_ERROR", "503"), Some(1.0));
    assert_eq!(
        server("/p/...", "STATUS_CODE_ERROR", "500"),
        Some(1.0),
        "the failed statement's 500"
    );
    assert_eq!(server("/health", "STATUS_CODE_UNSET", "404"), Some(1.0));
    let unrouted = samples
        .iter()
        .find(|s| {
            s.name == "traces_span_metrics_calls_total"
                && s.labels
                    .get("http_response_status_code")
                    .map(String::as_str)
                    == Some("404")
                && s.labels.get("span_name").map(String::as_str) == Some("GET")
        })
        .expect("the unmatched request's server span");
    assert!(!unrouted.labels.contains_key("http_route"));
    let internal = samples
        .iter()
        .find(|s| {
            s.name == "traces_span_metrics_calls_total"
                && s.labels.get("span_name").map(String::as_str)
                    == Some("execute_wasm_component probe")
        })
        .expect("execute_wasm_component series");
    assert_eq!(internal.labels["span_kind"], "SPAN_KIND_INTERNAL");
    assert_eq!(
        internal.labels.len(),
        4,
        "no dimension on internal spans: {internal:?}"
    );
    let sql = |statement: &str, status: &str| {
        has(
            &samples,
            "traces_span_metrics_calls_total",
            &[
                ("span_name", statement),
                ("span_kind", "SPAN_KIND_CLIENT"),
                ("db_system", "sqlite"),
                ("status_code", status),
            ],
        )
    };
    assert_eq!(sql("SELECT 1", "STATUS_CODE_UNSET"), Some(1.0));
    assert_eq!(sql("SELECT nope", "STATUS_CODE_ERROR"), Some(1.0));
    assert_eq!(sql("spin_sqlite.open", "STATUS_CODE_UNSET"), Some(2.0));
    assert_eq!(
        has(
            &samples,
            "traces_span_metrics_calls_total",
            &[
                ("span_name", "GET"),
                ("span_kind", "SPAN_KIND_CLIENT"),
                ("http_request_method", "GET"),
                ("http_response_status_code", "200"),
                ("server_address", "127.0.0.1"),
            ]
        ),
        Some(1.0)
    );

    // Histograms: the contract's buckets, cumulative, +Inf equal to the count.
    let check_histogram = |name: &str, le: &[&str]| {
        let counts: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == format!("{name}_count"))
            .collect();
        assert!(!counts.is_empty(), "{name}");
        for count in counts {
            let series_labels = count.labels.clone();
            let buckets: Vec<&Sample> = samples
                .iter()
                .filter(|s| {
                    s.name == format!("{name}_bucket") && {
                        let mut l = s.labels.clone();
                        l.remove("le");
                        l == series_labels
                    }
                })
                .collect();
            let bounds: Vec<&str> = buckets.iter().map(|b| b.labels["le"].as_str()).collect();
            let mut want: Vec<&str> = le.to_vec();
            want.push("+Inf");
            assert_eq!(bounds, want, "{name}");
            assert!(
                buckets.windows(2).all(|w| w[0].value <= w[1].value),
                "{name} not cumulative"
            );
            assert_eq!(
                buckets.last().unwrap().value,
                count.value,
                "{name}: +Inf != count"
            );
            assert!(has(&samples, &format!("{name}_sum"), &[]).is_some());
        }
    };
    check_histogram(
        "traces_span_metrics_duration_milliseconds",
        &[
            "2", "5", "10", "25", "50", "100", "250", "500", "1000", "2000", "5000", "10000",
        ],
    );
    let mib: Vec<String> = (0..=10).map(|i| ((1u64 << 20) << i).to_string()).collect();
    let mib: Vec<&str> = mib.iter().map(String::as_str).collect();
    check_histogram("spin_component_memory_used_bytes", &mib);
    check_histogram("spin_component_memory_used_on_init_bytes", &mib);
    let used = has(
        &samples,
        "spin_component_memory_used_bytes_sum",
        &[("component_id", "probe")],
    )
    .unwrap();
    let on_init = has(
        &samples,
        "spin_component_memory_used_on_init_bytes_sum",
        &[("component_id", "probe")],
    )
    .unwrap();
    assert!(
        used >= on_init && on_init > 0.0,
        "memory used {used}, on init {on_init}"
    );

    let target = samples.iter().find(|s| s.name == "target_info").unwrap();
    assert_eq!(target.labels["service_name"], "latch");
    assert_eq!(target.labels["service_instance_id"].len(), 36);
    assert_eq!(target.value, 1.0);

    // Only GET /metrics.
    assert_eq!(
        support::get(&format!("http://{}/other", app.metrics_addr.unwrap())).status,
        404
    );
}
