//! Who is calling. A bearer token is the admin token (the root entity, every scope), an
//! API key (`hk_…`, looked up by its SHA-256 in the in-memory key index, so revocation
//! takes effect on the next request), or a JWT from the configured issuer. The caller
//! carries the snapshot it was authenticated against, so every visibility check in one
//! request sees the same entity tree.

use std::sync::Arc;

use http::header;
use ring::digest::{SHA256, digest};
use ring::hmac;

use super::{ApiError, AppState, Request};
use crate::ids::EntityId;
use crate::secret::Secret;
use crate::store::{ALL_SCOPES, SubscriptionIndex};

pub const EVENTS_WRITE: &str = "events:write";
pub const SUBSCRIPTIONS_READ: &str = "subscriptions:read";
pub const SUBSCRIPTIONS_WRITE: &str = "subscriptions:write";
pub const PORTAL_WRITE: &str = "portal:write";

/// The admin token, kept only as an HMAC tag under a per-process random key, so a
/// presented token is compared in constant time (`hmac::verify`) and the clear token
/// is not held in memory after start.
pub struct AdminToken {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl AdminToken {
    pub fn new(
        rng: &ring::rand::SystemRandom,
        token: &Secret,
    ) -> Result<Self, ring::error::Unspecified> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, rng)?;
        let tag = hmac::sign(&key, token.expose().as_bytes());
        Ok(Self { key, tag })
    }

    fn matches(&self, presented: &str) -> bool {
        hmac::verify(&self.key, presented.as_bytes(), self.tag.as_ref()).is_ok()
    }
}

/// The entity a request acts for, what it may do, and the tree it is checked against.
#[derive(Clone)]
pub struct Caller {
    pub entity: EntityId,
    /// `None`: every scope (the admin token).
    scopes: Option<Vec<String>>,
    view: Arc<SubscriptionIndex>,
    /// The permissions of a customer-portal session (`None`: not a portal session).
    portal: Option<Vec<String>>,
}

impl Caller {
    /// This caller narrowed to a portal session: `entity` (the caller's or below it),
    /// the scopes `scopes` keeps of the caller's, and the portal `permissions`.
    pub fn for_portal(
        &self,
        entity: EntityId,
        scopes: impl Fn(&str) -> bool,
        all_scopes: &[String],
        permissions: Vec<String>,
    ) -> Caller {
        let held: Vec<String> = all_scopes
            .iter()
            .filter(|s| self.has(s) && scopes(s))
            .cloned()
            .collect();
        Caller {
            entity,
            scopes: Some(held),
            view: self.view.clone(),
            portal: Some(permissions),
        }
    }

    /// Whether a portal session holds `permission`.
    pub fn may(&self, permission: &str) -> bool {
        self.portal
            .as_ref()
            .is_some_and(|p| p.iter().any(|x| x == permission))
    }

    pub fn is_portal(&self) -> bool {
        self.portal.is_some()
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.is_none()
    }

    /// Whether `entity` is the caller's or below it (it must exist).
    pub fn sees(&self, entity: &str) -> bool {
        self.view.entities.within(entity, self.entity.as_str())
    }

    pub fn has(&self, scope: &str) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == scope))
    }

    /// Whether the caller sees a delivery (and its attempts) to this subscription: only
    /// when it sees the subscription's entity, whoever posted the event (API.md). The
    /// admin token also sees the deliveries of deleted subscriptions.
    pub fn sees_subscription(&self, subscription: u128) -> bool {
        self.is_admin()
            || self
                .view
                .get(subscription)
                .is_some_and(|s| self.sees(&s.entity))
    }

    /// Whether the caller may read (and subscribe to) events of this type.
    pub fn reads_type(&self, event_type: &str) -> bool {
        self.view
            .scope_of(event_type)
            .is_none_or(|scope| self.has(scope))
    }

    /// The scopes stored with a subscription it creates.
    pub fn stored_scopes(&self) -> Vec<String> {
        self.scopes
            .clone()
            .unwrap_or_else(|| vec![ALL_SCOPES.to_owned()])
    }

    pub fn view(&self) -> &SubscriptionIndex {
        &self.view
    }
}

pub fn authenticate(state: &AppState, request: &Request) -> Result<Caller, ApiError> {
    let missing = ApiError::Unauthorized("send Authorization: Bearer <token>".into());
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(missing)?;
    let view = state.store.subscriptions();
    if let Some(credential) = lasting_credential(state, token) {
        return caller_of(state, &credential);
    }
    if token.starts_with("hk_") {
        return Err(ApiError::Unauthorized(
            "the API key is not valid or was revoked".into(),
        ));
    }
    if token.matches('.').count() == 2 {
        let Some(verifier) = &state.jwt else {
            return Err(ApiError::Unauthorized(
                "JWTs are not accepted: [auth.jwt] is not configured".into(),
            ));
        };
        let now = crate::store::now_ms() as i64 / 1000;
        let claims = verifier
            .verify(token, now)
            .map_err(|why| ApiError::Unauthorized(why.into()))?;
        let entity = EntityId::parse(&claims.entity)
            .filter(|e| view.entities.exists(e.as_str()))
            .ok_or_else(|| ApiError::Unauthorized("the token's entity does not exist".into()))?;
        return Ok(Caller {
            entity,
            scopes: Some(claims.scopes),
            view,
            portal: None,
        });
    }
    Err(ApiError::Unauthorized("the token is not valid".into()))
}

/// A credential a console session is bound to: checked again on every request, so a
/// revoked key ends the sessions it opened. Never the clear token.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Admin,
    /// The SHA-256 of an API key, as the key index holds it.
    Key([u8; 32]),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Admin => "Credential::Admin",
            Self::Key(_) => "Credential::Key(..)",
        })
    }
}

/// The credential of a request's bearer token, when it is one a session may keep.
pub fn bearer_credential(state: &AppState, request: &Request) -> Option<Credential> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    lasting_credential(state, token)
}

/// The admin token or a current API key (a JWT is neither: it expires on its own
/// terms, so it opens no session).
pub fn lasting_credential(state: &AppState, token: &str) -> Option<Credential> {
    if token.starts_with("hk_") {
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        return state
            .store
            .subscriptions()
            .keys
            .find(&hash)
            .map(|_| Credential::Key(hash));
    }
    state.admin.matches(token).then_some(Credential::Admin)
}

/// The caller a credential acts as now: 401 once its key is revoked.
pub fn caller_of(state: &AppState, credential: &Credential) -> Result<Caller, ApiError> {
    let view = state.store.subscriptions();
    let revoked = || ApiError::Unauthorized("the API key is not valid or was revoked".into());
    match credential {
        Credential::Admin => Ok(Caller {
            entity: EntityId::root(),
            scopes: None,
            view,
            portal: None,
        }),
        Credential::Key(hash) => {
            let key = view.keys.find(hash).ok_or_else(revoked)?;
            let entity = EntityId::parse(&key.record.entity).ok_or_else(revoked)?;
            let scopes = Some(key.record.scopes.clone());
            Ok(Caller {
                entity,
                scopes,
                view,
                portal: None,
            })
        }
    }
}
