//! Operating hookd: `/metrics` counts what happened, `/readyz` follows start and
//! shutdown, a reload swaps the TLS certificate for new connections while open ones keep
//! working (and refuses a broken pair), and the binary turns SIGHUP into a reload and
//! writes journald lines when its stderr is the journal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Hookd, Options, Receiver, TestCa, WAIT, http_get, metric, write_state};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::json;

#[tokio::test]
async fn metrics_count_ingest_attempts_and_outcomes() {
    let hookd = Hookd::start(Options::default()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    // First attempt of one delivery fails with 500, the retry succeeds.
    receiver.reply_with(&[500]);
    hookd.subscribe(&receiver.url, &["*"]).await;
    let mut deliveries = Vec::new();
    for i in 0..3 {
        let accepted = hookd.post_event("job.created", json!({"i": i})).await;
        deliveries.push(hookd.first_delivery(&accepted).await);
    }
    for _ in 0..4 {
        receiver.next().await;
    }
    for delivery in &deliveries {
        hookd.wait_for_delivery_state(delivery, "SUCCEEDED").await;
    }

    let scrape = hookd.metrics().await;
    let value =
        |series: &str| metric(&scrape, series).unwrap_or_else(|| panic!("{series} in\n{scrape}"));
    assert_eq!(value("hookd_events_ingested_total"), 3.0);
    assert_eq!(value("hookd_attempts_total{outcome=\"success\"}"), 3.0);
    assert_eq!(value("hookd_attempts_total{outcome=\"http_error\"}"), 1.0);
    assert_eq!(value("hookd_deliveries_total{outcome=\"succeeded\"}"), 3.0);
    assert_eq!(value("hookd_attempt_duration_seconds_count"), 4.0);
    assert_eq!(value("hookd_subscriptions{status=\"active\"}"), 1.0);
    assert_eq!(value("hookd_subscriptions{status=\"disabled\"}"), 0.0);
    assert_eq!(value("hookd_deliveries_waiting"), 0.0);
    assert_eq!(value("hookd_oldest_due_delivery_age_seconds"), 0.0);
    assert_eq!(value("hookd_oauth_token_fetches_total"), 0.0);
    assert!(value("hookd_store_commit_duration_seconds_count") >= 5.0);
    assert!(value("hookd_store_commit_batch_size_count") >= 5.0);
    assert!(
        scrape.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
}

#[tokio::test]
async fn a_backlog_shows_as_waiting_deliveries_with_an_age() {
    let hookd = Hookd::start(Options {
        delivery: "per_endpoint_concurrency = 1".into(),
        ..Options::default()
    })
    .await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    receiver.hang_for(Duration::from_millis(1500));
    hookd.subscribe(&receiver.url, &["*"]).await;
    for i in 0..3 {
        hookd.post_event("job.created", json!({"i": i})).await;
    }
    receiver.next().await; // one in flight, two waiting behind it
    tokio::time::sleep(Duration::from_millis(300)).await; // let the waiting ones age
    let scrape = hookd.metrics().await;
    assert_eq!(
        metric(&scrape, "hookd_deliveries_in_flight"),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        metric(&scrape, "hookd_deliveries_waiting"),
        Some(2.0),
        "{scrape}"
    );
    let age = metric(&scrape, "hookd_oldest_due_delivery_age_seconds").unwrap();
    assert!((0.25..WAIT.as_secs_f64()).contains(&age), "age {age}");
}

#[tokio::test]
async fn readyz_is_ready_while_serving_and_503_once_shutdown_begins() {
    let hookd = Hookd::start(Options::default()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    hookd.subscribe(&receiver.url, &["*"]).await;
    let (status, _) = hookd.call("GET", "/readyz", None).await;
    assert_eq!(status, 200);
    let (status, body) = http_get(&format!("{}/readyz", hookd.metrics_url)).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    let (status, _) = http_get(&format!("{}/healthz", hookd.metrics_url)).await;
    assert_eq!(status, 200);

    // An attempt in flight holds hookd in its shutdown grace period.
    receiver.hang_for(Duration::from_millis(1500));
    hookd.post_event("job.created", json!({})).await;
    receiver.next().await;
    hookd.begin_shutdown();
    let (status, body) = http_get(&format!("{}/readyz", hookd.metrics_url)).await;
    assert_eq!((status, body.as_str()), (503, r#"{"status":"stopping"}"#));
    let (status, _) = http_get(&format!("{}/healthz", hookd.metrics_url)).await;
    assert_eq!(status, 200);
}

/// A TLS connection to hookd, trusting the test CA: the certificate it was shown and
/// an HTTP/1.1 sender that keeps the connection open.
async fn connect(
    port: u16,
    ca: &TestCa,
) -> (CertificateDer<'static>, http1::SendRequest<Empty<Bytes>>) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(hookd::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let shown = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let (sender, connection) = http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    (shown, sender)
}

async fn healthz(sender: &mut http1::SendRequest<Empty<Bytes>>) -> u16 {
    let request = http::Request::get("/healthz")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections_and_keeps_open_ones() {
    let hookd = Hookd::start(Options::default()).await;
    let port: u16 = hookd.url.rsplit(':').next().unwrap().parse().unwrap();
    let first = std::fs::read_to_string(hookd.dir.path().join("cert.pem")).unwrap();
    let (shown, mut open) = connect(port, &hookd.ca).await;
    assert_eq!(shown, der(&first));
    assert_eq!(healthz(&mut open).await, 200);

    let (cert, key) = hookd.ca.leaf();
    std::fs::write(hookd.dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(hookd.dir.path().join("key.pem"), &key).unwrap();
    let report = hookd.reload.reload().await.unwrap();
    assert_eq!(report.certificate, hookd::reload::Outcome::Reloaded);

    let (shown, mut fresh) = connect(port, &hookd.ca).await;
    assert_eq!(
        shown,
        der(&cert),
        "a new connection gets the new certificate"
    );
    assert_eq!(healthz(&mut fresh).await, 200);
    assert_eq!(
        healthz(&mut open).await,
        200,
        "the open connection keeps working"
    );

    // A key that does not match the certificate: refused, the current pair stays.
    let (other_cert, _) = hookd.ca.leaf();
    std::fs::write(hookd.dir.path().join("cert.pem"), &other_cert).unwrap();
    let report = hookd.reload.reload().await.unwrap();
    let hookd::reload::Outcome::Failed(reason) = &report.certificate else {
        panic!("a mismatched pair is refused: {report:?}");
    };
    assert!(reason.contains("key"), "{reason}");
    // Not PEM at all: refused too.
    std::fs::write(hookd.dir.path().join("key.pem"), "not a key").unwrap();
    let report = hookd.reload.reload().await.unwrap();
    assert!(matches!(
        report.certificate,
        hookd::reload::Outcome::Failed(_)
    ));
    let (shown, mut after) = connect(port, &hookd.ca).await;
    assert_eq!(shown, der(&cert), "still the last good certificate");
    assert_eq!(healthz(&mut after).await, 200);
}

/// Waits for a line containing `needle` in a file another process appends to.
fn wait_for_line(path: &std::path::Path, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line with {needle:?} in:\n{text}"
        );
        // No signal exists for another process's log line: poll the file.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the child if the test fails before it stops it.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the real binary with its stderr in `log_path`, told (as systemd tells it) that
/// the stream is the journal: JOURNAL_STREAM=<dev>:<inode>.
fn serve_journaled(config_path: &std::path::Path, log_path: &std::path::Path) -> Reap {
    use std::os::unix::fs::MetadataExt;
    let log = std::fs::File::create(log_path).unwrap();
    let meta = log.metadata().unwrap();
    Reap(
        Command::new(env!("CARGO_BIN_EXE_hookd"))
            .args(["serve", "--config"])
            .arg(config_path)
            .env_remove("RUST_LOG")
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    )
}

#[test]
fn sighup_reloads_the_log_level_and_journald_lines_carry_priorities() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_state(dir.path(), &ca, &Options::default(), "127.0.0.1:0");
    let config_path = dir.path().join("hookd.toml");
    std::fs::write(&config_path, format!("{config}\n[log]\nlevel = \"info\"\n")).unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut child = serve_journaled(&config_path, &log_path);

    let serving = wait_for_line(&log_path, "hookd is serving");
    assert!(serving.starts_with("<6>hookd: "), "{serving}");
    assert!(serving.contains("metrics=Some(127.0.0.1:"), "{serving}");
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains('\x1b'), "no colour codes for journald");

    let changed = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace("level = \"info\"", "level = \"debug\"");
    std::fs::write(&config_path, changed).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let line = wait_for_line(&log_path, "log level reloaded");
    assert!(line.starts_with("<6>hookd::reload: "), "{line}");
    assert!(line.contains("level=debug"), "{line}");
    wait_for_line(&log_path, "reloaded the TLS certificate and key");
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "SIGHUP does not stop hookd"
    );

    let term = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let stopped = BufReader::new(std::fs::File::open(&log_path).unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("<6>") && l.contains("hookd stopped"));
    assert!(stopped);
}

/// A delivery that ends FAILED needs an operator's attention: one WARN line (journald
/// priority 4) naming it. Failed attempts are logged per subscription, not per attempt:
/// one INFO line when its endpoint starts failing, however many attempts fail.
#[tokio::test]
async fn a_delivery_that_ends_failed_is_logged_at_warn() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        delivery: "max_age = \"300ms\"\n".into(),
        ..Options::default()
    };
    let config = write_state(dir.path(), &ca, &options, "127.0.0.1:0");
    let config_path = dir.path().join("hookd.toml");
    std::fs::write(&config_path, config).unwrap();
    let log_path = dir.path().join("stderr.log");
    let _child = serve_journaled(&config_path, &log_path);
    let path = log_path.clone();
    let serving = tokio::task::spawn_blocking(move || wait_for_line(&path, "hookd is serving"))
        .await
        .unwrap();
    let port: u16 = serving
        .split("address=Some(127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address in {serving}"));
    let api = common::Api::new(port, &ca);
    // Nothing listens on port 9: every attempt fails until max_age ends it.
    let (status, created) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"eventTypes": ["job.*"], "endpointUrl": "https://localhost:9/x"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let accepted = api.post_event("job.done", json!({})).await;
    let delivery = api.first_delivery(&accepted).await;
    let failed = api.wait_for_delivery_state(&delivery, "FAILED").await;
    assert!(failed["attempts"].as_u64().unwrap() >= 2, "{failed}");
    let path = log_path.clone();
    let line = tokio::task::spawn_blocking(move || wait_for_line(&path, "delivery FAILED"))
        .await
        .unwrap();
    assert!(line.starts_with("<4>"), "{line}");
    assert!(line.contains(&delivery), "{line}");
    let text = std::fs::read_to_string(&log_path).unwrap();
    let failing: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("endpoint started failing"))
        .collect();
    assert_eq!(failing.len(), 1, "{text}");
    assert!(failing[0].starts_with("<6>"), "{}", failing[0]);
    assert!(
        !text.contains("delivery attempt failed"),
        "one line per attempt: {text}"
    );
}
