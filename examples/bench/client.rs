//! The load side's HTTPS client: one keep-alive HTTP/1.1 connection per `Sender`, the
//! admin token on every call, and the requests every mode shares (subscribing).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::setup::{Setup, TOKEN};

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub async fn connect(setup: &Setup) -> Sender {
    try_connect(setup).await.unwrap()
}

/// As `connect`, with a refused or reset connection as an error instead of a panic.
pub async fn try_connect(
    setup: &Setup,
) -> Result<Sender, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = TcpStream::connect(setup.addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost")?;
    let tls = setup.tls.connect(name, tcp).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

pub async fn call(sender: &mut Sender, method: &str, path: &str, body: String) -> (u16, Bytes) {
    try_call(sender, method, path, body).await.unwrap()
}

/// As `call`, with a broken connection as an error instead of a panic.
pub async fn try_call(
    sender: &mut Sender,
    method: &str,
    path: &str,
    body: String,
) -> Result<(u16, Bytes), hyper::Error> {
    sender.ready().await?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(req).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

/// `n` subscriptions to `bench.*`, each to its own path on the receiver at `port`.
pub async fn subscribe(sender: &mut Sender, port: u16, n: usize) {
    for i in 0..n {
        subscribe_to(sender, port, "bench.*", &format!("/hook/{i}")).await;
    }
}

/// One subscription to `pattern` at `path` on the receiver at `port`; its id.
pub async fn subscribe_to(sender: &mut Sender, port: u16, pattern: &str, path: &str) -> String {
    let body =
        format!(r#"{{"eventTypes":["{pattern}"],"endpointUrl":"https://localhost:{port}{path}"}}"#);
    let (status, text) = call(sender, "POST", "/v1/subscriptions", body).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&text));
    let created: serde_json::Value = serde_json::from_slice(&text).unwrap();
    created["data"]["id"].as_str().unwrap().to_string()
}

/// The event the closed-loop modes post: a small order notification.
pub const EVENT: &str = r#"{"eventType":"bench.created","data":{"orderId":123456,"customer":"acme","amount":1999,"currency":"EUR","items":[1,2,3]}}"#;
