//! The outbound HTTPS client: a hyper-util connection pool over tokio-rustls. The
//! connector resolves the host itself, checks every candidate address with the
//! `AddressGuard` before dialling it, and only then connects and handshakes, so the
//! guard sees exactly the address a request goes to. With `delivery.proxy` it tunnels
//! through the proxy instead (`proxy.rs`); the guard then sees only IP-literal endpoints.
//! Redirects are never followed and response bodies are read only up to a bound.
//!
//! The pool keeps at most `max_idle_per_host` idle connections per host and closes each
//! after `IDLE_TIMEOUT` idle (its timer checks that often). A dial goes ahead only while
//! a host has fewer connections than requests in flight (`Hosts`), so connections to a
//! host never outnumber the requests to it.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as PoolClient;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use super::error::DeliveryError;
use super::guard::AddressGuard;
use super::hosts::{Counted, Hosts, pool_key};
use super::proxy::{ProxyTarget, unbracket};

/// How long one TCP connect may take before the next resolved address is tried.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Host name lookups in progress at once (each holds a blocking-pool thread).
const DNS_CONCURRENCY: usize = 8;
/// A lookup that takes longer fails the attempt; it is retried on the schedule.
const DNS_TIMEOUT: Duration = Duration::from_secs(10);
/// A pooled connection idle this long is closed. The pool's timer checks this often, so
/// a connection closes between one and two of these after its last request. 30 s is
/// under the common server keep-alive limits (AWS ALB 60 s, nginx 75 s), so hookd
/// usually closes first rather than sending on a connection the server is closing; an
/// endpoint that gets a delivery at least every 30 s keeps its connections warm.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a dial waits for a busy connection to come back (see `Hosts::dial`) before it
/// goes ahead anyway. One comes back within moments; this only bounds a miscount.
pub(super) const DIAL_WAIT: Duration = Duration::from_secs(1);

tokio::task_local! {
    /// Cancelled when the request that is being sent is over. A dial started for it
    /// captures this, so one that is still waiting when its request got a pooled
    /// connection instead, and finished, gives up (`Hosts::dial`).
    static ORIGIN: CancellationToken;
}

pub type Body = Full<Bytes>;

#[derive(Clone)]
pub struct Client {
    pool: PoolClient<Connector, Body>,
    hosts: Arc<Hosts>,
}

pub struct ClientSettings {
    pub tls: Arc<rustls::ClientConfig>,
    pub guard: AddressGuard,
    pub source_address: Option<IpAddr>,
    /// Every connection goes through this HTTP CONNECT proxy when set.
    pub proxy: Option<ProxyTarget>,
    pub allow_http: bool,
    /// Idle connections kept per host (scheme, host and port); one more that comes back
    /// to a full pool is closed.
    pub max_idle_per_host: usize,
}

/// A response with its body read up to the caller's bound.
#[derive(Debug)]
pub struct BoundedResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Client {
    pub fn new(settings: ClientSettings) -> Self {
        Self::with_idle_timeout(settings, IDLE_TIMEOUT)
    }

    /// A client whose idle connections are closed after `idle` instead of `IDLE_TIMEOUT`
    /// (tests use a short one).
    pub fn with_idle_timeout(settings: ClientSettings, idle: Duration) -> Self {
        let hosts = Arc::new(Hosts::default());
        let connector = Connector {
            inner: Arc::new(ConnectorInner {
                tls: TlsConnector::from(settings.tls),
                guard: settings.guard,
                source_address: settings.source_address,
                proxy: settings.proxy,
                allow_http: settings.allow_http,
                dns: tokio::sync::Semaphore::new(DNS_CONCURRENCY),
                hosts: hosts.clone(),
            }),
        };
        // Without a timer hyper-util drops an expired connection only when a request
        // checks it out, so idle ones to a host that went quiet stay open for ever.
        let pool = PoolClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(settings.max_idle_per_host)
            .build(connector);
        Self { pool, hosts }
    }

    /// Sends one request and reads at most `max_body` bytes of the response, all within
    /// `timeout`. The rest of a longer body is discarded with the connection.
    pub async fn send(
        &self,
        request: Request<Body>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<BoundedResponse, DeliveryError> {
        let _in_flight = pool_key(request.uri()).map(|key| self.hosts.request(key));
        let origin = CancellationToken::new();
        let _over = origin.clone().drop_guard();
        let exchange = ORIGIN.scope(origin, async {
            let response = self
                .pool
                .request(request)
                .await
                .map_err(DeliveryError::from_client)?;
            read_bounded(response, max_body).await
        });
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| DeliveryError::Timeout(timeout))?
    }
}

async fn read_bounded(
    response: Response<Incoming>,
    max_body: usize,
) -> Result<BoundedResponse, DeliveryError> {
    let (parts, mut body) = response.into_parts();
    let mut collected = Vec::new();
    while collected.len() < max_body {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = max_body - collected.len();
                    collected.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            // A body cut short after the status arrived still counts as the answer.
            Some(Err(_)) | None => break,
        }
    }
    Ok(BoundedResponse {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: collected,
    })
}

