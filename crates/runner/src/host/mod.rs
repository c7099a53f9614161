//! Host interfaces, one module each, in the shape of Spin's "factors".
//!
//! Every module has the same three phases:
//! 1. `link`: add its WIT bindings to the one shared `Linker` (once per runner);
//! 2. `configure`: derive the per-component configuration from the manifest
//!    (once per component, at start-up or when the manifest is loaded);
//! 3. `instance_state`: build the per-instance state from that configuration
//!    (once per request, so it must be cheap).

pub mod limits;
pub mod outbound_http;
pub mod sqlite;
pub mod stdio;
pub mod variables;
pub mod wasi;

use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::manifest::ComponentDecl;
use crate::telemetry::InstanceTelemetry;
use crate::variables::AppVariables;

/// Everything a component may use, derived once from the manifest.
pub struct ComponentHost {
    pub id: Arc<str>,
    pub wasi: wasi::WasiConfig,
    pub outbound_http: outbound_http::OutboundHttpConfig,
    pub sqlite: sqlite::SqliteConfig,
    pub variables: variables::VariablesConfig,
    pub limits: limits::LimitsConfig,
}

/// App-wide inputs of the configure phase.
pub struct ConfigureContext<'a> {
    pub variables: &'a AppVariables,
    pub databases: &'a sqlite::Databases,
    /// The application's outbound HTTP client (one connection pool, as in Spin).
    pub outbound: &'a outbound_http::OutboundClient,
    /// The components service chaining reaches.
    pub chain: &'a Arc<outbound_http::ServiceChain>,
    pub limits: limits::LimitsConfig,
    pub log: stdio::GuestLog,
}

impl ComponentHost {
    /// Phase 2: per-component configuration.
    pub fn configure(
        ctx: &ConfigureContext<'_>,
        decl: &ComponentDecl,
    ) -> anyhow::Result<ComponentHost> {
        let id: Arc<str> = Arc::from(decl.id.as_str());
        Ok(ComponentHost {
            wasi: wasi::WasiConfig::configure(&id, decl, ctx.log.clone()),
            outbound_http: outbound_http::OutboundHttpConfig::configure(
                &id,
                ctx.variables,
                decl,
                ctx.outbound,
                ctx.chain,
            )?,
            sqlite: sqlite::SqliteConfig::configure(ctx.databases, decl)?,
            variables: variables::VariablesConfig::configure(ctx.variables, decl)?,
            limits: ctx.limits,
            id,
        })
    }

    /// Phase 3: fresh state for one instance (one request), without telemetry.
    pub fn instance_state(&self) -> InstanceState {
        self.instance_state_with(&InstanceTelemetry::default())
    }

    /// Phase 3, with the request's telemetry handed to the interfaces that
    /// make spans or log records (stdio, SQLite, outbound HTTP).
    pub fn instance_state_with(&self, telemetry: &InstanceTelemetry) -> InstanceState {
        InstanceState {
            table: ResourceTable::new(),
            wasi: self.wasi.instance_state(telemetry),
            http: WasiHttpCtx::new(),
            outbound_http: self.outbound_http.instance_state(telemetry),
            sqlite: self.sqlite.instance_state(telemetry),
            variables: self.variables.instance_state(),
            limits: self.limits.instance_state(),
        }
    }
}

/// The data of one `Store`: one component instance serving one request.
pub struct InstanceState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub outbound_http: outbound_http::OutboundHttp,
    pub sqlite: sqlite::SqliteState,
    pub variables: variables::VariablesState,
    pub limits: limits::InstanceLimits,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound_http,
        }
    }
}

/// Phase 1: every host interface, added to the shared linker.
pub fn link(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
    wasi::link(linker)?;
    outbound_http::link(linker)?;
    sqlite::link(linker)?;
    variables::link(linker)?;
    Ok(())
}
