//! OAuth 2.0 client credentials toward endpoints (RFC 6749 §4.4). Tokens are cached per
//! subscription until `expires_in` minus min(10 %, 60 s) (300 s when absent). Each
//! subscription's slot is an async mutex held while fetching, so many deliveries
//! needing a token at the same moment cause one request. A slot remembers which
//! credentials its token belongs to: new credentials (a PATCH of `endpointAuth`)
//! never reuse an old token. Token requests go through the same guarded client as
//! deliveries, so the token URL obeys the same scheme and address rules.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use http::{Method, Request};
use http_body_util::Full;
use serde::Deserialize;
use tokio::time::Instant;

use super::client::Client;
use super::error::DeliveryError;
use crate::secret::Secret;
use crate::store::records::TokenAuthMethod;

/// Token responses are small JSON objects; anything longer is cut off.
const TOKEN_RESPONSE_LIMIT: usize = 64 * 1024;
/// Lifetime assumed when the token endpoint gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// A token is dropped this much before it expires, at most (else 10 % of its life).
const MAX_EARLY_REFRESH: Duration = Duration::from_secs(60);

/// What a delivery needs to obtain a token for its subscription.
pub struct Credentials {
    pub subscription: u128,
    /// Identifies these credentials: a new value (new credentials) starts a new token.
    pub fingerprint: u128,
    pub client_id: String,
    pub client_secret: Secret,
    pub token_url: String,
    pub scope: Option<String>,
    pub method: TokenAuthMethod,
}

#[derive(Default)]
struct Slot {
    fingerprint: u128,
    token: Option<(Secret, Instant)>,
}

/// The token cache shared by every delivery.
#[derive(Default)]
pub struct Tokens {
    slots: Mutex<HashMap<u128, Arc<tokio::sync::Mutex<Slot>>>>,
    fetches: AtomicU64,
    /// `hookd_oauth_token_fetches_total`, when metrics are on.
    counter: Option<prometheus_client::metrics::counter::Counter>,
}

impl Tokens {
    /// A cache that also counts its token requests in `counter`.
    pub fn counted(counter: prometheus_client::metrics::counter::Counter) -> Self {
        Self {
            counter: Some(counter),
            ..Self::default()
        }
    }

    /// Token requests made so far (for metrics and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn slot(&self, subscription: u128) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = match self.slots.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots.entry(subscription).or_default().clone()
    }

    /// A valid token for these credentials, from the cache or fetched now.
    pub async fn token(
        &self,
        client: &Client,
        credentials: &Credentials,
        timeout: Duration,
    ) -> Result<Secret, DeliveryError> {
        let slot = self.slot(credentials.subscription);
        let mut slot = slot.lock().await;
        if slot.fingerprint == credentials.fingerprint {
            if let Some((token, expires)) = &slot.token {
                if Instant::now() < *expires {
                    return Ok(token.clone());
                }
            }
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = &self.counter {
            counter.inc();
        }
        let (token, lifetime) = fetch(client, credentials, timeout).await?;
        slot.fingerprint = credentials.fingerprint;
        slot.token = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// The endpoint refused `used` (401): drop it, unless another delivery has
    /// already replaced it.
    pub async fn reject(&self, credentials: &Credentials, used: &Secret) {
        let slot = self.slot(credentials.subscription);
        let mut slot = slot.lock().await;
        if slot.token.as_ref().is_some_and(|(token, _)| token == used) {
            slot.token = None;
        }
    }
}

/// RFC 6749 §2.3.1 / Appendix B encoding, strictly: every byte outside
/// `A-Z a-z 0-9 - . _ *` becomes `%XX`, and space is `%20`, not `+`: `%20` decodes the
/// same in every form decoder, while `+` stays a plus in servers that use plain
/// percent-decoding (API.md).
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'*') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `Basic base64(enc(id) ":" enc(secret))` for `client_secret_basic`.
pub fn basic_credentials(client_id: &str, client_secret: &str) -> String {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    format!("Basic {}", STANDARD.encode(pair))
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: Option<String>,
}

