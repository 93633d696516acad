//! The customer portal over HTTPS against the real daemon: links are made only for the
//! caller's subtree with known permissions and open once; a portal session sees its
//! entity's subtree (404 beyond it, as the API), does only what its permissions allow,
//! ends with its maker's key, and may be framed only by `console.frame_ancestors`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use common::console::{set_cookie_header, text};
use common::{Hookd, Options, Receiver};
use serde_json::json;

const SCOPES: &[&str] = &[
    "events:write",
    "subscriptions:read",
    "subscriptions:write",
    "portal:write",
];

#[tokio::test]
async fn links_are_checked_when_made_and_open_once() {
    let hookd = Hookd::start(Options::default()).await;
    hookd.create_entity("org", None).await;
    hookd.create_entity("co", Some("org")).await;
    hookd.create_entity("other", None).await;
    let org = hookd.create_key("org", SCOPES).await;
    let make = |body: serde_json::Value| {
        let hookd = &hookd;
        let org = org.clone();
        async move {
            hookd
                .call_as(&org, "POST", "/v1/portal/sessions", Some(body))
                .await
        }
    };
    let (status, body) = make(json!({"entityId": "other", "permissions": ["read"]})).await;
    assert_eq!(status, 404, "another tenant's entity: {body}");
    for (bad, field) in [
        (json!({"entityId": "co", "permissions": []}), "permissions"),
        (
            json!({"entityId": "co", "permissions": ["admin"]}),
            "permissions[0]",
        ),
        (
            json!({"entityId": "co", "permissions": ["read"], "expiresIn": "8d"}),
            "expiresIn",
        ),
        (
            json!({"entityId": "co", "permissions": ["read"], "expiresIn": "soon"}),
            "expiresIn",
        ),
        (
            json!({"entityId": "co", "permissions": ["read"], "x": 1}),
            "x",
        ),
    ] {
        let (status, body) = make(bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["field"], field, "{bad}: {body}");
    }
    let (status, body) =
        make(json!({"entityId": "co", "permissions": ["read"], "expiresIn": "2h"})).await;
    assert_eq!(status, 201, "{body}");
    let url = body["data"]["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://") && url.contains("/portal/open/"),
        "{url}"
    );
    let expires = humantime::parse_rfc3339(body["data"]["expiresAt"].as_str().unwrap()).unwrap();
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left.as_secs() > 7000 && left.as_secs() <= 7200, "{left:?}");

    let link = &url[url.find("/portal/open/").unwrap()..];
    let first = hookd.open_portal_link(link).await;
    assert_eq!(first.status, 303, "{}", text(&first));
    let cookie = set_cookie_header(&first, "hookd_portal").unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/portal"] {
        assert!(cookie.split("; ").any(|a| a == attribute), "{cookie}");
    }
    // Opened again, the link is refused, whether its page or its form.
    let again = hookd.page("GET", link, None, None).await;
    assert_eq!(again.status, 404, "{}", text(&again));
    let again = hookd.open_portal_link(link).await;
    assert_eq!(again.status, 404);
    let forged = hookd
        .open_portal_link("/portal/open/0123456789abcdef")
        .await;
    assert_eq!(forged.status, 404);
}

