//! One delivery attempt: build the signed request for a subscription, send it through
//! the guarded client, and describe what happened as an attempt record. Scheduling what
//! comes next is the dispatcher's job (`dispatch::schedule`).

pub mod client;
pub mod error;
pub mod guard;
mod hosts;
pub mod oauth2;
pub mod proxy;
pub mod sign;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request};
use http_body_util::Full;

pub use client::{Client, ClientSettings};
pub use error::DeliveryError;
pub use proxy::ProxyTarget;

use crate::secret::{SealError, Sealer, Secret};
use crate::store::records::{AttemptRecord, EndpointAuthRecord, SubscriptionRecord};
use sign::SigningKey;

/// Response bytes kept in an attempt record.
pub const RESPONSE_BODY_LIMIT: usize = 4096;
/// Response headers kept in an attempt record.
const RESPONSE_HEADER_LIMIT: usize = 32;
pub const USER_AGENT_VALUE: &str = concat!("hookd/", env!("CARGO_PKG_VERSION"));

/// Everything needed to send one event to one endpoint, secrets opened.
pub struct Outgoing {
    pub url: String,
    pub event_id: String,
    pub body: Bytes,
    pub keys: Vec<SigningKey>,
    pub headers: Vec<(String, Secret)>,
    /// A fixed `Authorization` value (Basic auth).
    pub authorization: Option<Secret>,
    /// Client credentials: the `Authorization` is a bearer token obtained per attempt.
    pub oauth: Option<oauth2::Credentials>,
}

