//! `latch-runner`: runs a Spin manifest's HTTP components on wasmtime, with
//! Spin 3.6's routing, headers and host interfaces. It knows nothing of what
//! the components do.
//!
//! The shape: [`manifest`] (spin.toml) -> [`app`] (one slot per component,
//! compiled once by [`engine`], linked against the [`host`] interfaces) ->
//! [`server`] (routes with [`router`], a fresh store per request), with
//! [`swap`] replacing a component when its `.wasm` changes, and [`telemetry`]
//! producing Spin's spans, metrics and log records (OTLP) and the Prometheus
//! series the dashboards query.

pub mod app;
pub mod check;
pub mod engine;
pub mod handover;
pub mod host;
pub mod instance;
pub mod manifest;
pub mod router;
pub mod server;
pub mod swap;
pub mod telemetry;
pub mod variables;

pub use app::{App, LoadOptions};
pub use engine::EngineOptions;
pub use host::stdio::GuestLog;
pub use server::{ServeOptions, serve};
pub use telemetry::{Telemetry, TelemetryConfig, serve_metrics};
pub use wasmtime;
