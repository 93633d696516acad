//! `POST /v1/portal/sessions`: a one-time link into the customer portal for one entity
//! with a set of permissions. Links are kept by the store (`store::sessions`: bounded,
//! keyed by the SHA-256 of their token, shared by every node of a cluster); the
//! console's portal takes one out when it is opened, so a second use, on any node,
//! finds nothing.

use std::time::{Duration, Instant};

use http::StatusCode;
use ring::rand::SecureRandom;
use serde_json::json;

use super::auth::Credential;
use super::validate::Fields;
use super::{ApiError, ApiResponse, AppState, Caller, Request, data};
use crate::ids::EntityId;
use crate::store::sessions::{LinkRecord, PortalScope, TokenHash};
use crate::store::{Store, StoreError};

/// What a link may grant (API.md): list, manage subscriptions, reveal and rotate
/// secrets, retry (and replay and test).
pub const PERMISSIONS: [&str; 4] = ["read", "manage", "secrets", "retry"];
/// Links waiting to be opened at once; beyond it the one expiring soonest is dropped.
pub const MAX_LINKS: usize = 10_000;
/// A link's life when `expiresIn` is not given.
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);
/// API.md: `expiresIn` is at most 7 days.
const MAX_EXPIRES_IN: Duration = Duration::from_secs(7 * 24 * 3600);

/// What an opened link grants: the session it starts lives until `expires`.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The credential that made the link: revoking it ends the portal session too.
    pub credential: Credential,
    pub entity: EntityId,
    pub permissions: Vec<String>,
    pub expires: Instant,
}

/// The portal links, in the store. No cache here: a link redeemed on another node must
/// not be seen as waiting.
pub struct Links {
    store: Store,
}

impl Links {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    async fn insert(
        &self,
        token: &str,
        credential: Credential,
        scope: PortalScope,
        life: Duration,
    ) -> Result<(), StoreError> {
        let record = LinkRecord {
            key_sha256: match credential {
                Credential::Admin => None,
                Credential::Key(hash) => Some(hash),
            },
            scope,
            expires_in: life,
        };
        self.store
            .create_link(TokenHash::of(token), record, MAX_LINKS)
            .await
    }

    /// Takes the grant of a link out (a second call, on any node, finds nothing);
    /// `None` when the token names no link or it expired.
    pub async fn redeem(&self, token: &str) -> Result<Option<Grant>, StoreError> {
        let Some(link) = self.store.redeem_link(TokenHash::of(token)).await? else {
            return Ok(None);
        };
        // No link of this build names anything but an entity id.
        let Some(entity) = EntityId::parse(&link.scope.entity) else {
            return Ok(None);
        };
        let now = Instant::now();
        Ok(Some(Grant {
            credential: match link.key_sha256 {
                None => Credential::Admin,
                Some(hash) => Credential::Key(hash),
            },
            entity,
            permissions: link.scope.permissions,
            // Within the 7 days a link lives at most: no overflow.
            expires: now.checked_add(link.expires_in).unwrap_or(now),
        }))
    }

    /// Whether the link is still waiting to be opened (nothing is taken).
    pub async fn waiting(&self, token: &str) -> Result<bool, StoreError> {
        self.store.link_waiting(TokenHash::of(token)).await
    }
}

pub async fn create(
    state: &AppState,
    caller: &Caller,
    credential: Option<Credential>,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    let value = super::subscriptions::read_object(state, request).await?;
    let fields = Fields::new(&value, "")?;
    fields.only(&["entityId", "permissions", "expiresIn"])?;
    let raw = fields.required_str("entityId")?;
    let entity = EntityId::parse(raw)
        .filter(|e| caller.view().entities.exists(e.as_str()) && caller.sees(e.as_str()))
        .ok_or(ApiError::NotFound("entity"))?;
    let permissions = fields
        .string_list("permissions")?
        .ok_or_else(|| ApiError::invalid("permissions", "is required (for example [\"read\"])"))?;
    if permissions.is_empty() {
        return Err(ApiError::invalid("permissions", "must name at least one"));
    }
    for (i, permission) in permissions.iter().enumerate() {
        if !PERMISSIONS.contains(permission) {
            return Err(ApiError::invalid(
                format!("permissions[{i}]"),
                "is not read, manage, secrets or retry",
            ));
        }
    }
    let mut permissions: Vec<String> = permissions.iter().map(|p| (*p).to_owned()).collect();
    permissions.sort_unstable();
    permissions.dedup();
    // `null` is no duration (422), as the schema says; absent is the default.
    let expires_in = match fields.get("expiresIn") {
        None if !fields.has("expiresIn") => DEFAULT_EXPIRES_IN,
        None => {
            return Err(ApiError::invalid(
                "expiresIn",
                "must be a string such as \"1h\"",
            ));
        }
        Some(value) => value.as_str().and_then(expires_in).ok_or_else(|| {
            ApiError::invalid(
                "expiresIn",
                "must be a whole number and one unit (s, m, h or d) from 1s to 7d, such as \"1h\"",
            )
        })?,
    };
    // A JWT opens no link: it expires on its own terms and cannot be revoked here.
    let credential = credential.ok_or_else(|| {
        ApiError::Forbidden("portal links are made with an API key or the admin token".into())
    })?;
    let mut random = [0u8; 32];
    state
        .rng
        .fill(&mut random)
        .map_err(|_| ApiError::internal(crate::secret::SealError::Random))?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let scope = PortalScope {
        entity: entity.as_str().to_owned(),
        permissions,
    };
    state
        .portal
        .insert(&token, credential, scope, expires_in)
        .await?;
    let expires_at = crate::store::now_ms() + expires_in.as_millis() as u64;
    let url = format!("{}/portal/open/{token}", public_base(state));
    tracing::info!(entity = %entity, "portal link created");
    Ok(data(
        StatusCode::CREATED,
        json!({"url": url, "expiresAt": super::timestamp(expires_at)}),
    ))
}

/// `expiresIn`: digits and one unit (`90s`, `30m`, `1h`, `7d`), from 1 s to 7 days;
/// openapi.json states the same as a pattern.
fn expires_in(text: &str) -> Option<Duration> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    Some(Duration::from_secs(seconds)).filter(|d| *d <= MAX_EXPIRES_IN)
}

/// `console.public_url`, or `https://<server.listen>` (a wildcard address as
/// localhost).
fn public_base(state: &AppState) -> String {
    if let Some(url) = &state.config.console.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let listen = state.config.server.listen;
    let scheme = if state.config.server.plaintext {
        "http"
    } else {
        "https"
    };
    if listen.ip().is_unspecified() {
        format!("{scheme}://localhost:{}", listen.port())
    } else {
        format!("{scheme}://{listen}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_one_unit_up_to_seven_days() {
        assert_eq!(expires_in("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(expires_in("7d"), Some(MAX_EXPIRES_IN));
        assert_eq!(expires_in("604800s"), Some(MAX_EXPIRES_IN));
        for bad in [
            "8d", "604801s", "169h", "0h", "01h", "h", "1", "1h30m", "1.5h", "-1h", "1H",
        ] {
            assert_eq!(expires_in(bad), None, "{bad}");
        }
        // The pattern in openapi.json accepts exactly these.
        let doc: serde_json::Value = serde_json::from_str(crate::api::OPENAPI_JSON).unwrap();
        let pattern = doc["components"]["schemas"]["PortalSessionInput"]["properties"]["expiresIn"]
            ["pattern"]
            .as_str()
            .unwrap();
        assert!(
            pattern.starts_with('^') && pattern.ends_with('$'),
            "{pattern}"
        );
    }
}
