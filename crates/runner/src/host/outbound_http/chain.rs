//! Service chaining: a request to `http://<component>.spin.internal/<path>`
//! runs that component of the application in-process, without a socket, as
//! Spin 3.6.3 does. The caller must list the host in its
//! `allowed_outbound_hosts`; the target may have a private route
//! (`route = { private = true }`), reachable no other way.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use wasmtime::Engine;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use crate::app::ComponentSlot;
use crate::instance;
use crate::server::{SpinHeaders, append_spin_headers};
use crate::telemetry::InstanceTelemetry;

/// The host suffix that names a component.
const SUFFIX: &str = ".spin.internal";
/// The client address Spin gives a chained request.
const CHAINED_CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
/// How long a chained instance may run when the caller set no timeout
/// (wasmtime-wasi-http's default for every request option).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The components a chained request can reach: the application's, filled in
/// once they are all loaded (weakly held: the slots own this through their
/// host configuration).
pub struct ServiceChain {
    engine: Engine,
    targets: OnceLock<BTreeMap<String, Weak<ComponentSlot>>>,
}

impl ServiceChain {
    pub fn new(engine: Engine) -> Arc<ServiceChain> {
        Arc::new(ServiceChain {
            engine,
            targets: OnceLock::new(),
        })
    }

    /// Sets the reachable components: those with an HTTP trigger.
    pub fn set_targets<'a>(&self, slots: impl IntoIterator<Item = &'a Arc<ComponentSlot>>) {
        let targets = slots
            .into_iter()
            .map(|slot| (slot.id.clone(), Arc::downgrade(slot)))
            .collect();
        let _ = self.targets.set(targets);
    }

    /// The component a chained URI names, if the URI is one.
    pub fn target_of(uri: &http::Uri) -> Option<&str> {
        uri.host()?.strip_suffix(SUFFIX).filter(|id| !id.is_empty())
    }

    /// Runs `request` through a fresh instance of `component`. A component
    /// that fails answers 500 with an empty body, as Spin's chained calls do.
    pub async fn call(
        &self,
        component: &str,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, Error> {
        let slot = self
            .targets
            .get()
            .and_then(|targets| targets.get(component))
            .and_then(Weak::upgrade)
            .ok_or(Error::DestinationNotFound)?;
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        let full_url = format!("http://{component}{SUFFIX}{path}");
        parts.uri = full_url.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
        parts.headers.insert(
            http::header::HOST,
            HeaderValue::try_from(format!("{component}{SUFFIX}"))
                .map_err(|_| Error::HttpRequestUriInvalid)?,
        );
        // A chained request matches the whole path, as Spin's synthetic
        // route `/...` does.
        append_spin_headers(
            &mut parts.headers,
            &SpinHeaders {
                full_url: &full_url,
                path_info: parts.uri.path(),
                matched_route: "/...",
                component_route: "",
                client: CHAINED_CLIENT,
                params: &[],
            },
        );
        let timeout = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
        let request = http::Request::from_parts(parts, body);
        // Spin counts a chained request as a request of its component.
        slot.telemetry.count_request();
        match instance::run(
            &self.engine,
            &slot,
            request,
            timeout,
            None,
            InstanceTelemetry::default(),
        )
        .await
        {
            Ok(response) => Ok(response),
            Err(failure) => {
                tracing::warn!(
                    component_id = %component,
                    "chained request failed: {}",
                    failure.log_detail()
                );
                let mut response =
                    Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                Ok(response)
            }
        }
    }
}
