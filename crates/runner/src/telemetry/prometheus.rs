//! The in-process metrics `latch up --metrics-listen` serves as Prometheus
//! text: exactly the series Grafana Cloud holds after the collector's
//! translation (dashboards/metric-contract.txt). Counters and histograms are
//! atomics; each series' label text is rendered once, when the series is
//! first seen (per route and status, per component, per SQL statement), so
//! the request path only looks a series up and adds to it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The spanmetrics connector's buckets (k8s/collector/config.yaml), in ns.
const DURATION_BOUNDS_NS: [u64; 12] = [
    2_000_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
];
const DURATION_LE: [&str; 12] = [
    "2", "5", "10", "25", "50", "100", "250", "500", "1000", "2000", "5000", "10000",
];

/// Powers of two from 1 MiB to 1 GiB: a component's linear memory is megabytes.
const MEMORY_BOUNDS: [u64; 11] = [
    1 << 20,
    1 << 21,
    1 << 22,
    1 << 23,
    1 << 24,
    1 << 25,
    1 << 26,
    1 << 27,
    1 << 28,
    1 << 29,
    1 << 30,
];
const MEMORY_LE: [&str; 11] = [
    "1048576",
    "2097152",
    "4194304",
    "8388608",
    "16777216",
    "33554432",
    "67108864",
    "134217728",
    "268435456",
    "536870912",
    "1073741824",
];

/// Span-metric series kept at most (a safety valve; see the SQL cap below).
const MAX_SPAN_SERIES: usize = 4096;
/// Distinct SQL statements with a series of their own; later ones share the
/// series named after the tracing span, `spin_sqlite.execute`.
pub(crate) const MAX_SQL_STATEMENTS: usize = 512;
/// Distinct (event, outcome) pairs per component.
const MAX_AUTH_PAIRS: usize = 256;

/// A fixed-bucket histogram.
pub(crate) struct Histogram {
    bounds: &'static [u64],
    le: &'static [&'static str],
    /// Per bucket, not cumulative; the last one is +Inf.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [u64], le: &'static [&'static str]) -> Histogram {
        Histogram {
            bounds,
            le,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    fn durations() -> Histogram {
        Histogram::new(&DURATION_BOUNDS_NS, &DURATION_LE)
    }

    fn memory() -> Histogram {
        Histogram::new(&MEMORY_BOUNDS, &MEMORY_LE)
    }

    pub fn observe(&self, value: u64) {
        let index = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// `_bucket`, `_sum` and `_count` lines; `sum_scale` divides the sum.
    fn render(&self, out: &mut String, name: &str, labels: &str, sum_scale: f64) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (count, le) in self
            .counts
            .iter()
            .zip(self.le.iter().copied().chain(["+Inf"]))
        {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum.load(Ordering::Relaxed) as f64 / sum_scale;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// One span-metrics series: calls and the duration histogram share it.
pub(crate) struct SpanSeries {
    labels: String,
    durations: Histogram,
}

impl SpanSeries {
    pub fn observe(&self, nanos: u64) {
        self.durations.observe(nanos);
    }
}

/// `span_kind` values as the connector spells them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Server,
    Client,
    Internal,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Server => "SPAN_KIND_SERVER",
            Kind::Client => "SPAN_KIND_CLIENT",
            Kind::Internal => "SPAN_KIND_INTERNAL",
        }
    }
}

/// What a span contributes to its series' labels: the connector's fixed
/// dimensions and the configured ones, absent when the span lacks them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanLabels<'a> {
    pub span_name: &'a str,
    pub kind: Kind,
    pub error: bool,
    pub method: Option<&'a str>,
    pub route: Option<&'a str>,
    pub status: Option<u16>,
    pub db_system: Option<&'a str>,
    pub server_address: Option<&'a str>,
}

/// Series found by a key, created on first use.
pub(crate) struct SeriesMap<K>(RwLock<HashMap<K, Arc<SpanSeries>>>);

impl<K> Default for SeriesMap<K> {
    fn default() -> Self {
        SeriesMap(RwLock::new(HashMap::new()))
    }
}

