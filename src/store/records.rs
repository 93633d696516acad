//! Stored record layouts. They are deliberately not the API types: postcard needs plain
//! structs and enums whose field and variant order never changes, so a new field or
//! variant means a new `VERSION` and a migration. Enum variants may only be appended.

use serde::{Deserialize, Serialize};

use super::codec::Record;

/// An accepted event. `body` is the exact JSON every delivery sends and signs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub entity: String,
    pub event_type: String,
    pub created_ms: u64,
    pub body: Vec<u8>,
}

impl Record for EventRecord {
    const KIND: &'static str = "event";
    const VERSION: u8 = 1;
}

/// The leading fields of an `EventRecord`, read without copying its body: postcard
/// decodes fields in order and leaves the bytes after them unread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHead {
    pub entity: String,
    pub event_type: String,
}

impl Record for EventHead {
    const KIND: &'static str = "event";
    const VERSION: u8 = EventRecord::VERSION;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionStatus {
    Active,
    Deactivated,
    Disabled,
}

/// How hookd authenticates to the endpoint. Secret parts are sealed (`secret::Sealer`)
/// with the subscription id as associated data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointAuthRecord {
    None,
    Basic {
        username: String,
        sealed_password: Vec<u8>,
    },
    OAuth2 {
        client_id: String,
        sealed_client_secret: Vec<u8>,
        token_url: String,
        scope: Option<String>,
        method: TokenAuthMethod,
    },
}

/// How the client credentials reach the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenAuthMethod {
    /// HTTP Basic with the percent-encoded id and secret (the default).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

impl TokenAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }
}

/// A signing secret, sealed. `expires_ms` is set on a secret replaced by rotation: it
/// keeps signing beside its successor until then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningSecretRecord {
    pub sealed: Vec<u8>,
    pub expires_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRecord {
    pub name: String,
    pub sealed_value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub entity: String,
    pub status: SubscriptionStatus,
    pub disabled_reason: Option<String>,
    pub event_types: Vec<String>,
    pub endpoint_url: String,
    pub endpoint_auth: EndpointAuthRecord,
    pub custom_headers: Vec<HeaderRecord>,
    pub rate_limit: Option<u32>,
    pub description: Option<String>,
    /// Newest first; older entries carry an expiry.
    pub signing_secrets: Vec<SigningSecretRecord>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Creation or the latest re-activation: where `delivery.disable_after` counts from
    /// when there has been no success since.
    pub active_since_ms: u64,
    /// The scopes its creator held (`*` for all): an event reaches it only when the
    /// event type's scope is among them.
    pub scopes: Vec<String>,
}

impl Record for SubscriptionRecord {
    const KIND: &'static str = "subscription";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Waiting for its first attempt.
    Pending,
    /// At least one attempt failed; another is scheduled.
    Retrying,
    Succeeded,
    /// Ended without success: out of retries, 410, or expired.
    Failed,
    /// Its subscription was deleted before it ended.
    Cancelled,
}

impl DeliveryState {
    /// Its code in the `subscription_states_v1` index: stable across releases.
    pub fn code(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Retrying => 1,
            Self::Succeeded => 2,
            Self::Failed => 3,
            Self::Cancelled => 4,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Retrying => "RETRYING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub event: u128,
    pub subscription: u128,
    pub state: DeliveryState,
    pub attempts: u32,
    /// The key of this delivery's entry in `due`, while it has one.
    pub next_attempt_ms: Option<u64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// Also where `delivery.max_age` counts from (a replay creates a new delivery).
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Waiting for its subscription to be ACTIVE again: `next_attempt_ms` is then the
    /// time it expires, not an attempt.
    pub parked: bool,
    /// A manual retry of a delivery that had ended: the attempt ends it again, with no
    /// new schedule.
    pub retry_once: bool,
}

impl Record for DeliveryRecord {
    const KIND: &'static str = "delivery";
    const VERSION: u8 = 1;
}

/// The leading fields of a `DeliveryRecord`, read without decoding the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryHead {
    pub event: u128,
    pub subscription: u128,
    pub state: DeliveryState,
}

impl Record for DeliveryHead {
    const KIND: &'static str = "delivery";
    const VERSION: u8 = DeliveryRecord::VERSION;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempted_ms: u64,
    pub url: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u32,
    /// At most the first 4 KiB of the response body.
    pub response_body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
}

impl Record for AttemptRecord {
    const KIND: &'static str = "attempt";
    const VERSION: u8 = 1;
}

/// The headers an attempt's request carried, secrets masked (`attempt_requests_v1`,
/// beside the attempt: attempts stored before it have none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRequest {
    pub headers: Vec<(String, String)>,
}

impl Record for AttemptRequest {
    const KIND: &'static str = "attempt request";
    const VERSION: u8 = 1;
}

/// What an `Idempotency-Key` answered the first time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub body_sha256: [u8; 32],
    pub created_ms: u64,
    pub event: u128,
    pub deliveries: u32,
}

impl Record for IdempotencyRecord {
    const KIND: &'static str = "idempotency";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRecord {
    pub name: String,
    pub parent: Option<String>,
    pub created_ms: u64,
}

impl Record for EntityRecord {
    const KIND: &'static str = "entity";
    const VERSION: u8 = 1;
}
