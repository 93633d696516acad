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
mod jwt;
mod routes;
mod subscription_actions;
mod subscriptions;
mod validate;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;

pub use admin::catalog_scopes;
pub use auth::Caller;
pub use error::ApiError;
pub use routes::{OPENAPI_JSON, ROUTES};

use crate::config::Config;
use crate::health::Health;
use crate::secret::{Sealer, Secret};
use crate::store::Store;

pub type ApiResponse = Response<Full<Bytes>>;
type Request = hyper::Request<Incoming>;

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
        Ok(Self {
            store,
            sealer,
            admin: auth::AdminToken::new(&rng, admin_token).map_err(|_| StartError::Random)?,
            jwt,
            config,
            rng,
            health,
            backup_slot: backup::slot(),
        })
    }
}

/// A response body: a buffered one, or a file streamed from disk (a backup).
pub type Body = http_body_util::Either<Full<Bytes>, backup::FileBody>;

/// Answers one request: the streamed backup route, or any other through `handle`.
pub async fn respond(state: &AppState, request: Request) -> Response<Body> {
    if request.uri().path().trim_end_matches('/') == backup::PATH {
        return match backup::get(state, request).await {
            Ok(response) => response.map(http_body_util::Either::Right),
            Err(error) => error.into_response().map(http_body_util::Either::Left),
        };
    }
    handle(state, request)
        .await
        .map(http_body_util::Either::Left)
}

pub async fn handle(state: &AppState, request: Request) -> ApiResponse {
    match route(state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn route(state: &AppState, request: Request) -> Result<ApiResponse, ApiError> {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let method = request.method().clone();
    // Only what `ROUTES` lists is dispatched; the table also answers 404 and 405.
    let found = routes::lookup(&method, &segments);
    match segments.as_slice() {
        ["healthz"] | ["readyz"] => {
            found?;
            return Ok(state
                .health
                .respond(&path)
                .unwrap_or_else(|| json(StatusCode::OK, &serde_json::json!({"status": "ok"}))));
        }
        ["openapi.json"] => {
            found?;
            return Ok(openapi());
        }
        ["v1", ..] => {}
        _ => return Err(ApiError::NotFound("route")),
    }
    // The token is checked before the table's 404/405, so a caller without one learns
    // nothing about /v1 but that it needs one.
    let caller = auth::authenticate(state, &request)?;
    found?;
    if let ["v1", "admin", rest @ ..] = segments.as_slice() {
        return admin::route(state, &caller, rest, &method, request).await;
    }
    match (segments.as_slice(), &method) {
        (["v1", "event-types"], &Method::GET) => Ok(admin::event_types(state, &caller)),
        (["v1", "events"], &Method::POST) => events::create(state, &caller, request).await,
        (["v1", "events"], &Method::GET) => {
            events::list(state, &caller, request.uri().query()).await
        }
        (["v1", "events", "batch"], &Method::POST) => {
            events::create_batch(state, &caller, request).await
        }
        (["v1", "events", id], &Method::GET) => events::get(state, &caller, id).await,
        (["v1", "events", id, "deliveries"], &Method::GET) => {
            events::deliveries(state, &caller, id).await
        }
        (["v1", "subscriptions"], &Method::POST) => {
            subscriptions::create(state, &caller, request).await
        }
        (["v1", "subscriptions"], &Method::GET) => {
            subscriptions::list(state, &caller, request.uri().query()).await
        }
        (["v1", "subscriptions", id], &Method::GET) => subscriptions::get(state, &caller, id).await,
        (["v1", "subscriptions", id], &Method::PATCH) => {
            subscriptions::patch(state, &caller, id, request).await
        }
        (["v1", "subscriptions", id], &Method::DELETE) => {
            subscriptions::delete(state, &caller, id).await
        }
        (["v1", "subscriptions", id, "secret"], &Method::GET) => {
            subscription_actions::secret(state, &caller, id).await
        }
        (["v1", "subscriptions", id, "secret", "rotate"], &Method::POST) => {
            subscription_actions::rotate(state, &caller, id).await
        }
        (["v1", "subscriptions", id, "deliveries"], &Method::GET) => {
            subscription_actions::deliveries(state, &caller, id, request.uri().query()).await
        }
        (["v1", "subscriptions", id, "replay"], &Method::POST) => {
            subscription_actions::replay(state, &caller, id, request).await
        }
        (["v1", "subscriptions", id, "test"], &Method::POST) => {
            subscription_actions::test(state, &caller, id).await
        }
        (["v1", "deliveries", id], &Method::GET) => deliveries::get(state, &caller, id).await,
        (["v1", "deliveries", id, "attempts"], &Method::GET) => {
            deliveries::attempts(state, &caller, id).await
        }
        (["v1", "deliveries", id, "retry"], &Method::POST) => {
            deliveries::retry(state, &caller, id).await
        }
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

/// Parses JSON; syntax errors are 400, wrong shapes (unknown fields) 422.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid("body", e.to_string()),
        _ => ApiError::BadRequest(format!("the body is not valid JSON: {e}")),
    })
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

/// `?limit=` (1..=500, default 50) and `?cursor=`.
struct Page {
    limit: usize,
    cursor: Option<u128>,
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

impl Page {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut page = Page {
            limit: DEFAULT_LIMIT,
            cursor: None,
        };
        for (key, value) in query_pairs(query) {
            match key {
                "limit" => {
                    page.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::invalid("limit", "must be an integer from 1 to 500")
                        })?;
                }
                "cursor" => {
                    page.cursor = Some(u128::from_str_radix(&value, 16).map_err(|_| {
                        ApiError::invalid("cursor", "is not a cursor this API returned")
                    })?);
                }
                _ => {}
            }
        }
        Ok(page)
    }
}

/// `key=value` pairs of a query string, values percent-decoded (`+` is a space).
fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key, percent_decode(value))
        })
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|hex| bytes[i] == b'%' && hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An RFC 3339 time in a query (`since`, `until`) as Unix milliseconds.
fn parse_time(field: &'static str, value: &str) -> Result<u64, ApiError> {
    humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                "must be an RFC 3339 time such as 2026-01-31T12:00:00Z",
            )
        })
}

/// A list body: `{"data": [...], "nextCursor": ...}`.
fn list(items: Vec<serde_json::Value>, next: Option<u128>) -> ApiResponse {
    json(
        StatusCode::OK,
        &serde_json::json!({"data": items, "nextCursor": next.map(cursor)}),
    )
}

fn cursor(id: u128) -> String {
    format!("{id:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        let pairs: Vec<_> = query_pairs(Some(
            "since=2026-01-31T12%3A00%3A00Z&eventType=a.b&x=%zz+1&limit=5",
        ))
        .collect();
        assert_eq!(pairs[0], ("since", "2026-01-31T12:00:00Z".to_string()));
        assert_eq!(pairs[1], ("eventType", "a.b".to_string()));
        assert_eq!(pairs[2], ("x", "%zz 1".to_string()));
        assert_eq!(parse_time("since", &pairs[0].1).unwrap(), 1_769_860_800_000);
        assert!(parse_time("since", "yesterday").is_err());
    }
}