impl<K: Hash + Eq> SeriesMap<K> {
    /// The series under `key` (borrowed form `Q`), made by `make` if new.
    pub fn get_or_insert<Q>(
        &self,
        key: &Q,
        to_owned: impl FnOnce() -> K,
        make: impl FnOnce() -> Option<Arc<SpanSeries>>,
    ) -> Option<Arc<SpanSeries>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Ok(map) = self.0.read()
            && let Some(series) = map.get(key)
        {
            return Some(series.clone());
        }
        let mut map = self.0.write().ok()?;
        if let Some(series) = map.get(key) {
            return Some(series.clone());
        }
        let series = make()?;
        map.insert(to_owned(), series.clone());
        Some(series)
    }

    fn len(&self) -> usize {
        self.0.read().map(|m| m.len()).unwrap_or(0)
    }
}

/// The Prometheus side of one component.
pub(crate) struct ComponentMetrics {
    /// `trigger_type="http",app_id="…",component_id="…"`
    request_labels: String,
    /// `component_id="…"`
    component_label: String,
    /// `service_name="…",component_id="…"`
    auth_labels: String,
    requests: AtomicU64,
    pub memory_used: Histogram,
    pub memory_used_on_init: Histogram,
    /// `execute_wasm_component <id>`: [unset, error].
    pub execute: [Arc<SpanSeries>; 2],
    auth_events: Mutex<HashMap<(String, String), u64>>,
    auth_overflow_warned: AtomicBool,
}

impl ComponentMetrics {
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// One audit line: counted by event and outcome, like the count connector.
    pub fn count_auth_event(&self, event: &str, outcome: &str) {
        let Ok(mut events) = self.auth_events.lock() else {
            return;
        };
        if let Some(n) = events.get_mut(&(event.to_string(), outcome.to_string())) {
            *n += 1;
        } else if events.len() < MAX_AUTH_PAIRS {
            events.insert((event.to_string(), outcome.to_string()), 1);
        } else if !self.auth_overflow_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "latch_auth_events_total: more than {MAX_AUTH_PAIRS} (event, outcome) pairs for {}; not counting new ones",
                self.component_label
            );
        }
    }
}

/// All series of one runner.
pub(crate) struct Registry {
    service_name: String,
    instance_id: String,
    app_id: String,
    components: Mutex<Vec<Arc<ComponentMetrics>>>,
    /// Every span series, in creation order, for rendering.
    spans: Mutex<Vec<Arc<SpanSeries>>>,
    span_count: AtomicUsize,
    overflow_warned: AtomicBool,
    /// Server spans of requests no route matched (404, Spin's health check).
    pub unrouted: SeriesMap<(&'static str, u16)>,
    /// SQLite client spans by statement: [unset, error].
    pub sqlite: [SeriesMap<Box<str>>; 2],
    /// Outbound HTTP client spans.
    pub outbound: SeriesMap<OutboundKey>,
}

/// What tells outbound HTTP series apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct OutboundKey {
    pub method: &'static str,
    pub host: Box<str>,
    pub status: Option<u16>,
    pub error: bool,
}

impl Registry {
    pub fn new(service_name: String, instance_id: String, app_id: String) -> Registry {
        Registry {
            service_name,
            instance_id,
            app_id,
            components: Mutex::new(Vec::new()),
            spans: Mutex::new(Vec::new()),
            span_count: AtomicUsize::new(0),
            overflow_warned: AtomicBool::new(false),
            unrouted: SeriesMap::default(),
            sqlite: [SeriesMap::default(), SeriesMap::default()],
            outbound: SeriesMap::default(),
        }
    }

    /// Registers a component's series.
    pub fn component(&self, id: &str) -> Arc<ComponentMetrics> {
        let name = format!("execute_wasm_component {id}");
        let internal = |error| {
            self.span_series_uncapped(SpanLabels {
                span_name: &name,
                kind: Kind::Internal,
                error,
                method: None,
                route: None,
                status: None,
                db_system: None,
                server_address: None,
            })
        };
        let metrics = Arc::new(ComponentMetrics {
            request_labels: format!(
                "trigger_type=\"http\",app_id=\"{}\",component_id=\"{}\"",
                escape(&self.app_id),
                escape(id)
            ),
            component_label: format!("component_id=\"{}\"", escape(id)),
            auth_labels: format!(
                "service_name=\"{}\",component_id=\"{}\"",
                escape(&self.service_name),
                escape(id)
            ),
            requests: AtomicU64::new(0),
            memory_used: Histogram::memory(),
            memory_used_on_init: Histogram::memory(),
            execute: [internal(false), internal(true)],
            auth_events: Mutex::new(HashMap::new()),
            auth_overflow_warned: AtomicBool::new(false),
        });
        if let Ok(mut components) = self.components.lock() {
            components.push(metrics.clone());
        }
        metrics
    }

