//! The console's overview: attempts and latency charts (server-drawn SVG), totals and
//! the failing endpoints over an hour, a day or a week, from `GET /v1/stats`, so each
//! session sees the figures of its own subtree only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use common::console::text;
use common::{Hookd, Options, Receiver};
use serde_json::json;

#[tokio::test]
async fn the_overview_charts_what_the_session_sees() {
    let hookd = Hookd::start(Options::default()).await;
    let ok = Receiver::start(&hookd.ca).await;
    let failing = Receiver::start(&hookd.ca).await;
    failing.reply_with(&[500]);
    hookd.subscribe(&ok.url, &["job.created"]).await;
    let (failing_id, _) = hookd.subscribe(&failing.url, &["job.created"]).await;
    let accepted = hookd.post_event("job.created", json!({"n": 1})).await;
    for delivery in hookd.deliveries_of(accepted["id"].as_str().unwrap()).await {
        let id = delivery["id"].as_str().unwrap();
        let state = if delivery["subscriptionId"] == failing_id.as_str() {
            "RETRYING"
        } else {
            "SUCCEEDED"
        };
        hookd.wait_for_delivery_state(id, state).await;
    }

    let admin = hookd.sign_in(&hookd.token).await;
    let page = hookd
        .page("GET", "/console", Some(&admin.cookie), None)
        .await;
    assert_eq!(page.status, 200);
    let html = text(&page);
    assert_eq!(html.matches("<svg").count(), 2, "attempts and latency");
    assert!(html.contains("Attempts per minute"), "{html}");
    assert!(
        html.contains(r#"<rect class="bad""#),
        "the failed attempt is drawn"
    );
    assert!(html.contains("<dt>Attempts</dt><dd>2</dd>"), "{html}");
    assert!(html.contains("50.0 %"), "{html}");
    assert!(
        html.contains(&format!("/console/subscriptions/{failing_id}")),
        "the failing endpoint links to its subscription"
    );
    assert!(!html.contains("style="), "no inline style (CSP)");

    let week = hookd
        .page("GET", "/console?window=week", Some(&admin.cookie), None)
        .await;
    let html = text(&week);
    assert!(html.contains("<strong>Last week</strong>"), "{html}");
    assert!(html.contains("Attempts per hour"), "{html}");

    // A portal session of another entity sees none of root's attempts.
    hookd.create_entity("acme", None).await;
    let portal = hookd.portal_session("acme", &["read"]).await;
    let page = hookd
        .page("GET", "/portal", Some(&portal.cookie), None)
        .await;
    let html = text(&page);
    assert!(html.contains("<dt>Attempts</dt><dd>0</dd>"), "{html}");
    assert!(!html.contains(&failing_id), "{html}");
    assert!(html.contains("No failed attempts"), "{html}");

    // A key that may not read subscriptions gets the links alone.
    let poster = hookd.create_key("acme", &["events:write"]).await;
    let session = hookd.sign_in(&poster).await;
    let page = hookd
        .page("GET", "/console", Some(&session.cookie), None)
        .await;
    assert_eq!(page.status, 200);
    assert!(!text(&page).contains("<svg"));
}
