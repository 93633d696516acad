//! The HTTP API of API.md: a small route table over hyper requests. Each noun has its
//! own file; this one authenticates, bounds and parses bodies, and renders responses.
//! Handlers validate input into store records and never touch redb themselves.

mod admin;
mod auth;
mod backup;
mod deliveries;
mod endpoint_auth;
mod error;
mod events;
mod inproc;
mod jwt;
mod paging;
mod portal;
mod reachable;
mod routes;
mod stats;
mod strict;
mod subscription_actions;
mod subscriptions;
mod validate;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;

pub use admin::catalog_scopes;
pub use auth::{Caller, Credential, caller_of, lasting_credential};
pub use error::ApiError;
pub use inproc::{Called, call};
pub use portal::{Grant, PERMISSIONS as PORTAL_PERMISSIONS};
pub use routes::{Access, OPENAPI_JSON, ROUTES, Route, Surface, api_routes, lookup};

use crate::config::Config;
use crate::health::Health;
use crate::secret::{Sealer, Secret};
use crate::store::Store;

pub type ApiResponse = Response<Full<Bytes>>;
/// A request as handlers take it: from the listener, or made in process by the console
/// (`inproc::call`), which goes through the same route table and handlers.
pub type Request = hyper::Request<RequestBody>;
pub type RequestBody = http_body_util::Either<Incoming, Full<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("JWT key: {0}")]
    Jwt(#[from] jwt::JwtKeyError),
    #[error("the system random generator failed")]
    Random,
}

/// Everything handlers share.
pub struct AppState {
    pub store: Store,
    pub sealer: Arc<Sealer>,
    pub config: Arc<Config>,
    admin: auth::AdminToken,
    jwt: Option<jwt::Verifier>,
    pub rng: ring::rand::SystemRandom,
    pub health: Health,
    /// Held by the one backup that may run at a time.
    backup_slot: Arc<tokio::sync::Semaphore>,
    /// The delivery client's address rules, to refuse at once a URL it would refuse.
    guard: crate::delivery::guard::AddressGuard,
    /// Customer-portal links made and not yet opened.
    pub portal: portal::Links,
}

impl AppState {
    pub fn new(
        store: Store,
        sealer: Arc<Sealer>,
        config: Arc<Config>,
        admin_token: &Secret,
        health: Health,
    ) -> Result<Self, StartError> {
        let rng = ring::rand::SystemRandom::new();
        let jwt = config
            .auth
            .jwt
            .as_ref()
            .map(jwt::Verifier::from_config)
            .transpose()?;
        let guard =
            crate::delivery::guard::AddressGuard::new(config.delivery.allow_networks.clone());
        let portal = portal::Links::new(store.clone());
        Ok(Self {
            guard,
            store,
            sealer,
            admin: auth::AdminToken::new(&rng, admin_token).map_err(|_| StartError::Random)?,
            jwt,
            config,
            rng,
            health,
            backup_slot: backup::slot(),
            portal,
        })
    }
}

/// A response body: a buffered one, or a file streamed from disk (a backup).
pub type Body = http_body_util::Either<Full<Bytes>, backup::FileBody>;

/// Answers one request: finds its route in `ROUTES`, enforces the route's access once,
/// then dispatches to the handler (none of which checks a scope itself).
pub async fn respond(state: &AppState, request: Request) -> Response<Body> {
    let buffered = |r: ApiResponse| r.map(http_body_util::Either::Left);
    if let Err(error) = within_limits(&request) {
        discard_body(state, request).await;
        return buffered(error.into_response());
    }
    let (route, caller) = match authorize(state, &request) {
        Ok(found) => found,
        Err(error) => {
            discard_body(state, request).await;
            return buffered(error.into_response());
        }
    };
    let result = match caller {
        None => {
            discard_body(state, request).await;
            public(state, route)
        }
        Some(_) if route.path == backup::PATH => {
            discard_body(state, request).await;
            match backup::get(state).await {
                Ok(response) => return response.map(http_body_util::Either::Right),
                Err(error) => Err(error),
            }
        }
        Some(caller) => dispatch(state, route, &caller, request).await,
    };
    buffered(result.unwrap_or_else(ApiError::into_response))
}

