//! What telemetry to produce, as an explicit value. The CLI maps Spin's
//! environment variables into it ([`TelemetryConfig::from_env`]); the library
//! never reads the process environment itself, so two runners in one process
//! (the tests) can export to different places.

use std::time::Duration;

use anyhow::{Context, bail};

/// Everything [`super::Telemetry`] needs to start.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// `OTEL_SERVICE_NAME`. The OTLP resource's `service.name` falls back to
    /// `service.name` in [`Self::resource_attributes`], then to `spin`, as in Spin.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, in order.
    pub resource_attributes: Vec<(String, String)>,
    /// Where OTLP goes; nothing is exported for a signal without an exporter.
    pub otlp: OtlpConfig,
    /// Keep the in-process metrics that `GET /metrics` serves
    /// (`latch up --metrics-listen`).
    pub prometheus: bool,
}

/// One exporter per signal, or none.
#[derive(Debug, Clone, Default)]
pub struct OtlpConfig {
    pub traces: Option<OtlpExporter>,
    pub metrics: Option<OtlpExporter>,
    pub logs: Option<OtlpExporter>,
    /// `OTEL_METRIC_EXPORT_INTERVAL`; the SDK's 60 s when unset.
    pub metric_export_interval: Option<Duration>,
}

impl OtlpConfig {
    pub fn is_enabled(&self) -> bool {
        self.traces.is_some() || self.metrics.is_some() || self.logs.is_some()
    }
}

/// The wire protocol of an exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`, Spin's default.
    HttpProtobuf,
    /// `grpc` (plain-text HTTP/2: an in-cluster collector).
    Grpc,
}

/// One signal's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpExporter {
    /// The full URL: for `http/protobuf` it includes the signal's path (`/v1/traces`).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// The three signals, with their environment variable infix and OTLP/HTTP path.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    fn var_infix(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
            Signal::Logs => "LOGS",
        }
    }

    fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "v1/traces",
            Signal::Metrics => "v1/metrics",
            Signal::Logs => "v1/logs",
        }
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl TelemetryConfig {
    /// Spin 3.6's variables, read through `var` (the CLI passes
    /// `std::env::var`): a signal is exported when `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// or its own `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT` is set and not empty,
    /// unless `OTEL_SDK_DISABLED` is set and not empty (Spin's test, not the
    /// spec's `true`). Protocol and headers: the per-signal variable, else the
    /// general one; timeout: `OTEL_EXPORTER_OTLP[_<SIGNAL>]_TIMEOUT` in ms.
    pub fn from_env(
        var: impl Fn(&str) -> Option<String>,
        prometheus: bool,
    ) -> anyhow::Result<TelemetryConfig> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let resource_attributes = match var("OTEL_RESOURCE_ATTRIBUTES") {
            Some(text) => parse_pairs(&text),
            None => Vec::new(),
        };
        let mut config = TelemetryConfig {
            service_name: var("OTEL_SERVICE_NAME").map(|s| s.trim().to_string()),
            resource_attributes,
            otlp: OtlpConfig::default(),
            prometheus,
        };
        if var("OTEL_SDK_DISABLED").is_some() {
            return Ok(config);
        }
        config.otlp.traces = exporter_from_env(&var, Signal::Traces)?;
        config.otlp.metrics = exporter_from_env(&var, Signal::Metrics)?;
        config.otlp.logs = exporter_from_env(&var, Signal::Logs)?;
        if let Some(ms) = var("OTEL_METRIC_EXPORT_INTERVAL") {
            let ms: u64 = ms.trim().parse().with_context(|| {
                format!("OTEL_METRIC_EXPORT_INTERVAL `{ms}` is not a number of milliseconds")
            })?;
            config.otlp.metric_export_interval = Some(Duration::from_millis(ms.max(1)));
        }
        Ok(config)
    }

    /// `service.name` of the OTLP resource: as Spin, `OTEL_SERVICE_NAME`, else
    /// `service.name` from `OTEL_RESOURCE_ATTRIBUTES`, else `spin`.
    pub fn otlp_service_name(&self) -> String {
        self.explicit_service_name()
            .unwrap_or_else(|| "spin".to_string())
    }

    /// The `service_name` label of `/metrics`: the same explicit names, else
    /// the application's name (what the collector puts in place of `spin`).
    pub fn prometheus_service_name(&self, app_name: &str) -> String {
        self.explicit_service_name()
            .unwrap_or_else(|| app_name.to_string())
    }

    fn explicit_service_name(&self) -> Option<String> {
        self.service_name.clone().or_else(|| {
            self.resource_attributes
                .iter()
                .rev()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
        })
    }
}

