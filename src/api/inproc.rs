//! The API called in process, by the console: a method, a target and a JSON body go
//! through the same route table, the same access check and the same handlers as a
//! request from the listener, so a page shows and does exactly what its credential
//! could with curl (scopes, visibility, validation and its messages).

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::routes::{self, Access, Surface};
use super::{ApiError, AppState, Caller, RequestBody};

/// A successful answer: its status and its JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Called {
    pub status: StatusCode,
    pub body: Value,
}

/// Calls the API route `method target` (`target` is a path and optional query, already
/// percent-encoded) as `caller`. An answer of 400 and above comes back as the handler's
/// `ApiError`, typed (so a form can put a validation message beside its field).
pub async fn call(
    state: &AppState,
    caller: &Caller,
    method: Method,
    target: &str,
    body: Option<&Value>,
) -> Result<Called, ApiError> {
    let path = target.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let route = routes::lookup(&method, &segments)?;
    // Only token routes of the API; the backup streams a file and is not for pages.
    if route.surface != Surface::Api
        || route.access == Access::Public
        || route.path == super::backup::PATH
    {
        return Err(ApiError::NotFound("route"));
    }
    super::permit(route, caller)?;
    let bytes = match body {
        Some(value) => Bytes::from(serde_json::to_vec(value).map_err(ApiError::internal)?),
        None => Bytes::new(),
    };
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(target)
        .body(RequestBody::Right(Full::new(bytes)))
        .map_err(ApiError::internal)?;
    if body.is_some() {
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let response = super::dispatch(state, route, caller, request).await?;
    let status = response.status();
    let bytes = match response.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(ApiError::internal)?
    };
    Ok(Called { status, body })
}
