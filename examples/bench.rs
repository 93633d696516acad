//! The benchmark: runs the real `hookd` binary (build it first with
//! `cargo build --release`) as a child process on loopback and drives it over HTTPS.
//!
//!   cargo run --release --example bench -- ingest [clients] [seconds] [subscribers]
//!   cargo run --release --example bench -- fanout [subscriptions] [events]
//!   cargo run --release --example bench -- restart [events]
//!   cargo run --release --example bench -- retention [seconds] [retention seconds]
//!
//! `ingest`: durable event ingest from N keep-alive clients (each waits for its 202
//! before sending the next), with 0 or more matching subscribers on a loopback receiver.
//! `fanout`: deliveries per second from events to S subscriptions, counted at the receiver.
//! `restart`: start-up time on an empty file, then on a file of N events after kill -9.
//! `retention`: steady ingest (8 clients, 1 subscriber) with a short `storage.retention`,
//! printing the file size as it goes: it levels off once purging keeps pace.
//! Each prints the figures and hookd's peak resident memory (VmHWM).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

const TOKEN: &str = "hka_bench_token_0123456789abcdefghij";

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    server_tls: Arc<rustls::ServerConfig>,
}

fn binary() -> PathBuf {
    std::env::var_os("HOOKD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/hookd"))
}

fn setup(extra: &str) -> Setup {
    setup_with(extra, "")
}

