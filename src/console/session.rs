//! Console sessions: kept by the store (`store::sessions`), so that any node of a
//! cluster serves a session and signing out on one ends it on all; bounded in number,
//! each bound to the credential that opened it (checked again on every request, so a
//! revoked key ends its sessions) and holding its CSRF token. The cookie carries a
//! random token; the store is given only its SHA-256, so it holds nothing a cookie
//! could be made from. No cache here: a closed session must never be served.

use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::api::{ApiError, Credential, Grant};
use crate::ids::EntityId;
use crate::store::sessions::{MAX_LIFE, PortalScope, SessionRecord, TokenHash};
use crate::store::{Store, StoreError};

/// Most sessions held at once. When full, signing in drops the session that would end
/// soonest: an attacker signing in over and over (with a valid credential) can only
/// push out sessions, never grow the store (about 200 bytes each).
pub const MAX_SESSIONS: usize = 10_000;

/// The cookie that names a session.
pub const COOKIE: &str = "hookd_console";
/// The cookie that carries the sign-in form's CSRF token before any session exists.
pub const SIGN_IN_COOKIE: &str = "hookd_sign_in";
/// The cookie that names a customer-portal session (`Path=/portal`).
pub const PORTAL_COOKIE: &str = "hookd_portal";
/// The cookie that carries the portal link page's CSRF token.
pub const OPEN_COOKIE: &str = "hookd_open";

#[derive(Debug, Clone)]
pub struct Session {
    pub credential: Credential,
    /// A customer-portal session: its entity and permissions (`None`: the console).
    pub portal: Option<Grant>,
    pub csrf: String,
    /// A message for the next page (one time): what the last form did.
    pub notice: Option<String>,
}

pub struct Sessions {
    store: Store,
    ttl: Duration,
    limit: usize,
    rng: SystemRandom,
}

#[derive(Debug, thiserror::Error)]
#[error("the system random generator failed")]
pub struct RandomError;

impl Sessions {
    pub fn new(store: Store, ttl: Duration, limit: usize) -> Self {
        Self {
            store,
            ttl,
            limit,
            rng: SystemRandom::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// 32 random bytes as hex: a session cookie or a CSRF token.
    pub fn token(&self) -> Result<String, RandomError> {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).map_err(|_| RandomError)?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Opens a console session for `credential`: (cookie value, session).
    pub async fn open(&self, credential: Credential) -> Result<(String, Session), ApiError> {
        self.open_for(credential, None, self.ttl).await
    }

    /// Opens a session (a portal one with `portal`) that ends after `life`.
    pub async fn open_for(
        &self,
        credential: Credential,
        portal: Option<Grant>,
        life: Duration,
    ) -> Result<(String, Session), ApiError> {
        let cookie = self.token().map_err(ApiError::internal)?;
        let csrf = self.token().map_err(ApiError::internal)?;
        let record = SessionRecord {
            key_sha256: match &credential {
                Credential::Admin => None,
                Credential::Key(hash) => Some(*hash),
            },
            portal: portal.as_ref().map(|grant| PortalScope {
                entity: grant.entity.as_str().to_owned(),
                permissions: grant.permissions.clone(),
            }),
            csrf: csrf.clone(),
            notice: None,
            expires_in: life,
        };
        self.store
            .open_session(TokenHash::of(&cookie), record, self.limit)
            .await?;
        let session = Session {
            credential,
            portal,
            csrf,
            notice: None,
        };
        Ok((cookie, session))
    }

    /// The live session a cookie names, with its notice (taken: shown once).
    pub async fn get(&self, cookie: &str) -> Result<Option<Session>, StoreError> {
        let token = TokenHash::of(cookie);
        let Some(mut record) = self.store.session(token).await? else {
            return Ok(None);
        };
        // Most requests have no notice waiting, and then cost one read.
        if record.notice.is_some() {
            record.notice = self.store.take_notice(token).await?;
        }
        Ok(session_of(record))
    }

    pub async fn close(&self, cookie: &str) -> Result<(), StoreError> {
        self.store.close_session(TokenHash::of(cookie)).await
    }

    /// Leaves a message for the session's next page. A store that fails here costs only
    /// the message (what the form did has been done), so the failure is logged.
    pub async fn notify(&self, cookie: &str, notice: String) {
        if let Err(error) = self.store.set_notice(TokenHash::of(cookie), notice).await {
            tracing::warn!(%error, "a console notice was not kept");
        }
    }
}

/// A session as the console holds it; None if its portal entity is not an entity id
/// (no session of this build stores one).
fn session_of(record: SessionRecord) -> Option<Session> {
    let credential = match record.key_sha256 {
        None => Credential::Admin,
        Some(hash) => Credential::Key(hash),
    };
    let portal = match record.portal {
        None => None,
        Some(scope) => Some(Grant {
            credential: credential.clone(),
            entity: EntityId::parse(&scope.entity)?,
            permissions: scope.permissions,
            expires: later(record.expires_in),
        }),
    };
    Some(Session {
        credential,
        portal,
        csrf: record.csrf,
        notice: record.notice,
    })
}

/// `life` from now, as the store bounds it (`MAX_LIFE`, far below where the addition
/// could overflow).
fn later(life: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(life.min(MAX_LIFE)).unwrap_or(now)
}

/// Compares a presented token with the expected one in constant time.
pub fn same_token(presented: &str, expected: &str) -> bool {
    let (a, b) = (TokenHash::of(presented).0, TokenHash::of(expected).0);
    // Equal-length digests: the comparison's time does not depend on the tokens.
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_value() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("", "abc"));
        assert!(!same_token("abd", "abc"));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let header = "a=1; hookd_console=abc; b=2";
        assert_eq!(cookie(header, COOKIE), Some("abc"));
        assert_eq!(cookie(header, "c"), None);
    }
}