    /// A new span series, unless the cap is reached.
    pub fn span_series(&self, labels: SpanLabels<'_>) -> Option<Arc<SpanSeries>> {
        if self.span_count.load(Ordering::Relaxed) >= MAX_SPAN_SERIES {
            if !self.overflow_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "span metrics: {MAX_SPAN_SERIES} series reached; spans with new label sets are not counted"
                );
            }
            return None;
        }
        Some(self.span_series_uncapped(labels))
    }

    fn span_series_uncapped(&self, l: SpanLabels<'_>) -> Arc<SpanSeries> {
        let mut labels = format!(
            "service_name=\"{}\",span_name=\"{}\",span_kind=\"{}\",status_code=\"{}\"",
            escape(&self.service_name),
            escape(l.span_name),
            l.kind.as_str(),
            if l.error {
                "STATUS_CODE_ERROR"
            } else {
                "STATUS_CODE_UNSET"
            },
        );
        let mut dim = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                let _ = write!(labels, ",{name}=\"{}\"", escape(value));
            }
        };
        dim("http_request_method", l.method);
        dim("http_route", l.route);
        dim("http_response_status_code", l.status.map(status_text));
        dim("db_system", l.db_system);
        dim("server_address", l.server_address);
        let series = Arc::new(SpanSeries {
            labels,
            durations: Histogram::durations(),
        });
        if let Ok(mut spans) = self.spans.lock() {
            spans.push(series.clone());
        }
        self.span_count.fetch_add(1, Ordering::Relaxed);
        series
    }

    /// The series of a SQLite statement (its text is the span name).
    pub fn sqlite_series(&self, statement: &str, error: bool) -> Option<Arc<SpanSeries>> {
        let map = &self.sqlite[usize::from(error)];
        let name = if map.len() >= MAX_SQL_STATEMENTS && statement != super::SQLITE_OPEN {
            super::SQLITE_EXECUTE
        } else {
            statement
        };
        map.get_or_insert(
            name,
            || Box::from(name),
            || {
                self.span_series(SpanLabels {
                    span_name: name,
                    kind: Kind::Client,
                    error,
                    method: None,
                    route: None,
                    status: None,
                    db_system: Some("sqlite"),
                    server_address: None,
                })
            },
        )
    }

    /// The text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(32 << 10);
        let components: Vec<Arc<ComponentMetrics>> = self
            .components
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let spans: Vec<Arc<SpanSeries>> = self.spans.lock().map(|s| s.clone()).unwrap_or_default();

        family(
            &mut out,
            "spin_request_count_total",
            "counter",
            "Requests routed to each component (Spin's spin.request_count).",
        );
        for c in &components {
            let n = c.requests.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "spin_request_count_total{{{}}} {n}", c.request_labels);
            }
        }
        for (name, help, pick) in [
            (
                "spin_component_memory_used_bytes",
                "Linear memory of a component instance at the end of a request (Spin's spin.component_memory_used).",
                (|c: &ComponentMetrics| &c.memory_used) as fn(&ComponentMetrics) -> &Histogram,
            ),
            (
                "spin_component_memory_used_on_init_bytes",
                "Linear memory of a component instance right after instantiation (Spin's spin.component_memory_used_on_init).",
                |c: &ComponentMetrics| &c.memory_used_on_init,
            ),
        ] {
            family(&mut out, name, "histogram", help);
            for c in &components {
                let histogram = pick(c);
                if histogram.total() > 0 {
                    histogram.render(&mut out, name, &c.component_label, 1.0);
                }
            }
        }

        let live: Vec<(&SpanSeries, u64)> = spans
            .iter()
            .map(|s| (s.as_ref(), s.durations.total()))
            .filter(|(_, n)| *n > 0)
            .collect();
        family(
            &mut out,
            "traces_span_metrics_calls_total",
            "counter",
            "Spans, as the collector's spanmetrics connector counts them.",
        );
        for (series, n) in &live {
            let _ = writeln!(
                out,
                "traces_span_metrics_calls_total{{{}}} {n}",
                series.labels
            );
        }
        family(
            &mut out,
            "traces_span_metrics_duration_milliseconds",
            "histogram",
            "Span durations, as the collector's spanmetrics connector records them.",
        );
        for (series, _) in &live {
            series.durations.render(
                &mut out,
                "traces_span_metrics_duration_milliseconds",
                &series.labels,
                1e6,
            );
        }

        family(
            &mut out,
            "latch_auth_events_total",
            "counter",
            "Guest log lines that are JSON objects with string event and outcome, as the collector's count connector counts them.",
        );
        for c in &components {
            let events: Vec<((String, String), u64)> = c
                .auth_events
                .lock()
                .map(|e| e.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default();
            let mut events = events;
            events.sort();
            for ((event, outcome), n) in events {
                let _ = writeln!(
                    out,
                    "latch_auth_events_total{{{},event=\"{}\",outcome=\"{}\"}} {n}",
                    c.auth_labels,
                    escape(&event),
                    escape(&outcome)
                );
            }
        }

        family(
            &mut out,
            "target_info",
            "gauge",
            "The runtime instance (the OTLP resource).",
        );
        let _ = writeln!(
            out,
            "target_info{{service_name=\"{}\",service_instance_id=\"{}\"}} 1",
            escape(&self.service_name),
            escape(&self.instance_id)
        );
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A status code as a label value, without allocating.
fn status_text(status: u16) -> &'static str {
    // Three digits, 100..=999: index into a table built once.
    static TABLE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| (0..1000).map(|n| n.to_string()).collect());
    table
        .get(usize::from(status))
        .map(String::as_str)
        .unwrap_or("0")
}

