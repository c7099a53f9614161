//! The OpenTelemetry SDK pipelines behind OTLP export: one provider per
//! signal that has an exporter, each with the SDK's batching (a background
//! thread per signal, so a slow collector never blocks a request).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::resource::{ResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use super::config::{OtlpExporter, OtlpProtocol, TelemetryConfig};

/// The instrumentation scope name Spin uses for its tracer and logger.
const SCOPE: &str = "spin";

/// Spin's metric instruments.
pub(crate) struct Instruments {
    pub request_count: Counter<u64>,
    pub memory_used: Histogram<u64>,
    pub memory_used_on_init: Histogram<u64>,
}

/// The running OTLP pipelines.
pub(crate) struct Otel {
    pub tracer: Option<SdkTracer>,
    pub instruments: Option<Instruments>,
    pub logger: Option<SdkLogger>,
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    logger_provider: Option<SdkLoggerProvider>,
}

impl Otel {
    /// Starts a pipeline for each signal that has an exporter; none if no signal has.
    pub fn start(config: &TelemetryConfig) -> anyhow::Result<Option<Otel>> {
        let otlp = &config.otlp;
        if !otlp.is_enabled() {
            return Ok(None);
        }
        for (signal, exporter) in [
            ("traces", &otlp.traces),
            ("metrics", &otlp.metrics),
            ("logs", &otlp.logs),
        ] {
            if let Some(e) = exporter {
                tracing::info!("OTLP {signal}: {} ({:?})", e.endpoint, e.protocol);
            }
        }
        let resource = resource(config);
        let tracer_provider = match &otlp.traces {
            Some(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_resource(resource.clone())
                    .with_batch_exporter(span_exporter(exporter).context("OTLP trace exporter")?)
                    .build(),
            ),
            None => None,
        };
        let meter_provider = match &otlp.metrics {
            Some(exporter) => {
                let mut reader = PeriodicReader::builder(
                    metric_exporter(exporter).context("OTLP metric exporter")?,
                );
                if let Some(interval) = otlp.metric_export_interval {
                    reader = reader.with_interval(interval);
                }
                Some(
                    SdkMeterProvider::builder()
                        .with_resource(resource.clone())
                        .with_reader(reader.build())
                        .build(),
                )
            }
            None => None,
        };
        let logger_provider = match &otlp.logs {
            Some(exporter) => Some(
                SdkLoggerProvider::builder()
                    .with_resource(resource)
                    .with_batch_exporter(log_exporter(exporter).context("OTLP log exporter")?)
                    .build(),
            ),
            None => None,
        };
        let instruments = meter_provider.as_ref().map(|provider| {
            let meter = provider.meter(SCOPE);
            Instruments {
                request_count: meter.u64_counter("spin.request_count").build(),
                memory_used: meter
                    .u64_histogram("spin.component_memory_used")
                    .with_unit("By")
                    .build(),
                memory_used_on_init: meter
                    .u64_histogram("spin.component_memory_used_on_init")
                    .with_unit("By")
                    .build(),
            }
        });
        Ok(Some(Otel {
            tracer: tracer_provider.as_ref().map(|p| p.tracer(SCOPE)),
            logger: logger_provider.as_ref().map(|p| p.logger(SCOPE)),
            instruments,
            tracer_provider,
            meter_provider,
            logger_provider,
        }))
    }

    /// Exports what is buffered and stops the pipelines. Blocks until done
    /// (each exporter's timeout bounds it).
    pub fn shutdown(&self) {
        if let Some(p) = &self.tracer_provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!("OTLP traces: shutdown: {e}");
        }
        if let Some(p) = &self.logger_provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!("OTLP logs: shutdown: {e}");
        }
        if let Some(p) = &self.meter_provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!("OTLP metrics: shutdown: {e}");
        }
    }
}

/// Spin's resource: `service.name` (see [`TelemetryConfig::otlp_service_name`]),
/// the `OTEL_RESOURCE_ATTRIBUTES`, and `telemetry.sdk.*`. Spin sets no
/// `service.instance.id`; neither does this unless the attributes carry one.
fn resource(config: &TelemetryConfig) -> Resource {
    let detectors: [Box<dyn ResourceDetector>; 1] = [Box::new(TelemetryResourceDetector)];
    Resource::builder_empty()
        .with_detectors(&detectors)
        .with_attributes(
            config
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_service_name(config.otlp_service_name())
        .build()
}

fn headers(exporter: &OtlpExporter) -> HashMap<String, String> {
    exporter.headers.iter().cloned().collect()
}

fn metadata(
    exporter: &OtlpExporter,
) -> anyhow::Result<opentelemetry_otlp::tonic_types::metadata::MetadataMap> {
    let mut map = http::HeaderMap::new();
    for (k, v) in &exporter.headers {
        let name = http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .with_context(|| format!("OTLP header name `{k}`"))?;
        let value =
            http::HeaderValue::from_str(v).with_context(|| format!("OTLP header `{k}` value"))?;
        map.append(name, value);
    }
    Ok(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map))
}

/// The gRPC exporter's channel lives on the Tokio runtime it is built in.
fn require_runtime() -> anyhow::Result<()> {
    tokio::runtime::Handle::try_current()
        .map(|_| ())
        .map_err(|_| {
            anyhow::anyhow!("the grpc OTLP exporter must be started inside a Tokio runtime")
        })
}

macro_rules! exporter {
    ($builder:expr, $exporter:expr) => {{
        let exporter: &OtlpExporter = $exporter;
        match exporter.protocol {
            OtlpProtocol::HttpProtobuf => $builder
                .with_http()
                .with_http_client(UreqClient::new(exporter.timeout))
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(exporter.endpoint.clone())
                .with_timeout(exporter.timeout)
                .with_headers(headers(exporter))
                .build()
                .map_err(anyhow::Error::from),
            OtlpProtocol::Grpc => {
                require_runtime()?;
                $builder
                    .with_tonic()
                    .with_protocol(Protocol::Grpc)
                    .with_endpoint(exporter.endpoint.clone())
                    .with_timeout(exporter.timeout)
                    .with_metadata(metadata(exporter)?)
                    .build()
                    .map_err(anyhow::Error::from)
            }
        }
    }};
}

fn span_exporter(exporter: &OtlpExporter) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    exporter!(opentelemetry_otlp::SpanExporter::builder(), exporter)
}

fn metric_exporter(exporter: &OtlpExporter) -> anyhow::Result<opentelemetry_otlp::MetricExporter> {
    exporter!(opentelemetry_otlp::MetricExporter::builder(), exporter)
}

fn log_exporter(exporter: &OtlpExporter) -> anyhow::Result<opentelemetry_otlp::LogExporter> {
    exporter!(opentelemetry_otlp::LogExporter::builder(), exporter)
}

/// Largest response body read from a collector (they answer with a few bytes).
const MAX_RESPONSE: u64 = 4 << 20;

/// The OTLP/HTTP transport: ureq (rustls), already the workspace's HTTP
/// client. Blocking is fine here: the SDK exports from its own threads.
#[derive(Debug, Clone)]
struct UreqClient(Arc<ureq::Agent>);

impl UreqClient {
    fn new(timeout: Duration) -> UreqClient {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .build()
            .into();
        UreqClient(Arc::new(agent))
    }
}

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, &body[..]);
        let response = self.0.run(request)?;
        let (parts, mut body) = response.into_parts();
        let bytes = body.with_config().limit(MAX_RESPONSE).read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(bytes)))
    }
}
