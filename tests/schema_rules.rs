//! Input rules as `openapi.json` states them, so that a request the document calls
//! valid is accepted and one it calls invalid is refused (Schemathesis checks both ways,
//! `.ci/schemathesis.sh`): lengths count characters as JSON Schema's `maxLength` does,
//! "no control characters" means every Unicode control character, `null` is refused
//! where the document allows no null, and a list filter that could match nothing
//! because it is malformed is 422. And an answer reaches the client whatever it is:
//! hookd reads a request's body before answering, even when it needs none.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use common::{Hookd, Options};
use serde_json::{Value, json};

/// An endpoint the tests' hookd accepts (loopback is allowed there) and never calls:
/// no event is posted to it.
const URL: &str = "https://127.0.0.1:9/hook";

/// OAuth 2.0 client credentials for `endpointAuth`, token URL `URL`.
fn oauth(client_id: &str, client_secret: &str) -> Value {
    json!({"type": "OAUTH2_CLIENT_CREDENTIALS", "credentials": {
        "clientId": client_id, "clientSecret": client_secret, "tokenUrl": URL}})
}

/// Creating a subscription with `body` is 422 naming `field`.
async fn subscription_refused(hookd: &Hookd, body: Value, field: &str) {
    assert_422(
        hookd.call("POST", "/v1/subscriptions", Some(body)).await,
        field,
    );
}

fn assert_422(got: (u16, Value), field: &str) {
    let (status, problem) = got;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some(field)),
        "{problem}"
    );
}

/// `maxLength` counts characters: 256 two-byte characters are a valid name (512 bytes),
/// 257 are not; likewise a description of 1024 characters and a client id of 256.
#[tokio::test]
async fn lengths_count_characters_not_bytes() {
    let hookd = Hookd::start(Options::default()).await;
    let name = "é".repeat(256);
    let (status, created) = hookd
        .call(
            "POST",
            "/v1/admin/entities",
            Some(json!({"id": "wide", "name": name})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_422(
        hookd
            .call(
                "POST",
                "/v1/admin/entities",
                Some(json!({"name": "é".repeat(257)})),
            )
            .await,
        "name",
    );
    let (status, key) = hookd
        .call(
            "POST",
            "/v1/admin/api-keys",
            Some(json!({"entityId": "wide", "name": "ключ".repeat(64), "scopes": []})),
        )
        .await;
    assert_eq!(status, 201, "{key}");

    let secret = "ß".repeat(1024);
    let body = json!({"eventTypes": ["*"], "endpointUrl": URL, "description": "ü".repeat(1024),
        "endpointAuth": oauth(&"ü".repeat(256), &secret)});
    let (status, created) = hookd.call("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let body = json!({"eventTypes": ["*"], "endpointUrl": URL, "description": "ü".repeat(1025)});
    subscription_refused(&hookd, body, "description").await;
}

/// A client id is 1-256 characters and refuses every control character, C1
/// (U+0080-U+009F) as much as C0.
#[tokio::test]
async fn client_ids_are_bounded_and_refuse_every_control_character() {
    let hookd = Hookd::start(Options::default()).await;
    let long = "ü".repeat(257);
    for client_id in ["next\u{85}line", "tab\there", "del\u{7f}", "", &long] {
        let body = json!({"eventTypes": ["*"], "endpointUrl": URL,
            "endpointAuth": oauth(client_id, "s")});
        subscription_refused(&hookd, body, "endpointAuth.credentials.clientId").await;
    }
}

/// On create as on change, `null` is only "none" for customHeaders, rateLimit and
/// description (and, on create, entityId: the caller's entity); for the other fields
/// it is 422, not silently the default.
#[tokio::test]
async fn null_is_refused_on_create_where_no_null_is_allowed() {
    let hookd = Hookd::start(Options::default()).await;
    for field in ["status", "endpointAuth", "eventTypes", "endpointUrl"] {
        let mut body = json!({"eventTypes": ["*"], "endpointUrl": URL});
        body[field] = Value::Null;
        subscription_refused(&hookd, body, field).await;
    }
    let body = json!({"eventTypes": ["*"], "endpointUrl": URL,
        "customHeaders": null, "rateLimit": null, "description": null, "entityId": null});
    let (status, created) = hookd.call("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["data"]["entityId"], "root");
}

/// `?eventType=` that is not a well-formed type is 422, like any bad filter.
#[tokio::test]
async fn a_malformed_event_type_filter_is_422() {
    let hookd = Hookd::start(Options::default()).await;
    assert_422(
        hookd
            .call("GET", "/v1/events?eventType=not%20a%20type", None)
            .await,
        "eventType",
    );
    let (status, page) = hookd
        .call("GET", "/v1/events?eventType=v2.job.done", None)
        .await;
    assert_eq!(status, 200, "{page}");
}

/// An answer given before the body is read (401, 404, or a route that takes no body)
/// still reaches a client that sends the whole body before reading, as most HTTP
/// clients do: hookd reads the body first, where a connection closed with it unread is
/// reset and the answer lost.
#[tokio::test]
async fn early_answers_are_not_lost_to_a_reset_connection() {
    let hookd = Hookd::start(Options::default()).await;
    // More than the socket buffers hold, so the client is still sending when an
    // early answer comes; the replay body stays within server.max_body_bytes.
    let pad = |n: usize| {
        format!(
            r#"{{"since": "2026-01-01T00:00:00Z", "pad": "{}"}}"#,
            "x".repeat(n)
        )
    };
    let (big, small) = (pad(4 << 20), pad(200_000));
    let unknown = "/v1/subscriptions/sub_00000000000000000000000000000000";
    let admin = format!("Bearer {}", hookd.token);
    for _ in 0..3 {
        for (path, token, body, expected) in [
            (format!("{unknown}/replay"), "Bearer wrong", &big, "401"),
            (format!("{unknown}/replay"), admin.as_str(), &small, "404"),
            (format!("{unknown}/test"), admin.as_str(), &big, "404"),
            ("/healthz".to_owned(), "Bearer wrong", &big, "405"),
        ] {
            let answer = send_whole_then_read(&hookd, &path, token, body).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {expected} ")),
                "{path}: {answer:.200}"
            );
        }
    }
}

/// Writes the request, body and all, before reading a byte of the answer.
async fn send_whole_then_read(hookd: &Hookd, path: &str, token: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let tls = hookd::tls::client_config(Some(&hookd.ca.write(dir.path()))).unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls);
    let port = hookd.url.rsplit(':').next().unwrap();
    let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut answer = Vec::new();
    let sent = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.flush().await?;
        stream.read_to_end(&mut answer).await
    };
    match sent.await {
        Ok(_) => String::from_utf8_lossy(&answer).into_owned(),
        Err(error) => format!("the connection failed: {error}"),
    }
}
