//! Outbound routing: `delivery.proxy` (an HTTP CONNECT proxy, here a small one on
//! loopback) and `delivery.source_address`. Every connection stays on loopback: the test
//! proxy tunnels only to 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use std::net::{IpAddr, SocketAddr};

use common::{Hookd, Options, Receiver, WAIT, verify};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy)]
enum Answer {
    Tunnel,
    Refuse,
}

/// One CONNECT request the proxy got.
#[derive(Debug)]
struct Connect {
    /// Where hookd's connection to the proxy came from.
    peer: SocketAddr,
    /// The request-target, `host:port`.
    target: String,
    head: String,
    /// The local address of the proxy's connection to the endpoint, when it tunnelled.
    upstream: Option<SocketAddr>,
}

/// A CONNECT proxy on 127.0.0.1 that reports every CONNECT and either tunnels it (to
/// loopback only) or answers 403.
struct Proxy {
    url: String,
    connects: mpsc::UnboundedReceiver<Connect>,
    stop: CancellationToken,
}

impl Proxy {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, connects) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let stop_task = stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = stop_task.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                tokio::spawn(serve(stream, peer, answer, tx.clone()));
            }
        });
        Self {
            url: format!("http://{addr}"),
            connects,
            stop,
        }
    }

    async fn next(&mut self) -> Connect {
        tokio::time::timeout(WAIT, self.connects.recv())
            .await
            .expect("a CONNECT arrives in time")
            .expect("proxy running")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    answer: Answer,
    tx: mpsc::UnboundedSender<Connect>,
) {
    let Some(head) = read_head(&mut client).await else {
        return;
    };
    let mut words = head.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
        return;
    };
    let target = target.to_string();
    // Only loopback, ever: any other host is refused without being dialled.
    let port = match target.split_once(':') {
        Some(("localhost" | "127.0.0.1", port)) => port.parse::<u16>().ok(),
        _ => None,
    };
    let upstream = match (answer, port) {
        (Answer::Tunnel, Some(port)) => TcpStream::connect(("127.0.0.1", port)).await.ok(),
        _ => None,
    };
    let _ = tx.send(Connect {
        peer,
        target,
        head: head.clone(),
        upstream: upstream.as_ref().map(|s| s.local_addr().unwrap()),
    });
    let Some(mut upstream) = upstream else {
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// The request head, read byte by byte so nothing of the tunnel is consumed.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return None;
        }
        head.push(stream.read_u8().await.ok()?);
    }
    String::from_utf8(head).ok()
}

fn proxied(proxy: &Proxy, extra: &str) -> Options {
    Options {
        delivery: format!("proxy = \"{}\"\n{extra}", proxy.url),
        ..Options::default()
    }
}

#[tokio::test]
async fn deliveries_go_through_the_proxy_and_stay_signed() {
    let mut proxy = Proxy::start(Answer::Tunnel).await;
    let hookd = Hookd::start(proxied(&proxy, "")).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let (_, secret) = hookd.subscribe(&receiver.url, &["*"]).await;

    let accepted = hookd
        .post_event("job.created", json!({"via": "proxy"}))
        .await;
    let got = receiver.next().await;
    assert!(verify(&got, &secret), "the tunnelled delivery verifies");
    assert_eq!(got.json()["data"]["via"], "proxy");

    let connect = proxy.next().await;
    let target = format!("localhost:{}", receiver.addr.port());
    assert_eq!(connect.target, target);
    assert!(
        connect.head.contains(&format!("\r\nHost: {target}\r\n")),
        "{}",
        connect.head
    );
    assert_eq!(
        Some(got.peer),
        connect.upstream,
        "the receiver's connection is the proxy's"
    );
    // Any further CONNECT (a second pooled connection) went to the same endpoint.
    while let Ok(more) = proxy.connects.try_recv() {
        assert_eq!(more.target, target);
    }
    let delivery = hookd.first_delivery(&accepted).await;
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
}

