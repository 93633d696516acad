//! Authentication toward endpoints: OAuth 2.0 client credentials against a real token
//! endpoint on loopback HTTPS (decoding client_secret_basic the RFC 6749 way), token
//! caching, refetch on 401 and on expiry, client_secret_post, token errors, PATCH
//! dropping the token; and signing-secret rotation with two signatures in overlap.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::time::Duration;

use base64::Engine;
use common::{Hookd, Options, Received, Receiver, verify};
use serde_json::{Value, json};

const CLIENT_ID: &str = "erp client:1/+%";
const CLIENT_SECRET: &str = "s3cr3t/+% :x&y=z";
const TOKEN: &str = "tok-abc.123";

/// `application/x-www-form-urlencoded` decoding, as RFC 6749 §2.3.1 asks a server to
/// apply to each half of the Basic credentials.
fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(u8::from_str_radix(&value[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// (client id, secret) from a client_secret_basic request, decoded per RFC 6749.
fn basic_credentials(request: &Received) -> (String, String) {
    let encoded = request
        .header("authorization")
        .strip_prefix("Basic ")
        .unwrap();
    let pair = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let pair = String::from_utf8(pair).unwrap();
    let (id, secret) = pair.split_once(':').unwrap();
    (form_decode(id), form_decode(secret))
}

fn form(request: &Received) -> Vec<(String, String)> {
    std::str::from_utf8(&request.body)
        .unwrap()
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_string(), form_decode(v))
        })
        .collect()
}

async fn token_server(hookd: &Hookd, expires_in: u64) -> Receiver {
    let server = Receiver::start(&hookd.ca).await;
    server.respond_body(
        &json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": expires_in})
            .to_string(),
    );
    server
}