/// Longest request target answered (414 beyond); the longest URL hookd issues is far
/// shorter (a cursor and a few filters).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes and fields answered (431 beyond). The HTTP layer's own buffer
/// (`server::MAX_REQUEST_HEAD`) is larger, so that up to its size the answer is this
/// problem+json one rather than the HTTP layer's bare status.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_HEADER_FIELDS: usize = 64;

fn within_limits(request: &Request) -> Result<(), ApiError> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(ApiError::UriTooLong(MAX_URI_BYTES));
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if bytes > MAX_HEADER_BYTES || headers.len() > MAX_HEADER_FIELDS {
        return Err(ApiError::HeadersTooLarge(
            MAX_HEADER_BYTES,
            MAX_HEADER_FIELDS,
        ));
    }
    Ok(())
}

/// The route a request names and, unless it is public, the caller, who holds what the
/// route's access asks for. Under `/v1` the token is checked before the table's
/// 404/405, so a caller without one learns nothing about `/v1` but that it needs one.
fn authorize(
    state: &AppState,
    request: &Request,
) -> Result<(&'static Route, Option<Caller>), ApiError> {
    let path = request.uri().path();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let caller = match segments.first() {
        Some(&"v1") => Some(auth::authenticate(state, request)?),
        _ => None,
    };
    let route = routes::lookup(request.method(), &segments)?;
    // Console pages are the console's (`crate::console`); here they are not found.
    if route.surface != Surface::Api {
        return Err(ApiError::NotFound("route"));
    }
    let caller = match (route.access, caller) {
        (Access::Public, _) => return Ok((route, None)),
        // Unreachable while every non-public route is under /v1 (a test holds it).
        (_, None) => return Err(ApiError::NotFound("route")),
        (_, Some(caller)) => caller,
    };
    permit(route, &caller)?;
    Ok((route, Some(caller)))
}

/// Whether `caller` holds what `route`'s access asks for: the one check every route of
/// every surface (API, console) goes through.
pub fn permit(route: &Route, caller: &Caller) -> Result<(), ApiError> {
    match route.access {
        Access::Admin if !caller.is_admin() => Err(ApiError::Forbidden(
            "this route needs the admin token".into(),
        )),
        Access::Scope(scope) if !caller.has(scope) => Err(ApiError::Forbidden(format!(
            "this credential lacks the scope {scope}"
        ))),
        Access::Portal(permission) if !caller.may(permission) => Err(ApiError::Forbidden(format!(
            "this portal session lacks the permission {permission}"
        ))),
        _ => Ok(()),
    }
}

fn public(state: &AppState, route: &Route) -> Result<ApiResponse, ApiError> {
    match route.path {
        "/openapi.json" => Ok(openapi()),
        path => Ok(state
            .health
            .respond(path)
            .unwrap_or_else(|| json(StatusCode::OK, &serde_json::json!({"status": "ok"})))),
    }
}

