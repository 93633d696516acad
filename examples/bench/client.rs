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

pub async fn call(sender: &mut Sender, method: &str, path: &str, body: String) -> (u16, Bytes) {
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

/// `n` subscriptions to `bench.*`, each to its own path on the receiver at `port`.
pub async fn subscribe(sender: &mut Sender, port: u16, n: usize) {
    for i in 0..n {
        let body = format!(
            r#"{{"eventTypes":["bench.*"],"endpointUrl":"https://localhost:{port}/hook/{i}"}}"#
        );
        let (status, text) = call(sender, "POST", "/v1/subscriptions", body).await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&text));
    }
}

/// The event the closed-loop modes post: a small order notification.
pub const EVENT: &str = r#"{"eventType":"bench.created","data":{"orderId":123456,"customer":"acme","amount":1999,"currency":"EUR","items":[1,2,3]}}"#;
