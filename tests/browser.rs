//! The console in a real headless Chromium (WebDriver): what a support engineer does,
//! end to end against the real daemon and real HTTPS receivers on loopback. Sign in,
//! create a subscription with OAuth credentials (a real token endpoint), send a test
//! event and read its attempt with the receiver's answer, watch a delivery fail and
//! retry it from its page, replay since a time; a form without its CSRF token is 403,
//! the CSP header is sent and enforced, and a `<script>` payload stays text. Each main
//! page is saved as `target/screenshots/<name>.png`. Waits are on page state.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use common::browser::{self, Browser};
use common::{Hookd, Options, Receiver};
use serde_json::{Value, json};

const TOKEN: &str = "at-browser-test";

/// Deliveries give up after a second, so a failing one ends FAILED within the test.
fn options() -> Options {
    Options {
        delivery: "max_age = \"1s\"".into(),
        ..Options::default()
    }
}

async fn sign_in(browser: &Browser, hookd: &Hookd, token: &str) {
    browser.goto(&format!("{}/console/", hookd.url)).await;
    // Not signed in: the console sends the browser to its sign-in page.
    browser.wait_css("input#token").await;
    browser.screenshot("sign-in").await;
    browser.fill("#token", token).await;
    browser.press("Sign in").await;
    browser.wait_css("form.sign-out").await;
}

