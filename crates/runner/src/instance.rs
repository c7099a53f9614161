//! One request through a fresh instance of a component: what the HTTP trigger
//! does for every served request, and what service chaining
//! (`http://<component>.spin.internal`) does for a component's call to another.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt as _;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use crate::app::ComponentSlot;
use crate::engine::EPOCH_TICK;
use crate::handover::hand_over;
use crate::telemetry::InstanceTelemetry;

/// Why a request ended without the component's answer.
#[derive(Debug)]
pub enum Failure {
    Trapped,
    OutOfMemory,
    TimedOut,
    NoResponse,
    GuestError(String),
    Busy,
    Internal(String),
}

impl Failure {
    /// The span's `error.type`: low-cardinality, stable.
    pub fn error_type(&self) -> &'static str {
        match self {
            Failure::Trapped => "trap",
            Failure::OutOfMemory => "out_of_memory",
            Failure::TimedOut => "timeout",
            Failure::NoResponse => "no_response",
            Failure::GuestError(_) => "guest_error",
            Failure::Busy => "busy",
            Failure::Internal(_) => "internal",
        }
    }

    /// What the log says (the client only gets the generic detail).
    pub fn log_detail(&self) -> String {
        match self {
            Failure::GuestError(code) => format!("the guest set an error response: {code}"),
            Failure::Internal(message) => format!("runner error: {message}"),
            other => format!("{other:?}"),
        }
    }
}

/// Runs `request` (absolute URI, `spin-*` headers set) through a fresh instance
/// of the component now serving in `slot`, for at most `timeout`. The guest
/// runs in its own task, which holds `permit` (if any) until it ends: it may
/// keep streaming the body after the head has been returned.
pub async fn run(
    engine: &Engine,
    slot: &Arc<ComponentSlot>,
    request: Request<WasiBody>,
    timeout: Duration,
    permit: Option<OwnedSemaphorePermit>,
    telemetry: InstanceTelemetry,
) -> Result<Response<HyperOutgoingBody>, Failure> {
    let loaded = slot.current();
    let mut store = Store::new(engine, slot.host.instance_state_with(&telemetry));
    store.limiter(|state| &mut state.limits);
    store.set_epoch_deadline((timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64);
    store.epoch_deadline_trap();

    let (sender, receiver) = tokio::sync::oneshot::channel();
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .map_err(|e| Failure::Internal(e.to_string()))?;
    // Called inside the guest's `response-outparam.set`: the head goes out
    // with what the body holds at that moment, or alone (as Spin may send it).
    let outparam = store
        .data_mut()
        .http()
        .new_response_outparam_from_callback(move |response| {
            let _ = sender.send(response.map(|r| r.map(|b| hand_over(b).boxed_unsync())));
        })
        .map_err(|e| Failure::Internal(e.to_string()))?;

    let task = tokio::spawn(async move {
        let _permit = permit;
        let run = async {
            let proxy = loaded.pre.instantiate_async(&mut store).await?;
            store.data_mut().limits.mark_instantiated();
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await
        };
        let outcome = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(classify(&e, store.data().limits.memory_denied)),
            Err(_) => Err(Failure::TimedOut),
        };
        let limits = &store.data().limits;
        telemetry.finish(
            outcome.as_ref().err().map(Failure::error_type),
            limits.memory_used,
            limits.memory_used_on_init.unwrap_or(limits.memory_used),
        );
        outcome
    });

    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => Err(Failure::GuestError(format!("{code:?}"))),
        Err(_) => match task.await {
            Ok(Ok(())) => Err(Failure::NoResponse),
            Ok(Err(failure)) => Err(failure),
            Err(e) => Err(Failure::Internal(format!("instance task: {e}"))),
        },
    }
}

fn classify(error: &wasmtime::Error, memory_denied: bool) -> Failure {
    if memory_denied {
        return Failure::OutOfMemory;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::TimedOut,
        Some(_) => Failure::Trapped,
        None => {
            tracing::debug!("guest error: {error:#}");
            Failure::Trapped
        }
    }
}