#[derive(Clone)]
struct Connector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    tls: TlsConnector,
    guard: AddressGuard,
    source_address: Option<IpAddr>,
    proxy: Option<ProxyTarget>,
    allow_http: bool,
    /// Lookups run on the blocking pool, which store reads share: a slow resolver
    /// must not take all of it.
    dns: tokio::sync::Semaphore,
    hosts: Arc<Hosts>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = DeliveryError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, DeliveryError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    /// hyper-util calls this while polling the request's own future, so `ORIGIN` is the
    /// request's; the dial may finish later in the background.
    fn call(&mut self, uri: Uri) -> Self::Future {
        let inner = self.inner.clone();
        let origin = ORIGIN.try_with(CancellationToken::clone).ok();
        Box::pin(async move { inner.connect(uri, origin).await })
    }
}

impl ConnectorInner {
    async fn connect(
        &self,
        uri: Uri,
        origin: Option<CancellationToken>,
    ) -> Result<Stream, DeliveryError> {
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if self.allow_http => false,
            _ => return Err(DeliveryError::Scheme),
        };
        let host = unbracket(uri.host().ok_or(DeliveryError::Scheme)?).to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let literal = host.parse::<IpAddr>().ok();
        let key = pool_key(&uri).ok_or(DeliveryError::Scheme)?;
        // Held by the connection until it closes; a failed dial gives it back at once.
        let counted = self.hosts.dial(key, origin).await?;

        let tcp = match &self.proxy {
            Some(proxy) => {
                // hookd knows the endpoint's address only when the URL names it; a host
                // name is resolved by the proxy, so name resolution and the private-address
                // policy are then the proxy's job (a refusal's error says so).
                if let Some(ip) = literal {
                    self.guard
                        .check(ip)
                        .map_err(|reason| DeliveryError::Refused {
                            address: ip,
                            reason,
                        })?;
                }
                let mut tcp = proxy.dial(self.source_address).await?;
                proxy
                    .tunnel(&mut tcp, &host, port, literal.is_none())
                    .await?;
                tcp
            }
            None => {
                let addresses: Vec<SocketAddr> = match literal {
                    Some(ip) => vec![SocketAddr::new(ip, port)],
                    None => self.resolve(&host, port).await?,
                };
                self.dial(&host, &addresses).await?
            }
        };
        let io = if tls {
            let name = ServerName::try_from(host.clone()).map_err(|_| DeliveryError::Scheme)?;
            let stream = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(DeliveryError::Tls)?;
            Io::Tls(Box::new(TokioIo::new(stream)))
        } else {
            Io::Plain(TokioIo::new(tcp))
        };
        Ok(Stream {
            io,
            _counted: counted,
        })
    }

    /// Resolves a host name, at most `DNS_CONCURRENCY` at a time and within
    /// `DNS_TIMEOUT`.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DeliveryError> {
        let failed = |source| DeliveryError::Resolve {
            host: host.to_owned(),
            source,
        };
        let lookup = async {
            let _permit = self
                .dns
                .acquire()
                .await
                .map_err(|_| failed(std::io::ErrorKind::Interrupted.into()))?;
            tokio::net::lookup_host((host, port)).await.map_err(failed)
        };
        match tokio::time::timeout(DNS_TIMEOUT, lookup).await {
            Ok(found) => Ok(found?.collect()),
            Err(_) => Err(failed(std::io::ErrorKind::TimedOut.into())),
        }
    }

    /// Tries each permitted address in turn; refused ones are never dialled.
    async fn dial(&self, host: &str, addresses: &[SocketAddr]) -> Result<TcpStream, DeliveryError> {
        let mut last = None;
        for &address in addresses {
            if let Err(reason) = self.guard.check(address.ip()) {
                last = Some(DeliveryError::Refused {
                    address: address.ip(),
                    reason,
                });
                continue;
            }
            let connect = connect_tcp(address, self.source_address);
            match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(source)) => last = Some(DeliveryError::Connect { address, source }),
                Err(_) => {
                    last = Some(DeliveryError::Connect {
                        address,
                        source: std::io::ErrorKind::TimedOut.into(),
                    })
                }
            }
        }
        Err(last.unwrap_or_else(|| DeliveryError::Resolve {
            host: host.to_owned(),
            source: std::io::ErrorKind::NotFound.into(),
        }))
    }
}

/// A TCP connection to `address`, from `source` when `delivery.source_address` is set.
pub(super) async fn connect_tcp(
    address: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<TcpStream> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A connection to an endpoint: TLS, or plain TCP when `delivery.allow_http` permits.
/// It stays counted against its host (`Hosts`) until it is dropped, that is closed.
pub struct Stream {
    io: Io,
    _counted: Counted,
}

enum Io {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    /// Both streams take vectored writes. Saying so matters for memory: hyper then
    /// queues the request body (a `Bytes` shared by every delivery of the event) and
    /// writes it from there; otherwise it copies the whole body into a per-connection
    /// buffer, which keeps that size while the connection idles in the pool.
    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Milliseconds an attempt took, saturating.
pub fn elapsed_ms(started: Instant) -> u32 {
    u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX)
}
