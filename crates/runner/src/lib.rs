//! `latch-runner`: runs a Spin manifest's HTTP components on wasmtime, with
//! Spin 3.6's routing, headers and host interfaces. It knows nothing of what
//! the components do.
//!
//! The shape: [`manifest`] (spin.toml) -> [`app`] (one slot per component,
//! compiled once by [`engine`], linked against the [`host`] interfaces) ->
//! [`server`] (routes with [`router`], a fresh store per request), with
//! [`swap`] replacing a component when its `.wasm` changes.

pub mod app;
pub mod check;
pub mod engine;
pub mod host;
pub mod manifest;
pub mod router;
pub mod server;
pub mod swap;
pub mod variables;

pub use app::{App, LoadOptions};
pub use wasmtime;
pub use engine::EngineOptions;
pub use host::stdio::GuestLog;
pub use server::{ServeOptions, serve};