/// A company's portal: its own subscription, deliveries and events; its parent's are
/// 404 and left out of its lists.
#[tokio::test]
async fn a_portal_session_sees_only_its_entitys_subtree() {
    let hookd = Hookd::start(Options::default()).await;
    let receiver = Receiver::start(&hookd.ca).await;
    hookd.create_entity("org", None).await;
    hookd.create_entity("co", Some("org")).await;
    let org = hookd.create_key("org", SCOPES).await;
    let co = hookd.create_key("co", SCOPES).await;
    let subscribe = |key: String| {
        let hookd = &hookd;
        let url = receiver.url.clone();
        async move {
            let body = json!({"eventTypes": ["*"], "endpointUrl": url});
            let (status, body) = hookd
                .call_as(&key, "POST", "/v1/subscriptions", Some(body))
                .await;
            assert_eq!(status, 201, "{body}");
            body["data"]["id"].as_str().unwrap().to_owned()
        }
    };
    let parents = subscribe(org.clone()).await;
    let own = subscribe(co.clone()).await;
    let (status, event) = hookd
        .call_as(
            &co,
            "POST",
            "/v1/events",
            Some(json!({"eventType": "order.created", "data": {}})),
        )
        .await;
    assert_eq!(status, 202, "{event}");
    let deliveries = hookd
        .deliveries_of(event["data"]["id"].as_str().unwrap())
        .await;
    let delivery_to = |sub: &str| {
        deliveries
            .iter()
            .find(|d| d["subscriptionId"] == sub)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (to_parent, to_own) = (delivery_to(&parents), delivery_to(&own));

    let session = hookd.portal_session("co", &["read", "retry"]).await;
    let get = |path: String| {
        let hookd = &hookd;
        let cookie = session.cookie.clone();
        async move { hookd.page("GET", &path, Some(&cookie), None).await }
    };
    for path in [
        format!("/portal/subscriptions/{own}"),
        format!("/portal/deliveries/{to_own}"),
        format!("/portal/events/{}", event["data"]["id"].as_str().unwrap()),
    ] {
        assert_eq!(get(path.clone()).await.status, 200, "{path}");
    }
    for path in [
        format!("/portal/subscriptions/{parents}"),
        format!("/portal/deliveries/{to_parent}"),
        format!("/portal/deliveries?subscription={parents}"),
    ] {
        assert_eq!(get(path.clone()).await.status, 404, "{path}");
    }
    let list = text(&get("/portal/subscriptions".into()).await);
    assert!(list.contains(&own) && !list.contains(&parents), "{list}");
    // Links lead within the portal.
    assert!(
        list.contains(&format!("href=\"/portal/subscriptions/{own}\"")),
        "{list}"
    );
    assert!(!list.contains("<a href=\"/console"), "{list}");

    // read + retry: no editing (no button, and 403 when forced), but retry works.
    let detail = text(&get(format!("/portal/subscriptions/{own}")).await);
    assert!(!detail.contains("/edit\""), "{detail}");
    assert!(detail.contains("Send test event"), "{detail}");
    let edit = get(format!("/portal/subscriptions/{own}/edit")).await;
    assert_eq!(edit.status, 403);
    let form = format!("csrf={}", session.csrf);
    let retried = hookd
        .page(
            "POST",
            &format!("/portal/deliveries/{to_own}/retry"),
            Some(&session.cookie),
            Some(&form),
        )
        .await;
    assert_eq!(retried.status, 303, "{}", text(&retried));
    let refused = hookd
        .page(
            "POST",
            &format!("/portal/deliveries/{to_parent}/retry"),
            Some(&session.cookie),
            Some(&form),
        )
        .await;
    assert_eq!(refused.status, 404);
    let deleted = hookd
        .page(
            "POST",
            &format!("/portal/subscriptions/{own}/delete"),
            Some(&session.cookie),
            Some(&form),
        )
        .await;
    assert_eq!(deleted.status, 403);

    // A portal cookie is no console session.
    let console_try = session.cookie.replace("hookd_portal", "hookd_console");
    let console = hookd
        .page("GET", "/console/subscriptions", Some(&console_try), None)
        .await;
    assert_eq!(console.status, 303);
}

#[tokio::test]
async fn revoking_the_makers_key_ends_the_portal_session() {
    let hookd = Hookd::start(Options::default()).await;
    hookd.create_entity("acme", None).await;
    let key = hookd.create_key("acme", SCOPES).await;
    let (status, body) = hookd
        .call_as(
            &key,
            "POST",
            "/v1/portal/sessions",
            Some(json!({"entityId": "acme", "permissions": ["read"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let url = body["data"]["url"].as_str().unwrap();
    let opened = hookd
        .open_portal_link(&url[url.find("/portal/open/").unwrap()..])
        .await;
    assert_eq!(opened.status, 303);
    let cookie = format!(
        "hookd_portal={}",
        common::console::set_cookie(&opened, "hookd_portal").unwrap()
    );
    let page = hookd
        .page("GET", "/portal/subscriptions", Some(&cookie), None)
        .await;
    assert_eq!(page.status, 200);
    let (_, keys) = hookd.call("GET", "/v1/admin/api-keys", None).await;
    let id = keys["data"][0]["id"].as_str().unwrap();
    let (status, _) = hookd
        .call("DELETE", &format!("/v1/admin/api-keys/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let page = hookd
        .page("GET", "/portal/subscriptions", Some(&cookie), None)
        .await;
    assert_eq!(page.status, 401, "the maker's key was revoked");
}

#[tokio::test]
async fn only_the_configured_origins_may_frame_the_portal() {
    let hookd = Hookd::start(Options {
        tail: "[console]\nframe_ancestors = [\"https://dash.example.com\"]\n".into(),
        ..Options::default()
    })
    .await;
    hookd.create_entity("acme", None).await;
    let link = hookd.portal_link("acme", &["read"]).await;
    let page = hookd.page("GET", &link, None, None).await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors https://dash.example.com"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(page.headers.get("x-frame-options").is_none());
    let opened = hookd.open_portal_link(&link).await;
    let cookie = set_cookie_header(&opened, "hookd_portal").unwrap();
    assert!(
        cookie.contains("SameSite=None; Partitioned"),
        "framed: {cookie}"
    );
    // The console is never framed.
    let console = hookd.page("GET", "/console/sign-in", None, None).await;
    let csp = console.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(console.headers["x-frame-options"], "DENY");
}

/// A signing secret is shown only when asked for by its form, and only to a session
/// allowed to read it: the console with subscriptions:write, the portal with `secrets`.
#[tokio::test]
async fn signing_secrets_are_shown_only_when_asked_for_and_allowed() {
    let hookd = Hookd::start(Options::default()).await;
    let receiver = Receiver::start(&hookd.ca).await;
    hookd.create_entity("acme", None).await;
    let body = json!({"eventTypes": ["*"], "endpointUrl": receiver.url, "entityId": "acme"});
    let (status, created) = hookd.call("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let sub = created["data"]["id"].as_str().unwrap().to_owned();
    let secret = created["data"]["signingSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = hookd.sign_in(&hookd.token).await;
    let detail = hookd
        .page(
            "GET",
            &format!("/console/subscriptions/{sub}"),
            Some(&admin.cookie),
            None,
        )
        .await;
    assert!(
        !text(&detail).contains(&secret),
        "never on a page that did not ask"
    );
    let form = format!("csrf={}", admin.csrf);
    let shown = hookd
        .page(
            "POST",
            &format!("/console/subscriptions/{sub}/secret"),
            Some(&admin.cookie),
            Some(&form),
        )
        .await;
    assert_eq!(shown.status, 200);
    assert!(text(&shown).contains(&secret));
    assert_eq!(shown.headers["cache-control"], "no-store");

    let reader = hookd
        .portal_session("acme", &["read", "manage", "retry"])
        .await;
    let form = format!("csrf={}", reader.csrf);
    let refused = hookd
        .page(
            "POST",
            &format!("/portal/subscriptions/{sub}/secret"),
            Some(&reader.cookie),
            Some(&form),
        )
        .await;
    assert_eq!(refused.status, 403);
    assert!(!text(&refused).contains(&secret));

    let keeper = hookd.portal_session("acme", &["read", "secrets"]).await;
    let form = format!("csrf={}", keeper.csrf);
    let rotated = hookd
        .page(
            "POST",
            &format!("/portal/subscriptions/{sub}/secret/rotate"),
            Some(&keeper.cookie),
            Some(&form),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", text(&rotated));
    let (_, now) = hookd
        .call("GET", &format!("/v1/subscriptions/{sub}/secret"), None)
        .await;
    let new = now["data"]["signingSecret"].as_str().unwrap();
    assert_ne!(new, secret);
    assert!(text(&rotated).contains(new));
}
