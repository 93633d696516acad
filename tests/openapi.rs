//! The route table against a running daemon: every route `ROUTES` lists (and so
//! `openapi.json` documents) is dispatched to a handler, every other method on those
//! paths is 405 naming the listed ones, each route's access is enforced as the table
//! declares it, and `GET /openapi.json` serves the document. The document's paths and
//! `security` equal `ROUTES` exactly (unit tests in `src/api/routes.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use bytes::Bytes;
use common::console::text;
use common::{Hookd, Options, WAIT};
use http_body_util::Full;
use serde_json::{Value, json};

use hookd::api::{Access, OPENAPI_JSON, ROUTES, Surface, api_routes};
use hookd::delivery::client::BoundedResponse;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// A template made concrete with a well-formed id that names nothing, so a routed
/// request reaches its handler and fails there (404, 422), changing nothing.
fn concrete(template: &str) -> String {
    // Portal pages take the ids their console twins take.
    let template = &match template.strip_prefix("/portal/") {
        Some(rest) => format!("/console/{rest}"),
        None => template.to_owned(),
    };
    let id = if template.starts_with("/v1/events/") || template.starts_with("/console/events/") {
        "evt_00000000000000000000000000000000"
    } else if template.starts_with("/v1/subscriptions/")
        || template.starts_with("/console/subscriptions/")
    {
        "sub_00000000000000000000000000000000"
    } else if template.starts_with("/console/assets/") {
        "console.css"
    } else if template.starts_with("/v1/deliveries/")
        || template.starts_with("/console/deliveries/")
    {
        "dlv_00000000000000000000000000000000"
    } else if template.starts_with("/v1/admin/api-keys/") {
        "key_00000000000000000000000000000000"
    } else {
        "no-such-entity"
    };
    template.replace("{id}", id)
}

/// A console template's concrete path under its own root (`/portal/...` stays there).
fn concrete_at(template: &str) -> String {
    let path = concrete(template);
    match template.strip_prefix("/portal") {
        Some(_) => path.replacen("/console", "/portal", 1),
        None => path,
    }
}

/// The router's own answer for a request it has no route for.
fn is_route_not_found(status: u16, body: &Value) -> bool {
    status == 404 && body["detail"] == "route not found"
}

async fn send(hookd: &Hookd, method: &str, path: &str, body: Option<&Value>) -> BoundedResponse {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", hookd.url))
        .header("authorization", format!("Bearer {}", hookd.token));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    hookd
        .client
        .send(request, WAIT, 1 << 20)
        .await
        .expect("hookd answers")
}

