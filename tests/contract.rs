//! The v1 contract settled in API.md: deliveries are visible only through their
//! subscription's entity, every list is bounded and paginated the same way, repeated
//! batch items say so, and the input rules (null, control characters, duplicate keys,
//! custom content-type, wildcards) answer 422 naming the field.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::collections::BTreeSet;

use common::{Hookd, Options, Receiver};
use serde_json::{Value, json};

const ALL: &[&str] = &["events:write", "subscriptions:read", "subscriptions:write"];

/// A company posts an event that fans out to its own, its parent's and the operator's
/// subscriptions. It sees its own delivery only; the others (their URLs with query
/// tokens, their responses, their ids) are 404 to it and missing from its lists.
#[tokio::test]
async fn a_company_never_sees_deliveries_to_its_parents_or_the_operators_endpoints() {
    let hookd = Hookd::start(Options::default()).await;
    hookd.create_entity("acme", None).await;
    hookd.create_entity("acme-eu", Some("acme")).await;
    let org = hookd.create_key("acme", ALL).await;
    let company = hookd.create_key("acme-eu", ALL).await;

    let mut operator_rx = Receiver::start(&hookd.ca).await;
    let mut org_rx = Receiver::start(&hookd.ca).await;
    let mut company_rx = Receiver::start(&hookd.ca).await;
    operator_rx.respond_body("operator-only response");
    let subscribe = async |token: &str, url: String| {
        let body = json!({"eventTypes": ["job.*"], "endpointUrl": url});
        let (status, created) = hookd
            .call_as(token, "POST", "/v1/subscriptions", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        created["data"]["id"].as_str().unwrap().to_string()
    };
    let operator_sub = subscribe(
        common::ADMIN_TOKEN,
        format!("{}?token=operator-secret", operator_rx.url),
    )
    .await;
    let org_sub = subscribe(&org, org_rx.url.clone()).await;
    let company_sub = subscribe(&company, company_rx.url.clone()).await;

    let body = json!({"eventType": "job.done", "data": {"n": 1}});
    let (status, accepted) = hookd
        .call_as(&company, "POST", "/v1/events", Some(body))
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["data"]["deliveryCount"], 3);
    let event = accepted["data"]["id"].as_str().unwrap().to_string();
    for rx in [&mut operator_rx, &mut org_rx, &mut company_rx] {
        rx.next().await;
    }
    let all = hookd.deliveries_of(&event).await;
    let delivery_to = |sub: &str| {
        all.iter().find(|d| d["subscriptionId"] == sub).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let operator_dlv = delivery_to(&operator_sub);
    hookd
        .wait_for_delivery_state(&operator_dlv, "SUCCEEDED")
        .await;

    // Who sees how many: the operator all three, the organisation its own and its
    // company's, the company its own.
    for (token, expected) in [
        (
            common::ADMIN_TOKEN,
            vec![&operator_sub, &org_sub, &company_sub],
        ),
        (org.as_str(), vec![&org_sub, &company_sub]),
        (company.as_str(), vec![&company_sub]),
    ] {
        let (status, shown) = hookd
            .call_as(token, "GET", &format!("/v1/events/{event}"), None)
            .await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(shown["data"]["deliveryCount"], expected.len(), "{shown}");
        assert!(shown["data"].get("deliveries").is_none(), "{shown}");
        let path = format!("/v1/events/{event}/deliveries");
        let (status, listed) = hookd.call_as(token, "GET", &path, None).await;
        assert_eq!(status, 200, "{listed}");
        let subs: BTreeSet<&str> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["subscriptionId"].as_str().unwrap())
            .collect();
        let expected: BTreeSet<&str> = expected.iter().map(|s| s.as_str()).collect();
        assert_eq!(subs, expected);
    }

    // The parent's and the operator's deliveries are 404 to the company on every route.
    for other in [operator_dlv.clone(), delivery_to(&org_sub)] {
        for (method, path) in [
            ("GET", format!("/v1/deliveries/{other}")),
            ("GET", format!("/v1/deliveries/{other}/attempts")),
            ("POST", format!("/v1/deliveries/{other}/retry")),
        ] {
            let (status, answer) = hookd.call_as(&company, method, &path, None).await;
            assert_eq!(status, 404, "{method} {path}: {answer}");
            let text = answer.to_string();
            assert!(!text.contains("operator-secret") && !text.contains("operator-only"));
        }
    }
    operator_rx
        .assert_quiet(std::time::Duration::from_millis(200))
        .await;
    // Its own is there, with its attempt.
    let own = delivery_to(&company_sub);
    let path = format!("/v1/deliveries/{own}/attempts");
    let (status, attempts) = hookd.call_as(&company, "GET", &path, None).await;
    assert_eq!(
        (status, attempts["data"].as_array().unwrap().len()),
        (200, 1)
    );
    // The operator sees the URL it set, token and response included.
    let path = format!("/v1/deliveries/{operator_dlv}/attempts");
    let (_, attempts) = hookd.call("GET", &path, None).await;
    assert!(attempts.to_string().contains("operator-secret"));
}

