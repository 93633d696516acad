//! Tenancy: two tenants never see each other's objects on any route (404, never 403),
//! organisations receive their companies' events, scopes are enforced, revocation is
//! immediate, and JWTs of each algorithm are accepted or refused as they should be.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report
mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Hookd, Options, Receiver};
use ring::signature::{self, KeyPair};
use serde_json::{Value, json};

const ALL: &[&str] = &[
    "events:write",
    "subscriptions:read",
    "subscriptions:write",
    "exports:read",
    "invoices:read",
];

const CATALOG: &str = r#"
[[event_types]]
name = "export.done"
description = "An export finished."
scope = "exports:read"

[[event_types]]
name = "invoice.paid"
description = "An invoice was paid."
scope = "invoices:read"
"#;

async fn entity(hookd: &Hookd, id: &str, parent: Option<&str>) {
    let (status, body) = hookd
        .call(
            "POST",
            "/v1/admin/entities",
            Some(json!({"id": id, "name": id, "parentId": parent})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn key(hookd: &Hookd, entity: &str, scopes: &[&str]) -> (String, String) {
    let (status, body) = hookd
        .call(
            "POST",
            "/v1/admin/api-keys",
            Some(json!({"entityId": entity, "name": "k", "scopes": scopes})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["data"]["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("hk_"));
    (body["data"]["id"].as_str().unwrap().to_string(), key)
}

async fn as_key(
    hookd: &Hookd,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    hookd
        .call_raw(
            method,
            path,
            body.map(|b| b.to_string().into_bytes()),
            &[("authorization", &auth)],
        )
        .await
}

fn catalog() -> Options {
    Options {
        tail: CATALOG.into(),
        ..Options::default()
    }
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_objects() {
    let hookd = Hookd::start(catalog()).await;
    entity(&hookd, "acme", None).await;
    entity(&hookd, "globex", None).await;
    let (_, acme) = key(&hookd, "acme", ALL).await;
    let (_, globex) = key(&hookd, "globex", ALL).await;
    let mut receiver = Receiver::start(&hookd.ca).await;

    let (status, created) = as_key(
        &hookd,
        &acme,
        "POST",
        "/v1/subscriptions",
        Some(json!({"eventTypes": ["*"], "endpointUrl": receiver.url})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["data"]["entityId"], "acme");
    let sub = created["data"]["id"].as_str().unwrap().to_string();
    let (status, accepted) = as_key(
        &hookd,
        &acme,
        "POST",
        "/v1/events",
        Some(json!({"eventType": "export.done", "data": {}})),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let event = accepted["data"]["id"].as_str().unwrap().to_string();
    receiver.next().await;
    let delivery = hookd.first_delivery(&accepted["data"]).await;

    // Every route that names acme's objects is a 404 for globex.
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/v1/subscriptions/{sub}"), None),
        (
            "PATCH",
            format!("/v1/subscriptions/{sub}"),
            Some(json!({"description": "x"})),
        ),
        ("GET", format!("/v1/subscriptions/{sub}/secret"), None),
        (
            "POST",
            format!("/v1/subscriptions/{sub}/secret/rotate"),
            None,
        ),
        ("GET", format!("/v1/subscriptions/{sub}/deliveries"), None),
        (
            "POST",
            format!("/v1/subscriptions/{sub}/replay"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
        ("POST", format!("/v1/subscriptions/{sub}/test"), None),
        ("GET", format!("/v1/events/{event}"), None),
        ("GET", format!("/v1/events/{event}/deliveries"), None),
        ("GET", format!("/v1/deliveries/{delivery}"), None),
        ("GET", format!("/v1/deliveries/{delivery}/attempts"), None),
        ("POST", format!("/v1/deliveries/{delivery}/retry"), None),
        (
            "POST",
            "/v1/events".into(),
            Some(json!({"eventType": "export.done", "entityId": "acme", "data": {}})),
        ),
        (
            "POST",
            "/v1/subscriptions".into(),
            Some(json!({"eventTypes": ["*"], "endpointUrl": receiver.url, "entityId": "acme"})),
        ),
        ("DELETE", format!("/v1/subscriptions/{sub}"), None),
    ];
    for (method, path, body) in routes {
        let (status, problem) = as_key(&hookd, &globex, method, &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {problem}");
    }
    for list in ["/v1/subscriptions", "/v1/events"] {
        let (status, page) = as_key(&hookd, &globex, "GET", list, None).await;
        assert_eq!(status, 200);
        assert_eq!(page["data"], json!([]), "{list} leaks: {page}");
    }
    // A tenant is not an admin: admin routes are refused.
    let (status, _) = as_key(&hookd, &globex, "GET", "/v1/admin/entities", None).await;
    assert_eq!(status, 403);
    // acme still has everything.
    let (status, _) = as_key(
        &hookd,
        &acme,
        "GET",
        &format!("/v1/subscriptions/{sub}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_organisation_receives_the_events_of_its_companies() {
    let hookd = Hookd::start(catalog()).await;
    entity(&hookd, "org", None).await;
    entity(&hookd, "co1", Some("org")).await;
    entity(&hookd, "co2", Some("org")).await;
    let (_, org) = key(&hookd, "org", ALL).await;
    let (_, co1) = key(&hookd, "co1", ALL).await;
    let mut org_receiver = Receiver::start(&hookd.ca).await;
    let mut co1_receiver = Receiver::start(&hookd.ca).await;
    as_key(
        &hookd,
        &org,
        "POST",
        "/v1/subscriptions",
        Some(json!({"eventTypes": ["export.done"], "endpointUrl": org_receiver.url})),
    )
    .await;
    as_key(
        &hookd,
        &co1,
        "POST",
        "/v1/subscriptions",
        Some(json!({"eventTypes": ["export.done"], "endpointUrl": co1_receiver.url})),
    )
    .await;

    // A company's event reaches the company and its organisation.
    let (status, accepted) = as_key(
        &hookd,
        &co1,
        "POST",
        "/v1/events",
        Some(json!({"eventType": "export.done", "data": {}})),
    )
    .await;
    assert_eq!(
        (status, accepted["data"]["deliveryCount"].as_u64()),
        (202, Some(2))
    );
    assert_eq!(org_receiver.next().await.json()["entityId"], "co1");
    co1_receiver.next().await;

    // The organisation posts for a company below it; a sibling's event does not
    // reach co1, and the organisation's own event does not go down to companies.
    let (status, _) = as_key(
        &hookd,
        &org,
        "POST",
        "/v1/events",
        Some(json!({"eventType": "export.done", "entityId": "co2", "data": {}})),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(org_receiver.next().await.json()["entityId"], "co2");
    let (status, _) = as_key(
        &hookd,
        &org,
        "POST",
        "/v1/events",
        Some(json!({"eventType": "export.done", "data": {}})),
    )
    .await;
    assert_eq!(status, 202);
    org_receiver.next().await;
    co1_receiver.assert_quiet(Duration::from_millis(300)).await;
    // A company cannot act for its organisation.
    let (status, _) = as_key(
        &hookd,
        &co1,
        "POST",
        "/v1/events",
        Some(json!({"eventType": "export.done", "entityId": "org", "data": {}})),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn scopes_are_enforced_on_posting_subscribing_and_reading() {
    let hookd = Hookd::start(catalog()).await;
    entity(&hookd, "acme", None).await;
    let (_, reader) = key(&hookd, "acme", &["subscriptions:read"]).await;
    let (_, exports) = key(
        &hookd,
        "acme",
        &[
            "subscriptions:write",
            "subscriptions:read",
            "exports:read",
            "events:write",
        ],
    )
    .await;

    let (status, _) = as_key(
        &hookd,
        &reader,
        "POST",
        "/v1/events",
        Some(json!({"eventType": "export.done", "data": {}})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = as_key(
        &hookd,
        &reader,
        "POST",
        "/v1/subscriptions",
        Some(json!({"eventTypes": ["export.done"], "endpointUrl": "https://localhost:9/"})),
    )
    .await;
    assert_eq!(status, 403);

    let url = "https://localhost:9/hook";
    let subscribe = |types: Value| json!({"eventTypes": types, "endpointUrl": url});
    let (status, _) = as_key(
        &hookd,
        &exports,
        "POST",
        "/v1/subscriptions",
        Some(subscribe(json!(["invoice.paid"]))),
    )
    .await;
    assert_eq!(status, 403, "a type whose scope the key lacks");
    let (status, _) = as_key(
        &hookd,
        &exports,
        "POST",
        "/v1/subscriptions",
        Some(subscribe(json!(["invoice.*"]))),
    )
    .await;
    assert_eq!(status, 403, "a wildcard matching no type the key may read");
    let (status, problem) = as_key(
        &hookd,
        &exports,
        "POST",
        "/v1/subscriptions",
        Some(subscribe(json!(["nope.type"]))),
    )
    .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("eventTypes[0]"))
    );
    let (status, created) = as_key(
        &hookd,
        &exports,
        "POST",
        "/v1/subscriptions",
        Some(subscribe(json!(["*"]))),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, problem) = as_key(
        &hookd,
        &exports,
        "POST",
        "/v1/events",
        Some(json!({"eventType": "nope.type", "data": {}})),
    )
    .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("eventType"))
    );

    // A `*` subscription made with only exports:read gets exports, not invoices.
    let (_, sent) = as_key(
        &hookd,
        &exports,
        "POST",
        "/v1/events",
        Some(json!({"eventType": "invoice.paid", "data": {}})),
    )
    .await;
    assert_eq!(sent["data"]["deliveryCount"], 0);
    let (_, sent) = as_key(
        &hookd,
        &exports,
        "POST",
        "/v1/events",
        Some(json!({"eventType": "export.done", "data": {}})),
    )
    .await;
    assert_eq!(sent["data"]["deliveryCount"], 1);
    // And it reads only the events whose scope it holds.
    let (_, page) = as_key(&hookd, &exports, "GET", "/v1/events", None).await;
    let types: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["export.done"]);

    let (status, catalog) = as_key(&hookd, &reader, "GET", "/v1/event-types", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = catalog["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"export.done") && names.contains(&"hookd.delivery.failed"),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_revoked_key_stops_working_at_once_and_entities_in_use_stay() {
    let hookd = Hookd::start(catalog()).await;
    entity(&hookd, "acme", None).await;
    entity(&hookd, "acme-eu", Some("acme")).await;
    let (id, key_text) = key(&hookd, "acme", ALL).await;
    assert_eq!(
        as_key(&hookd, &key_text, "GET", "/v1/subscriptions", None)
            .await
            .0,
        200
    );
    let (status, listed) = hookd.call("GET", "/v1/admin/api-keys", None).await;
    assert_eq!(status, 200);
    assert!(
        !listed.to_string().contains(&key_text),
        "keys are shown only once"
    );
    assert_eq!(
        hookd
            .call("DELETE", &format!("/v1/admin/api-keys/{id}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        as_key(&hookd, &key_text, "GET", "/v1/subscriptions", None)
            .await
            .0,
        401
    );

    assert_eq!(
        hookd
            .call("DELETE", "/v1/admin/entities/acme", None)
            .await
            .0,
        409,
        "it has a child"
    );
    assert_eq!(
        hookd
            .call("DELETE", "/v1/admin/entities/acme-eu", None)
            .await
            .0,
        204
    );
    assert_eq!(
        hookd
            .call("DELETE", "/v1/admin/entities/acme", None)
            .await
            .0,
        204
    );
    let (status, problem) = hookd
        .call(
            "POST",
            "/v1/admin/entities",
            Some(json!({"name": "x", "parentId": "ghost"})),
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("parentId")));
    let (status, created) = hookd
        .call(
            "POST",
            "/v1/admin/entities",
            Some(json!({"name": "generated"})),
        )
        .await;
    assert_eq!(status, 201);
    assert!(created["data"]["id"].as_str().unwrap().starts_with("ent_"));
}

fn jwt(header_alg: &str, claims: Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": header_alg, "typ": "JWT"}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let sig = sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn claims(exp_offset: i64, audience: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({"iss": "https://auth.test", "aud": audience, "exp": now + exp_offset, "entity": "acme", "scope": "subscriptions:read"})
}

/// Starts hookd with `[auth.jwt]` using `key_line`, with an "acme" entity.
async fn with_jwt(key_line: &str, files: &[(&str, Vec<u8>)]) -> Hookd {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let options = Options {
        tail: format!(
            "[auth.jwt]\nissuer = \"https://auth.test\"\naudience = \"hookd\"\n{key_line}\n"
        ),
        ..Options::default()
    };
    let hookd = Hookd::start_in(dir, std::sync::Arc::new(common::TestCa::new()), options).await;
    entity(&hookd, "acme", None).await;
    hookd
}

async fn check_jwt(hookd: &Hookd, alg: &str, sign: impl Fn(&[u8]) -> Vec<u8>) {
    let good = jwt(alg, claims(60, "hookd"), &sign);
    let (status, body) = as_key(hookd, &good, "GET", "/v1/subscriptions", None).await;
    assert_eq!(status, 200, "{alg}: {body}");
    let (status, _) = as_key(
        hookd,
        &good,
        "POST",
        "/v1/events",
        Some(json!({"eventType": "a", "data": {}})),
    )
    .await;
    assert_eq!(status, 403, "{alg}: scope from the token");
    let expired = jwt(alg, claims(-120, "hookd"), &sign);
    let (status, body) = as_key(hookd, &expired, "GET", "/v1/subscriptions", None).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    let wrong_audience = jwt(alg, claims(60, "someone-else"), &sign);
    let (status, body) = as_key(hookd, &wrong_audience, "GET", "/v1/subscriptions", None).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("audience"),
        "{body}"
    );
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, _) = as_key(hookd, &forged, "GET", "/v1/subscriptions", None).await;
    assert_eq!(status, 401);
    let mut unknown = claims(60, "hookd");
    unknown["entity"] = "nobody".into();
    let (status, _) = as_key(
        hookd,
        &jwt(alg, unknown, &sign),
        "GET",
        "/v1/subscriptions",
        None,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn hs256_tokens() {
    let secret = b"a-shared-secret-of-enough-length".to_vec();
    let hookd = with_jwt(
        "hs256_secret_file = \"jwt.secret\"",
        &[("jwt.secret", secret.clone())],
    )
    .await;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    check_jwt(&hookd, "HS256", |m| {
        ring::hmac::sign(&key, m).as_ref().to_vec()
    })
    .await;
    // A token claiming another algorithm is refused even if signed correctly for it.
    let none = jwt("none", claims(60, "hookd"), |_| Vec::new());
    assert_eq!(
        as_key(&hookd, &none, "GET", "/v1/subscriptions", None)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn es256_tokens() {
    let key = rcgen::KeyPair::generate().unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pair = signature::EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.serialize_der(),
        &rng,
    )
    .unwrap();
    assert_eq!(pair.public_key().as_ref().len(), 65);
    let hookd = with_jwt(
        "es256_public_key_file = \"jwt.pem\"",
        &[("jwt.pem", key.public_key_pem().into_bytes())],
    )
    .await;
    check_jwt(&hookd, "ES256", |m| {
        pair.sign(&rng, m).unwrap().as_ref().to_vec()
    })
    .await;
}

#[tokio::test]
async fn rs256_tokens() {
    // ring cannot generate RSA keys: openssl (from Debian's packages) does.
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("rsa.pem");
    let key = dir.path().join("rsa.der");
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is installed (.ci/run installs it)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let (pem_path, key_path) = (pem.to_str().unwrap(), key.to_str().unwrap());
    openssl(&[
        "genpkey",
        "-quiet",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        pem_path,
    ]);
    openssl(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", pem_path, "-outform", "DER", "-out", key_path,
    ]);
    let public = openssl(&["pkey", "-in", pem_path, "-pubout"]);
    let pair = signature::RsaKeyPair::from_pkcs8(&std::fs::read(&key).unwrap()).unwrap();
    let hookd = with_jwt(
        "rs256_public_key_file = \"jwt.pem\"",
        &[("jwt.pem", public)],
    )
    .await;
    let rng = ring::rand::SystemRandom::new();
    check_jwt(&hookd, "RS256", |m| {
        let mut sig = vec![0u8; pair.public().modulus_len()];
        pair.sign(&signature::RSA_PKCS1_SHA256, &rng, m, &mut sig)
            .unwrap();
        sig
    })
    .await;
}