fn exporter_from_env(
    var: &impl Fn(&str) -> Option<String>,
    signal: Signal,
) -> anyhow::Result<Option<OtlpExporter>> {
    let infix = signal.var_infix();
    let own = |suffix: &str| var(&format!("OTEL_EXPORTER_OTLP_{infix}_{suffix}"));
    let general = |suffix: &str| var(&format!("OTEL_EXPORTER_OTLP_{suffix}"));
    let protocol_text = own("PROTOCOL").or_else(|| general("PROTOCOL"));
    let protocol = match protocol_text.as_deref().map(str::trim) {
        None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
        Some("grpc") => OtlpProtocol::Grpc,
        Some("http/json") => bail!(
            "OTLP protocol http/json is not supported (nor is it by Spin): use http/protobuf or grpc"
        ),
        Some(other) => {
            // Spin warns and falls back to http/protobuf.
            tracing::warn!("`{other}` is not a valid OTLP protocol, defaulting to http/protobuf");
            OtlpProtocol::HttpProtobuf
        }
    };
    // A per-signal endpoint is used as it is; the general one gets the
    // signal's path under http/protobuf (the OTLP exporter specification).
    let endpoint = match (own("ENDPOINT"), general("ENDPOINT")) {
        (Some(endpoint), _) => endpoint.trim().to_string(),
        (None, Some(base)) => match protocol {
            OtlpProtocol::HttpProtobuf => {
                let base = base.trim();
                let slash = if base.ends_with('/') { "" } else { "/" };
                format!("{base}{slash}{}", signal.http_path())
            }
            OtlpProtocol::Grpc => base.trim().to_string(),
        },
        (None, None) => return Ok(None),
    };
    let uri: http::Uri = endpoint.parse().with_context(|| {
        format!(
            "OTLP {} endpoint `{endpoint}` is not a URL",
            infix.to_lowercase()
        )
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        bail!(
            "OTLP {} endpoint `{endpoint}` must be an http:// or https:// URL",
            infix.to_lowercase()
        );
    }
    let mut headers = general("HEADERS")
        .map(|h| parse_pairs(&h))
        .unwrap_or_default();
    for (key, value) in own("HEADERS").map(|h| parse_pairs(&h)).unwrap_or_default() {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
        headers.push((key, value));
    }
    let timeout = match own("TIMEOUT").or_else(|| general("TIMEOUT")) {
        Some(ms) => Duration::from_millis(
            ms.trim()
                .parse()
                .with_context(|| format!("OTLP timeout `{ms}` is not a number of milliseconds"))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    Ok(Some(OtlpExporter {
        endpoint,
        protocol,
        headers,
        timeout,
    }))
}

/// `key1=value1,key2=value2` with percent-encoded values (the W3C baggage form
/// the OTel specification uses for headers and resource attributes).
fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_string(), percent_decode(value.trim())))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> TelemetryConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TelemetryConfig::from_env(|k| vars.get(k).cloned(), false).unwrap()
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        let c = config(&[
            ("OTEL_SERVICE_NAME", "latch"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=b"),
        ]);
        assert!(!c.otlp.is_enabled());
        assert_eq!(c.otlp_service_name(), "latch");
        assert!(
            !config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")])
                .otlp
                .is_enabled()
        );
    }

    #[test]
    fn the_general_endpoint_gets_each_signal_path_and_per_signal_ones_win() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "http://logs:9999/custom",
            ),
        ]);
        assert_eq!(
            c.otlp.traces.unwrap().endpoint,
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            c.otlp.metrics.unwrap().endpoint,
            "http://collector:4318/v1/metrics"
        );
        assert_eq!(c.otlp.logs.unwrap().endpoint, "http://logs:9999/custom");
        let only_traces = config(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://t:4318/v1/traces",
        )]);
        assert!(only_traces.otlp.traces.is_some());
        assert!(only_traces.otlp.metrics.is_none() && only_traces.otlp.logs.is_none());
    }

    #[test]
    fn grpc_endpoints_are_used_as_given() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
        ]);
        let traces = c.otlp.traces.unwrap();
        assert_eq!(
            (traces.endpoint.as_str(), traces.protocol),
            ("http://collector:4317", OtlpProtocol::Grpc)
        );
        let metrics = c.otlp.metrics.unwrap();
        assert_eq!(metrics.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(metrics.endpoint, "http://collector:4317/v1/metrics");
    }

    #[test]
    fn sdk_disabled_wins_and_headers_are_decoded() {
        let off = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(!off.otlp.is_enabled());
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Basic%20abc%3D, x-a = 1",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-a=2"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ]);
        let traces = c.otlp.traces.unwrap();
        assert_eq!(
            traces.headers,
            vec![
                ("Authorization".to_string(), "Basic abc=".to_string()),
                ("x-a".to_string(), "2".to_string())
            ]
        );
        assert_eq!(traces.timeout, Duration::from_millis(2500));
        assert_eq!(
            c.otlp.logs.unwrap().headers[1],
            ("x-a".to_string(), "1".to_string())
        );
    }

    #[test]
    fn service_names() {
        let c = config(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attrs,deployment.environment=dev",
        )]);
        assert_eq!(c.otlp_service_name(), "from-attrs");
        assert_eq!(config(&[]).otlp_service_name(), "spin");
        assert_eq!(config(&[]).prometheus_service_name("latch"), "latch");
        assert_eq!(
            config(&[("OTEL_SERVICE_NAME", "svc")]).prometheus_service_name("latch"),
            "svc"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let vars: HashMap<&str, &str> =
            HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]);
        assert!(TelemetryConfig::from_env(|k| vars.get(k).map(|v| v.to_string()), false).is_err());
        let vars: HashMap<&str, &str> = HashMap::from([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]);
        assert!(TelemetryConfig::from_env(|k| vars.get(k).map(|v| v.to_string()), false).is_err());
    }
}