impl Outgoing {
    /// Opens the subscription's sealed secrets (bound to its id) for one attempt.
    /// Signing secrets past their rotation expiry no longer sign.
    pub fn for_subscription(
        sealer: &Sealer,
        subscription_id: &str,
        subscription: &SubscriptionRecord,
        event_id: String,
        body: Bytes,
        now_ms: u64,
    ) -> Result<Self, SealError> {
        let owner = subscription_id.as_bytes();
        let mut keys = Vec::with_capacity(subscription.signing_secrets.len());
        for secret in &subscription.signing_secrets {
            if secret.expires_ms.is_some_and(|at| at <= now_ms) {
                continue;
            }
            let clear = sealer.open(owner, &secret.sealed)?;
            keys.push(SigningKey::from_secret(clear.expose()).map_err(|_| SealError::Open)?);
        }
        let mut headers = Vec::with_capacity(subscription.custom_headers.len());
        for header in &subscription.custom_headers {
            headers.push((
                header.name.clone(),
                sealer.open(owner, &header.sealed_value)?,
            ));
        }
        let mut oauth = None;
        let authorization = match &subscription.endpoint_auth {
            EndpointAuthRecord::None => None,
            EndpointAuthRecord::OAuth2 {
                client_id,
                sealed_client_secret,
                token_url,
                scope,
                method,
            } => {
                oauth = Some(oauth2::Credentials {
                    subscription: subscription_key(subscription_id),
                    fingerprint: fingerprint(sealed_client_secret),
                    client_id: client_id.clone(),
                    client_secret: sealer.open(owner, sealed_client_secret)?,
                    token_url: token_url.clone(),
                    scope: scope.clone(),
                    method: *method,
                });
                None
            }
            EndpointAuthRecord::Basic {
                username,
                sealed_password,
            } => {
                use base64::Engine;
                let password = sealer.open(owner, sealed_password)?;
                let pair = format!("{username}:{}", password.expose());
                Some(Secret::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )))
            }
        };
        Ok(Self {
            url: subscription.endpoint_url.clone(),
            event_id,
            body,
            keys,
            headers,
            authorization,
            oauth,
        })
    }

    fn request(
        &self,
        timestamp: i64,
        bearer: Option<&Secret>,
    ) -> Result<Request<client::Body>, DeliveryError> {
        let signature = sign::signature_header(&self.keys, &self.event_id, timestamp, &self.body);
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.url.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE);
        let headers = builder
            .headers_mut()
            .ok_or_else(|| DeliveryError::Http("invalid endpoint URL".into()))?;
        for (name, value) in &self.headers {
            // Names and values were validated when the subscription was stored.
            if let (Ok(name), Ok(mut value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.expose()),
            ) {
                // Sealed like a credential: masked wherever the request is shown.
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
        let fixed = [
            ("webhook-id", self.event_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        for (name, value) in fixed {
            let value = HeaderValue::from_str(&value)
                .map_err(|_| DeliveryError::Http("unencodable webhook header".into()))?;
            headers.insert(HeaderName::from_static(name), value);
        }
        let bearer = bearer.map(|token| format!("Bearer {}", token.expose()));
        let auth = self
            .authorization
            .as_ref()
            .map(Secret::expose)
            .or(bearer.as_deref());
        if let Some(auth) = auth {
            let mut value = HeaderValue::from_str(auth)
                .map_err(|_| DeliveryError::Http("unencodable authorization header".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        builder
            .body(Full::new(self.body.clone()))
            .map_err(|_| DeliveryError::Scheme)
    }
}

/// What one attempt produced: the record to store and what the policy needs to know.
pub struct AttemptResult {
    pub record: AttemptRecord,
    /// The headers of the request sent last, sensitive values masked.
    pub request_headers: Vec<(String, String)>,
    pub status: Option<u16>,
    pub timed_out: bool,
    pub retry_after: Option<String>,
}

/// The subscription id inside its `sub_…` text (the token cache key).
fn subscription_key(subscription_id: &str) -> u128 {
    crate::ids::SubscriptionId::parse(subscription_id).map_or(0, |id| id.0)
}

/// Sealed bytes start with a random nonce: each new set of credentials has its own.
fn fingerprint(sealed: &[u8]) -> u128 {
    let mut bytes = [0u8; 16];
    let n = sealed.len().min(16);
    bytes[..n].copy_from_slice(&sealed[..n]);
    u128::from_le_bytes(bytes)
}

/// Sends one attempt. With client credentials, a token comes first; when the endpoint
/// answers 401 the token is dropped, a new one fetched, and the request sent once more
/// within this attempt.
async fn send(
    client: &Client,
    tokens: &oauth2::Tokens,
    outgoing: &Outgoing,
    timestamp: i64,
    timeout: Duration,
    shown: &mut Vec<(String, String)>,
) -> Result<client::BoundedResponse, DeliveryError> {
    let Some(credentials) = &outgoing.oauth else {
        let request = outgoing.request(timestamp, None)?;
        *shown = masked(request.headers());
        return client.send(request, timeout, RESPONSE_BODY_LIMIT).await;
    };
    let token = tokens.token(client, credentials, timeout).await?;
    let request = outgoing.request(timestamp, Some(&token))?;
    *shown = masked(request.headers());
    let response = client.send(request, timeout, RESPONSE_BODY_LIMIT).await?;
    if response.status != 401 {
        return Ok(response);
    }
    tokens.reject(credentials, &token).await;
    let fresh = tokens.token(client, credentials, timeout).await?;
    let request = outgoing.request(timestamp, Some(&fresh))?;
    *shown = masked(request.headers());
    client.send(request, timeout, RESPONSE_BODY_LIMIT).await
}

/// What an attempt's page shows of its request's headers: sensitive values (the
/// authorization, custom headers, which are sealed like credentials) masked.
fn masked(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if value.is_sensitive() {
                MASK.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

/// What a masked header value reads as.
pub const MASK: &str = "••••••";

pub async fn attempt(
    client: &Client,
    tokens: &oauth2::Tokens,
    outgoing: &Outgoing,
    timeout: Duration,
) -> AttemptResult {
    let now = std::time::SystemTime::now();
    let attempted_ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let started = Instant::now();
    let mut request_headers = Vec::new();
    let sent = send(
        client,
        tokens,
        outgoing,
        (attempted_ms / 1000) as i64,
        timeout,
        &mut request_headers,
    )
    .await;
    let duration_ms = client::elapsed_ms(started);
    let mut record = AttemptRecord {
        attempted_ms,
        url: outgoing.url.clone(),
        status: None,
        error: None,
        duration_ms,
        response_body: Vec::new(),
        response_headers: Vec::new(),
    };
    match sent {
        Ok(response) => {
            let retry_after = response
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            record.status = Some(response.status);
            record.response_body = response.body;
            record.response_headers = response
                .headers
                .iter()
                .take(RESPONSE_HEADER_LIMIT)
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            AttemptResult {
                status: Some(response.status),
                record,
                request_headers,
                timed_out: false,
                retry_after,
            }
        }
        Err(error) => {
            let timed_out = error.is_timeout();
            record.error = Some(error.to_string());
            AttemptResult {
                record,
                request_headers,
                status: None,
                timed_out,
                retry_after: None,
            }
        }
    }
}
