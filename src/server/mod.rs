//! The API listener: accepts TCP connections under a connection limit, terminates TLS
//! (unless `server.plaintext` on loopback), and serves HTTP/1.1 with hyper. On shutdown
//! it stops accepting and lets each connection finish its current request. `monitor`
//! is the second, plain-HTTP listener for metrics and health.

pub mod monitor;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState};

/// Open connections at once; beyond this, accepting waits (back-pressure on the kernel
/// backlog rather than unbounded tasks).
const MAX_CONNECTIONS: usize = 4096;
/// A client that has not finished the TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Slow-loris guard: request headers must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for a connection slot, then for a connection. `None` once `stop` fires. An
/// accept error (EMFILE and friends) backs off briefly instead of spinning.
pub(super) async fn next_connection(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
    stop: &CancellationToken,
    name: &str,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let permit = tokio::select! {
        _ = stop.cancelled() => return None,
        permit = limit.clone().acquire_owned() => permit.ok()?,
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => return Some((stream, peer, permit)),
                Err(error) => {
                    tracing::warn!(%error, listener = name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// The HTTP layer reads at most this much of a request head (hyper's default is
/// ~400 KiB) and this many header fields. Both sit above the API's own limits
/// (`api::MAX_URI_BYTES`, `api::MAX_HEADER_BYTES`, `api::MAX_HEADER_FIELDS`), so a
/// request between the two gets a problem+json 414/431 from the API; only beyond these
/// does hyper answer a bare 431 (it cannot write a body there).
const MAX_REQUEST_HEAD: usize = 64 * 1024;
const MAX_REQUEST_HEADERS: usize = 128;

/// Serves until `shutdown`, then lets open connections finish their current request
/// for up to `drain`, and drops whatever is still open after that.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<AppState>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    let site = Arc::new(Site {
        console: state
            .config
            .console
            .enabled
            .then(|| crate::console::Console::new(state.clone())),
        api: state,
    });
    let hard_stop = CancellationToken::new();
    loop {
        let Some((stream, peer, permit)) =
            next_connection(&listener, &limit, &shutdown, "api").await
        else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let site = site.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        let hard_stop = hard_stop.clone();
        connections.spawn(async move {
            let serve = async move {
                match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(stream)) => serve_connection(stream, site, shutdown).await,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                    None => serve_connection(stream, site, shutdown).await,
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = hard_stop.cancelled() => {}
            }
            drop(permit);
        });
    }
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "closing connections still open after the grace period"
        );
        hard_stop.cancel();
        connections.wait().await;
    }
}

/// What the listener serves: the API, and the console when `console.enabled`.
struct Site {
    api: Arc<AppState>,
    console: Option<crate::console::Console>,
}

impl Site {
    async fn respond(&self, request: Request<Incoming>) -> Response<api::Body> {
        let request = request.map(api::RequestBody::Left);
        match &self.console {
            Some(console) if crate::console::owns(request.uri().path()) => console
                .respond(request)
                .await
                .map(http_body_util::Either::Left),
            // Disabled, console paths reach the API, which has no page: 404.
            _ => api::respond(&self.api, request).await,
        }
    }
}

async fn serve_connection<S>(stream: S, site: Arc<Site>, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let site = site.clone();
        async move { Ok::<Response<api::Body>, Infallible>(site.respond(request).await) }
    });
    serve_http1(stream, service, HEADER_TIMEOUT, &shutdown, None).await;
}

/// Serves one HTTP/1.1 connection (request headers must arrive within
/// `header_timeout`) until it ends. When `stop` fires, the request in progress may
/// finish, for at most `drain` if given, and the connection closes.
pub(super) async fn serve_http1<I, S, B>(
    io: I,
    service: S,
    header_timeout: Duration,
    stop: &CancellationToken,
    drain: Option<Duration>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_REQUEST_HEAD)
        .max_headers(MAX_REQUEST_HEADERS);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match drain {
                Some(limit) => drop(tokio::time::timeout(limit, connection).await),
                None => drop(connection.await),
            }
        }
    }
}
