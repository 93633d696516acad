//! An HTTPS receiver on 127.0.0.1 with the bench certificate. It answers every delivery
//! 200, or holds it unanswered while its gate is closed (a stuck endpoint, to build a
//! backlog), and logs what the mode asks for: a count always; the send-to-arrival
//! latency and the distinct sequence numbers from the event's `data.t` and `data.seq`
//! (see `load::event`); how often each `webhook-id` came.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::measure::Clock;
use crate::setup::Setup;

/// What a receiver records beyond its count.
#[derive(Clone, Copy, Debug, Default)]
pub struct Track {
    /// Every arrival's send and arrival instants.
    pub latencies: bool,
    /// Distinct `data.seq` values below this many (0: none).
    pub distinct: usize,
    /// How many times each `webhook-id` (event id) arrived.
    pub ids: bool,
}

/// One delivery that arrived, in clock nanoseconds, with its event's sequence number.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    pub sent_ns: u64,
    pub at_ns: u64,
    pub seq: Option<u64>,
}

impl Arrival {
    pub fn latency_ns(&self) -> u64 {
        self.at_ns.saturating_sub(self.sent_ns)
    }
}

pub struct Log {
    clock: Clock,
    track: Track,
    count: AtomicU64,
    distinct: AtomicU64,
    last_new_ns: AtomicU64,
    seen: Mutex<Vec<u64>>,
    arrivals: Mutex<Vec<Arrival>>,
    ids: Mutex<HashMap<String, u32>>,
}

/// The part of a delivered body the receiver reads; other fields are skipped.
#[derive(Deserialize)]
struct Delivered {
    data: Stamp,
}

#[derive(Deserialize)]
struct Stamp {
    t: Option<u64>,
    seq: Option<u64>,
}

impl Log {
    /// Requests answered so far (every attempt, repeats included).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Distinct sequence numbers answered so far (`Track::distinct`).
    pub fn distinct(&self) -> u64 {
        self.distinct.load(Ordering::Relaxed)
    }

    /// When the last new sequence number was answered.
    pub fn last_new_ns(&self) -> u64 {
        self.last_new_ns.load(Ordering::Relaxed)
    }

    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }

    pub fn ids(&self) -> HashMap<String, u32> {
        self.ids.lock().unwrap().clone()
    }

    fn record(&self, id: Option<&str>, body: &[u8]) {
        let at_ns = self.clock.now_ns();
        self.count.fetch_add(1, Ordering::Relaxed);
        if self.track.ids {
            let id = id.unwrap_or("(no webhook-id)").to_string();
            *self.ids.lock().unwrap().entry(id).or_insert(0) += 1;
        }
        if !self.track.latencies && self.track.distinct == 0 {
            return;
        }
        let Ok(Delivered { data }) = serde_json::from_slice::<Delivered>(body) else {
            return;
        };
        if let (true, Some(sent_ns)) = (self.track.latencies, data.t) {
            self.arrivals.lock().unwrap().push(Arrival {
                sent_ns,
                at_ns,
                seq: data.seq,
            });
        }
        match data.seq {
            Some(seq) if (seq as usize) < self.track.distinct => {
                let mut seen = self.seen.lock().unwrap();
                let (word, bit) = (seq as usize / 64, 1u64 << (seq % 64));
                if seen[word] & bit == 0 {
                    seen[word] |= bit;
                    self.distinct.fetch_add(1, Ordering::Relaxed);
                    self.last_new_ns.store(at_ns, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub log: Arc<Log>,
    gate: watch::Sender<bool>,
}

impl Receiver {
    /// A receiver that answers at once.
    pub async fn start(setup: &Setup, clock: Clock, track: Track) -> Self {
        Self::with_gate(setup, clock, track, false).await
    }

    /// A receiver that holds every request unanswered until `release`.
    pub async fn held(setup: &Setup, clock: Clock, track: Track) -> Self {
        Self::with_gate(setup, clock, track, true).await
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answers the held requests and every later one.
    pub fn release(&self) {
        self.gate.send_replace(false);
    }

    async fn with_gate(setup: &Setup, clock: Clock, track: Track, held: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(setup.server_tls.clone());
        let log = Arc::new(Log {
            clock,
            track,
            count: AtomicU64::new(0),
            distinct: AtomicU64::new(0),
            last_new_ns: AtomicU64::new(0),
            seen: Mutex::new(vec![0; track.distinct.div_ceil(64)]),
            arrivals: Mutex::new(Vec::new()),
            ids: Mutex::new(HashMap::new()),
        });
        let (gate, gate_rx) = watch::channel(held);
        let accept_log = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors, most likely: let connections close first.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let log = accept_log.clone();
                let gate = gate_rx.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let log = log.clone();
                            let mut gate = gate.clone();
                            async move {
                                let id = req
                                    .headers()
                                    .get("webhook-id")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string);
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                // Err only once the Receiver is gone: answer then.
                                let _ = gate.wait_for(|held| !*held).await;
                                log.record(id.as_deref(), &body);
                                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, log, gate }
    }
}