fn json_of(response: &BoundedResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn every_listed_route_reaches_a_handler() {
    let hookd = Hookd::start(Options::default()).await;
    for route in api_routes() {
        let (method, path) = (route.method, concrete(route.path));
        // An empty object: enough to get past body parsing to the handler's own checks.
        let body = matches!(method, "POST" | "PATCH").then(|| json!({}));
        let (status, answer) = hookd.call(method, &path, body).await;
        assert!(
            !is_route_not_found(status, &answer) && status != 405,
            "{method} {path} is in ROUTES but not dispatched: {status} {answer}"
        );
    }
}

/// Walks the whole table: a route that needs a scope is 403 to a key holding every
/// other scope and to a key holding none; an admin route is 403 to a tenant key holding
/// every scope; a route open to any token answers a key holding none. Nothing is
/// dispatched when access fails, so the ids need not exist.
#[tokio::test]
async fn every_route_enforces_the_access_the_table_declares() {
    const SCOPES: &[&str] = &[
        "events:write",
        "subscriptions:read",
        "subscriptions:write",
        "portal:write",
    ];
    let hookd = Hookd::start(Options::default()).await;
    hookd.create_entity("acme", None).await;
    let every = hookd.create_key("acme", SCOPES).await;
    let none = hookd.create_key("acme", &[]).await;
    let mut walked = 0;
    for route in api_routes() {
        let (method, path) = (route.method, concrete(route.path));
        let body = matches!(method, "POST" | "PATCH").then(|| json!({}));
        let at = format!("{method} {}", route.path);
        match route.access {
            Access::Public => continue,
            Access::Token => {
                let (status, answer) = hookd.call_as(&none, method, &path, body).await;
                assert!(status != 401 && status != 403, "{at}: {status} {answer}");
            }
            Access::Admin => {
                let (status, answer) = hookd.call_as(&every, method, &path, body).await;
                assert_eq!(status, 403, "{at}: a tenant key with every scope: {answer}");
            }
            Access::Portal(_) => unreachable!("{at}: a portal permission on an API route"),
            Access::Scope(scope) => {
                let others: Vec<&str> = SCOPES.iter().copied().filter(|s| *s != scope).collect();
                let lacking = hookd.create_key("acme", &others).await;
                for token in [&lacking, &none] {
                    let (status, answer) = hookd.call_as(token, method, &path, body.clone()).await;
                    assert_eq!(status, 403, "{at} without {scope}: {answer}");
                    assert!(
                        answer["detail"].as_str().unwrap().contains(scope),
                        "{answer}"
                    );
                }
                let (status, answer) = hookd.call_as(&every, method, &path, body).await;
                assert_ne!(status, 403, "{at} with {scope}: {answer}");
            }
        }
        walked += 1;
    }
    assert_eq!(
        walked,
        api_routes().filter(|r| r.access != Access::Public).count()
    );
}

#[tokio::test]
async fn other_methods_on_listed_paths_are_405_with_allow() {
    let hookd = Hookd::start(Options::default()).await;
    let mut templates: Vec<&str> = api_routes().map(|r| r.path).collect();
    templates.sort_unstable();
    templates.dedup();
    for template in templates {
        let listed: Vec<&str> = ROUTES
            .iter()
            .filter(|r| r.path == template)
            .map(|r| r.method)
            .collect();
        let path = concrete(template);
        for method in METHODS.iter().filter(|m| !listed.contains(m)) {
            let response = send(&hookd, method, &path, None).await;
            assert_eq!(
                response.status,
                405,
                "{method} {path}: {}",
                String::from_utf8_lossy(&response.body)
            );
            assert_eq!(
                response.headers["allow"].to_str().unwrap(),
                listed.join(", "),
                "{method} {path}"
            );
            assert_eq!(response.headers["content-type"], "application/problem+json");
        }
    }
}

#[tokio::test]
async fn the_document_is_served_without_a_token() {
    let hookd = Hookd::start(Options::default()).await;
    let (status, body) = hookd.call_raw("GET", "/openapi.json", None, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::from_str::<Value>(OPENAPI_JSON).unwrap());
    let response = send(&hookd, "GET", "/openapi.json", None).await;
    assert_eq!(response.headers["content-type"], "application/json");
    assert_eq!(response.body, OPENAPI_JSON.as_bytes());
    assert!(
        json_of(&response)["openapi"]
            .as_str()
            .unwrap()
            .starts_with("3.1.")
    );
}

#[tokio::test]
async fn public_routes_need_no_token_and_v1_routes_do() {
    let hookd = Hookd::start(Options::default()).await;
    for route in api_routes() {
        let (method, template) = (route.method, route.path);
        let (status, body) = hookd.call_raw(method, &concrete(template), None, &[]).await;
        if template.starts_with("/v1/") {
            assert_eq!(status, 401, "{method} {template}: {body}");
        } else {
            assert_eq!(status, 200, "{method} {template}: {body}");
        }
    }
}

/// The console's pages and forms are rows of the same table, and the console enforces
/// each row's access the same way, from a session opened with a key: a page or form
/// that needs a scope is 403 to a session lacking it (the form carrying its CSRF
/// token), a page open to any token answers a session holding none, and without a
/// session a page sends to sign-in and a form is 403.
#[tokio::test]
async fn every_console_route_enforces_the_access_the_table_declares() {
    const SCOPES: &[&str] = &[
        "events:write",
        "subscriptions:read",
        "subscriptions:write",
        "portal:write",
    ];
    let hookd = Hookd::start(Options::default()).await;
    hookd.create_entity("acme", None).await;
    let every = hookd.create_key("acme", SCOPES).await;
    let none = hookd.create_key("acme", &[]).await;
    let mut walked = 0;
    for route in ROUTES.iter().filter(|r| r.surface == Surface::Console) {
        let (method, path) = (route.method, concrete(route.path));
        let at = format!("{method} {}", route.path);
        // A session per call: sign-out ends the one it is sent with.
        let call = |token: String| {
            let hookd = &hookd;
            let path = path.clone();
            async move {
                let session = hookd.sign_in(&token).await;
                let form = format!("csrf={}", session.csrf);
                let form = (method == "POST").then_some(form.as_str());
                let answer = hookd.page(method, &path, Some(&session.cookie), form).await;
                (answer.status, text(&answer))
            }
        };
        match route.access {
            Access::Public => {
                let answer = hookd.page(method, &path, None, None).await;
                assert_ne!(answer.status, 404, "{at}");
                continue;
            }
            Access::Token => {
                let (status, body) = call(none.clone()).await;
                assert!(status < 400, "{at}: {status} {body}");
            }
            Access::Admin => {
                let (status, body) = call(every.clone()).await;
                assert_eq!(status, 403, "{at}: a tenant key with every scope: {body}");
            }
            Access::Portal(_) => unreachable!("{at}: a portal permission on a console page"),
            Access::Scope(scope) => {
                let others: Vec<&str> = SCOPES.iter().copied().filter(|s| *s != scope).collect();
                let lacking = hookd.create_key("acme", &others).await;
                for token in [&lacking, &none] {
                    let (status, body) = call(token.clone()).await;
                    assert_eq!(status, 403, "{at} without {scope}: {body}");
                    assert!(body.contains(scope), "{at}: {body}");
                }
                let (status, body) = call(every.clone()).await;
                assert_ne!(status, 403, "{at} with {scope}: {body}");
            }
        }
        let anonymous = hookd.page(method, &path, None, None).await;
        match method {
            "GET" => {
                assert_eq!(anonymous.status, 303, "{at}");
                assert_eq!(anonymous.headers["location"], "/console/sign-in", "{at}");
            }
            _ => assert_eq!(anonymous.status, 403, "{at}"),
        }
        walked += 1;
    }
    assert!(walked >= 15, "walked {walked} console routes");
}

/// The portal's rows the same way, from sessions that portal links opened: a page or
/// form that needs a permission is 403 to a session whose link granted every other
/// permission, and answers one that granted them all; without a session a page is 401
/// and a form 403.
#[tokio::test]
async fn every_portal_route_enforces_the_permission_the_table_declares() {
    const PERMISSIONS: &[&str] = &["read", "manage", "secrets", "retry"];
    let hookd = Hookd::start(Options::default()).await;
    hookd.create_entity("acme", None).await;
    let mut walked = 0;
    for route in ROUTES.iter().filter(|r| r.surface == Surface::Portal) {
        let (method, path) = (route.method, concrete_at(route.path));
        let at = format!("{method} {}", route.path);
        let call = |permissions: Vec<&'static str>| {
            let hookd = &hookd;
            let path = path.clone();
            async move {
                let session = hookd.portal_session("acme", &permissions).await;
                let form = format!("csrf={}", session.csrf);
                let form = (method == "POST").then_some(form.as_str());
                let answer = hookd.page(method, &path, Some(&session.cookie), form).await;
                (answer.status, text(&answer))
            }
        };
        match route.access {
            // A link that names nothing is refused like a used one.
            Access::Public => {
                let answer = hookd.page(method, &path, None, Some("csrf=x")).await;
                assert!(
                    matches!(answer.status, 403 | 404),
                    "{at}: {}",
                    answer.status
                );
                continue;
            }
            Access::Token => {
                let (status, body) = call(vec!["read"]).await;
                assert!(status < 400, "{at}: {status} {body}");
            }
            Access::Portal(permission) => {
                let others: Vec<&str> = PERMISSIONS
                    .iter()
                    .copied()
                    .filter(|p| *p != permission)
                    .collect();
                let (status, body) = call(others).await;
                assert_eq!(status, 403, "{at} without {permission}: {body}");
                assert!(body.contains(permission), "{at}: {body}");
                let (status, body) = call(PERMISSIONS.to_vec()).await;
                assert_ne!(status, 403, "{at} with {permission}: {body}");
            }
            Access::Admin | Access::Scope(_) => {
                unreachable!("{at}: a portal page needs a permission")
            }
        }
        let anonymous = hookd.page(method, &path, None, None).await;
        let expected = if method == "GET" { 401 } else { 403 };
        assert_eq!(anonymous.status, expected, "{at}");
        walked += 1;
    }
    assert!(walked >= 15, "walked {walked} portal routes");
}