/// Pages through a list at `limit`, returning every item and the number of pages.
async fn walk(hookd: &Hookd, path: &str, limit: usize) -> (Vec<Value>, usize) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (mut items, mut pages, mut cursor) = (Vec::new(), 0, String::new());
    loop {
        let url = format!("{path}{sep}limit={limit}{cursor}");
        let (status, page) = hookd.call("GET", &url, None).await;
        assert_eq!(status, 200, "{url}: {page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= limit, "{url}: {} items", data.len());
        items.extend(data.iter().cloned());
        pages += 1;
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return (items, pages),
        }
    }
}

fn ids(items: &[Value], key: &str) -> BTreeSet<String> {
    items
        .iter()
        .map(|i| i[key].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_list_is_bounded_and_paginated_the_same_way() {
    let hookd = Hookd::start(Options {
        delivery: "schedule = [\"50ms\"]\n".into(),
        ..Options::default()
    })
    .await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    for _ in 0..12 {
        hookd.subscribe(&receiver.url, &["job.*"]).await;
    }
    for id in ["e1", "e2", "e3"] {
        hookd.create_entity(id, None).await;
        hookd.create_key(id, &["events:write"]).await;
    }
    let accepted = hookd.post_event("job.done", json!({})).await;
    assert_eq!(accepted["deliveryCount"], 12);
    let event = accepted["id"].as_str().unwrap().to_string();

    // An event's deliveries: 12 in pages of 5, each once.
    let (deliveries, pages) = walk(&hookd, &format!("/v1/events/{event}/deliveries"), 5).await;
    assert_eq!((ids(&deliveries, "id").len(), pages), (12, 3));
    let (shown_status, shown) = hookd
        .call("GET", &format!("/v1/events/{event}"), None)
        .await;
    assert_eq!(shown_status, 200);
    assert_eq!(shown["data"]["deliveryCount"], 12);
    for _ in 0..12 {
        receiver.next().await;
    }

    // Entities (the root and three), keys, subscriptions and the catalog.
    let (entities, pages) = walk(&hookd, "/v1/admin/entities", 2).await;
    assert_eq!((ids(&entities, "id").len(), pages), (4, 2));
    let (keys, pages) = walk(&hookd, "/v1/admin/api-keys", 2).await;
    assert_eq!((ids(&keys, "id").len(), pages), (3, 2));
    let (subs, _) = walk(&hookd, "/v1/subscriptions", 5).await;
    assert_eq!(ids(&subs, "id").len(), 12);
    let (types, pages) = walk(&hookd, "/v1/event-types", 2).await;
    assert_eq!((ids(&types, "name").len(), pages), (3, 2));

    // Attempts, oldest first: a delivery that failed twice, then succeeded.
    receiver.reply_with(&[500, 500]);
    let (sub, _) = hookd.subscribe(&receiver.url, &["retry.*"]).await;
    let accepted = hookd.post_event("retry.me", json!({})).await;
    let delivery = hookd.first_delivery(&accepted).await;
    for _ in 0..3 {
        receiver.next().await;
    }
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
    let (attempts, pages) = walk(&hookd, &format!("/v1/deliveries/{delivery}/attempts"), 2).await;
    let statuses: Vec<u64> = attempts
        .iter()
        .map(|a| a["statusCode"].as_u64().unwrap())
        .collect();
    assert_eq!((statuses, pages), (vec![500, 500, 200], 2));

    // The same rules on every list: limit 1..=500, a cursor this API returned, and an
    // empty cursor is none.
    let lists = [
        "/v1/admin/entities".to_string(),
        "/v1/admin/api-keys".to_string(),
        "/v1/events".to_string(),
        format!("/v1/events/{event}/deliveries"),
        "/v1/subscriptions".to_string(),
        format!("/v1/subscriptions/{sub}/deliveries"),
        format!("/v1/deliveries/{delivery}/attempts"),
        "/v1/event-types".to_string(),
    ];
    for list in &lists {
        for bad in [
            "limit=0",
            "limit=-5",
            "limit=abc",
            "limit=501",
            "cursor=zz",
            "cursor=%00",
        ] {
            let (status, problem) = hookd.call("GET", &format!("{list}?{bad}"), None).await;
            let field = bad.split('=').next().unwrap();
            assert_eq!(
                (status, problem["field"].as_str()),
                (422, Some(field)),
                "{list}?{bad}: {problem}"
            );
        }
        let (status, empty) = hookd.call("GET", &format!("{list}?cursor="), None).await;
        let (_, none) = hookd.call("GET", list, None).await;
        assert_eq!((status, &empty), (200, &none), "{list}");
    }
}

#[tokio::test]
async fn batch_items_that_repeat_an_idempotency_key_say_so() {
    let hookd = Hookd::start(Options::default()).await;
    let item = |key: &str| json!({"eventType": "job.done", "data": {}, "idempotencyKey": key});
    let batch = json!({"events": [item("a"), item("b")]});
    let (status, first) = hookd.call("POST", "/v1/events/batch", Some(batch)).await;
    assert_eq!(status, 202, "{first}");
    assert!(first["data"][0].get("duplicate").is_none(), "{first}");
    let batch = json!({"events": [item("a"), item("c")]});
    let (status, second) = hookd.call("POST", "/v1/events/batch", Some(batch)).await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["data"][0]["duplicate"], true, "{second}");
    assert_eq!(second["data"][0]["id"], first["data"][0]["id"]);
    assert!(second["data"][1].get("duplicate").is_none(), "{second}");

    // Within one batch: the same key and body again is the same event, stored once.
    let batch = json!({"events": [item("d"), item("e"), item("d")]});
    let (status, third) = hookd.call("POST", "/v1/events/batch", Some(batch)).await;
    assert_eq!(status, 202, "{third}");
    assert!(third["data"][0].get("duplicate").is_none(), "{third}");
    assert_eq!(third["data"][2]["duplicate"], true, "{third}");
    assert_eq!(third["data"][2]["id"], third["data"][0]["id"], "{third}");
    let (_, listed) = hookd.call("GET", "/v1/events?limit=100", None).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(5), "{listed}");

    // The same key with another body fails the whole batch, naming both items.
    let other = json!({"eventType": "job.done", "data": {"n": 1}, "idempotencyKey": "f"});
    let batch = json!({"events": [item("f"), item("g"), other]});
    let (status, problem) = hookd.call("POST", "/v1/events/batch", Some(batch)).await;
    assert_eq!(status, 409, "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("events[2].idempotencyKey") && detail.contains("events[0]"),
        "{problem}"
    );
    let (_, listed) = hookd.call("GET", "/v1/events?limit=100", None).await;
    assert_eq!(
        listed["data"].as_array().map(Vec::len),
        Some(5),
        "nothing stored"
    );
    // Every item is validated before a conflict is answered: an invalid one is 422.
    let invalid = json!({"eventType": "job.done", "idempotencyKey": "h"});
    let batch = json!({"events": [item("f"), other.clone(), invalid]});
    let (status, problem) = hookd.call("POST", "/v1/events/batch", Some(batch)).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("events[2].data")),
        "{problem}"
    );

    // A key of an earlier request reused with another body is named by its place in
    // the batch, repeats before it included.
    let reused = json!({"events": [item("y"), item("y"), {"eventType": "job.done",
        "data": {"n": 2}, "idempotencyKey": "a"}]});
    let (status, problem) = hookd.call("POST", "/v1/events/batch", Some(reused)).await;
    assert_eq!(status, 409, "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("events[2].idempotencyKey"), "{problem}");
}

