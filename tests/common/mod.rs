//! Test harness: a real hookd (`hookd::run` on 127.0.0.1:0 with a temp redb file, or
//! with `HOOKD_TEST_BACKEND=postgres` a database of its own on a throwaway PostgreSQL:
//! `backend.rs`) and real HTTPS receivers on loopback, all with certificates from a CA
//! generated per test. Talks to hookd over HTTPS with the same rustls stack a user would.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

mod api;
pub mod backend;
pub mod browser;
pub mod console;
pub mod daemon;
pub mod postgres;
mod receiver;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use api::Api;
pub use backend::{redb_only, stored_bytes};
pub use receiver::{Received, Receiver, verify};

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
    /// TOML appended at the end (`[auth.jwt]`, `[[event_types]]`).
    pub tail: String,
    /// Extra TOML appended to the `[storage]` section.
    pub storage: String,
}

/// A running hookd and what a test needs to talk to it.
pub struct Hookd {
    pub api: Api,
    pub dir: tempfile::TempDir,
    pub ca: Arc<TestCa>,
    /// `http://127.0.0.1:PORT` of the monitoring listener (/metrics, /healthz, /readyz).
    pub metrics_url: String,
    /// What SIGHUP does in the binary.
    pub reload: hookd::reload::Reload,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), hookd::RunError>>>,
}

impl std::ops::Deref for Hookd {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
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
        let text = write_state(dir.path(), &ca, &options, "127.0.0.1:0");
        let config = Config::from_toml(&text, dir.path()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let metrics_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_url = format!("http://{}", metrics_listener.local_addr().unwrap());
        let (reload, requests) = hookd::reload::channel();
        let shutdown = CancellationToken::new();
        let options = hookd::RunOptions {
            metrics_listener: Some(metrics_listener),
            reload: Some(requests),
            log: None,
        };
        let task = tokio::spawn(hookd::run_with(config, listener, shutdown.clone(), options));
        Self {
            api: Api::new(port, &ca),
            dir,
            ca,
            metrics_url,
            reload,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops hookd gracefully and starts it again on the same state with `options`.
    pub async fn restart(self, options: Options) -> Self {
        let (dir, ca) = self.stop().await;
        Self::start_in(dir, ca, options).await
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

    /// Begins a graceful shutdown without waiting for it (what SIGTERM does).
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A scrape of `/metrics`.
    pub async fn metrics(&self) -> String {
        let (status, body) = http_get(&format!("{}/metrics", self.metrics_url)).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// GET over plain HTTP/1.1 (the monitoring listener): (status, body).
pub async fn http_get(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        String::from_utf8(raw).unwrap()
    };
    let raw = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("answered in time");
    let status = raw[9..12].parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The value of the sample named exactly `series` (with its labels) in a scrape.
pub fn metric(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split(' ').next()?.parse().ok()
    })
}

/// Writes the certificate, keys and token a test hookd uses into `root` (once) and
/// returns its config text (relative paths, for a file in `root`). On PostgreSQL the
/// folder's database is made the first time (`backend::storage_keys`).
pub fn write_state(root: &Path, ca: &TestCa, options: &Options, listen: &str) -> String {
    if !root.join("master.key").exists() {
        let (cert, key) = ca.leaf();
        std::fs::write(root.join("cert.pem"), cert).unwrap();
        std::fs::write(root.join("key.pem"), key).unwrap();
        ca.write(root);
        std::fs::write(root.join("master.key"), [42u8; 32]).unwrap();
        std::fs::write(root.join("admin.token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    }
    let (backend, postgres) = backend::storage_keys(root, &options.storage);
    format!(
        r#"
[server]
listen = "{listen}"
tls_cert = "cert.pem"
tls_key = "key.pem"
{server}

[storage]
{backend}{storage}
{postgres}
[secrets]
master_key_file = "master.key"
admin_token_file = "admin.token"

[delivery]
extra_ca_file = "ca.pem"
{delivery}

{tail}
"#,
        tail = options.tail,
        server = with_defaults(
            &options.server,
            &[
                ("shutdown_grace", "\"2s\""),
                // Tests run side by side: never the fixed default port.
                ("metrics_listen", "\"127.0.0.1:0\""),
            ]
        ),
        // Tests run wherever the machine has room: only the storage tests set min_free.
        storage = with_defaults(
            &options.storage,
            &[("path", "\"data/hookd.redb\""), ("min_free", "\"0\"")]
        ),
        delivery = with_defaults(
            &options.delivery,
            &[
                ("timeout", "\"2s\""),
                ("schedule", "[\"100ms\", \"200ms\", \"300ms\"]"),
                ("allow_networks", "[\"127.0.0.0/8\", \"::1/128\"]"),
            ],
        ),
    )
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
