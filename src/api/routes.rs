//! The route table: every (method, path template) the API listener serves, and the
//! OpenAPI 3.1 document of them (`openapi.json` at the repository root, served at
//! `GET /openapi.json`).
//!
//! `route()` in `mod.rs` asks [`lookup`] before it dispatches, so a request is only
//! dispatched when `ROUTES` lists it, and 404/405 (with `Allow`) come from this table.
//! A dispatch arm missing from `ROUTES` is therefore unreachable, and a `ROUTES` entry
//! without an arm falls through to "route not found"; tests check both, and that the
//! document's `paths` are exactly `ROUTES`.

use std::sync::LazyLock;

use http::Method;

use super::ApiError;
use super::auth::{EVENTS_WRITE, PORTAL_WRITE, SUBSCRIPTIONS_READ, SUBSCRIPTIONS_WRITE};

/// Who may call a route. The router checks it once, before any handler runs, so a
/// handler never checks its own scope; `openapi.json` states the same for every
/// operation (`security`), and a test holds the two together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token (load balancers, readiness probes, client generators).
    Public,
    /// Any valid token, whatever its scopes.
    Token,
    /// The admin token only.
    Admin,
    /// A token holding this scope (the admin token holds every scope).
    Scope(&'static str),
    /// A customer-portal session granted this permission (`read`, `manage`, `retry`,
    /// `secrets`); nothing else holds one.
    Portal(&'static str),
}

/// Which part of the listener answers a route: the JSON API (documented in
/// `openapi.json`) or the web console's HTML pages (`crate::console`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Api,
    Console,
    /// The customer portal: the console's pages for one entity, under `/portal`.
    Portal,
}

/// One route: method, path template, access, and the surface that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub surface: Surface,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
        surface: Surface::Api,
    }
}

/// A console page or form: the same access rules as the API (a page shows what the
/// API would, through the API's own handlers), checked by the same `permit`.
const fn page(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
        surface: Surface::Console,
    }
}

/// A customer-portal page or form.
const fn portal(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
        surface: Surface::Portal,
    }
}

const SEE: Access = Access::Portal("read");
const MANAGE: Access = Access::Portal("manage");
const RESEND: Access = Access::Portal("retry");
const SECRETS: Access = Access::Portal("secrets");

const READ: Access = Access::Scope(SUBSCRIPTIONS_READ);
const WRITE: Access = Access::Scope(SUBSCRIPTIONS_WRITE);
const POST_EVENTS: Access = Access::Scope(EVENTS_WRITE);

