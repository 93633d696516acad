use std::path::Path;

use http::Method;
use ring::rand::SystemRandom;
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::*;
use crate::delivery::sign::generate_secret;
use crate::init::{InitOptions, init};

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    addr: SocketAddr,
    ca: PathBuf,
    secret: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ListenError>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let options = InitOptions {
        missing_only: false,
        dev: true,
    };
    let report = init(dir.path(), &options).unwrap();
    let secret = generate_secret(&SystemRandom::new())
        .unwrap()
        .expose()
        .to_owned();
    let listener = bind(ListenOptions {
        port: 0,
        secret: secret.clone(),
        cert: dir.path().join("tls/cert.pem"),
        key: dir.path().join("tls/key.pem"),
    })
    .await
    .unwrap();
    let addr = listener.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(listener.run(shutdown.clone()));
    Running {
        addr,
        ca: report.ca_cert,
        secret,
        shutdown,
        task,
        _dir: dir,
    }
}

/// One HTTPS POST trusting only the system roots plus `ca`; returns the status.
async fn post(
    addr: SocketAddr,
    ca: &Path,
    headers: &[(&str, String)],
    body: &'static str,
) -> StatusCode {
    let config = crate::tls::client_config(Some(ca)).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/hooks")
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    response.status()
}

fn signed(secret: &str, id: &str, timestamp: i64, body: &str) -> Vec<(&'static str, String)> {
    let key = SigningKey::from_secret(secret).unwrap();
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            key.sign(id, timestamp, body.as_bytes()),
        ),
    ]
}

#[tokio::test]
async fn signed_requests_get_204_and_bad_ones_401() {
    let running = start().await;
    let body = r#"{"eventId":"evt_1","data":{"n":1}}"#;
    let now = unix_seconds(SystemTime::now());

    let good = signed(&running.secret, "evt_1", now, body);
    assert_eq!(
        post(running.addr, &running.ca, &good, body).await,
        StatusCode::NO_CONTENT
    );

    let other = generate_secret(&SystemRandom::new()).unwrap();
    let wrong_key = signed(other.expose(), "evt_1", now, body);
    assert_eq!(
        post(running.addr, &running.ca, &wrong_key, body).await,
        StatusCode::UNAUTHORIZED
    );

    let tampered = signed(&running.secret, "evt_1", now, body);
    let other_body = r#"{"eventId":"evt_1","data":{"n":2}}"#;
    assert_eq!(
        post(running.addr, &running.ca, &tampered, other_body).await,
        StatusCode::UNAUTHORIZED
    );

    let stale = signed(&running.secret, "evt_1", now - 301, body);
    assert_eq!(
        post(running.addr, &running.ca, &stale, body).await,
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(
        post(running.addr, &running.ca, &[], body).await,
        StatusCode::UNAUTHORIZED
    );

    running.shutdown.cancel();
    tokio::time::timeout(WAIT, running.task)
        .await
        .expect("listen stops when cancelled")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_bad_secret_is_refused_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let options = ListenOptions {
        port: 0,
        secret: "not-a-secret".to_owned(),
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    let Err(error) = bind(options).await else {
        panic!("a bad secret must be refused");
    };
    assert!(
        matches!(error, ListenError::Secret(SecretError::Format)),
        "{error}"
    );
    assert!(error.to_string().starts_with("--secret: "));
}

#[test]
fn verify_checks_headers_timestamp_and_signature() {
    let secret = generate_secret(&SystemRandom::new()).unwrap();
    let key = SigningKey::from_secret(secret.expose()).unwrap();
    let now = 1_700_000_000;
    let headers = |timestamp: i64, signature: String| {
        let mut map = HeaderMap::new();
        map.insert("webhook-id", "evt_1".parse().unwrap());
        map.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        map.insert("webhook-signature", signature.parse().unwrap());
        map
    };
    let sig = |timestamp| key.sign("evt_1", timestamp, b"{}");
    assert_eq!(verify(&key, &headers(now, sig(now)), b"{}", now), Ok(()));
    assert_eq!(
        verify(&key, &headers(now - 300, sig(now - 300)), b"{}", now),
        Ok(())
    );
    assert_eq!(
        verify(&key, &headers(now + 300, sig(now + 300)), b"{}", now),
        Ok(())
    );
    assert!(verify(&key, &headers(now - 301, sig(now - 301)), b"{}", now).is_err());
    assert!(verify(&key, &headers(now + 301, sig(now + 301)), b"{}", now).is_err());
    // A rotation header with the old secret's signature first still verifies.
    let rotated = format!("v1,AAAA {}", sig(now));
    assert_eq!(verify(&key, &headers(now, rotated), b"{}", now), Ok(()));
    let error = verify(&key, &HeaderMap::new(), b"{}", now).unwrap_err();
    assert_eq!(error, "no webhook-id header");
}

#[test]
fn times_print_as_rfc3339_utc() {
    let at = |secs| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
}

#[test]
fn bodies_print_as_pretty_json_or_text() {
    assert_eq!(show_body(br#"{"a":1}"#), "{\n  \"a\": 1\n}");
    assert_eq!(show_body(b"plain"), "plain");
    assert_eq!(show_body(&[0xff, 0xfe]), "(2 bytes, not UTF-8)");
    assert_eq!(show_body(b""), "(empty body)");
}