async fn oauth_subscription(
    hookd: &Hookd,
    endpoint: &str,
    token_url: &str,
    extra: Value,
) -> String {
    let mut credentials = json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "tokenUrl": token_url, "scope": "webhooks:write"});
    for (k, v) in extra.as_object().unwrap() {
        credentials[k] = v.clone();
    }
    let (status, created) = hookd
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({
                "eventTypes": ["*"],
                "endpointUrl": endpoint,
                "endpointAuth": {"type": "OAUTH2_CLIENT_CREDENTIALS", "credentials": credentials},
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let auth = &created["data"]["endpointAuth"];
    assert_eq!(auth["credentials"]["clientId"], CLIENT_ID);
    assert!(auth["credentials"].get("clientSecret").is_none());
    created["data"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn client_credentials_get_one_token_for_many_deliveries() {
    let hookd = Hookd::start(Options::default()).await;
    let mut tokens = token_server(&hookd, 3600).await;
    let mut endpoint = Receiver::start(&hookd.ca).await;
    oauth_subscription(&hookd, &endpoint.url, &tokens.url, json!({})).await;

    let events: Vec<Value> = (0..20)
        .map(|i| json!({"eventType": "job.done", "data": {"i": i}}))
        .collect();
    let (status, _) = hookd
        .call("POST", "/v1/events/batch", Some(json!({"events": events})))
        .await;
    assert_eq!(status, 202);
    for _ in 0..20 {
        assert_eq!(
            endpoint.next().await.header("authorization"),
            format!("Bearer {TOKEN}")
        );
    }
    let request = tokens.next().await;
    tokens.assert_quiet(Duration::from_millis(200)).await;
    let scrape = hookd.metrics().await;
    assert!(
        scrape.contains("hookd_oauth_token_fetches_total 1"),
        "{scrape}"
    );

    // The token request, as a strict RFC 6749 server decodes it.
    assert_eq!(
        request.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        basic_credentials(&request),
        (CLIENT_ID.to_string(), CLIENT_SECRET.to_string())
    );
    let body = form(&request);
    assert!(body.contains(&("grant_type".into(), "client_credentials".into())));
    assert!(body.contains(&("scope".into(), "webhooks:write".into())));
    assert!(
        !std::str::from_utf8(&request.body)
            .unwrap()
            .contains("s3cr3t")
    );
}

#[tokio::test]
async fn a_401_drops_the_token_and_resends_once_within_the_attempt() {
    let hookd = Hookd::start(Options::default()).await;
    let mut tokens = token_server(&hookd, 3600).await;
    let mut endpoint = Receiver::start(&hookd.ca).await;
    endpoint.reply_with(&[401]);
    oauth_subscription(&hookd, &endpoint.url, &tokens.url, json!({})).await;
    let accepted = hookd.post_event("job.done", json!({})).await;
    endpoint.next().await;
    endpoint.next().await;
    tokens.next().await;
    tokens.next().await;
    let delivery = hookd.first_delivery(&accepted).await;
    let done = hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
    assert_eq!(
        done["attempts"], 1,
        "the resend is part of the same attempt"
    );
    tokens.assert_quiet(Duration::from_millis(200)).await;
    endpoint.assert_quiet(Duration::from_millis(1)).await;
}

#[tokio::test]
async fn an_expired_token_is_fetched_again_once() {
    let hookd = Hookd::start(Options::default()).await;
    // expires_in 1 s: refreshed 100 ms early, so after 0.9 s.
    let mut tokens = token_server(&hookd, 1).await;
    let mut endpoint = Receiver::start(&hookd.ca).await;
    oauth_subscription(&hookd, &endpoint.url, &tokens.url, json!({})).await;
    hookd.post_event("job.done", json!({"n": 1})).await;
    endpoint.next().await;
    tokens.next().await;
    hookd.post_event("job.done", json!({"n": 2})).await;
    endpoint.next().await;
    tokens.assert_quiet(Duration::from_millis(1)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    hookd.post_event("job.done", json!({"n": 3})).await;
    endpoint.next().await;
    tokens.next().await;
    tokens.assert_quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn client_secret_post_and_token_errors() {
    let hookd = Hookd::start(Options::default()).await;
    let mut tokens = token_server(&hookd, 3600).await;
    let mut endpoint = Receiver::start(&hookd.ca).await;
    oauth_subscription(
        &hookd,
        &endpoint.url,
        &tokens.url,
        json!({"tokenEndpointAuthMethod": "client_secret_post"}),
    )
    .await;
    hookd.post_event("job.done", json!({})).await;
    endpoint.next().await;
    let request = tokens.next().await;
    assert_eq!(request.header("authorization"), "");
    let body = form(&request);
    assert!(body.contains(&("client_id".into(), CLIENT_ID.into())));
    assert!(body.contains(&("client_secret".into(), CLIENT_SECRET.into())));

    // A refusing token endpoint: the attempt fails naming its status and OAuth error.
    let mut refusing = Receiver::start(&hookd.ca).await;
    refusing.reply_with(&[401; 10]);
    refusing.respond_body(r#"{"error":"invalid_client","error_description":"bad secret"}"#);
    let mut unreached = Receiver::start(&hookd.ca).await;
    let sub = oauth_subscription(&hookd, &unreached.url, &refusing.url, json!({})).await;
    let (_, _) = hookd
        .call(
            "PATCH",
            &format!("/v1/subscriptions/{sub}"),
            Some(json!({"eventTypes": ["refused.*"]})),
        )
        .await;
    let accepted = hookd.post_event("refused.one", json!({})).await;
    refusing.next().await;
    // The event also goes to the first subscription ("*"): pick this one's delivery.
    let deliveries = hookd.deliveries_of(accepted["id"].as_str().unwrap()).await;
    let delivery = deliveries
        .iter()
        .find(|d| d["subscriptionId"] == sub.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = hookd.wait_for_delivery_state(&delivery, "RETRYING").await;
    let error = failed["lastError"].as_str().unwrap();
    assert!(
        error.contains("401")
            && error.contains("invalid_client")
            && error.contains("token endpoint"),
        "{error}"
    );
    assert!(!error.contains("s3cr3t"));
    unreached.assert_quiet(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn new_credentials_drop_the_cached_token() {
    let hookd = Hookd::start(Options::default()).await;
    let mut tokens = token_server(&hookd, 3600).await;
    let mut endpoint = Receiver::start(&hookd.ca).await;
    let sub = oauth_subscription(&hookd, &endpoint.url, &tokens.url, json!({})).await;
    hookd.post_event("job.done", json!({})).await;
    endpoint.next().await;
    tokens.next().await;

    let patch = json!({"endpointAuth": {"type": "OAUTH2_CLIENT_CREDENTIALS", "credentials": {
        "clientId": "new-client", "clientSecret": "new-secret", "tokenUrl": tokens.url}}});
    let (status, answer) = hookd
        .call("PATCH", &format!("/v1/subscriptions/{sub}"), Some(patch))
        .await;
    assert_eq!(status, 200, "{answer}");
    hookd.post_event("job.done", json!({})).await;
    endpoint.next().await;
    let request = tokens.next().await;
    assert_eq!(
        basic_credentials(&request),
        ("new-client".to_string(), "new-secret".to_string())
    );

    // Credentials must be given again in full.
    let partial = json!({"endpointAuth": {"type": "BASIC", "credentials": {"username": "u"}}});
    let (status, problem) = hookd
        .call("PATCH", &format!("/v1/subscriptions/{sub}"), Some(partial))
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("endpointAuth.credentials.password"))
    );

    // The client secret is not stored in clear (the redb file, or every row in PostgreSQL).
    let (dir, _) = hookd.stop().await;
    let raw = common::stored_bytes(dir.path());
    for needle in ["new-secret", "s3cr3t/+%"] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} in clear"
        );
    }
}

#[tokio::test]
async fn the_token_url_follows_the_endpoint_rules() {
    let closed = || Options {
        delivery: "allow_networks = []\n".into(),
        ..Options::default()
    };
    let hookd = Hookd::start(closed()).await;
    let (status, problem) = hookd
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"eventTypes": ["*"], "endpointUrl": "https://example.com/", "endpointAuth": {
                "type": "OAUTH2_CLIENT_CREDENTIALS",
                "credentials": {"clientId": "a", "clientSecret": "b", "tokenUrl": "http://example.com/token"}}})),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("endpointAuth.credentials.tokenUrl"))
    );

    // A loopback token URL with an empty allow-list is refused when it is given...
    let mut tokens = token_server(&hookd, 3600).await;
    let (status, problem) = hookd
        .call(
            "POST",
            "/v1/subscriptions",
            Some(
                json!({"eventTypes": ["*"], "endpointUrl": "https://example.com/", "endpointAuth": {
                "type": "OAUTH2_CLIENT_CREDENTIALS",
                "credentials": {"clientId": "a", "clientSecret": "b", "tokenUrl": tokens.url}}}),
            ),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("endpointAuth.credentials.tokenUrl")),
        "{problem}"
    );
    // ...and, made while loopback was allowed, refused when dialled without it.
    let hookd = hookd.restart(Options::default()).await;
    let sub_endpoint = "https://localhost:9/never";
    oauth_subscription(&hookd, sub_endpoint, &tokens.url, json!({})).await;
    let hookd = hookd.restart(closed()).await;
    let accepted = hookd.post_event("job.done", json!({})).await;
    let delivery = hookd.first_delivery(&accepted).await;
    let failed = hookd.wait_for_delivery_state(&delivery, "RETRYING").await;
    let error = failed["lastError"].as_str().unwrap();
    assert!(
        error.contains("token request") && error.contains("refused"),
        "{error}"
    );
    tokens.assert_quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_for_the_overlap() {
    let hookd = Hookd::start(Options {
        delivery: "rotation_overlap = \"700ms\"\n".into(),
        ..Options::default()
    })
    .await;
    let mut endpoint = Receiver::start(&hookd.ca).await;
    let (sub, old) = hookd.subscribe(&endpoint.url, &["*"]).await;
    let (status, rotated) = hookd
        .call(
            "POST",
            &format!("/v1/subscriptions/{sub}/secret/rotate"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["data"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    let (_, shown) = hookd
        .call("GET", &format!("/v1/subscriptions/{sub}/secret"), None)
        .await;
    assert_eq!(shown["data"]["signingSecret"], new.as_str());

    hookd.post_event("job.done", json!({})).await;
    let during = endpoint.next().await;
    assert_eq!(during.header("webhook-signature").split(' ').count(), 2);
    assert!(verify(&during, &old) && verify(&during, &new));

    tokio::time::sleep(Duration::from_millis(800)).await;
    hookd.post_event("job.done", json!({})).await;
    let after = endpoint.next().await;
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    assert!(verify(&after, &new));
    assert!(!verify(&after, &old));
}

/// An attempt records the headers its request carried: the signature and ids as sent,
/// the bearer token and custom header values masked, nothing secret in the answer.
#[tokio::test]
async fn an_attempt_shows_the_headers_it_sent_with_secrets_masked() {
    let hookd = Hookd::start(Options::default()).await;
    let tokens = token_server(&hookd, 3600).await;
    let mut endpoint = Receiver::start(&hookd.ca).await;
    let sub = oauth_subscription(&hookd, &endpoint.url, &tokens.url, json!({})).await;
    let (status, body) = hookd
        .call(
            "PATCH",
            &format!("/v1/subscriptions/{sub}"),
            Some(json!({"customHeaders": {"x-tenant-key": "tenant-secret-42"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let accepted = hookd.post_event("job.done", json!({"n": 1})).await;
    let received = endpoint.next().await;
    assert_eq!(received.header("x-tenant-key"), "tenant-secret-42");
    let delivery = hookd.first_delivery(&accepted).await;
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;

    let (status, attempts) = hookd
        .call("GET", &format!("/v1/deliveries/{delivery}/attempts"), None)
        .await;
    assert_eq!(status, 200, "{attempts}");
    let sent = &attempts["data"][0]["requestHeaders"];
    assert_eq!(sent["webhook-id"], received.header("webhook-id"), "{sent}");
    assert_eq!(
        sent["webhook-signature"],
        received.header("webhook-signature")
    );
    assert_eq!(
        sent["webhook-timestamp"],
        received.header("webhook-timestamp")
    );
    assert_eq!(sent["content-type"], "application/json");
    assert_eq!(sent["authorization"], "••••••");
    assert_eq!(sent["x-tenant-key"], "••••••");
    let text = attempts.to_string();
    assert!(
        !text.contains(TOKEN) && !text.contains("tenant-secret-42"),
        "{text}"
    );
}
