//! The route table: every (method, path template) the API listener serves, and the
//! OpenAPI 3.1 document of them (`openapi.json` at the repository root, served at
//! `GET /openapi.json`).
//!
//! `route()` in `mod.rs` asks [`lookup`] before it dispatches, so a request is only
//! dispatched when `ROUTES` lists it, and 404/405 (with `Allow`) come from this table.
//! A dispatch arm missing from `ROUTES` is therefore unreachable, and a `ROUTES` entry
//! without an arm falls through to "route not found"; tests check both, and that the
//! document's `paths` are exactly `ROUTES`.

use http::Method;

use super::ApiError;

/// Every route the API listener answers, as (method, path template). A `{id}`
/// segment matches any one path segment; a literal segment wins over `{id}`
/// (`/v1/events/batch` is not the event `batch`), as OpenAPI's path matching says.
///
/// `/metrics` is not here: it is served on `server.metrics_listen`, another listener
/// with its own router.
pub const ROUTES: &[(&str, &str)] = &[
    // Public: no token (load balancers, readiness probes, client generators).
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    // Events.
    ("POST", "/v1/events"),
    ("GET", "/v1/events"),
    ("POST", "/v1/events/batch"),
    ("GET", "/v1/events/{id}"),
    ("GET", "/v1/events/{id}/deliveries"),
    // Subscriptions.
    ("POST", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions/{id}"),
    ("PATCH", "/v1/subscriptions/{id}"),
    ("DELETE", "/v1/subscriptions/{id}"),
    ("GET", "/v1/subscriptions/{id}/secret"),
    ("POST", "/v1/subscriptions/{id}/secret/rotate"),
    ("GET", "/v1/subscriptions/{id}/deliveries"),
    ("POST", "/v1/subscriptions/{id}/replay"),
    ("POST", "/v1/subscriptions/{id}/test"),
    // Deliveries.
    ("GET", "/v1/deliveries/{id}"),
    ("GET", "/v1/deliveries/{id}/attempts"),
    ("POST", "/v1/deliveries/{id}/retry"),
    // Tenancy (issue 5): in the contract and the document, handlers still being
    // written on another branch. Until their arms land they answer "route not found".
    ("GET", "/v1/event-types"),
    ("POST", "/v1/admin/entities"),
    ("GET", "/v1/admin/entities"),
    ("GET", "/v1/admin/entities/{id}"),
    ("DELETE", "/v1/admin/entities/{id}"),
    ("POST", "/v1/admin/api-keys"),
    ("GET", "/v1/admin/api-keys"),
    ("DELETE", "/v1/admin/api-keys/{id}"),
    ("GET", "/v1/admin/backup"),
];

/// The OpenAPI 3.1 document, compiled in so the binary serves the document of its own
/// version.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Finds the route for a request: `Ok(template)` when `ROUTES` lists the method at
/// this path, 405 naming the methods it does list, or 404 when no template matches.
pub fn lookup(method: &Method, segments: &[&str]) -> Result<&'static str, ApiError> {
    let best = ROUTES
        .iter()
        .map(|(_, template)| *template)
        .filter(|template| matches(template, segments))
        .max_by_key(|template| specificity(template));
    let Some(best) = best else {
        return Err(ApiError::NotFound("route"));
    };
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, template)| *template == best)
        .map(|(m, _)| *m)
        .collect();
    if allowed.contains(&method.as_str()) {
        Ok(best)
    } else {
        Err(ApiError::MethodNotAllowed(allowed.join(", ")))
    }
}

fn template_segments(template: &str) -> impl Iterator<Item = &str> {
    template.split('/').skip(1)
}

fn matches(template: &str, segments: &[&str]) -> bool {
    template_segments(template).count() == segments.len()
        && template_segments(template)
            .zip(segments)
            .all(|(t, s)| is_param(t) || t == *s)
}

/// Literal segments, left to right, outrank parameters: compared as a sequence, the
/// template with a literal where the other has `{id}` sorts higher.
fn specificity(template: &str) -> Vec<bool> {
    template_segments(template).map(|t| !is_param(t)).collect()
}