/// Calls the handler of an authorized route; `id` is the template's `{id}` segment.
async fn dispatch(
    state: &AppState,
    route: &Route,
    caller: &Caller,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let query = query.as_deref();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let id = route.id(&segments);
    // Routes whose handler reads the request body.
    let request = match (route.method, route.path) {
        ("POST", "/v1/events") => return events::create(state, caller, request).await,
        ("POST", "/v1/events/batch") => return events::create_batch(state, caller, request).await,
        ("POST", "/v1/subscriptions") => {
            return subscriptions::create(state, caller, request).await;
        }
        ("PATCH", "/v1/subscriptions/{id}") => {
            return subscriptions::patch(state, caller, id, request).await;
        }
        ("POST", "/v1/subscriptions/{id}/replay") => {
            return subscription_actions::replay(state, caller, id, request).await;
        }
        ("POST", "/v1/admin/entities") => return admin::create_entity(state, request).await,
        ("POST", "/v1/admin/api-keys") => return admin::create_key(state, caller, request).await,
        ("POST", "/v1/portal/sessions") => {
            let credential = auth::bearer_credential(state, &request);
            return portal::create(state, caller, credential, request).await;
        }
        _ => request,
    };
    // The rest take none; a body sent anyway is read first, so the answer is not lost
    // to a reset connection.
    discard_body(state, request).await;
    match (route.method, route.path) {
        ("GET", "/v1/event-types") => admin::event_types(state, query),
        ("GET", "/v1/stats") => stats::get(state, caller, query).await,
        ("GET", "/v1/events") => events::list(state, caller, query).await,
        ("GET", "/v1/events/{id}") => events::get(state, caller, id).await,
        ("GET", "/v1/events/{id}/deliveries") => events::deliveries(state, caller, id, query).await,
        ("GET", "/v1/subscriptions") => subscriptions::list(state, caller, query),
        ("GET", "/v1/subscriptions/{id}") => subscriptions::get(state, caller, id),
        ("DELETE", "/v1/subscriptions/{id}") => subscriptions::delete(state, caller, id).await,
        ("GET", "/v1/subscriptions/{id}/secret") => subscription_actions::secret(state, caller, id),
        ("POST", "/v1/subscriptions/{id}/secret/rotate") => {
            subscription_actions::rotate(state, caller, id).await
        }
        ("GET", "/v1/subscriptions/{id}/deliveries") => {
            subscription_actions::deliveries(state, caller, id, query).await
        }
        ("POST", "/v1/subscriptions/{id}/test") => {
            subscription_actions::test(state, caller, id).await
        }
        ("GET", "/v1/deliveries/{id}") => deliveries::get(state, caller, id).await,
        ("GET", "/v1/deliveries/{id}/attempts") => {
            deliveries::attempts(state, caller, id, query).await
        }
        ("POST", "/v1/deliveries/{id}/retry") => deliveries::retry(state, caller, id).await,
        ("GET", "/v1/admin/entities") => admin::list_entities(caller, query),
        ("GET", "/v1/admin/entities/{id}") => admin::get_entity(caller, id),
        ("DELETE", "/v1/admin/entities/{id}") => admin::delete_entity(state, id).await,
        ("GET", "/v1/admin/api-keys") => admin::list_keys(caller, query),
        ("DELETE", "/v1/admin/api-keys/{id}") => admin::revoke_key(state, id).await,
        _ => Err(ApiError::NotFound("route")),
    }
}

/// A request body must arrive within this: a client that stalls mid-body holds a
/// connection slot and would hold up shutdown.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads the whole body, refusing more than `limit` bytes (named by `key` in the 413)
/// and anything that does not claim to be JSON.
async fn read_body(request: Request, limit: usize, key: &'static str) -> Result<Bytes, ApiError> {
    if let Some(kind) = request.headers().get(header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or("");
        let essence = kind.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            discard(request, limit).await;
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit, key });
    }
    let collect = Limited::new(request.into_body(), limit).collect();
    match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Err(_) => Err(ApiError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::TooLarge { limit, key })
        }
        Ok(Err(_)) => Err(ApiError::BadRequest(
            "the request body could not be read".into(),
        )),
    }
}

/// Reads and drops a body the answer does not need (an error found before the handler
/// read it), up to the largest body any route takes.
async fn discard_body(state: &AppState, request: Request) {
    discard(request, state.config.server.max_batch_bytes).await;
}

/// Reads and drops at most `limit` bytes of body. A connection closed with request
/// bytes still unread is reset by the kernel, and a client still sending them then sees
/// the reset instead of the answer (401, 404, 415, ...). Past `limit`, or when the body
/// does not arrive in time, the connection closes anyway.
async fn discard(request: Request, limit: usize) {
    let mut body = request.into_body();
    // Frame by frame, keeping none: an unread body costs no memory here.
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > limit {
                break;
            }
        }
    };
    drop(tokio::time::timeout(BODY_TIMEOUT, drain).await);
}

/// Parses JSON into a struct; syntax errors are 400, wrong shapes (unknown or
/// duplicate fields) 422.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(json_error)
}

/// Parses JSON into a value to be read field by field, refusing duplicate keys (422).
fn parse_value(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    strict::parse(body).map_err(json_error)
}

fn json_error(e: serde_json::Error) -> ApiError {
    match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid("body", e.to_string()),
        _ => ApiError::BadRequest(format!("the body is not valid JSON: {e}")),
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> ApiResponse {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"data": value}` with `status`.
fn data<T: Serialize>(status: StatusCode, value: T) -> ApiResponse {
    json(status, &serde_json::json!({ "data": value }))
}

/// `GET /openapi.json`: the document as compiled in, byte for byte.
fn openapi() -> ApiResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(OPENAPI_JSON.as_bytes())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn no_content() -> ApiResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

pub use crate::payload::timestamp;
pub(crate) use paging::query_pairs;
use paging::{Page, bad_cursor, list, list_from, name_cursor, parse_time, take_page};