/// Every route the API listener answers. A `{id}` segment matches any one path
/// segment; a literal segment wins over `{id}` (`/v1/events/batch` is not the event
/// `batch`), as OpenAPI's path matching says.
///
/// `/metrics` is not here: it is served on `server.metrics_listen`, another listener
/// with its own router.
pub const ROUTES: &[Route] = &[
    route("GET", "/healthz", Access::Public),
    route("GET", "/readyz", Access::Public),
    route("GET", "/openapi.json", Access::Public),
    // Events.
    route("POST", "/v1/events", POST_EVENTS),
    route("GET", "/v1/events", READ),
    route("POST", "/v1/events/batch", POST_EVENTS),
    route("GET", "/v1/events/{id}", READ),
    route("GET", "/v1/events/{id}/deliveries", READ),
    // Subscriptions.
    route("POST", "/v1/subscriptions", WRITE),
    route("GET", "/v1/subscriptions", READ),
    route("GET", "/v1/subscriptions/{id}", READ),
    route("PATCH", "/v1/subscriptions/{id}", WRITE),
    route("DELETE", "/v1/subscriptions/{id}", WRITE),
    // Whoever can read a signing secret can forge webhooks: write, not read.
    route("GET", "/v1/subscriptions/{id}/secret", WRITE),
    route("POST", "/v1/subscriptions/{id}/secret/rotate", WRITE),
    route("GET", "/v1/subscriptions/{id}/deliveries", READ),
    route("POST", "/v1/subscriptions/{id}/replay", WRITE),
    route("POST", "/v1/subscriptions/{id}/test", WRITE),
    // Deliveries.
    route("GET", "/v1/deliveries/{id}", READ),
    route("GET", "/v1/deliveries/{id}/attempts", READ),
    route("POST", "/v1/deliveries/{id}/retry", WRITE),
    // Attempt counts and latency of the subscriptions the caller sees.
    route("GET", "/v1/stats", READ),
    // The catalog is public knowledge to any tenant.
    route("GET", "/v1/event-types", Access::Token),
    // Tenancy and maintenance.
    route("POST", "/v1/admin/entities", Access::Admin),
    route("GET", "/v1/admin/entities", Access::Admin),
    route("GET", "/v1/admin/entities/{id}", Access::Admin),
    route("DELETE", "/v1/admin/entities/{id}", Access::Admin),
    route("POST", "/v1/admin/api-keys", Access::Admin),
    route("GET", "/v1/admin/api-keys", Access::Admin),
    route("DELETE", "/v1/admin/api-keys/{id}", Access::Admin),
    route("GET", "/v1/admin/backup", Access::Admin),
    route("POST", "/v1/portal/sessions", Access::Scope(PORTAL_WRITE)),
    // The web console (HTML; sessions from a cookie, forms carry a CSRF token).
    page("GET", "/console", Access::Token),
    page("GET", "/console/sign-in", Access::Public),
    page("POST", "/console/sign-in", Access::Public),
    page("POST", "/console/sign-out", Access::Token),
    page("GET", "/console/assets/{id}", Access::Public),
    page("GET", "/console/subscriptions", READ),
    page("POST", "/console/subscriptions", WRITE),
    page("GET", "/console/subscriptions/new", WRITE),
    page("GET", "/console/subscriptions/{id}", READ),
    page("POST", "/console/subscriptions/{id}", WRITE),
    page("GET", "/console/subscriptions/{id}/edit", WRITE),
    page("POST", "/console/subscriptions/{id}/status", WRITE),
    page("POST", "/console/subscriptions/{id}/delete", WRITE),
    page("POST", "/console/subscriptions/{id}/test", WRITE),
    page("POST", "/console/subscriptions/{id}/replay", WRITE),
    // The operator's pages.
    page("GET", "/console/entities", Access::Admin),
    page("POST", "/console/entities", Access::Admin),
    page("GET", "/console/keys", Access::Admin),
    page("POST", "/console/keys", Access::Admin),
    page("POST", "/console/keys/{id}/revoke", Access::Admin),
    // A signing secret is shown only when asked for, by a form (never on a GET page).
    page("POST", "/console/subscriptions/{id}/secret", WRITE),
    page("POST", "/console/subscriptions/{id}/secret/rotate", WRITE),
    page("GET", "/console/events", READ),
    page("GET", "/console/events/{id}", READ),
    page("GET", "/console/deliveries", READ),
    page("GET", "/console/event-types", Access::Token),
    page("GET", "/console/deliveries/{id}", READ),
    page("POST", "/console/deliveries/{id}/retry", WRITE),
    // The customer portal: a one-time link opens a session for one entity's subtree
    // with the permissions the link names.
    portal("GET", "/portal/open/{id}", Access::Public),
    portal("POST", "/portal/open/{id}", Access::Public),
    portal("GET", "/portal", Access::Token),
    portal("POST", "/portal/sign-out", Access::Token),
    portal("GET", "/portal/subscriptions", SEE),
    portal("POST", "/portal/subscriptions", MANAGE),
    portal("GET", "/portal/subscriptions/new", MANAGE),
    portal("GET", "/portal/subscriptions/{id}", SEE),
    portal("POST", "/portal/subscriptions/{id}", MANAGE),
    portal("GET", "/portal/subscriptions/{id}/edit", MANAGE),
    portal("POST", "/portal/subscriptions/{id}/status", MANAGE),
    portal("POST", "/portal/subscriptions/{id}/delete", MANAGE),
    portal("POST", "/portal/subscriptions/{id}/test", RESEND),
    portal("POST", "/portal/subscriptions/{id}/replay", RESEND),
    portal("POST", "/portal/subscriptions/{id}/secret", SECRETS),
    portal("POST", "/portal/subscriptions/{id}/secret/rotate", SECRETS),
    portal("GET", "/portal/events", SEE),
    portal("GET", "/portal/events/{id}", SEE),
    portal("GET", "/portal/deliveries", SEE),
    portal("GET", "/portal/event-types", SEE),
    portal("GET", "/portal/deliveries/{id}", SEE),
    portal("POST", "/portal/deliveries/{id}/retry", RESEND),
];

impl Route {
    /// The request segment where the template has `{id}` (at most one per template),
    /// or "".
    pub fn id<'a>(&self, segments: &[&'a str]) -> &'a str {
        template_segments(self.path)
            .zip(segments)
            .find(|(template, _)| *template == "{id}")
            .map_or("", |(_, segment)| *segment)
    }
}

/// The routes `openapi.json` documents: the API surface.
pub fn api_routes() -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().filter(|r| r.surface == Surface::Api)
}

