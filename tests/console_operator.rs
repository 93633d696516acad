//! The operator's console pages against the real daemon: entities and API keys made
//! from forms (the API's message beside a refused field), a new key shown once, and
//! revocation from its page ending the key's sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use common::console::text;
use common::{Hookd, Options};
use serde_json::json;

/// The operator makes an entity and a key from the pages; the key is shown once, and
/// revoking it from its page ends what it opened.
#[tokio::test]
async fn the_operator_manages_entities_and_keys_and_a_new_key_is_shown_once() {
    let hookd = Hookd::start(Options::default()).await;
    let admin = hookd.sign_in(&hookd.token).await;
    let post = |path: String, form: String| {
        let hookd = &hookd;
        let cookie = admin.cookie.clone();
        async move { hookd.page("POST", &path, Some(&cookie), Some(&form)).await }
    };
    let csrf = &admin.csrf;
    let made = post(
        "/console/entities".into(),
        format!("csrf={csrf}&id=acme&name=Acme+%3Cb%3E"),
    )
    .await;
    assert_eq!(made.status, 303, "{}", text(&made));
    let refused = post(
        "/console/entities".into(),
        format!("csrf={csrf}&name=x&parentId=nobody"),
    )
    .await;
    assert_eq!(refused.status, 422);
    assert!(text(&refused).contains("parentId"), "{}", text(&refused));

    let created = post(
        "/console/keys".into(),
        format!(
            "csrf={csrf}&entityId=acme&name=ci&scope=subscriptions%3Aread&scope=portal%3Awrite"
        ),
    )
    .await;
    assert_eq!(created.status, 201, "{}", text(&created));
    let html = text(&created);
    let start = html.find("hk_").expect("the new key on the page");
    let key: String = html[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let (_, keys) = hookd.call("GET", "/v1/admin/api-keys", None).await;
    assert_eq!(
        keys["data"][0]["scopes"],
        json!(["subscriptions:read", "portal:write"])
    );
    let list = hookd
        .page("GET", "/console/keys", Some(&admin.cookie), None)
        .await;
    assert!(!text(&list).contains(&key), "a key is shown only once");
    assert!(text(&list).contains("Acme") || text(&list).contains("acme"));

    // The key works, in the console too, until it is revoked from its page.
    let tenant = hookd.sign_in(&key).await;
    let operator_page = hookd
        .page("GET", "/console/keys", Some(&tenant.cookie), None)
        .await;
    assert_eq!(
        operator_page.status, 403,
        "operator pages are the admin token's"
    );
    let id = keys["data"][0]["id"].as_str().unwrap();
    let revoked = post(format!("/console/keys/{id}/revoke"), format!("csrf={csrf}")).await;
    assert_eq!(revoked.status, 303);
    let (status, _) = hookd.call_as(&key, "GET", "/v1/subscriptions", None).await;
    assert_eq!(status, 401);
    let after = hookd
        .page("GET", "/console/", Some(&tenant.cookie), None)
        .await;
    assert_eq!(after.status, 303, "the key's console session ended");
}
