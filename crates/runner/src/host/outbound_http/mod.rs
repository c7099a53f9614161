//! Outbound HTTP (`wasi:http/outgoing-handler`), allowed only to the hosts a
//! component lists in `allowed_outbound_hosts`, as Spin does. A refused
//! request fails inside the guest with `HttpRequestDenied`, Spin's error.
//! Requests leave through the application's pooled [`OutboundClient`], which
//! handles connections as Spin 3.6.3 does.

mod chain;
mod client;

use std::sync::Arc;

use wasmtime::component::Linker;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use super::InstanceState;
use crate::manifest::ComponentDecl;
use crate::telemetry::InstanceTelemetry;
use crate::variables::AppVariables;

pub use chain::ServiceChain;
pub use client::OutboundClient;

use crate::handover::hand_over;
use http_body_util::BodyExt as _;

pub fn link(linker: &mut Linker<InstanceState>) -> anyhow::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    Ok(())
}

/// One `allowed_outbound_hosts` entry, after templating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Pattern,
    host: HostPattern,
    port: Pattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: any subdomain (not the apex), as in Spin.
    Subdomains(String),
}

impl AllowedHost {
    /// Parses `scheme://host[:port]`, with `*` wildcards for scheme, host
    /// (whole or leading label) and port.
    pub fn parse(entry: &str) -> Result<AllowedHost, String> {
        if entry == "insecure:allow-all" {
            return Ok(AllowedHost {
                scheme: Pattern::Any,
                host: HostPattern::Any,
                port: Pattern::Any,
            });
        }
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| format!("`{entry}` must look like scheme://host[:port]"))?;
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "`{entry}`: paths are not allowed, only scheme://host[:port]"
            ));
        }
        if rest.contains('@') {
            return Err(format!("`{entry}`: credentials are not allowed"));
        }
        let scheme = match scheme {
            "*" => Pattern::Any,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') => {
                Pattern::Exact(s.to_ascii_lowercase())
            }
            s => return Err(format!("`{entry}`: bad scheme `{s}`")),
        };
        let (host, port) =
            split_host_port(rest).ok_or_else(|| format!("`{entry}`: bad host or port"))?;
        let host = match host.as_str() {
            "" => return Err(format!("`{entry}`: missing host")),
            "*" => HostPattern::Any,
            h => match h.strip_prefix("*.") {
                Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                    HostPattern::Subdomains(domain.to_ascii_lowercase())
                }
                _ if h.contains('*') => {
                    return Err(format!(
                        "`{entry}`: `*` may only be the whole host or its first label"
                    ));
                }
                _ => HostPattern::Exact(h.to_ascii_lowercase()),
            },
        };
        let port = match port.as_deref() {
            Some("*") => Pattern::Any,
            Some(p) if p.parse::<u16>().is_ok() => Pattern::Exact(p.to_string()),
            Some(p) => return Err(format!("`{entry}`: bad port `{p}`")),
            None => match &scheme {
                Pattern::Exact(s) => match default_port(s) {
                    Some(p) => Pattern::Exact(p.to_string()),
                    None => return Err(format!("`{entry}`: give a port for scheme `{s}`")),
                },
                Pattern::Any => {
                    return Err(format!(
                        "`{entry}`: a wildcard scheme needs an explicit port"
                    ));
                }
            },
        };
        Ok(AllowedHost { scheme, host, port })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = match &self.scheme {
            Pattern::Any => true,
            Pattern::Exact(s) => s == scheme,
        };
        let host = host.to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h.trim_start_matches('[').trim_end_matches(']') == host,
            HostPattern::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
        };
        let port_ok = match &self.port {
            Pattern::Any => true,
            Pattern::Exact(p) => *p == port.to_string(),
        };
        scheme_ok && host_ok && port_ok
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]`, keeping IPv6 literals (`[::1]:80`) intact.
fn split_host_port(text: &str) -> Option<(String, Option<String>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.to_string()),
        };
        return Some((format!("[{host}]"), port));
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), Some(port.to_string()))),
        None => Some((text.to_string(), None)),
    }
}

/// The hosts one component may reach.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<AllowedHost>);

impl AllowedHosts {
    pub fn parse(entries: &[String]) -> Result<AllowedHosts, String> {
        entries
            .iter()
            .map(|e| AllowedHost::parse(e))
            .collect::<Result<_, _>>()
            .map(AllowedHosts)
    }

    /// Whether a request to this URI may be sent.
    pub fn allows_uri(&self, uri: &http::Uri) -> bool {
        let Some(scheme) = uri.scheme_str() else {
            return false;
        };
        let Some(host) = uri.host() else {
            return false;
        };
        let Some(port) = uri.port_u16().or_else(|| default_port(scheme)) else {
            return false;
        };
        let scheme = scheme.to_ascii_lowercase();
        self.0.iter().any(|a| a.allows(&scheme, host, port))
    }
}

/// Per-component outbound settings.
pub struct OutboundHttpConfig {
    component: Arc<str>,
    allowed: Arc<AllowedHosts>,
    client: OutboundClient,
    chain: Arc<ServiceChain>,
}

impl OutboundHttpConfig {
    pub fn configure(
        component: &Arc<str>,
        variables: &AppVariables,
        decl: &ComponentDecl,
        client: &OutboundClient,
        chain: &Arc<ServiceChain>,
    ) -> anyhow::Result<OutboundHttpConfig> {
        let mut rendered = Vec::new();
        for entry in &decl.allowed_outbound_hosts {
            rendered.push(variables.render(entry)?);
        }
        let allowed = AllowedHosts::parse(&rendered)
            .map_err(|e| anyhow::anyhow!("component `{}`: allowed_outbound_hosts: {e}", decl.id))?;
        Ok(OutboundHttpConfig {
            component: component.clone(),
            allowed: Arc::new(allowed),
            client: client.clone(),
            chain: chain.clone(),
        })
    }

    pub fn instance_state(&self, telemetry: &InstanceTelemetry) -> OutboundHttp {
        OutboundHttp {
            component: self.component.clone(),
            allowed: self.allowed.clone(),
            client: self.client.clone(),
            chain: self.chain.clone(),
            telemetry: telemetry.clone(),
        }
    }
}

/// The `wasi:http` hooks of one instance: the allow-list check, then the send.
pub struct OutboundHttp {
    component: Arc<str>,
    allowed: Arc<AllowedHosts>,
    client: OutboundClient,
    chain: Arc<ServiceChain>,
    /// Spin's `spin_outbound_http.send_request` client span.
    telemetry: InstanceTelemetry,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        drop(fut);
        // The span starts before the allow-list check, as Spin's does, and its
        // `traceparent` goes out with the request.
        let span = self.telemetry.outbound(&mut request);
        if !self.allowed.allows_uri(request.uri()) {
            tracing::warn!(
                component_id = %self.component,
                destination = %redacted_origin(request.uri()),
                "outbound request denied: destination is not in allowed_outbound_hosts"
            );
            span.finish(None, Some("HttpRequestDenied"));
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        // Called inside the guest's `outgoing-handler.handle`: the head goes out
        // with what the body holds at that moment, or alone (as Spin may send it).
        let request = request.map(|body| hand_over(body).boxed_unsync());
        if let Some(component) = ServiceChain::target_of(request.uri()) {
            let component = component.to_string();
            let chain = self.chain.clone();
            return Box::new(async move {
                let response = chain.call(&component, request, options).await;
                match &response {
                    Ok(r) => span.finish(Some(r.status().as_u16()), None),
                    Err(e) => span.finish(None, Some(&format!("{e:?}"))),
                }
                let io = async { Ok(()) };
                response.map(|r| (r, Box::new(io) as Box<dyn Future<Output = _> + Send>))
            });
        }
        let client = self.client.clone();
        Box::new(async move {
            match client.send(request, options).await {
                Ok(response) => {
                    span.finish(Some(response.status().as_u16()), None);
                    // The pool drives the connection: nothing is left to await.
                    let io = async { Ok(()) };
                    Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
                }
                Err(e) => {
                    span.finish(None, Some(&format!("{e:?}")));
                    Err(e)
                }
            }
        })
    }
}

/// `scheme://host:port` of a URI: never its path or query, which may hold secrets.
pub fn redacted_origin(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.host().unwrap_or("?"),
        uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn allows(entries: &[&str], uri: &str) -> bool {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&entries)
            .unwrap()
            .allows_uri(&uri.parse().unwrap())
    }

    #[test]
    fn exact_host_and_default_port() {
        assert!(allows(
            &["https://db.example.com"],
            "https://db.example.com/v2/x"
        ));
        assert!(allows(
            &["https://db.example.com"],
            "https://db.example.com:443/"
        ));
        assert!(!allows(
            &["https://db.example.com"],
            "http://db.example.com/"
        ));
        assert!(!allows(
            &["https://db.example.com"],
            "https://db.example.com:8443/"
        ));
        assert!(!allows(&["https://db.example.com"], "https://evil.com/"));
    }

    #[test]
    fn wildcards() {
        assert!(allows(
            &["https://*.sqlite.cloud"],
            "https://abc.eu1.sqlite.cloud/"
        ));
        assert!(!allows(
            &["https://*.sqlite.cloud"],
            "https://sqlite.cloud/"
        ));
        assert!(!allows(
            &["https://*.sqlite.cloud"],
            "https://evilsqlite.cloud/"
        ));
        assert!(allows(&["http://127.0.0.1:*"], "http://127.0.0.1:9999/"));
        assert!(allows(&["*://*:*"], "http://anything:1/"));
        assert!(allows(&["insecure:allow-all"], "https://x/"));
        assert!(!allows(&[], "https://x/"));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "db.example.com",
            "https://db.example.com/path",
            "https://user@db.example.com",
            "*://db.example.com",
            "https://db.*.com",
            "https://db.example.com:http",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad}");
        }
    }
}
