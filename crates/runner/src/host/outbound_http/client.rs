//! How outbound requests leave the runner: the way Spin 3.6.3 sends them
//! (`crates/factor-outbound-http/src/wasi.rs`), so a component that would stall
//! under Spin stalls here too.
//!
//! - One pooled client per application (hyper-util's legacy client): a kept-alive
//!   connection is reused by later requests of any component.
//! - Sockets keep Nagle's algorithm on (no `TCP_NODELAY`) unless the runner is
//!   told to be faster than Spin (`latch up --bench-tcp-nodelay`).
//! - TLS with rustls and the webpki roots, offering h2 and http/1.1 (ALPN).
//! - Timeouts as the guest's request options give them (600 s each when unset,
//!   as in wasmtime-wasi-http): connecting; the answer's head (`first_byte`,
//!   which includes connecting); each gap in its body (`between_bytes`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// wasmtime-wasi-http's default for an unset request option.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

tokio::task_local! {
    /// The connect timeout of the request being sent: the pooled client's
    /// connectors take no per-request arguments (Spin passes its options the
    /// same way).
    static CONNECT_TIMEOUT: Duration;
}

/// The application's outbound HTTP client, shared by every component.
#[derive(Clone)]
pub struct OutboundClient {
    http: Client<TcpConnector, WasiBody>,
    https: Client<TlsConnector, WasiBody>,
}

impl OutboundClient {
    /// `nodelay`: set `TCP_NODELAY` on new connections (Spin does not).
    pub fn new(nodelay: bool) -> OutboundClient {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let mut tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tcp = TcpConnector { nodelay };
        OutboundClient {
            http: Client::builder(TokioExecutor::new()).build(tcp.clone()),
            https: Client::builder(TokioExecutor::new()).build(TlsConnector {
                tcp,
                tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            }),
        }
    }

    /// Sends `request` (absolute URI) and waits for the answer's head.
    pub async fn send(
        &self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let option = |pick: fn(&RequestOptions) -> Option<Duration>| {
            options.as_ref().and_then(pick).unwrap_or(DEFAULT_TIMEOUT)
        };
        let connect = option(|o| o.connect_timeout);
        let first_byte = option(|o| o.first_byte_timeout);
        let between_bytes = option(|o| o.between_bytes_timeout);
        // Like Spin: the client writes `host` from the URI itself.
        request.headers_mut().remove(http::header::HOST);
        let use_tls = request.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
        let sent = CONNECT_TIMEOUT.scope(connect, async {
            if use_tls {
                self.https.request(request).await
            } else {
                self.http.request(request).await
            }
        });
        let response = tokio::time::timeout(first_byte, sent)
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(client_error)?;
        Ok(response.map(|body| BetweenBytes::new(body, between_bytes).boxed_unsync()))
    }
}

/// The wasi-http error behind a client error (a connector's own error is
/// kept; anything else is a protocol error).
fn client_error(error: hyper_util::client::legacy::Error) -> Error {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<ConnectFailure>() {
            return io.to_error();
        }
        source = cause.source();
    }
    if error.is_connect() {
        return Error::ConnectionRefused;
    }
    tracing::debug!("outbound request failed: {error}");
    Error::HttpProtocolError
}

/// Why a connection could not be made (carried through hyper's error).
#[derive(Debug)]
enum ConnectFailure {
    Timeout,
    Dns,
    Refused(std::io::Error),
    Tls(std::io::Error),
}

impl ConnectFailure {
    fn to_error(&self) -> Error {
        match self {
            ConnectFailure::Timeout => Error::ConnectionTimeout,
            ConnectFailure::Dns => Error::DnsError {
                rcode: Some("address not available".into()),
                info_code: None,
            },
            ConnectFailure::Refused(_) => Error::ConnectionRefused,
            ConnectFailure::Tls(_) => Error::TlsProtocolError,
        }
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectFailure::Timeout => write!(f, "connect timed out"),
            ConnectFailure::Dns => write!(f, "host name did not resolve"),
            ConnectFailure::Refused(e) => write!(f, "connect failed: {e}"),
            ConnectFailure::Tls(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectFailure {}

type Connecting<T> = Pin<Box<dyn Future<Output = Result<T, ConnectFailure>> + Send>>;

/// Plain TCP connections, Nagle on unless told otherwise.
#[derive(Clone)]
struct TcpConnector {
    nodelay: bool,
}

impl TcpConnector {
    async fn connect(self, uri: Uri, default_port: u16) -> Result<TcpStream, ConnectFailure> {
        let host = uri.host().ok_or(ConnectFailure::Dns)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(default_port);
        let timeout = CONNECT_TIMEOUT.try_with(|t| *t).unwrap_or(DEFAULT_TIMEOUT);
        let connecting = async {
            let addresses: Vec<_> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| ConnectFailure::Dns)?
                .collect();
            TcpStream::connect(addresses.as_slice())
                .await
                .map_err(ConnectFailure::Refused)
        };
        let stream = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ConnectFailure::Timeout)??;
        if self.nodelay {
            stream.set_nodelay(true).map_err(ConnectFailure::Refused)?;
        }
        Ok(stream)
    }
}

impl tower_service::Service<Uri> for TcpConnector {
    type Response = TokioIo<Tcp>;
    type Error = ConnectFailure;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move { Ok(TokioIo::new(Tcp(connector.connect(uri, 80).await?))) })
    }
}

/// TLS over [`TcpConnector`]'s connections.
#[derive(Clone)]
struct TlsConnector {
    tcp: TcpConnector,
    tls: tokio_rustls::TlsConnector,
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<Tls>;
    type Error = ConnectFailure;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let name =
                rustls::pki_types::ServerName::try_from(host).map_err(|_| ConnectFailure::Dns)?;
            let tcp = connector.tcp.connect(uri, 443).await?;
            let stream = connector
                .tls
                .connect(name, tcp)
                .await
                .map_err(ConnectFailure::Tls)?;
            Ok(TokioIo::new(Tls(stream)))
        })
    }
}

/// A plain connection, as hyper's pool wants it.
struct Tcp(TcpStream);

impl Connection for Tcp {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// A TLS connection; h2 when the server chose it.
struct Tls(TlsStream<TcpStream>);

impl Connection for Tls {
    fn connected(&self) -> Connected {
        if self.0.get_ref().1.alpn_protocol() == Some(b"h2") {
            Connected::new().negotiated_h2()
        } else {
            Connected::new()
        }
    }
}

macro_rules! delegate_io {
    ($type:ty) => {
        impl AsyncRead for $type {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                Pin::new(&mut self.0).poll_read(cx, buf)
            }
        }

        impl AsyncWrite for $type {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<std::io::Result<usize>> {
                Pin::new(&mut self.0).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> Poll<std::io::Result<usize>> {
                Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.0.is_write_vectored()
            }

            fn poll_flush(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                Pin::new(&mut self.0).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                Pin::new(&mut self.0).poll_shutdown(cx)
            }
        }
    };
}

delegate_io!(Tcp);
delegate_io!(Tls);

/// An answer's body that fails when a gap between its frames is too long.
struct BetweenBytes {
    body: Incoming,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl BetweenBytes {
    fn new(body: Incoming, limit: Duration) -> BetweenBytes {
        BetweenBytes {
            body,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl Body for BetweenBytes {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.limit;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) if e.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
