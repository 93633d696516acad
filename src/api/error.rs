//! API errors as RFC 9457 problem details. Every variant maps to one status and one
//! problem type; details name the field at fault and how to fix it. Internal errors are
//! logged with their source and answered with a generic 500 that reveals nothing.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this route accepts only {0}")]
    /// Carries the `Allow` header's value, from the route table.
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {limit} bytes ({key})")]
    TooLarge { limit: usize, key: &'static str },
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    #[error("the request body did not arrive in time")]
    Timeout,
    #[error("the request target is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("the request headers are larger than {0} bytes or more than {1} fields")]
    HeadersTooLarge(usize, usize),
    #[error(
        "hookd cannot write to its storage now (a write failed: the disk is full or failing); nothing was stored, retry later"
    )]
    StorageUnavailable,
    #[error(
        "free disk space is below storage.min_free; new events are refused until space is freed (nothing was stored)"
    )]
    InsufficientStorage,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(error))
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            ),
            Self::Invalid { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Validation failed",
            ),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
            ),
            Self::StorageUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage-unavailable",
                "Storage unavailable",
            ),
            Self::InsufficientStorage => (
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient-storage",
                "Insufficient storage",
            ),
            Self::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri-too-long", "URI too long"),
            Self::HeadersTooLarge(..) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "Request header fields too large",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let (status, slug, title) = self.parts();
        if let Self::Internal(source) = &self {
            tracing::error!(error = %source, "request failed");
        }
        let mut body = serde_json::json!({
            "type": format!("https://hookd.dev/problems/{slug}"),
            "title": title,
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        if let Self::Invalid { field, .. } = &self {
            body["field"] = serde_json::Value::String(field.clone());
        }
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, Self::StorageUnavailable | Self::InsufficientStorage) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if let Self::MethodNotAllowed(allow) = &self {
            if let Ok(value) = HeaderValue::from_str(allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
        }
        response
    }
}

impl ApiError {
    /// The status and title this error answers with (the console shows them as a page).
    pub fn status_and_title(&self) -> (StatusCode, &'static str) {
        let (status, _, title) = self.parts();
        (status, title)
    }

    /// The action needs the subscription ACTIVE (retry, replay, test).
    pub fn inactive_subscription() -> Self {
        Self::Conflict("the subscription is not ACTIVE; set its status to ACTIVE first".into())
    }
}

/// What a 503 or 507 asks a producer to wait: the store retries its writes twice a
/// second, and a few seconds spread the retries of many producers.
const RETRY_AFTER_SECONDS: &str = "5";

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::LowDisk => Self::InsufficientStorage,
            // The route exists, but this node's storage has no file to copy: say where
            // backups come from instead of a bare 500.
            error @ crate::store::StoreError::BackupElsewhere => Self::Conflict(error.to_string()),
            error if error.is_io() => Self::StorageUnavailable,
            error => Self::internal(error),
        }
    }
}

impl From<crate::secret::SealError> for ApiError {
    fn from(error: crate::secret::SealError) -> Self {
        Self::internal(error)
    }
}