/// Sends a raw body (for duplicate keys, which `json!` cannot express).
async fn raw(hookd: &Hookd, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {}", hookd.token);
    hookd
        .call_raw(
            method,
            path,
            Some(body.as_bytes().to_vec()),
            &[("authorization", &auth)],
        )
        .await
}

#[tokio::test]
async fn input_rules_answer_422_naming_the_field() {
    let hookd = Hookd::start(Options {
        tail: "[[event_types]]\nname = \"export.done\"\ndescription = \"d\"\nscope = \"exports:read\"\n"
            .into(),
        ..Options::default()
    })
    .await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let expect_422 = |(status, problem): (u16, Value), field: &str| {
        assert_eq!(
            (status, problem["field"].as_str()),
            (422, Some(field)),
            "{problem}"
        );
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    };

    // Duplicate keys, wherever they are.
    let url = &receiver.url.clone();
    let twice =
        format!(r#"{{"eventTypes": ["*"], "endpointUrl": "{url}", "endpointUrl": "{url}"}}"#);
    expect_422(
        raw(&hookd, "POST", "/v1/subscriptions", &twice).await,
        "body",
    );
    let nested = r#"{"eventType": "export.done", "data": {"a": 1, "a": 2}}"#;
    expect_422(raw(&hookd, "POST", "/v1/events", nested).await, "data");
    let item =
        r#"{"events": [{"eventType": "export.done", "eventType": "export.done", "data": {}}]}"#;
    expect_422(
        raw(&hookd, "POST", "/v1/events/batch", item).await,
        "events[0]",
    );

    // Control characters in names and descriptions.
    let entity = json!({"id": "ctl", "name": "Acme\u{1b}[31m"});
    expect_422(
        hookd.call("POST", "/v1/admin/entities", Some(entity)).await,
        "name",
    );
    hookd.create_entity("ok", None).await;
    let key = json!({"entityId": "ok", "name": "line\nbreak", "scopes": []});
    expect_422(
        hookd.call("POST", "/v1/admin/api-keys", Some(key)).await,
        "name",
    );
    let sub = json!({"eventTypes": ["*"], "endpointUrl": url, "description": "a\tb"});
    expect_422(
        hookd.call("POST", "/v1/subscriptions", Some(sub)).await,
        "description",
    );

    // A custom content-type may only say application/json.
    let headers = |value: &str| json!({"eventTypes": ["export.*"], "endpointUrl": url, "customHeaders": {"Content-Type": value}});
    expect_422(
        hookd
            .call("POST", "/v1/subscriptions", Some(headers("text/plain")))
            .await,
        "customHeaders.Content-Type",
    );
    let (status, created) = hookd
        .call(
            "POST",
            "/v1/subscriptions",
            Some(headers("application/json")),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let sub = created["data"]["id"].as_str().unwrap().to_string();
    hookd.post_event("export.done", json!({})).await;
    assert_eq!(
        receiver.next().await.header("content-type"),
        "application/json"
    );

    // PATCH: null clears customHeaders, rateLimit and description; null is 422 for the
    // rest.
    let path = format!("/v1/subscriptions/{sub}");
    for field in ["status", "eventTypes", "endpointUrl", "endpointAuth"] {
        let patch = json!({ field: null });
        expect_422(hookd.call("PATCH", &path, Some(patch)).await, field);
    }
    let set = json!({"rateLimit": 5, "description": "d"});
    assert_eq!(hookd.call("PATCH", &path, Some(set)).await.0, 200);
    let clear = json!({"customHeaders": null, "rateLimit": null, "description": null});
    let (status, cleared) = hookd.call("PATCH", &path, Some(clear)).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["data"]["customHeaders"], json!({}));
    assert!(cleared["data"]["rateLimit"].is_null() && cleared["data"]["description"].is_null());

    // A wildcard that matches no catalog type is 422 even with every scope; one whose
    // types need a scope the caller lacks is 403.
    let wildcard = json!({"eventTypes": ["nothing.*"], "endpointUrl": url});
    expect_422(
        hookd
            .call("POST", "/v1/subscriptions", Some(wildcard))
            .await,
        "eventTypes[0]",
    );
    let lacking = hookd.create_key("ok", &["subscriptions:write"]).await;
    let wildcard = json!({"eventTypes": ["export.*"], "endpointUrl": url});
    let (status, problem) = hookd
        .call_as(&lacking, "POST", "/v1/subscriptions", Some(wildcard))
        .await;
    assert_eq!(status, 403, "{problem}");
}

/// 414 and 431 come as problem+json, like every other error.
#[tokio::test]
async fn oversized_requests_get_problem_details() {
    let hookd = Hookd::start(Options::default()).await;
    let long = format!("/v1/events?eventType={}", "a".repeat(9000));
    let (status, problem) = hookd.call("GET", &long, None).await;
    assert_eq!(
        (status, problem["status"].as_u64()),
        (414, Some(414)),
        "{problem}"
    );
    let big = "x".repeat(20_000);
    let auth = format!("Bearer {}", hookd.token);
    let (status, problem) = hookd
        .call_raw(
            "GET",
            "/v1/events",
            None,
            &[("authorization", &auth), ("x-big", &big)],
        )
        .await;
    assert_eq!(
        (status, problem["status"].as_u64()),
        (431, Some(431)),
        "{problem}"
    );
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("headers-too-large")
    );
}
