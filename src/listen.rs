//! `hookd listen`: a development receiver. It serves HTTPS on 127.0.0.1 with the
//! certificate `hookd init` made, checks each request's Standard Webhooks signature
//! with the given `whsec_` secret (and that its timestamp is within 5 minutes, as the
//! Standard Webhooks libraries do), prints a readable block per delivery to stdout,
//! and answers 204 when the signature holds, 401 when it does not. When stdout's
//! reader goes away (`hookd listen ... | head`) it stops, quietly, as `cat` would.

use std::convert::Infallible;
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::delivery::sign::{SecretError, SigningKey};
use crate::tls::TlsError;

/// hookd's bodies are at most `server.max_body_bytes` (256 KiB by default); 1 MiB leaves
/// room for a raised limit while bounding what a stray client can make us hold.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The Standard Webhooks tolerance against replayed deliveries.
const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;
/// A client that does not finish its handshake in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;
/// After cancellation, requests in progress get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// After a failed accept (say, out of file descriptors), wait before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub struct ListenOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The subscription's `whsec_` signing secret.
    pub secret: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("--secret: {0}")]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound receiver, not yet accepting.
pub struct Listener {
    tcp: TcpListener,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    key: Arc<SigningKey>,
    cert: PathBuf,
}

/// Binds, prints where it listens, and serves until `shutdown` is cancelled.
pub async fn listen(
    options: ListenOptions,
    shutdown: CancellationToken,
) -> Result<(), ListenError> {
    let listener = bind(options).await?;
    let banner = format!(
        "listening on https://{}/ (certificate {})",
        listener.local_addr(),
        listener.cert.display()
    );
    show(&banner, &shutdown);
    listener.run(shutdown).await
}

/// Checks the secret and the certificate, then binds 127.0.0.1:port.
pub async fn bind(options: ListenOptions) -> Result<Listener, ListenError> {
    let key = SigningKey::from_secret(options.secret.trim())?;
    let acceptor = TlsAcceptor::from(crate::tls::server_config(&options.cert, &options.key)?);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, options.port));
    let bind_error = |source| ListenError::Bind { addr, source };
    let tcp = TcpListener::bind(addr).await.map_err(bind_error)?;
    let addr = tcp.local_addr().map_err(bind_error)?;
    Ok(Listener {
        tcp,
        addr,
        acceptor,
        key: Arc::new(key),
        cert: options.cert,
    })
}

impl Listener {
    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts until `shutdown` is cancelled, then lets requests in progress finish.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ListenError> {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let tracker = TaskTracker::new();
        loop {
            // The permit is taken before accepting, so at most MAX_CONNECTIONS are served.
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = Arc::clone(&permits).acquire_owned() => permit,
            };
            // acquire_owned fails only on a closed semaphore, and this one is never closed.
            let Ok(permit) = permit else { break };
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let acceptor = self.acceptor.clone();
            let key = Arc::clone(&self.key);
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                serve_connection(stream, peer, acceptor, key, shutdown).await;
                drop(permit);
            });
        }
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the shutdown grace; dropping them");
        }
        Ok(())
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    key: Arc<SigningKey>,
    shutdown: CancellationToken,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            // The usual cause: the sender does not trust the CA that signed our certificate.
            tracing::warn!(%peer, %error, "TLS handshake failed (does the sender trust the CA?)");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let stop = shutdown.clone();
    let service = service_fn(move |request| handle(request, Arc::clone(&key), stop.clone()));
    let connection = http1::Builder::new().serve_connection(TokioIo::new(tls), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Prints one block on stdout. If nobody reads it any more, the receiver has no purpose
/// left: `stop` ends it (and `println!` would panic on EPIPE instead).
fn show(block: &str, stop: &CancellationToken) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{block}").and_then(|()| stdout.flush()) {
        if error.kind() != ErrorKind::BrokenPipe {
            tracing::warn!(%error, "cannot write to stdout; stopping");
        }
        stop.cancel();
    }
}

async fn handle(
    request: Request<Incoming>,
    key: Arc<SigningKey>,
    stop: CancellationToken,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let received = SystemTime::now();
    let (parts, body) = request.into_parts();
    let heading = format!(
        "--- {} {} {}",
        rfc3339(received),
        parts.method,
        parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            show(&format!("{heading}\nbody not read: {error}\n"), &stop);
            return Ok(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body unreadable or over 1 MiB",
            ));
        }
    };
    let now = unix_seconds(received);
    let verdict = verify(&key, &parts.headers, &body, now);
    let id = header_str(&parts.headers, "webhook-id").unwrap_or("(none)");
    let status_line = match &verdict {
        Ok(()) => "signature ok".to_owned(),
        Err(reason) => format!("SIGNATURE INVALID: {reason}"),
    };
    // One print per delivery so concurrent deliveries do not interleave.
    let block = format!(
        "{heading}\nwebhook-id: {id}\n{status_line}\n{}\n",
        show_body(&body)
    );
    show(&block, &stop);
    Ok(match verdict {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(reason) => text(
            StatusCode::UNAUTHORIZED,
            &format!("signature invalid: {reason}"),
        ),
    })
}

/// Standard Webhooks verification of one request at time `now` (Unix seconds).
fn verify(key: &SigningKey, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), String> {
    let required =
        |name: &str| header_str(headers, name).ok_or_else(|| format!("no {name} header"));
    let id = required("webhook-id")?;
    let timestamp = required("webhook-timestamp")?;
    let signature = required("webhook-signature")?;
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| format!("webhook-timestamp {timestamp:?} is not Unix seconds"))?;
    let skew = now.saturating_sub(timestamp);
    if skew.abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(format!(
            "webhook-timestamp is {skew} s away from this clock (more than {TIMESTAMP_TOLERANCE_SECS} s)"
        ));
    }
    if !key.verify(id, timestamp, body, signature) {
        return Err("no v1 signature in webhook-signature matches the secret".to_owned());
    }
    Ok(())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Pretty JSON when the body parses, else the text, else its size.
fn show_body(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".to_owned();
    }
    let pretty = serde_json::from_slice::<serde_json::Value>(body)
        .and_then(|json| serde_json::to_string_pretty(&json));
    if let Ok(pretty) = pretty {
        return pretty;
    }
    match std::str::from_utf8(body) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("({} bytes, not UTF-8)", body.len()),
    }
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC (Howard Hinnant's days-to-civil algorithm), to avoid a
/// date crate for one line of output.
fn rfc3339(time: SystemTime) -> String {
    let secs = unix_seconds(time);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
