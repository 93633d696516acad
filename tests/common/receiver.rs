//! HTTPS receivers on loopback that record every request and answer with queued
//! statuses, optionally after a delay; and signature verification of what they got.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{TestCa, WAIT};

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// The address the request's connection came from.
    pub peer: SocketAddr,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    /// When the request arrived (before any configured delay).
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTPS endpoint on loopback that records every request and answers with the
/// status codes queued in `replies` (then 200).
pub struct Receiver {
    pub url: String,
    pub addr: SocketAddr,
    pub requests: mpsc::UnboundedReceiver<Received>,
    replies: Arc<Mutex<Vec<u16>>>,
    delay: Arc<Mutex<Duration>>,
    body: Arc<Mutex<Bytes>>,
    stop: CancellationToken,
}

impl Receiver {
    pub async fn start(ca: &TestCa) -> Self {
        Self::start_on(ca, "127.0.0.1:0").await
    }

    pub async fn start_on(ca: &TestCa, addr: &str) -> Self {
        let (cert, key) = ca.leaf();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), cert).unwrap();
        std::fs::write(dir.path().join("k.pem"), key).unwrap();
        let tls = hookd::tls::server_config(&dir.path().join("c.pem"), &dir.path().join("k.pem"))
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let replies = Arc::new(Mutex::new(Vec::new()));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let reply_body = Arc::new(Mutex::new(Bytes::from_static(b"ok")));
        let body_task = reply_body.clone();
        let stop = CancellationToken::new();
        let replies_task = replies.clone();
        let delay_task = delay.clone();
        let stop_task = stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = stop_task.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                let replies = replies_task.clone();
                let delay = delay_task.clone();
                let reply_body = body_task.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |request: hyper::Request<Incoming>| {
                        let tx = tx.clone();
                        let replies = replies.clone();
                        let delay = *delay.lock().unwrap();
                        let reply_body = reply_body.lock().unwrap().clone();
                        async move {
                            let at = std::time::Instant::now();
                            let headers = request
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                                })
                                .collect();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let status = {
                                let mut queued = replies.lock().unwrap();
                                if queued.is_empty() {
                                    200
                                } else {
                                    queued.remove(0)
                                }
                            };
                            let _ = tx.send(Received {
                                peer,
                                headers,
                                body,
                                at,
                            });
                            tokio::time::sleep(delay).await;
                            let mut response = hyper::Response::new(Full::new(reply_body));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("https://localhost:{}/hook", addr.port()),
            addr,
            requests: rx,
            replies,
            delay,
            body: reply_body,
            stop,
        }
    }

    /// The next requests answered get these statuses, in order.
    pub fn reply_with(&self, statuses: &[u16]) {
        self.replies.lock().unwrap().extend_from_slice(statuses);
    }

    /// Later answers carry this body (for example a token response).
    pub fn respond_body(&self, body: &str) {
        *self.body.lock().unwrap() = Bytes::from(body.to_string());
    }

    /// Forgets statuses queued by `reply_with` and not used yet.
    pub fn clear_replies(&self) {
        self.replies.lock().unwrap().clear();
    }

    /// Every later request is answered only after `delay` (a hanging endpoint).
    pub fn hang_for(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("a delivery arrives in time")
            .expect("receiver running")
    }

    /// Asserts nothing more arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Ok(Some(extra)) = tokio::time::timeout(wait, self.requests.recv()).await {
            panic!(
                "unexpected delivery: {}",
                String::from_utf8_lossy(&extra.body)
            );
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Verifies a delivery's Standard Webhooks signature with `secret`.
pub fn verify(received: &Received, secret: &str) -> bool {
    let key = hookd::delivery::sign::SigningKey::from_secret(secret).unwrap();
    let timestamp: i64 = received.header("webhook-timestamp").parse().unwrap();
    key.verify(
        received.header("webhook-id"),
        timestamp,
        &received.body,
        received.header("webhook-signature"),
    )
}
