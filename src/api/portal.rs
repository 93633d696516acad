//! `POST /v1/portal/sessions`: a one-time link into the customer portal for one entity
//! with a set of permissions. Links live in memory (bounded; a restart forgets them,
//! which only costs the customer a new link) keyed by the SHA-256 of their token; the
//! console's portal takes one out when it is opened, so a second use finds nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::StatusCode;
use ring::digest::{SHA256, digest};
use ring::rand::SecureRandom;
use serde_json::json;

use super::auth::Credential;
use super::validate::Fields;
use super::{ApiError, ApiResponse, AppState, Caller, Request, data};
use crate::ids::EntityId;

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

#[derive(Default)]
pub struct Links {
    map: Mutex<HashMap<[u8; 32], Grant>>,
}

impl Links {
    fn insert(&self, token: &str, grant: Grant) {
        let mut map = self.lock();
        let now = Instant::now();
        if map.len() >= MAX_LINKS {
            map.retain(|_, g| g.expires > now);
        }
        if map.len() >= MAX_LINKS
            && let Some(key) = map.iter().min_by_key(|(_, g)| g.expires).map(|(k, _)| *k)
        {
            map.remove(&key);
        }
        map.insert(hash(token), grant);
    }

    /// Takes the grant of a link out (a second call finds nothing); `None` when the
    /// token names no link or it expired.
    pub fn redeem(&self, token: &str) -> Option<Grant> {
        self.lock()
            .remove(&hash(token))
            .filter(|g| g.expires > Instant::now())
    }

    /// Whether the link is still waiting to be opened (nothing is taken).
    pub fn waiting(&self, token: &str) -> bool {
        self.lock()
            .get(&hash(token))
            .is_some_and(|g| g.expires > Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Grant>> {
        // Each operation is one insert or remove: a poisoned map is still consistent.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn hash(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
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
    state.portal.insert(
        &token,
        Grant {
            credential,
            entity: entity.clone(),
            permissions,
            expires: Instant::now() + expires_in,
        },
    );
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

    fn grant(expires: Instant) -> Grant {
        Grant {
            credential: Credential::Admin,
            entity: EntityId::root(),
            permissions: vec!["read".into()],
            expires,
        }
    }

    #[test]
    fn a_link_opens_once_and_not_after_it_expires() {
        let links = Links::default();
        links.insert("a", grant(Instant::now() + Duration::from_secs(60)));
        assert!(links.waiting("a"));
        assert!(links.redeem("a").is_some());
        assert!(links.redeem("a").is_none());
        assert!(!links.waiting("a"));
        links.insert("b", grant(Instant::now()));
        assert!(!links.waiting("b"));
        assert!(links.redeem("b").is_none());
    }

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

    #[test]
    fn links_are_bounded() {
        let links = Links::default();
        let now = Instant::now() + Duration::from_secs(60);
        for i in 0..MAX_LINKS + 5 {
            links.insert(&i.to_string(), grant(now + Duration::from_millis(i as u64)));
        }
        assert_eq!(links.lock().len(), MAX_LINKS);
        assert!(!links.waiting("0"), "the one ending soonest went first");
        assert!(links.waiting(&(MAX_LINKS + 4).to_string()));
    }
}