#[tokio::test]
async fn a_proxy_refusal_is_a_retryable_failure_naming_the_proxy_status() {
    let mut proxy = Proxy::start(Answer::Refuse).await;
    let hookd = Hookd::start(proxied(&proxy, "")).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    hookd.subscribe(&receiver.url, &["*"]).await;

    let accepted = hookd.post_event("job.created", json!({})).await;
    let delivery = hookd.first_delivery(&accepted).await;
    let connect = proxy.next().await;
    assert_eq!(
        connect.target,
        format!("localhost:{}", receiver.addr.port())
    );
    let retrying = hookd.wait_for_delivery_state(&delivery, "RETRYING").await;
    let error = retrying["lastError"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "proxy {} refused CONNECT to localhost:{}: 403",
            proxy.url.trim_start_matches("http://"),
            receiver.addr.port()
        )),
        "{error}"
    );
    assert!(error.contains("proxy resolves host names"), "{error}");
    assert!(retrying["lastStatus"].is_null(), "{retrying}");
    assert!(
        receiver.requests.try_recv().is_err(),
        "nothing bypassed the proxy"
    );
}

#[tokio::test]
async fn with_a_proxy_ip_literals_still_meet_the_guard_and_names_are_left_to_the_proxy() {
    let mut proxy = Proxy::start(Answer::Tunnel).await;
    let closed = proxied(&proxy, "allow_networks = []\n");
    // Made while loopback was allowed; after a restart without it, hookd must refuse
    // 127.0.0.1 itself when dialling, before any CONNECT.
    let hookd = Hookd::start(proxied(&proxy, "")).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let port = receiver.addr.port();
    let literal_url = format!("https://127.0.0.1:{port}/hook");
    let (literal, _) = hookd.subscribe(&literal_url, &["*"]).await;
    let hookd = hookd.restart(closed).await;
    // A literal is refused when given; a name is the proxy's to resolve, so it is not.
    let body = json!({"eventTypes": ["*"], "endpointUrl": literal_url});
    let (status, problem) = hookd.call("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("endpointUrl"))
    );
    let (named, secret) = hookd.subscribe(&receiver.url, &["*"]).await;

    let accepted = hookd.post_event("job.created", json!({})).await;
    let event_id = accepted["id"].as_str().unwrap();
    let deliveries = hookd.deliveries_of(event_id).await;
    let of = |sub: &str| {
        deliveries
            .iter()
            .find(|d| d["subscriptionId"] == sub)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let refused = hookd
        .wait_for_delivery_state(&of(&literal), "RETRYING")
        .await;
    let error = refused["lastError"].as_str().unwrap();
    assert!(
        error.contains("refused to connect to 127.0.0.1") && error.contains("loopback"),
        "{error}"
    );
    // The name is the proxy's to resolve and police: this one reaches the receiver.
    let got = receiver.next().await;
    assert!(verify(&got, &secret));
    hookd
        .wait_for_delivery_state(&of(&named), "SUCCEEDED")
        .await;
    assert_eq!(proxy.next().await.target, format!("localhost:{port}"));
    while let Ok(more) = proxy.connects.try_recv() {
        assert_eq!(
            more.target,
            format!("localhost:{port}"),
            "the literal never reached the proxy"
        );
    }
}

#[tokio::test]
async fn connections_come_from_the_source_address() {
    let hookd = Hookd::start(Options {
        delivery: "source_address = \"127.0.0.2\"\n".into(),
        ..Options::default()
    })
    .await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let (_, secret) = hookd.subscribe(&receiver.url, &["*"]).await;
    let accepted = hookd.post_event("job.created", json!({})).await;
    let got = receiver.next().await;
    assert!(verify(&got, &secret));
    assert_eq!(got.peer.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
    let delivery = hookd.first_delivery(&accepted).await;
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
}

#[tokio::test]
async fn the_proxy_is_dialled_from_the_source_address() {
    let mut proxy = Proxy::start(Answer::Tunnel).await;
    let hookd = Hookd::start(proxied(&proxy, "source_address = \"127.0.0.2\"\n")).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    hookd.subscribe(&receiver.url, &["*"]).await;
    hookd.post_event("job.created", json!({})).await;
    let connect = proxy.next().await;
    assert_eq!(connect.peer.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
    let got = receiver.next().await;
    assert_eq!(Some(got.peer), connect.upstream);
}
