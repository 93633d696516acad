//! Test harness: a real hookd (`hookd::run` on 127.0.0.1:0 with a temp redb file) and
//! real HTTPS receivers on loopback, all with certificates from a CA generated per test.
//! Talks to hookd over HTTPS with the same rustls stack a user would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use hookd::config::Config;
use hookd::delivery::guard::AddressGuard;
use hookd::delivery::{Client, ClientSettings};

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hookd test CA");
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            params,
            key,
        }
    }

    /// A leaf certificate for localhost and the loopback addresses: (cert PEM, key PEM).
    pub fn leaf(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

#[derive(Default)]
pub struct Options {
    /// Extra TOML appended to the `[delivery]` section.
    pub delivery: String,
    /// Extra TOML appended to the `[server]` section.
    pub server: String,
}

/// A running hookd and what a test needs to talk to it.
pub struct Hookd {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub ca: Arc<TestCa>,
    pub client: Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), hookd::RunError>>>,
}

pub const ADMIN_TOKEN: &str = "hka_test_admin_token_0123456789abcdef";

impl Hookd {
    pub async fn start(options: Options) -> Self {
        let ca = Arc::new(TestCa::new());
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, ca, options).await
    }

    /// Starts hookd on an existing state folder (for restart tests).
    pub async fn start_in(dir: tempfile::TempDir, ca: Arc<TestCa>, options: Options) -> Self {
        let root = dir.path();
        if !root.join("master.key").exists() {
            let (cert, key) = ca.leaf();
            std::fs::write(root.join("cert.pem"), cert).unwrap();
            std::fs::write(root.join("key.pem"), key).unwrap();
            ca.write(root);
            std::fs::write(root.join("master.key"), [42u8; 32]).unwrap();
            std::fs::write(root.join("admin.token"), format!("{ADMIN_TOKEN}\n")).unwrap();
        }
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "cert.pem"
tls_key = "key.pem"
shutdown_grace = "2s"
{server}

[storage]
path = "data/hookd.redb"

[secrets]
master_key_file = "master.key"
admin_token_file = "admin.token"

[delivery]
extra_ca_file = "ca.pem"
{delivery}
"#,
            server = options.server,
            delivery = with_defaults(
                &options.delivery,
                &[
                    ("timeout", "\"2s\""),
                    ("schedule", "[\"100ms\", \"200ms\", \"300ms\"]"),
                    ("allow_networks", "[\"127.0.0.0/8\", \"::1/128\"]"),
                ],
            ),
        );
        let config = Config::from_toml(&text, root).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(hookd::run(config, listener, shutdown.clone()));
        let client = test_client(&ca);
        Self {
            url: format!("https://localhost:{port}"),
            token: ADMIN_TOKEN.to_string(),
            dir,
            ca,
            client,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops hookd gracefully and returns its state folder for a restart.
    pub async fn stop(mut self) -> (tempfile::TempDir, Arc<TestCa>) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("hookd stops within the wait")
                .unwrap()
                .unwrap();
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, self.ca.clone())
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data/hookd.redb")
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string().into_bytes());
        self.call_raw(
            method,
            path,
            body,
            &[("authorization", &format!("Bearer {}", self.token))],
        )
        .await
    }

    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let response = self
            .client
            .send(request, WAIT, 16 * 1024 * 1024)
            .await
            .expect("hookd answers");
        let value = if response.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&response.body).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&response.body).into_owned())
            })
        };
        (response.status, value)
    }

    /// Creates a subscription and returns (id, signing secret).
    pub async fn subscribe(&self, url: &str, types: &[&str]) -> (String, String) {
        let (status, body) = self
            .call(
                "POST",
                "/v1/subscriptions",
                Some(serde_json::json!({"eventTypes": types, "endpointUrl": url})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["data"]["id"].as_str().unwrap().to_string(),
            body["data"]["signingSecret"].as_str().unwrap().to_string(),
        )
    }

    pub async fn post_event(&self, event_type: &str, data: Value) -> Value {
        let (status, body) = self
            .call(
                "POST",
                "/v1/events",
                Some(serde_json::json!({"eventType": event_type, "data": data})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        body["data"].clone()
    }

    /// Polls a delivery until `state` (the API is the only place the state shows).
    pub async fn wait_for_delivery_state(&self, delivery: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self
                .call("GET", &format!("/v1/deliveries/{delivery}"), None)
                .await;
            assert_eq!(status, 200, "{body}");
            if body["data"]["state"] == state {
                return body["data"].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "delivery {delivery} never reached {state}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The id of the (only or first) delivery of an accepted event.
    pub async fn first_delivery(&self, accepted: &Value) -> String {
        let event_id = accepted["eventId"].as_str().unwrap();
        self.deliveries_of(event_id).await[0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn deliveries_of(&self, event_id: &str) -> Vec<Value> {
        let (status, body) = self
            .call("GET", &format!("/v1/events/{event_id}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["deliveries"].as_array().unwrap().clone()
    }
}

impl Drop for Hookd {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `section` plus each default key the section does not set itself.
fn with_defaults(section: &str, defaults: &[(&str, &str)]) -> String {
    let mut out = section.to_string();
    for (key, value) in defaults {
        let set = section.lines().any(|l| {
            l.trim_start().starts_with(&format!("{key} "))
                || l.trim_start().starts_with(&format!("{key}="))
        });
        if !set {
            out.push_str(&format!("\n{key} = {value}"));
        }
    }
    out
}

pub fn test_client(ca: &TestCa) -> Client {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path());
    Client::new(ClientSettings {
        tls: hookd::tls::client_config(Some(&ca_path)).unwrap(),
        guard: AddressGuard::new(vec!["127.0.0.0/8".parse().unwrap()]),
        source_address: None,
        proxy: None,
        allow_http: false,
        max_idle_per_host: 8,
    })
}

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
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |request: hyper::Request<Incoming>| {
                        let tx = tx.clone();
                        let replies = replies.clone();
                        let delay = *delay.lock().unwrap();
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
                            let mut response =
                                hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
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
            stop,
        }
    }

    /// The next requests answered get these statuses, in order.
    pub fn reply_with(&self, statuses: &[u16]) {
        self.replies.lock().unwrap().extend_from_slice(statuses);
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
