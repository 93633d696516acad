//! The HTTP contract: authentication, validation errors as problem+json naming the
//! field, idempotency, body limits, masking, and secrets kept out of responses and the
//! database file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use common::{Hookd, Options, Receiver};
use serde_json::{Value, json};

fn assert_problem(status: u16, body: &Value, expected: u16, field: Option<&str>) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["status"], expected);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://hookd.dev/problems/")
    );
    assert!(!body["detail"].as_str().unwrap().is_empty());
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(field), "{body}");
    }
}

#[tokio::test]
async fn every_v1_route_needs_the_token_and_health_does_not() {
    let hookd = Hookd::start(Options::default()).await;
    let (status, body) = hookd.call_raw("GET", "/v1/subscriptions", None, &[]).await;
    assert_problem(status, &body, 401, None);
    let (status, body) = hookd
        .call_raw(
            "GET",
            "/v1/subscriptions",
            None,
            &[("authorization", "Bearer wrong")],
        )
        .await;
    assert_problem(status, &body, 401, None);
    let (status, body) = hookd.call_raw("GET", "/healthz", None, &[]).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = hookd.call("GET", "/v1/nothing-here", None).await;
    assert_problem(status, &body, 404, None);
    let (status, body) = hookd.call("PUT", "/v1/events", None).await;
    assert_problem(status, &body, 405, None);
}

