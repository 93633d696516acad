//! The web console over HTTPS against the real daemon, without a browser: security
//! headers on every answer, the session cookie's attributes, CSRF on every form
//! (sign-in included), sessions bound to their key (revocation and sign-out end them),
//! `console.enabled = false`, escaping of what the pages show, 404 for objects outside
//! the caller's subtree, and the API's validation messages beside the form's fields.
//! The browser tests (`tests/browser.rs`) drive the same pages in Chromium.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use common::console::{encode, set_cookie_header, text};
use common::{Hookd, Options, Receiver};
use serde_json::json;

const SCOPES: &[&str] = &["events:write", "subscriptions:read", "subscriptions:write"];

fn assert_secure_headers(response: &hookd::delivery::client::BoundedResponse, at: &str) {
    let csp = response.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(!csp.contains("unsafe-inline"), "{at}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{at}: {csp}");
    assert!(csp.contains("script-src 'self'"), "{at}: {csp}");
    assert!(csp.contains("default-src 'none'"), "{at}: {csp}");
    assert_eq!(
        response.headers["x-content-type-options"], "nosniff",
        "{at}"
    );
    assert_eq!(response.headers["referrer-policy"], "no-referrer", "{at}");
}

/// Every visible form control has an id and a `<label for>` naming it.
fn assert_controls_are_labelled(html: &str, at: &str) {
    for tag in ["<input", "<select", "<textarea"] {
        for control in html.split(tag).skip(1) {
            let control = &control[..control.find('>').unwrap()];
            if control.contains("type=\"hidden\"") {
                continue;
            }
            let id = control
                .split("id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("{at}: a control without id: {control}"));
            assert!(
                html.contains(&format!("<label for=\"{id}\"")),
                "{at}: no label for {id}"
            );
        }
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_pages_hold_no_inline_code() {
    let hookd = Hookd::start(Options::default()).await;
    let session = hookd.sign_in(&hookd.token).await;
    for path in [
        "/console/sign-in",
        "/console/",
        "/console/subscriptions",
        "/console/subscriptions/new",
        "/console/events",
        "/console/deliveries",
        "/console/event-types",
        "/console/assets/console.css",
        "/console/assets/console.js",
        "/console/assets/nothing.js",
        "/console/nothing",
        "/console/subscriptions/sub_00000000000000000000000000000000",
    ] {
        let answer = hookd.page("GET", path, Some(&session.cookie), None).await;
        assert_secure_headers(&answer, path);
        let body = text(&answer);
        if answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
        {
            // Scripts only by src, no style attributes or elements, no inline handlers.
            assert!(!body.contains("<script>"), "{path}: inline script");
            assert!(!body.contains("<style"), "{path}: inline style");
            assert!(!body.contains(" style="), "{path}: style attribute");
            assert!(!body.contains(" onclick="), "{path}: inline handler");
            assert_controls_are_labelled(&body, path);
        }
    }
    let missing = hookd
        .page("GET", "/console/nothing", Some(&session.cookie), None)
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn the_session_cookie_is_http_only_secure_strict_and_lives_session_ttl() {
    let hookd = Hookd::start(Options {
        tail: "[console]\nsession_ttl = \"2h\"\n".into(),
        ..Options::default()
    })
    .await;
    let answer = hookd.sign_in_answer(&hookd.token).await;
    assert_eq!(answer.status, 303);
    let cookie = set_cookie_header(&answer, "hookd_console").unwrap();
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=7200",
    ] {
        assert!(
            cookie.split("; ").any(|a| a == attribute),
            "{attribute} missing: {cookie}"
        );
    }
    // A wrong token is refused on the form, with no session.
    let wrong = hookd.sign_in_answer("hk_not_a_key").await;
    assert_eq!(wrong.status, 401);
    assert!(set_cookie_header(&wrong, "hookd_console").is_none());
    assert!(text(&wrong).contains("not a valid admin token or API key"));
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_403_and_changes_nothing() {
    let hookd = Hookd::start(Options::default()).await;
    let receiver = Receiver::start(&hookd.ca).await;
    let (sub, _) = hookd.subscribe(&receiver.url, &["*"]).await;
    let session = hookd.sign_in(&hookd.token).await;
    let delete = format!("/console/subscriptions/{sub}/delete");
    for form in ["", "csrf=", "csrf=0000", "token=x"] {
        let answer = hookd
            .page("POST", &delete, Some(&session.cookie), Some(form))
            .await;
        assert_eq!(answer.status, 403, "{form}: {}", text(&answer));
        assert!(text(&answer).contains("CSRF"), "{}", text(&answer));
    }
    // A body that is not a form carries no token either.
    let json = hookd
        .page_with_type(
            "POST",
            &delete,
            &session.cookie,
            "application/json",
            &format!("{{\"csrf\":\"{}\"}}", session.csrf),
        )
        .await;
    assert_eq!(json.status, 403, "{}", text(&json));
    // Another session's token is not this one's.
    let other = hookd.sign_in(&hookd.token).await;
    let answer = hookd
        .page(
            "POST",
            &delete,
            Some(&session.cookie),
            Some(&format!("csrf={}", other.csrf)),
        )
        .await;
    assert_eq!(answer.status, 403);
    let (status, _) = hookd
        .call("GET", &format!("/v1/subscriptions/{sub}"), None)
        .await;
    assert_eq!(status, 200, "the subscription is still there");

    // The sign-in form too: without its cookie's token, no session.
    let answer = hookd
        .page(
            "POST",
            "/console/sign-in",
            None,
            Some(&format!("token={}", encode(&hookd.token))),
        )
        .await;
    assert_eq!(answer.status, 403);
    assert!(set_cookie_header(&answer, "hookd_console").is_none());

    // With it, the same form deletes.
    let answer = hookd
        .page(
            "POST",
            &delete,
            Some(&session.cookie),
            Some(&format!("csrf={}", session.csrf)),
        )
        .await;
    assert_eq!(answer.status, 303);
    let (status, _) = hookd
        .call("GET", &format!("/v1/subscriptions/{sub}"), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn revoking_the_key_or_signing_out_ends_the_session() {
    let hookd = Hookd::start(Options::default()).await;
    hookd.create_entity("acme", None).await;
    let key = hookd.create_key("acme", SCOPES).await;
    let session = hookd.sign_in(&key).await;
    let page = hookd
        .page("GET", "/console/subscriptions", Some(&session.cookie), None)
        .await;
    assert_eq!(page.status, 200);
    let (_, keys) = hookd.call("GET", "/v1/admin/api-keys", None).await;
    let id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["entityId"] == "acme")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = hookd
        .call("DELETE", &format!("/v1/admin/api-keys/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let page = hookd
        .page("GET", "/console/subscriptions", Some(&session.cookie), None)
        .await;
    assert_eq!(page.status, 303, "a revoked key's session is over");
    assert_eq!(page.headers["location"], "/console/sign-in");

    let admin = hookd.sign_in(&hookd.token).await;
    let out = hookd
        .page(
            "POST",
            "/console/sign-out",
            Some(&admin.cookie),
            Some(&format!("csrf={}", admin.csrf)),
        )
        .await;
    assert_eq!(out.status, 303);
    assert!(
        set_cookie_header(&out, "hookd_console")
            .unwrap()
            .contains("Max-Age=0")
    );
    let page = hookd
        .page("GET", "/console/", Some(&admin.cookie), None)
        .await;
    assert_eq!(page.status, 303, "signed out");
}

#[tokio::test]
async fn a_disabled_console_serves_nothing() {
    let hookd = Hookd::start(Options {
        tail: "[console]\nenabled = false\n".into(),
        ..Options::default()
    })
    .await;
    for path in [
        "/console",
        "/console/",
        "/console/sign-in",
        "/console/assets/console.css",
    ] {
        let answer = hookd.page("GET", path, None, None).await;
        assert_eq!(answer.status, 404, "{path}");
        assert!(!text(&answer).contains("<html"), "{path}");
    }
    let (status, _) = hookd.call("GET", "/v1/subscriptions", None).await;
    assert_eq!(status, 200, "the API still answers");
}

/// A `<script>` in a description or a payload is text on every page that shows it.
#[tokio::test]
async fn what_pages_show_is_escaped() {
    let hookd = Hookd::start(Options::default()).await;
    let receiver = Receiver::start(&hookd.ca).await;
    let evil = "<script>alert('x')</script>";
    let (sub, event_id) = hookd.markup_everywhere(&receiver.url, evil).await;
    let session = hookd.sign_in(&hookd.token).await;
    for path in [
        "/console/subscriptions".to_owned(),
        format!("/console/subscriptions/{sub}"),
        format!("/console/subscriptions/{sub}/edit"),
        format!("/console/events/{event_id}"),
    ] {
        let page = hookd.page("GET", &path, Some(&session.cookie), None).await;
        assert_eq!(page.status, 200, "{path}");
        let html = text(&page);
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(html.contains("&lt;script&gt;alert("), "{path}");
    }
}

/// A company's session sees its own subscription and gets 404 for its parent's, and
/// for a delivery to its parent's endpoint, as the API answers.
#[tokio::test]
async fn objects_outside_the_subtree_are_404() {
    let hookd = Hookd::start(Options::default()).await;
    let receiver = Receiver::start(&hookd.ca).await;
    hookd.create_entity("org", None).await;
    hookd.create_entity("co", Some("org")).await;
    let org_key = hookd.create_key("org", SCOPES).await;
    let co_key = hookd.create_key("co", SCOPES).await;
    let (status, body) = hookd
        .call_as(
            &org_key,
            "POST",
            "/v1/subscriptions",
            Some(json!({"eventTypes": ["*"], "endpointUrl": receiver.url})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let parents = body["data"]["id"].as_str().unwrap().to_owned();
    let (status, body) = hookd
        .call_as(
            &co_key,
            "POST",
            "/v1/events",
            Some(json!({"eventType": "order.created", "data": {}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let deliveries = hookd
        .deliveries_of(body["data"]["id"].as_str().unwrap())
        .await;
    let delivery = deliveries[0]["id"].as_str().unwrap();

    let co = hookd.sign_in(&co_key).await;
    let org = hookd.sign_in(&org_key).await;
    for path in [
        format!("/console/subscriptions/{parents}"),
        format!("/console/subscriptions/{parents}/edit"),
        format!("/console/deliveries/{delivery}"),
        format!("/console/deliveries?subscription={parents}"),
    ] {
        let page = hookd.page("GET", &path, Some(&co.cookie), None).await;
        assert_eq!(page.status, 404, "{path} as the company");
        let page = hookd.page("GET", &path, Some(&org.cookie), None).await;
        assert_eq!(page.status, 200, "{path} as the organisation");
    }
    let retry = format!("/console/deliveries/{delivery}/retry");
    let form = format!("csrf={}", co.csrf);
    let page = hookd
        .page("POST", &retry, Some(&co.cookie), Some(&form))
        .await;
    assert_eq!(page.status, 404);
    // The company's list leaves the parent's subscription out.
    let list = hookd
        .page("GET", "/console/subscriptions", Some(&co.cookie), None)
        .await;
    assert!(!text(&list).contains(&parents));
}

/// The API's validation message is shown beside the field it names, the form keeps
/// what was typed but never a secret, and nothing is created.
#[tokio::test]
async fn validation_messages_are_shown_beside_their_field() {
    let hookd = Hookd::start(Options::default()).await;
    let session = hookd.sign_in(&hookd.token).await;
    let submit = |form: String| {
        let hookd = &hookd;
        let cookie = session.cookie.clone();
        async move {
            hookd
                .page("POST", "/console/subscriptions", Some(&cookie), Some(&form))
                .await
        }
    };
    let csrf = &session.csrf;
    let answer = submit(format!(
        "csrf={csrf}&endpointUrl=ftp%3A%2F%2Fx.example&eventTypes=*&authType=NONE"
    ))
    .await;
    assert_eq!(answer.status, 422);
    let html = text(&answer);
    let beside = html
        .split("id=\"f-endpointUrl\"")
        .nth(1)
        .expect("the URL field");
    assert!(
        beside.contains("class=\"field-error\"") && beside.contains("endpointUrl: "),
        "{html}"
    );
    assert!(html.contains("value=\"ftp://x.example\""), "kept as typed");

    let answer = submit(format!(
        "csrf={csrf}&endpointUrl=https%3A%2F%2Fx.example&eventTypes=*&authType=OAUTH2_CLIENT_CREDENTIALS\
         &clientId=c&clientSecret=topsecret&tokenUrl=http%3A%2F%2Ft.example&tokenEndpointAuthMethod=client_secret_basic"
    ))
    .await;
    assert_eq!(answer.status, 422);
    let html = text(&answer);
    let token_field = html.split("id=\"f-tokenUrl\"").nth(1).unwrap();
    let token_field = &token_field[..token_field.find("</div>").unwrap()];
    assert!(
        token_field.contains("endpointAuth.credentials.tokenUrl"),
        "{token_field}"
    );
    assert!(!html.contains("topsecret"), "a secret is never sent back");

    let answer = submit(format!(
        "csrf={csrf}&endpointUrl=https%3A%2F%2Fx.example&eventTypes=*&authType=NONE&customHeaders=host%3A+x"
    ))
    .await;
    assert_eq!(answer.status, 422);
    let html = text(&answer);
    let headers = html.split("id=\"f-customHeaders\"").nth(1).unwrap();
    assert!(headers.contains("field-error"), "{html}");

    let (_, list) = hookd.call("GET", "/v1/subscriptions", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
}

/// A subscription's deliveries page puts what needs attention first: its FAILED
/// deliveries above the full list.
#[tokio::test]
async fn failed_deliveries_come_first() {
    let hookd = Hookd::start(Options {
        delivery: "max_age = \"1s\"".into(),
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(&hookd.ca).await;
    let (sub, _) = hookd.subscribe(&receiver.url, &["order.*"]).await;
    let ok = hookd.post_event("order.created", json!({})).await;
    let ok = hookd.first_delivery(&ok).await;
    hookd.wait_for_delivery_state(&ok, "SUCCEEDED").await;
    receiver.reply_with(&[500; 64]);
    let failing = hookd.post_event("order.created", json!({})).await;
    let failing = hookd.first_delivery(&failing).await;
    hookd.wait_for_delivery_state(&failing, "FAILED").await;
    let session = hookd.sign_in(&hookd.token).await;
    let page = hookd
        .page(
            "GET",
            &format!("/console/deliveries?subscription={sub}"),
            Some(&session.cookie),
            None,
        )
        .await;
    let html = text(&page);
    let failed_at = html.find("<h2>FAILED</h2>").expect("a FAILED section");
    let all_at = html
        .find("<h2>All, newest first</h2>")
        .expect("the full list");
    assert!(failed_at < all_at);
    let section = &html[failed_at..all_at];
    assert!(
        section.contains(&failing) && !section.contains(&ok),
        "{section}"
    );
    assert!(html[all_at..].contains(&ok));
}

/// The catalog page lists the configured types, their descriptions and scopes.
#[tokio::test]
async fn the_catalog_page_lists_the_configured_types() {
    let hookd = Hookd::start(Options {
        tail: "[[event_types]]\nname = \"v2.export-job.created\"\n\
               description = \"The <b>export</b> finished.\"\nscope = \"export-jobs:read\"\n"
            .into(),
        ..Options::default()
    })
    .await;
    let session = hookd.sign_in(&hookd.token).await;
    let page = hookd
        .page("GET", "/console/event-types", Some(&session.cookie), None)
        .await;
    assert_eq!(page.status, 200);
    let html = text(&page);
    assert!(html.contains("v2.export-job.created"), "{html}");
    assert!(
        html.contains("The &lt;b&gt;export&lt;/b&gt; finished."),
        "{html}"
    );
    assert!(html.contains("export-jobs:read"), "{html}");
    assert!(html.contains("hookd.ping"), "the built-in types too");
}
