//! An HTTPS receiver on loopback that counts its TCP connections: open now, most open at
//! once, accepted in all, and for each one when it last answered and when it closed.
//! Every change is published on a watch channel, so a test awaits the state it expects
//! instead of sleeping. It can hold its answers until some number of requests have
//! arrived, so that that many connections are open at once. Answers are chunked, their
//! body sent after the head (as many web frameworks stream them), so the client sees the
//! status before its connection is free for another request.
//!
//! Not in `common/mod.rs` (other tests do not need it): a test includes it with
//! `#[path = "common/connections.rs"] mod connections;` beside `mod common;`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::common::{TestCa, WAIT};

/// What the receiver has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    pub open: usize,
    pub max_open: usize,
    pub accepted: usize,
    pub requests: usize,
    /// Every connection, in the order accepted.
    pub each: Vec<Connection>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Connection {
    /// When it last began sending an answer (the client cannot have gone idle before).
    pub last_answered: Option<Instant>,
    pub closed: Option<Instant>,
}

impl Connections {
    /// Indexes (into `each`) of the connections open now.
    pub fn open_ids(&self) -> Vec<usize> {
        (0..self.each.len())
            .filter(|&i| self.each[i].closed.is_none())
            .collect()
    }
}

pub struct CountingReceiver {
    pub url: String,
    state: watch::Receiver<Connections>,
    /// Answers wait until this many requests have arrived (0: answer at once).
    hold: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl CountingReceiver {
    pub async fn start(ca: &TestCa) -> Self {
        let (cert, key) = ca.leaf();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), cert).unwrap();
        std::fs::write(dir.path().join("k.pem"), key).unwrap();
        let tls = hookd::tls::server_config(&dir.path().join("c.pem"), &dir.path().join("k.pem"))
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, state) = watch::channel(Connections::default());
        let tx = Arc::new(tx);
        let hold = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (hold_task, stop_task) = (hold.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop_task.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap().0,
                };
                // Each chunk goes out at once, as from a real server (no Nagle stall).
                stream.set_nodelay(true).unwrap();
                let mut id = 0;
                tx.send_modify(|s| {
                    id = s.each.len();
                    s.each.push(Connection::default());
                    s.accepted += 1;
                    s.open += 1;
                    s.max_open = s.max_open.max(s.open);
                });
                let (tx, acceptor, hold) = (tx.clone(), acceptor.clone(), hold_task.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let service = service_fn(|request: hyper::Request<Incoming>| {
                            answer(request, id, tx.clone(), hold.load(Ordering::SeqCst))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    let now = Instant::now();
                    tx.send_modify(|s| {
                        s.open -= 1;
                        s.each[id].closed = Some(now);
                    });
                });
            }
        });
        Self {
            url: format!("https://localhost:{port}/hook"),
            state,
            hold,
            stop,
        }
    }

    /// Later answers wait until `requests` requests in all have arrived.
    pub fn hold_answers_until(&self, requests: usize) {
        self.hold.store(requests, Ordering::SeqCst);
    }

    pub fn now(&self) -> Connections {
        self.state.borrow().clone()
    }

    /// Waits (at most `WAIT`) until the counts satisfy `done`, and returns them.
    pub async fn wait_for(
        &self,
        what: &str,
        done: impl FnMut(&Connections) -> bool,
    ) -> Connections {
        let mut state = self.state.clone();
        match tokio::time::timeout(WAIT, state.wait_for(done)).await {
            Ok(Ok(seen)) => seen.clone(),
            _ => panic!("never: {what}; last seen {:?}", self.now()),
        }
    }
}

async fn answer(
    request: hyper::Request<Incoming>,
    id: usize,
    tx: Arc<watch::Sender<Connections>>,
    hold: usize,
) -> Result<hyper::Response<Chunks>, std::convert::Infallible> {
    let _ = request.into_body().collect().await;
    tx.send_modify(|s| s.requests += 1);
    if hold > 0 {
        let _ = tx.subscribe().wait_for(|s| s.requests >= hold).await;
    }
    let now = Instant::now();
    tx.send_modify(|s| s.each[id].last_answered = Some(now));
    let (body, chunks) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let _ = body.send(Bytes::from_static(b"o")).await;
        tokio::task::yield_now().await;
        let _ = body.send(Bytes::from_static(b"k")).await;
    });
    Ok(hyper::Response::new(Chunks(chunks)))
}

/// A response body sent as it is produced (chunked: no length known up front).
pub struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

impl Drop for CountingReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