#[tokio::test]
async fn bad_events_are_refused_with_the_field_named() {
    let hookd = Hookd::start(Options::default()).await;
    let cases = [
        (json!({"data": {}}), "eventType"),
        (json!({"eventType": 5, "data": {}}), "eventType"),
        (json!({"eventType": "has space", "data": {}}), "eventType"),
        (json!({"eventType": "hookd.ping", "data": {}}), "eventType"),
        (json!({"eventType": "a.b"}), "data"),
        (json!({"eventType": "a.b", "data": [1]}), "data"),
        (
            json!({"eventType": "a.b", "data": {}, "entityId": 7}),
            "entityId",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = hookd.call("POST", "/v1/events", Some(body)).await;
        assert_problem(status, &problem, 422, Some(field));
    }
    let (status, problem) = hookd
        .call(
            "POST",
            "/v1/events",
            Some(json!({"eventType": "a.b", "data": {}, "colour": 1})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("colour"));
    let (status, problem) = hookd
        .call_raw(
            "POST",
            "/v1/events",
            Some(b"{not json".to_vec()),
            &[("authorization", &format!("Bearer {}", hookd.token))],
        )
        .await;
    assert_problem(status, &problem, 400, None);
    // Another tenant's or a missing entity is indistinguishable: 404.
    let (status, problem) = hookd
        .call(
            "POST",
            "/v1/events",
            Some(json!({"eventType": "a.b", "data": {}, "entityId": "nobody"})),
        )
        .await;
    assert_problem(status, &problem, 404, None);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let hookd = Hookd::start(Options {
        server: "max_body_bytes = 2048".into(),
        ..Options::default()
    })
    .await;
    let big = json!({"eventType": "a.b", "data": {"blob": "x".repeat(4096)}});
    let (status, problem) = hookd.call("POST", "/v1/events", Some(big)).await;
    assert_problem(status, &problem, 413, None);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("server.max_body_bytes")
    );
    let small = json!({"eventType": "a.b", "data": {"blob": "x"}});
    assert_eq!(hookd.call("POST", "/v1/events", Some(small)).await.0, 202);
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_answer_and_refuse_a_changed_body() {
    let hookd = Hookd::start(Options::default()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    hookd.subscribe(&receiver.url, &["*"]).await;
    let auth = format!("Bearer {}", hookd.token);
    let headers = [
        ("authorization", auth.as_str()),
        ("idempotency-key", "order-17"),
    ];
    let body = br#"{"eventType":"order.paid","data":{"id":17}}"#.to_vec();

    let (first_status, first) = hookd
        .call_raw("POST", "/v1/events", Some(body.clone()), &headers)
        .await;
    assert_eq!(first_status, 202, "{first}");
    let (again_status, again) = hookd
        .call_raw("POST", "/v1/events", Some(body), &headers)
        .await;
    assert_eq!(again_status, 200, "{again}");
    assert_eq!(again, first, "the original response, same eventId");

    let other = br#"{"eventType":"order.paid","data":{"id":18}}"#.to_vec();
    let (status, problem) = hookd
        .call_raw("POST", "/v1/events", Some(other), &headers)
        .await;
    assert_problem(status, &problem, 409, None);

    let got = receiver.next().await;
    assert_eq!(
        got.header("webhook-id"),
        first["data"]["id"].as_str().unwrap()
    );
    receiver
        .assert_quiet(std::time::Duration::from_millis(300))
        .await;

    let bad = [("authorization", auth.as_str()), ("idempotency-key", "")];
    let (status, problem) = hookd
        .call_raw(
            "POST",
            "/v1/events",
            Some(br#"{"eventType":"a","data":{}}"#.to_vec()),
            &bad,
        )
        .await;
    assert_problem(status, &problem, 422, Some("Idempotency-Key"));
}

#[tokio::test]
async fn bad_subscriptions_are_refused_with_the_field_named() {
    let hookd = Hookd::start(Options::default()).await;
    let ok = "https://localhost:9/hook";
    let cases = [
        (json!({"endpointUrl": ok}), "eventTypes"),
        (json!({"eventTypes": [], "endpointUrl": ok}), "eventTypes"),
        (
            json!({"eventTypes": ["a", 3], "endpointUrl": ok}),
            "eventTypes[1]",
        ),
        (
            json!({"eventTypes": ["a.*.b"], "endpointUrl": ok}),
            "eventTypes[0]",
        ),
        (json!({"eventTypes": ["*"]}), "endpointUrl"),
        (
            json!({"eventTypes": ["*"], "endpointUrl": "http://localhost:9/"}),
            "endpointUrl",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": "https://u:p@localhost/"}),
            "endpointUrl",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": "not a url"}),
            "endpointUrl",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": ok, "status": "DISABLED"}),
            "status",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": ok, "rateLimit": 0}),
            "rateLimit",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": ok, "customHeaders": {"webhook-id": "x"}}),
            "customHeaders.webhook-id",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": ok, "customHeaders": {"Host": "x"}}),
            "customHeaders.Host",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": ok, "customHeaders": {"bad name": "x"}}),
            "customHeaders.bad name",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": ok, "customHeaders": {"x-a": "line\nbreak"}}),
            "customHeaders.x-a",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": ok, "endpointAuth": {"type": "BASIC", "credentials": {"username": "u"}}, "customHeaders": {}}),
            "endpointAuth.credentials.password",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": ok, "endpointAuth": {"type": "BASIC", "credentials": {"username": "u", "password": "p"}}, "customHeaders": {"Authorization": "x"}}),
            "customHeaders.Authorization",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": ok, "endpointAuth": {"type": "MAGIC"}}),
            "endpointAuth.type",
        ),
        (
            json!({"eventTypes": ["*"], "endpointUrl": ok, "extra": true}),
            "extra",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = hookd
            .call("POST", "/v1/subscriptions", Some(body.clone()))
            .await;
        assert_problem(status, &problem, 422, Some(field));
    }
    let many: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("x-h{i}"), json!("v"))).collect();
    let (status, problem) = hookd
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"eventTypes": ["*"], "endpointUrl": ok, "customHeaders": many})),
        )
        .await;
    assert_problem(status, &problem, 422, Some("customHeaders"));
}