#[tokio::test]
async fn a_support_engineer_follows_a_delivery_from_subscription_to_retry() {
    if !browser::available() {
        return;
    }
    let hookd = Hookd::start(options()).await;
    let mut endpoint = Receiver::start(&hookd.ca).await;
    endpoint.respond_body(r#"{"received":"yes-from-the-receiver"}"#);
    let mut tokens = Receiver::start(&hookd.ca).await;
    tokens.respond_body(
        &json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}).to_string(),
    );
    let browser = Browser::start().await;
    sign_in(&browser, &hookd, &hookd.token).await;

    // Create a subscription with OAuth client credentials.
    browser
        .goto(&format!("{}/console/subscriptions/new", hookd.url))
        .await;
    browser.wait_css("select#f-authType").await;
    let basic = "fieldset[data-auth='BASIC']";
    let select = browser
        .client
        .find(fantoccini::Locator::Css("#f-authType"))
        .await
        .unwrap();
    select
        .select_by_value("OAUTH2_CLIENT_CREDENTIALS")
        .await
        .unwrap();
    // The script shows only the chosen kind's fields.
    let hidden = browser
        .js(&format!(
            "return document.querySelector(\"{basic}\").hidden"
        ))
        .await;
    assert_eq!(hidden, Value::Bool(true));
    browser.fill("#f-endpointUrl", &endpoint.url).await;
    browser.fill("#f-eventTypes", "*").await;
    browser.fill("#f-description", "ERP sync").await;
    browser.fill("#f-clientId", "erp-client").await;
    browser.fill("#f-clientSecret", "erp secret").await;
    browser.fill("#f-tokenUrl", &tokens.url).await;
    browser.fill("#f-scope", "webhooks:write").await;
    browser.fill("#f-customHeaders", "x-tenant: acme").await;
    browser.screenshot("subscription-new").await;
    browser.press("Create subscription").await;
    browser
        .wait_xpath("//p[@role='status'][contains(., 'Subscription created')]")
        .await;
    let url = browser.client.current_url().await.unwrap();
    let sub = url.path().rsplit('/').next().unwrap().to_owned();
    let (status, created) = hookd
        .call("GET", &format!("/v1/subscriptions/{sub}"), None)
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created["data"]["endpointAuth"]["type"],
        "OAUTH2_CLIENT_CREDENTIALS"
    );
    assert_eq!(
        created["data"]["endpointAuth"]["credentials"]["clientId"],
        "erp-client"
    );
    browser.screenshot("subscription").await;

    // A test event: its attempt shows the receiver's answer.
    browser.press("Send test event").await;
    browser.wait_css("h1").await;
    let attempt = browser
        .wait_xpath("//li[contains(@class,'attempt')][.//span[contains(., 'HTTP 200')]]")
        .await;
    let text = attempt.text().await.unwrap();
    assert!(text.contains("yes-from-the-receiver"), "{text}");
    assert!(text.contains(&endpoint.url), "{text}");
    let token_request = tokens.next().await;
    assert!(
        token_request
            .body
            .starts_with(b"grant_type=client_credentials")
    );
    let delivered = endpoint.next().await;
    assert_eq!(delivered.header("authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(delivered.header("x-tenant"), "acme");
    browser.screenshot("delivery").await;

    // A delivery that fails until it gives up, then a retry from its page.
    endpoint.reply_with(&[500; 64]);
    let event = hookd
        .post_event("order.created", json!({"order": 42}))
        .await;
    let delivery = hookd.first_delivery(&event).await;
    browser
        .goto(&format!("{}/console/deliveries/{delivery}", hookd.url))
        .await;
    // The page reloads itself while the delivery is in flight.
    browser
        .wait_xpath("//dd/span[contains(@class,'badge')][.='FAILED']")
        .await;
    browser
        .wait_xpath("//li[contains(@class,'attempt')][.//span[contains(., 'HTTP 500')]]")
        .await;
    browser.screenshot("delivery-failed").await;
    endpoint.clear_replies();
    browser.press("Retry now").await;
    browser
        .wait_xpath("//dd/span[contains(@class,'badge')][.='SUCCEEDED']")
        .await;
    browser
        .wait_xpath("//li[contains(@class,'attempt')][.//span[contains(., 'HTTP 200')]]")
        .await;
    let (_, after) = hookd
        .call("GET", &format!("/v1/deliveries/{delivery}"), None)
        .await;
    assert_eq!(after["data"]["state"], "SUCCEEDED", "{after}");

    // Replay since a time before both events.
    browser
        .goto(&format!("{}/console/subscriptions/{sub}", hookd.url))
        .await;
    browser.wait_css("#f-since").await;
    browser
        .js("document.querySelector('#f-since').value = '2020-01-01T00:00'; return true")
        .await;
    browser.press("Replay since this time").await;
    let notice = browser
        .wait_xpath("//p[@role='status'][contains(., 'Replay queued')]")
        .await;
    // Every event so far matches "*": the test ping, the order and the
    // hookd.delivery.failed that its failure emitted.
    let (_, events) = hookd.call("GET", "/v1/events?limit=500", None).await;
    let expected = events["data"].as_array().unwrap().len();
    assert!(expected >= 2, "{events}");
    assert_eq!(
        notice.text().await.unwrap(),
        format!("Replay queued {expected} deliveries.")
    );

    // The other main pages, for the record.
    for (name, path) in [
        ("overview", "/console".to_owned()),
        ("subscriptions", "/console/subscriptions".to_owned()),
        ("events", "/console/events".to_owned()),
        (
            "event",
            format!("/console/events/{}", event["id"].as_str().unwrap()),
        ),
        (
            "deliveries",
            format!("/console/deliveries?subscription={sub}"),
        ),
    ] {
        browser.goto(&format!("{}{path}", hookd.url)).await;
        browser.wait_css("main h1").await;
        browser.screenshot(name).await;
    }
}

#[tokio::test]
async fn forms_need_their_csrf_token_and_pages_run_no_injected_script() {
    if !browser::available() {
        return;
    }
    let hookd = Hookd::start(options()).await;
    let endpoint = Receiver::start(&hookd.ca).await;
    let evil = "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">";
    let (sub, event_id) = hookd.markup_everywhere(&endpoint.url, evil).await;
    let browser = Browser::start().await;
    sign_in(&browser, &hookd, &hookd.token).await;

    // A payload and a description holding markup are shown as text and run nothing.
    for path in [
        format!("/console/events/{event_id}"),
        format!("/console/subscriptions/{sub}"),
        "/console/subscriptions".to_owned(),
    ] {
        browser.goto(&format!("{}{path}", hookd.url)).await;
        browser.wait_css("main h1").await;
        let shown = browser
            .js("return document.querySelector('main').innerText")
            .await;
        assert!(
            shown
                .as_str()
                .unwrap()
                .contains("<script>window.pwned = 1</script>"),
            "{path}: {shown}"
        );
        let pwned = browser.js("return window.pwned === undefined").await;
        assert_eq!(pwned, Value::Bool(true), "{path}: the markup ran");
        let injected = browser
            .js("return document.querySelectorAll('main script, main img').length")
            .await;
        assert_eq!(injected, json!(0), "{path}");
    }

    // The policy arrives with the page and the browser enforces it: an inline script
    // added to the page does not run, and the violation report quotes the policy.
    let policy = browser
        .client
        .execute_async(
            "const done = arguments[0];
             document.addEventListener('securitypolicyviolation',
                 (e) => done(e.originalPolicy), {once: true});
             const s = document.createElement('script');
             s.textContent = 'window.inlineRan = true';
             document.body.appendChild(s);",
            vec![],
        )
        .await
        .unwrap();
    let policy = policy.as_str().unwrap();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let ran = browser.js("return window.inlineRan === true").await;
    assert_eq!(ran, Value::Bool(false), "CSP let an inline script run");

    // A form sent without its CSRF token is refused and changes nothing.
    browser
        .goto(&format!("{}/console/subscriptions/{sub}", hookd.url))
        .await;
    browser.wait_css("form[action$='/status']").await;
    browser
        .js(
            "const form = document.querySelector(\"form[action$='/status']\");
             form.querySelector(\"input[name='csrf']\").remove();
             form.submit();
             return true",
        )
        .await;
    let refused = browser
        .wait_xpath("//p[@role='alert'][contains(., 'CSRF')]")
        .await;
    assert!(refused.text().await.unwrap().contains("CSRF"));
    assert_eq!(
        browser
            .js("return document.querySelector('h1').innerText")
            .await,
        "Forbidden"
    );
    let (_, still) = hookd
        .call("GET", &format!("/v1/subscriptions/{sub}"), None)
        .await;
    assert_eq!(still["data"]["status"], "ACTIVE");

    // At 360 px the list fits the screen: a wide table scrolls in its own box.
    browser.client.set_window_size(360, 800).await.unwrap();
    browser
        .goto(&format!("{}/console/subscriptions", hookd.url))
        .await;
    browser.wait_css("main h1").await;
    let fits = browser
        .js("return document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(
        fits,
        Value::Bool(true),
        "the page scrolls sideways at 360 px"
    );
    browser.screenshot("subscriptions-360px").await;
}

/// A customer opens the link their provider made: the portal shows their own
/// subscription; the parent's delivery is 404 inside it; the link does not open twice.
#[tokio::test]
async fn a_customer_opens_a_portal_link_once_and_sees_only_their_own() {
    if !browser::available() {
        return;
    }
    let hookd = Hookd::start(options()).await;
    let endpoint = Receiver::start(&hookd.ca).await;
    hookd.create_entity("org", None).await;
    hookd.create_entity("co", Some("org")).await;
    let subscribe = |entity: &'static str| {
        let hookd = &hookd;
        let url = endpoint.url.clone();
        async move {
            let body = json!({"eventTypes": ["*"], "endpointUrl": url, "entityId": entity,
                "description": format!("{entity}'s endpoint")});
            let (status, body) = hookd.call("POST", "/v1/subscriptions", Some(body)).await;
            assert_eq!(status, 201, "{body}");
            body["data"]["id"].as_str().unwrap().to_owned()
        }
    };
    let parents = subscribe("org").await;
    let own = subscribe("co").await;
    let body = json!({"eventType": "order.created", "entityId": "co", "data": {}});
    let (status, event) = hookd.call("POST", "/v1/events", Some(body)).await;
    assert_eq!(status, 202, "{event}");
    let deliveries = hookd
        .deliveries_of(event["data"]["id"].as_str().unwrap())
        .await;
    let to_parent = deliveries
        .iter()
        .find(|d| d["subscriptionId"] == parents.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = hookd.portal_link("co", &["read", "retry"]).await;

    let browser = Browser::start().await;
    browser.goto(&format!("{}{link}", hookd.url)).await;
    browser.press("Open the portal").await;
    browser.wait_css("form.sign-out").await;
    browser
        .goto(&format!("{}/portal/subscriptions", hookd.url))
        .await;
    browser
        .wait_xpath(&format!("//a[@href='/portal/subscriptions/{own}']"))
        .await;
    let shown = browser
        .js("return document.querySelector('main').innerText")
        .await;
    let shown = shown.as_str().unwrap();
    assert!(shown.contains("co's endpoint"), "{shown}");
    assert!(!shown.contains("org's endpoint"), "{shown}");
    browser.screenshot("portal-subscriptions").await;

    // Another entity's delivery, by its URL inside the portal: not found.
    browser
        .goto(&format!("{}/portal/deliveries/{to_parent}", hookd.url))
        .await;
    browser.wait_xpath("//h1[.='Not found']").await;

    // The link again: refused.
    browser.goto(&format!("{}{link}", hookd.url)).await;
    let refused = browser
        .wait_xpath("//p[@role='alert'][contains(., 'opens once')]")
        .await;
    assert!(refused.text().await.unwrap().contains("portal link"));
}