/// The OpenAPI 3.1 document, compiled in so the binary serves the document of its own
/// version.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Finds the route for a request: `Ok(route)` when `ROUTES` lists the method at this
/// path, 405 naming the methods it does list, or 404 when no template matches.
pub fn lookup(method: &Method, segments: &[&str]) -> Result<&'static Route, ApiError> {
    // Every request walks the table: the templates are split once, and compared
    // without allocating.
    static SPLIT: LazyLock<Vec<Vec<&'static str>>> = LazyLock::new(|| {
        ROUTES
            .iter()
            .map(|r| template_segments(r.path).collect())
            .collect()
    });
    let best = ROUTES
        .iter()
        .zip(SPLIT.iter())
        .filter(|(_, template)| matches(template, segments))
        .max_by(|(_, a), (_, b)| specificity(a).cmp(specificity(b)))
        .map(|(route, _)| route.path);
    let Some(best) = best else {
        return Err(ApiError::NotFound("route"));
    };
    let mut at_path = ROUTES.iter().filter(|r| r.path == best);
    if let Some(found) = at_path.clone().find(|r| r.method == method.as_str()) {
        return Ok(found);
    }
    let allowed: Vec<&str> = at_path.by_ref().map(|r| r.method).collect();
    Err(ApiError::MethodNotAllowed(allowed.join(", ")))
}

fn template_segments(template: &str) -> impl Iterator<Item = &str> {
    template.split('/').skip(1)
}

fn matches(template: &[&str], segments: &[&str]) -> bool {
    template.len() == segments.len()
        && template
            .iter()
            .zip(segments)
            .all(|(t, s)| is_param(t) || t == s)
}

/// Literal segments, left to right, outrank parameters: compared as a sequence, the
/// template with a literal where the other has `{id}` sorts higher.
fn specificity<'a>(template: &'a [&'a str]) -> impl Iterator<Item = bool> + 'a {
    template.iter().map(|t| !is_param(t))
}

fn is_param(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

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
        let routed: BTreeSet<(String, String)> = api_routes()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        assert_eq!(
            routed.len(),
            api_routes().count(),
            "ROUTES lists a route twice"
        );
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
            }
        }
    }

    /// Each operation's `security` says what the route table enforces: `[]` for a
    /// public route, absent (the document's default: any valid token) for `Token`,
    /// the bearer role `admin` for `Admin`, and the one scope for `Scope`.
    #[test]
    fn the_document_security_is_the_table() {
        let doc = document();
        assert_eq!(doc["security"], json!([{"bearerAuth": []}]));
        for route in api_routes() {
            let op = &doc["paths"][route.path][route.method.to_lowercase()];
            let expected = match route.access {
                Access::Public => json!([]),
                Access::Token => Value::Null,
                Access::Admin => json!([{"bearerAuth": ["admin"]}]),
                Access::Scope(scope) => json!([{"bearerAuth": [scope]}]),
                Access::Portal(_) => panic!("a portal permission on an API route"),
            };
            assert_eq!(
                op["security"], expected,
                "{} {}: security",
                route.method, route.path
            );
            // Public routes live outside /v1, where the router authenticates first.
            assert_eq!(
                route.access == Access::Public,
                !route.path.starts_with("/v1/"),
                "{} {}",
                route.method,
                route.path
            );
        }
    }

    /// Console pages live under `/console`, API routes never do.
    #[test]
    fn console_routes_are_the_console_surface() {
        for route in ROUTES {
            let under =
                |root: &str| route.path == root || route.path.starts_with(&format!("{root}/"));
            let surface = match () {
                _ if under("/console") => Surface::Console,
                _ if under("/portal") => Surface::Portal,
                _ => Surface::Api,
            };
            assert_eq!(surface, route.surface, "{} {}", route.method, route.path);
            // Portal permissions are for portal pages only, and only they have them.
            assert_eq!(
                matches!(route.access, Access::Portal(_)),
                surface == Surface::Portal
                    && !matches!(route.access, Access::Public | Access::Token),
                "{} {}",
                route.method,
                route.path
            );
        }
        assert_eq!(
            lookup(&Method::GET, &segments("/console/subscriptions/new"))
                .ok()
                .map(|r| r.access),
            Some(WRITE)
        );
    }

    #[test]
    fn literal_segments_win_over_ids() {
        assert_eq!(
            lookup(&Method::POST, &segments("/v1/events/batch"))
                .ok()
                .map(|r| r.path),
            Some("/v1/events/batch")
        );
        assert_eq!(
            lookup(&Method::GET, &segments("/v1/events/evt_1"))
                .ok()
                .map(|r| r.path),
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
        for route in ROUTES {
            let method = Method::from_bytes(route.method.as_bytes()).unwrap();
            let concrete = route.path.replace("{id}", "x_1");
            assert_eq!(lookup(&method, &segments(&concrete)).ok(), Some(route));
        }
    }
}
