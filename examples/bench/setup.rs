//! The hookd under test: a temporary folder with a local CA, a certificate for
//! localhost, a master key, an admin token and a config listening on a free loopback
//! port; the release binary started on it as a child process; and the waits for it to
//! answer. Receivers (`receiver.rs`) serve the same certificate, so hookd trusts them
//! through `extra_ca_file`, and `allow_networks` lets it deliver to 127.0.0.0/8.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::procfs;

/// The admin token every request carries.
pub const TOKEN: &str = "hka_bench_token_0123456789abcdefghij";

/// What a run changes in the config; the rest is fixed (see `Setup::write_config`).
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Lines appended to `[storage]`.
    pub storage: String,
    /// Lines appended to `[delivery]`.
    pub delivery: String,
}

impl Config {
    /// The default, with HOOKD_BENCH_STORAGE's lines in `[storage]`.
    pub fn from_env() -> Self {
        Self {
            storage: std::env::var("HOOKD_BENCH_STORAGE").unwrap_or_default(),
            ..Self::default()
        }
    }
}

pub struct Setup {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub addr: SocketAddr,
    pub tls: tokio_rustls::TlsConnector,
    pub server_tls: Arc<rustls::ServerConfig>,
    store: PathBuf,
}

fn binary() -> PathBuf {
    std::env::var_os("HOOKD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/hookd"))
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl Setup {
    /// A new folder whose database is `data/hookd.redb` inside it.
    pub fn new(config: &Config) -> Self {
        Self::with_store(config, None)
    }

    /// As `new`, with the database at `store` when given (on a small file system).
    pub fn with_store(config: &Config, store: Option<PathBuf>) -> Self {
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
        let tls = hookd::tls::client_config(Some(&root.join("ca.pem"))).unwrap();
        let server_tls =
            hookd::tls::server_config(&root.join("cert.pem"), &root.join("key.pem")).unwrap();
        let store = store.unwrap_or_else(|| root.join("data/hookd.redb"));
        let setup = Setup {
            _dir: dir,
            root,
            addr: free_port(),
            tls: tokio_rustls::TlsConnector::from(tls),
            server_tls,
            store,
        };
        setup.write_config(config);
        setup
    }

    /// Another node beside this one: a folder of its own with the same certificate,
    /// master key and admin token (so one client and one receiver serve both), its own
    /// port and its own `config`.
    pub fn sibling(&self, config: &Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for file in ["ca.pem", "cert.pem", "key.pem", "master.key", "admin.token"] {
            std::fs::copy(self.root.join(file), root.join(file)).unwrap();
        }
        let setup = Setup {
            _dir: dir,
            store: root.join("data/hookd.redb"),
            root,
            addr: free_port(),
            tls: self.tls.clone(),
            server_tls: self.server_tls.clone(),
        };
        setup.write_config(config);
        setup
    }

    /// Writes `hookd.toml`; the next `spawn` reads it. Address and store stay the same.
    pub fn write_config(&self, config: &Config) {
        let Config { storage, delivery } = config;
        std::fs::write(
            self.config_path(),
            format!(
                r#"[server]
listen = "{addr}"
tls_cert = "cert.pem"
tls_key = "key.pem"
metrics_listen = "127.0.0.1:0"
[log]
level = "warn"
[storage]
path = "{store}"
{storage}
[secrets]
master_key_file = "master.key"
admin_token_file = "admin.token"
[delivery]
extra_ca_file = "ca.pem"
allow_networks = ["127.0.0.0/8"]
{delivery}
"#,
                addr = self.addr,
                store = self.store.display(),
            ),
        )
        .unwrap();
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("hookd.toml")
    }

    pub fn store_bytes(&self) -> u64 {
        std::fs::metadata(&self.store).map(|m| m.len()).unwrap_or(0)
    }

    /// `hookd <args> --config <this config>`, for the offline commands.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command.args(args).arg("--config").arg(self.config_path());
        command
    }

    pub fn spawn(&self) -> Hookd {
        let child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(self.config_path())
            .stdout(Stdio::null())
            .spawn()
            .expect("hookd binary (cargo build --release, or set HOOKD_BIN)");
        Hookd { child }
    }

    /// Waits until hookd answers `path` (`/healthz`, `/readyz`) with 200; returns how
    /// long that took from `since`.
    pub async fn wait_for(&self, path: &str, since: Instant) -> Duration {
        loop {
            if self.answers_200(path).await {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < Duration::from_secs(120),
                "hookd did not start"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits until hookd answers /healthz; returns how long that took.
    pub async fn wait_ready(&self, since: Instant) -> Duration {
        self.wait_for("/healthz", since).await
    }

    /// One GET of `path` on a new connection: true if it answered 200.
    async fn answers_200(&self, path: &str) -> bool {
        self.get_status(path).await == Some(200)
    }

    /// The status of one GET of `path` (no token) on a new connection; None when hookd
    /// does not answer.
    pub async fn get_status(&self, path: &str) -> Option<u16> {
        let tcp = TcpStream::connect(self.addr).await.ok()?;
        let name = ServerName::try_from("localhost").unwrap();
        let tls = self.tls.connect(name, tcp).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(req).await.ok()?;
        Some(response.status().as_u16())
    }
}

/// The running hookd; killed (SIGKILL) when dropped, so a failed run leaves no daemon.
pub struct Hookd {
    child: Child,
}

impl Hookd {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        procfs::status_kib(self.pid(), "VmHWM:")
    }

    /// Resident memory now (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        procfs::status_kib(self.pid(), "VmRSS:")
    }

    /// SIGTERM (a clean stop, as systemd does it), and wait for the exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        self.child.wait().unwrap()
    }

    /// kill -9, and reap it.
    pub fn kill(mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Hookd {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