fn is_param(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn document() -> Value {
        serde_json::from_str(OPENAPI_JSON).expect("openapi.json is valid JSON")
    }

    fn segments(path: &str) -> Vec<&str> {
        path.split('/').skip(1).collect()
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc = document();
        let version = doc["openapi"].as_str().unwrap();
        assert!(version.starts_with("3.1."), "openapi: {version}");
        // The binary serves the document it was built with, so they share a version.
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn the_document_paths_are_exactly_the_routes() {
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (key, _) in item.as_object().unwrap() {
                if METHODS.contains(&key.as_str()) {
                    documented.insert((key.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(routed.len(), ROUTES.len(), "ROUTES lists a route twice");
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.json: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "openapi.json documents routes the router does not list: {unrouted:?}"
        );
    }

    /// Every `$ref` points at something in the document, so a renamed schema cannot
    /// leave a dangling reference.
    #[test]
    fn every_reference_resolves() {
        fn walk(doc: &Value, value: &Value, bad: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let pointer = target.strip_prefix('#').unwrap_or("?");
                        if doc.pointer(pointer).is_none() {
                            bad.push(target.clone());
                        }
                    }
                    map.values().for_each(|v| walk(doc, v, bad));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(doc, v, bad)),
                _ => {}
            }
        }
        let doc = document();
        let mut bad = Vec::new();
        walk(&doc, &doc, &mut bad);
        assert!(bad.is_empty(), "dangling $ref: {bad:?}");
    }

    /// Each operation has a unique id, declares its path parameters, and says who may
    /// call it: public routes opt out of the bearer token explicitly.
    #[test]
    fn operations_are_complete() {
        let doc = document();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if !METHODS.contains(&method.as_str()) {
                    continue;
                }
                let at = format!("{method} {path}");
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{at}"));
                assert!(ids.insert(id.to_owned()), "{at}: operationId {id} twice");
                assert!(op["responses"].is_object(), "{at}: no responses");
                let params: Vec<&Value> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .chain(item["parameters"].as_array())
                    .flatten()
                    .collect();
                for segment in segments(path).into_iter().filter(|s| is_param(s)) {
                    let name = &segment[1..segment.len() - 1];
                    let declared = params.iter().any(|p| {
                        let p = match p["$ref"].as_str() {
                            Some(r) => doc.pointer(&r[1..]).unwrap(),
                            None => p,
                        };
                        p["in"] == "path" && p["name"] == name
                    });
                    assert!(declared, "{at}: path parameter {name} not declared");
                }
                let security = &op["security"];
                if path.starts_with("/v1/") {
                    // Absent (any valid token) or the scopes needed, as bearer roles.
                    let requirements = security.as_array().map_or(&[][..], Vec::as_slice);
                    assert!(
                        requirements.iter().all(|r| r
                            .as_object()
                            .unwrap()
                            .keys()
                            .eq(["bearerAuth"])),
                        "{at}: only bearerAuth"
                    );
                    assert!(
                        security.is_null() || !requirements.is_empty(),
                        "{at}: needs a token"
                    );
                } else {
                    assert_eq!(security, &serde_json::json!([]), "{at}: public route");
                }
            }
        }
    }

    #[test]
    fn literal_segments_win_over_ids() {
        assert_eq!(
            lookup(&Method::POST, &segments("/v1/events/batch")).ok(),
            Some("/v1/events/batch")
        );
        assert_eq!(
            lookup(&Method::GET, &segments("/v1/events/evt_1")).ok(),
            Some("/v1/events/{id}")
        );
        match lookup(&Method::GET, &segments("/v1/events/batch")) {
            Err(ApiError::MethodNotAllowed(allow)) => assert_eq!(allow, "POST"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_methods_are_405_listing_the_right_ones() {
        match lookup(&Method::PUT, &segments("/v1/subscriptions/sub_1")) {
            Err(ApiError::MethodNotAllowed(allow)) => assert_eq!(allow, "GET, PATCH, DELETE"),
            other => panic!("{other:?}"),
        }
        match lookup(&Method::POST, &segments("/healthz")) {
            Err(ApiError::MethodNotAllowed(allow)) => assert_eq!(allow, "GET"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_paths_are_404() {
        for path in ["/v1/nothing", "/v1/events/a/b/c", "/", "/v1"] {
            assert!(
                matches!(
                    lookup(&Method::GET, &segments(path)),
                    Err(ApiError::NotFound("route"))
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn every_route_finds_itself() {
        for (method, path) in ROUTES {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let concrete = path.replace("{id}", "x_1");
            assert_eq!(
                lookup(&method, &segments(&concrete)).ok(),
                Some(*path),
                "{method} {path}"
            );
        }
    }
}
