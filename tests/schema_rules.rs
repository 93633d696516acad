//! Input rules as `openapi.json` states them, so that a request the document calls
//! valid is accepted and one it calls invalid is refused (Schemathesis checks both ways,
//! `.ci/schemathesis.sh`): lengths count characters as JSON Schema's `maxLength` does,
//! "no control characters" means every Unicode control character, `null` is refused
//! where the document allows no null, and a list filter that could match nothing
//! because it is malformed is 422.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use common::{Hookd, Options};
use serde_json::{Value, json};

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

    let url = "https://127.0.0.1:9/hook";
    let description = "ü".repeat(1024);
    let oauth = |client_id: &str| {
        json!({"type": "OAUTH2_CLIENT_CREDENTIALS", "credentials": {
            "clientId": client_id, "clientSecret": "ß".repeat(1024), "tokenUrl": url}})
    };
    let body = json!({"eventTypes": ["*"], "endpointUrl": url, "description": description,
        "endpointAuth": oauth(&"ü".repeat(256))});
    let (status, created) = hookd.call("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let body = json!({"eventTypes": ["*"], "endpointUrl": url, "description": "ü".repeat(1025)});
    assert_422(
        hookd.call("POST", "/v1/subscriptions", Some(body)).await,
        "description",
    );
    let body = json!({"eventTypes": ["*"], "endpointUrl": url,
        "endpointAuth": oauth(&"ü".repeat(257))});
    assert_422(
        hookd.call("POST", "/v1/subscriptions", Some(body)).await,
        "endpointAuth.credentials.clientId",
    );
}

/// A client id refuses every control character, C1 (U+0080-U+009F) as much as C0.
#[tokio::test]
async fn client_ids_refuse_every_control_character() {
    let hookd = Hookd::start(Options::default()).await;
    let url = "https://127.0.0.1:9/hook";
    for client_id in ["next\u{85}line", "tab\there", "del\u{7f}"] {
        let body = json!({"eventTypes": ["*"], "endpointUrl": url, "endpointAuth": {
            "type": "OAUTH2_CLIENT_CREDENTIALS", "credentials": {
                "clientId": client_id, "clientSecret": "s", "tokenUrl": url}}});
        assert_422(
            hookd.call("POST", "/v1/subscriptions", Some(body)).await,
            "endpointAuth.credentials.clientId",
        );
    }
}

/// On create as on change, `null` is only "none" for customHeaders, rateLimit and
/// description; for the other fields it is 422, not silently the default.
#[tokio::test]
async fn null_is_refused_on_create_where_no_null_is_allowed() {
    let hookd = Hookd::start(Options::default()).await;
    let url = "https://127.0.0.1:9/hook";
    for field in [
        "status",
        "endpointAuth",
        "entityId",
        "eventTypes",
        "endpointUrl",
    ] {
        let mut body = json!({"eventTypes": ["*"], "endpointUrl": url});
        body[field] = Value::Null;
        assert_422(
            hookd.call("POST", "/v1/subscriptions", Some(body)).await,
            field,
        );
    }
    let body = json!({"eventTypes": ["*"], "endpointUrl": url,
        "customHeaders": null, "rateLimit": null, "description": null});
    let (status, created) = hookd.call("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(status, 201, "{created}");
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