/// A label value in the text format: backslash, quote and newline escaped.
pub(crate) fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_inclusive_bounds() {
        let h = Histogram::durations();
        h.observe(2_000_000);
        h.observe(2_000_001);
        h.observe(20_000_000_000);
        let mut out = String::new();
        h.render(&mut out, "d", "a=\"1\"", 1e6);
        assert!(out.contains("d_bucket{a=\"1\",le=\"2\"} 1\n"), "{out}");
        assert!(out.contains("d_bucket{a=\"1\",le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("d_bucket{a=\"1\",le=\"10000\"} 2\n"), "{out}");
        assert!(out.contains("d_bucket{a=\"1\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("d_count{a=\"1\"} 3\n"), "{out}");
        assert!(out.contains("d_sum{a=\"1\"} 20004.000001\n"), "{out}");
    }

    #[test]
    fn labels_are_escaped_and_absent_dimensions_omitted() {
        let r = Registry::new("latch".into(), "i".into(), "latch".into());
        let s = r
            .sqlite_series("SELECT \"a\"\nFROM t WHERE x = '\\'", false)
            .unwrap();
        s.observe(1);
        let text = r.render();
        assert!(
            text.contains(
                "traces_span_metrics_calls_total{service_name=\"latch\",span_name=\"SELECT \\\"a\\\"\\nFROM t WHERE x = '\\\\'\",span_kind=\"SPAN_KIND_CLIENT\",status_code=\"STATUS_CODE_UNSET\",db_system=\"sqlite\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn sql_statements_beyond_the_cap_share_one_series() {
        let r = Registry::new("latch".into(), "i".into(), "latch".into());
        for i in 0..MAX_SQL_STATEMENTS + 10 {
            r.sqlite_series(&format!("SELECT {i}"), false)
                .unwrap()
                .observe(1);
        }
        let text = r.render();
        assert!(
            text.contains("span_name=\"spin_sqlite.execute\""),
            "overflow series missing"
        );
        assert_eq!(r.sqlite[0].len(), MAX_SQL_STATEMENTS + 1);
    }
}