/// `storage` is appended to `[storage]`, `delivery` to `[delivery]`.
fn setup_with(storage: &str, delivery: &str) -> Setup {
    let extra = storage;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &Issuer::from_params(&ca, &ca_key))
        .unwrap();
    std::fs::write(root.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(root.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(root.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    std::fs::write(root.join("master.key"), [7u8; 32]).unwrap();
    std::fs::write(root.join("admin.token"), TOKEN).unwrap();
    let addr = free_port();
    std::fs::write(
        root.join("hookd.toml"),
        format!(
            r#"[server]
listen = "{addr}"
tls_cert = "cert.pem"
tls_key = "key.pem"
metrics_listen = "127.0.0.1:0"
[log]
level = "warn"
[storage]
path = "data/hookd.redb"
{extra}
[secrets]
master_key_file = "master.key"
admin_token_file = "admin.token"
[delivery]
extra_ca_file = "ca.pem"
allow_networks = ["127.0.0.0/8"]
{delivery}
"#
        ),
    )
    .unwrap();
    let tls = hookd::tls::client_config(Some(&root.join("ca.pem"))).unwrap();
    let server_tls =
        hookd::tls::server_config(&root.join("cert.pem"), &root.join("key.pem")).unwrap();
    Setup {
        _dir: dir,
        root,
        addr,
        tls: tokio_rustls::TlsConnector::from(tls),
        server_tls,
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn spawn(root: &Path) -> Child {
    Command::new(binary())
        .args(["serve", "--config"])
        .arg(root.join("hookd.toml"))
        .stdout(Stdio::null())
        .spawn()
        .expect("hookd binary (cargo build --release, or set HOOKD_BIN)")
}

async fn connect(setup: &Setup) -> Sender {
    let tcp = TcpStream::connect(setup.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = setup.tls.connect(name, tcp).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Waits until hookd answers /healthz; returns how long that took.
async fn wait_ready(setup: &Setup, since: Instant) -> Duration {
    loop {
        if let Ok(tcp) = TcpStream::connect(setup.addr).await {
            let name = ServerName::try_from("localhost").unwrap();
            if let Ok(tls) = setup.tls.connect(name, tcp).await {
                if let Ok((mut sender, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await
                {
                    tokio::spawn(conn);
                    let req = hyper::Request::get("/healthz")
                        .header("host", "localhost")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    if sender
                        .send_request(req)
                        .await
                        .is_ok_and(|r| r.status() == 200)
                    {
                        return since.elapsed();
                    }
                }
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "hookd did not start"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn call(sender: &mut Sender, method: &str, path: &str, body: String) -> (u16, Bytes) {
    sender.ready().await.unwrap();
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

/// An HTTPS receiver answering 200 and counting requests.
async fn receiver(setup: &Setup, count: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(setup.server_tls.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let count = count.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        count.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn subscribe(sender: &mut Sender, port: u16, n: usize) {
    for i in 0..n {
        let body = format!(
            r#"{{"eventTypes":["bench.*"],"endpointUrl":"https://localhost:{port}/hook/{i}"}}"#
        );
        let (status, text) = call(sender, "POST", "/v1/subscriptions", body).await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&text));
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const EVENT: &str = r#"{"eventType":"bench.created","data":{"orderId":123456,"customer":"acme","amount":1999,"currency":"EUR","items":[1,2,3]}}"#;

async fn ingest(clients: usize, seconds: u64, subscribers: usize, extra: &str) {
    let setup = setup(extra);
    let mut child = spawn(&setup.root);
    let startup = wait_ready(&setup, Instant::now()).await;
    let delivered = Arc::new(AtomicU64::new(0));
    let port = receiver(&setup, delivered.clone()).await.port();
    let mut admin = connect(&setup).await;
    subscribe(&mut admin, port, subscribers).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut sender = connect(&setup).await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (status, _) = call(&mut sender, "POST", "/v1/events", EVENT.to_string()).await;
                assert_eq!(status, 202);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "ingest: {clients} clients, {subscribers} subscribers: {} events in {elapsed:.1} s = {:.0} events/s; latency p50 {:?} p99 {:?}; start-up {startup:?}; delivered so far {}; peak RSS {} MiB",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        delivered.load(Ordering::Relaxed),
        peak_rss_kib(child.id()) / 1024,
    );
    child.kill().ok();
    child.wait().ok();
}

async fn fanout(subscriptions: usize, events: usize) {
    let setup = setup("");
    let mut child = spawn(&setup.root);
    wait_ready(&setup, Instant::now()).await;
    let delivered = Arc::new(AtomicU64::new(0));
    let port = receiver(&setup, delivered.clone()).await.port();
    let mut admin = connect(&setup).await;
    subscribe(&mut admin, port, subscriptions).await;
    let expected = (subscriptions * events) as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    let per_client = events / 16;
    for _ in 0..16 {
        let mut sender = connect(&setup).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                let (status, _) = call(&mut sender, "POST", "/v1/events", EVENT.to_string()).await;
                assert_eq!(status, 202);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let posted = started.elapsed();
    let expected = expected.min((per_client * 16 * subscriptions) as u64);
    while delivered.load(Ordering::Relaxed) < expected {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "deliveries stalled at {}",
            delivered.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fanout: {} events x {subscriptions} subscriptions = {expected} deliveries in {elapsed:.1} s = {:.0} deliveries/s (posting took {posted:?}); peak RSS {} MiB",
        per_client * 16,
        expected as f64 / elapsed,
        peak_rss_kib(child.id()) / 1024,
    );
    child.kill().ok();
    child.wait().ok();
}

async fn restart(events: usize, extra: &str) {
    let setup = setup(extra);
    let mut child = spawn(&setup.root);
    let empty = wait_ready(&setup, Instant::now()).await;
    // Fill the file, then kill -9 while 32 clients are still posting.
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let mut sender = connect(&setup).await;
        let stop = stop.clone();
        let posted = posted.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                sender.ready().await.ok();
                let req = hyper::Request::post("/v1/events")
                    .header("host", "localhost")
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Full::new(Bytes::from_static(EVENT.as_bytes())))
                    .unwrap();
                if sender.send_request(req).await.is_err() {
                    return;
                }
                posted.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    while posted.load(Ordering::Relaxed) < events as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().ok(); // SIGKILL
    child.wait().ok();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let size = std::fs::metadata(setup.root.join("data/hookd.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    let mut child = spawn(&setup.root);
    let after_crash = wait_ready(&setup, Instant::now()).await;
    println!(
        "restart: start-up on an empty file {empty:?}; after kill -9 with {} events in a {} MiB file {after_crash:?}",
        posted.load(Ordering::Relaxed),
        size >> 20
    );
    child.kill().ok();
    child.wait().ok();
}

async fn retention(seconds: u64, retention_s: u64) {
    let setup = setup_with(
        &format!("retention = \"{retention_s}s\""),
        &format!("max_age = \"{retention_s}s\""),
    );
    let mut child = spawn(&setup.root);
    wait_ready(&setup, Instant::now()).await;
    let delivered = Arc::new(AtomicU64::new(0));
    let port = receiver(&setup, delivered.clone()).await.port();
    let mut admin = connect(&setup).await;
    subscribe(&mut admin, port, 1).await;
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut sender = connect(&setup).await;
        let stop = stop.clone();
        let posted = posted.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, _) = call(&mut sender, "POST", "/v1/events", EVENT.to_string()).await;
                assert_eq!(status, 202);
                posted.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let path = setup.root.join("data/hookd.redb");
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = posted.load(Ordering::Relaxed);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "retention: t={:>4.0} s posted {now:>8} ({:>5.0}/s) delivered {:>8} file {:>6.1} MiB",
            started.elapsed().as_secs_f64(),
            (now - last) as f64 / 5.0,
            delivered.load(Ordering::Relaxed),
            size as f64 / (1 << 20) as f64,
        );
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    println!(
        "retention: peak RSS {} MiB",
        peak_rss_kib(child.id()) / 1024
    );
    child.kill().ok();
    child.wait().ok();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let extra = std::env::var("HOOKD_BENCH_STORAGE").unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("ingest") => ingest(arg(1, 32), arg(2, 10) as u64, arg(3, 0), &extra).await,
        Some("fanout") => fanout(arg(1, 10), arg(2, 20_000)).await,
        Some("restart") => restart(arg(1, 100_000), &extra).await,
        Some("retention") => retention(arg(1, 60) as u64, arg(2, 10) as u64).await,
        _ => eprintln!(
            "usage: bench ingest [clients] [seconds] [subscribers] | fanout [subscriptions] [events] | restart [events] | retention [seconds] [retention seconds]"
        ),
    }
}