#[tokio::test]
async fn subscriptions_can_be_listed_read_patched_and_their_secrets_stay_hidden() {
    let hookd = Hookd::start(Options::default()).await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let (status, created) = hookd
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({
                "eventTypes": ["job.*"],
                "endpointUrl": receiver.url,
                "endpointAuth": {"type": "BASIC", "credentials": {"username": "erp", "password": "pa55-word-XYZ"}},
                "customHeaders": {"X-Api-Key": "key-value-SECRET-123", "User-Agent": "ERP/1.0"},
                "rateLimit": 50,
                "description": "ERP sync"
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let sub = created["data"].clone();
    let id = sub["id"].as_str().unwrap();
    let secret = sub["signingSecret"].as_str().unwrap().to_string();
    assert!(id.starts_with("sub_") && secret.starts_with("whsec_"));
    assert_eq!(sub["customHeaders"]["x-api-key"], "****");
    assert_eq!(sub["customHeaders"]["user-agent"], "ERP/1.0");
    assert_eq!(
        sub["endpointAuth"],
        json!({"type": "BASIC", "credentials": {"username": "erp"}})
    );
    assert_eq!(sub["status"], "ACTIVE");
    assert_eq!(sub["entityId"], "root");

    let (_, read) = hookd
        .call("GET", &format!("/v1/subscriptions/{id}"), None)
        .await;
    assert!(read["data"].get("signingSecret").is_none());
    assert!(!read.to_string().contains("pa55-word-XYZ"));
    let (_, shown) = hookd
        .call("GET", &format!("/v1/subscriptions/{id}/secret"), None)
        .await;
    assert_eq!(shown["data"]["signingSecret"], secret.as_str());

    // Delivered with Basic auth and the custom headers, user-agent replaced.
    hookd.post_event("job.created", json!({})).await;
    let got = receiver.next().await;
    assert_eq!(
        got.header("authorization"),
        "Basic ZXJwOnBhNTUtd29yZC1YWVo="
    );
    assert_eq!(got.header("x-api-key"), "key-value-SECRET-123");
    assert_eq!(got.header("user-agent"), "ERP/1.0");

    let (status, patched) = hookd
        .call(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(json!({"status": "DEACTIVATED", "description": null})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["data"]["status"], "DEACTIVATED");
    assert!(patched["data"]["description"].is_null());
    assert_eq!(patched["data"]["rateLimit"], 50);
    let accepted = hookd.post_event("job.created", json!({})).await;
    assert_eq!(
        accepted["deliveryCount"], 0,
        "a deactivated subscription gets no new events"
    );
    let (status, problem) = hookd
        .call(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(json!({"entityId": "root"})),
        )
        .await;
    assert_problem(status, &problem, 422, Some("entityId"));

    for i in 0..3 {
        hookd
            .subscribe(&format!("https://localhost:9/{i}"), &["*"])
            .await;
    }
    let (_, page) = hookd.call("GET", "/v1/subscriptions?limit=3", None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, rest) = hookd
        .call(
            "GET",
            &format!("/v1/subscriptions?limit=3&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert!(rest["nextCursor"].is_null());
    let (status, problem) = hookd.call("GET", "/v1/subscriptions?limit=0", None).await;
    assert_problem(status, &problem, 422, Some("limit"));

    for unknown in [
        "sub_0000",
        "evt_00000000000000000000000000000000",
        "nonsense",
    ] {
        let (status, _) = hookd
            .call("GET", &format!("/v1/subscriptions/{unknown}"), None)
            .await;
        assert_eq!(status, 404);
    }

    // Nothing secret is stored in clear (the redb file, or every row in PostgreSQL).
    let (dir, _) = hookd.stop().await;
    let raw = common::stored_bytes(dir.path());
    // What is not secret is there as it is, so the search below finds what it seeks.
    let url = receiver.url.as_bytes();
    assert!(
        raw.windows(url.len()).any(|w| w == url),
        "the endpoint url is stored"
    );
    let secret_bytes = secret.trim_start_matches("whsec_");
    for needle in [secret_bytes, "pa55-word-XYZ", "key-value-SECRET-123"] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} found in clear in the database"
        );
    }
}