async fn fetch(
    client: &Client,
    credentials: &Credentials,
    timeout: Duration,
) -> Result<(Secret, Duration), DeliveryError> {
    let mut form = String::from("grant_type=client_credentials");
    if let Some(scope) = &credentials.scope {
        form.push_str("&scope=");
        form.push_str(&form_encode(scope));
    }
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(credentials.token_url.as_str())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, super::USER_AGENT_VALUE);
    match credentials.method {
        TokenAuthMethod::ClientSecretBasic => {
            let basic =
                basic_credentials(&credentials.client_id, credentials.client_secret.expose());
            let mut value = HeaderValue::from_str(&basic)
                .map_err(|_| token_error(credentials, "unencodable credentials"))?;
            value.set_sensitive(true);
            builder = builder.header(AUTHORIZATION, value);
        }
        TokenAuthMethod::ClientSecretPost => {
            form.push_str("&client_id=");
            form.push_str(&form_encode(&credentials.client_id));
            form.push_str("&client_secret=");
            form.push_str(&form_encode(credentials.client_secret.expose()));
        }
    }
    let request = builder
        .body(Full::new(Bytes::from(form)))
        .map_err(|_| DeliveryError::Scheme)?;
    let response = client
        .send(request, timeout, TOKEN_RESPONSE_LIMIT)
        .await
        .map_err(|error| DeliveryError::TokenRequest {
            url: credentials.token_url.clone(),
            reason: error.to_string(),
        })?;
    if !(200..300).contains(&response.status) {
        let code = serde_json::from_slice::<ErrorResponse>(&response.body)
            .ok()
            .and_then(|e| e.error)
            .map(|code| {
                code.chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(64)
                    .collect()
            });
        return Err(DeliveryError::TokenRefused {
            url: credentials.token_url.clone(),
            status: response.status,
            code,
        });
    }
    let parsed: TokenResponse = serde_json::from_slice(&response.body).map_err(|_| {
        token_error(
            credentials,
            "the answer is not a JSON token response with access_token",
        )
    })?;
    let header_safe =
        |t: &str| !t.is_empty() && t.len() <= 8192 && t.bytes().all(|b| (0x21..0x7f).contains(&b));
    if !header_safe(&parsed.access_token) {
        return Err(token_error(
            credentials,
            "access_token is empty or not printable ASCII",
        ));
    }
    if parsed
        .token_type
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
    {
        return Err(token_error(credentials, "token_type is not Bearer"));
    }
    Ok((
        Secret::new(parsed.access_token),
        lifetime(parsed.expires_in.as_ref()),
    ))
}

/// `expires_in` minus min(10 %, 60 s); 300 s when absent. Some servers send it as a
/// string, which is accepted.
fn lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let seconds = match expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    match seconds {
        Some(seconds) => {
            let life = Duration::from_secs(seconds);
            life.saturating_sub((life / 10).min(MAX_EARLY_REFRESH))
        }
        None => DEFAULT_LIFETIME,
    }
}

fn token_error(credentials: &Credentials, reason: &str) -> DeliveryError {
    DeliveryError::TokenRequest {
        url: credentials.token_url.clone(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_credentials_as_api_md_specifies() {
        assert_eq!(form_encode("abc/+123"), "abc%2F%2B123");
        assert_eq!(form_encode("a b:c%d*e-f.g_h~"), "a%20b%3Ac%25d*e-f.g_h%7E");
        assert_eq!(form_encode("é"), "%C3%A9");
        assert_eq!(
            basic_credentials("myClientId", "abc/+123"),
            "Basic bXlDbGllbnRJZDphYmMlMkYlMkIxMjM="
        );
    }

    #[test]
    fn lifetime_refreshes_early_by_ten_percent_capped_at_a_minute() {
        let n = |v: u64| serde_json::json!(v);
        assert_eq!(lifetime(Some(&n(100))), Duration::from_secs(90));
        assert_eq!(lifetime(Some(&n(3600))), Duration::from_secs(3540));
        assert_eq!(
            lifetime(Some(&serde_json::json!("100"))),
            Duration::from_secs(90)
        );
        assert_eq!(lifetime(None), Duration::from_secs(300));
        assert_eq!(lifetime(Some(&n(0))), Duration::ZERO);
    }
}
