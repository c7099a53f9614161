//! WASI 0.2: cli, io, clocks, random. Filesystem and sockets are linked too,
//! as Spin does, but inert: no directory is preopened and no network is allowed.

use std::sync::Arc;

use wasmtime::component::Linker;
use wasmtime_wasi::WasiCtx;

use super::InstanceState;
use super::stdio::{GuestLog, LineWriter, Stream};
use crate::manifest::ComponentDecl;
use crate::telemetry::InstanceTelemetry;

pub fn link(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    Ok(())
}

/// Per-component WASI settings.
pub struct WasiConfig {
    component: Arc<str>,
    environment: Vec<(String, String)>,
    log: GuestLog,
}

impl WasiConfig {
    pub fn configure(component: &Arc<str>, decl: &ComponentDecl, log: GuestLog) -> WasiConfig {
        WasiConfig {
            component: component.clone(),
            environment: decl
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            log,
        }
    }

    pub fn instance_state(&self, telemetry: &InstanceTelemetry) -> WasiCtx {
        let mut builder = WasiCtx::builder();
        builder
            .stdout(LineWriter::with_telemetry(
                self.component.clone(),
                Stream::Stdout,
                self.log.clone(),
                telemetry.clone(),
            ))
            .stderr(LineWriter::with_telemetry(
                self.component.clone(),
                Stream::Stderr,
                self.log.clone(),
                telemetry.clone(),
            ))
            .envs(&self.environment)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false);
        builder.build()
    }
}
