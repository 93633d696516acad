//! Console sessions: in memory, bounded in number, each bound to the credential that
//! opened it (checked again on every request, so a revoked key ends its sessions) and
//! holding its CSRF token. The cookie carries a random token; the map is keyed by its
//! SHA-256, so the table itself holds nothing a cookie could be made from.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

use crate::api::{Credential, Grant};

/// Most sessions held at once. When full, signing in drops the session that would end
/// soonest: an attacker signing in over and over (with a valid credential) can only
/// push out sessions, never grow memory (about 200 bytes each).
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
    pub expires: Instant,
    /// A message for the next page (one time): what the last form did.
    pub notice: Option<String>,
}

pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    ttl: Duration,
    limit: usize,
    rng: SystemRandom,
}

#[derive(Debug, thiserror::Error)]
#[error("the system random generator failed")]
pub struct RandomError;

impl Sessions {
    pub fn new(ttl: Duration, limit: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
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
    pub fn open(&self, credential: Credential) -> Result<(String, Session), RandomError> {
        self.open_until(credential, None, Instant::now() + self.ttl)
    }

    /// Opens a session (a portal one with `portal`) that ends at `expires`.
    pub fn open_until(
        &self,
        credential: Credential,
        portal: Option<Grant>,
        expires: Instant,
    ) -> Result<(String, Session), RandomError> {
        let cookie = self.token()?;
        let session = Session {
            credential,
            portal,
            csrf: self.token()?,
            expires,
            notice: None,
        };
        let mut map = self.lock();
        if map.len() >= self.limit {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= self.limit {
            let soonest = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k);
            if let Some(key) = soonest {
                map.remove(&key);
            }
        }
        map.insert(key_of(&cookie), session.clone());
        Ok((cookie, session))
    }

    /// The live session a cookie names; an expired one is dropped. Takes its notice.
    pub fn get(&self, cookie: &str) -> Option<Session> {
        let key = key_of(cookie);
        let mut map = self.lock();
        let session = map.get_mut(&key)?;
        if session.expires <= Instant::now() {
            map.remove(&key);
            return None;
        }
        let found = session.clone();
        session.notice = None;
        Some(found)
    }

    pub fn close(&self, cookie: &str) {
        self.lock().remove(&key_of(cookie));
    }

    /// Leaves a message for the session's next page.
    pub fn notify(&self, cookie: &str, notice: String) {
        if let Some(session) = self.lock().get_mut(&key_of(cookie)) {
            session.notice = Some(notice);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding the lock leaves a map that is still consistent (each
        // operation is one insert or remove), so a poisoned lock is used as is.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn key_of(cookie: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(digest(&SHA256, cookie.as_bytes()).as_ref());
    key
}

/// Compares a presented token with the expected one in constant time.
pub fn same_token(presented: &str, expected: &str) -> bool {
    let (a, b) = (key_of(presented), key_of(expected));
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
    fn sessions_are_bounded_and_expire() {
        let sessions = Sessions::new(Duration::from_secs(60), 3);
        let cookies: Vec<String> = (0..5)
            .map(|_| sessions.open(Credential::Admin).unwrap().0)
            .collect();
        assert_eq!(sessions.len(), 3);
        // The newest three remain.
        assert!(sessions.get(&cookies[4]).is_some());
        assert!(sessions.get(&cookies[0]).is_none());

        let short = Sessions::new(Duration::ZERO, 3);
        let (cookie, _) = short.open(Credential::Admin).unwrap();
        assert!(short.get(&cookie).is_none());
        assert!(short.is_empty());
    }

    #[test]
    fn notices_are_shown_once_and_tokens_compare() {
        let sessions = Sessions::new(Duration::from_secs(60), 3);
        let (cookie, session) = sessions.open(Credential::Admin).unwrap();
        sessions.notify(&cookie, "done".into());
        assert_eq!(
            sessions.get(&cookie).unwrap().notice.as_deref(),
            Some("done")
        );
        assert_eq!(sessions.get(&cookie).unwrap().notice, None);
        assert!(same_token(&session.csrf, &session.csrf));
        assert!(!same_token("", &session.csrf));
        sessions.close(&cookie);
        assert!(sessions.get(&cookie).is_none());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let header = "a=1; hookd_console=abc; b=2";
        assert_eq!(cookie(header, COOKIE), Some("abc"));
        assert_eq!(cookie(header, "c"), None);
    }
}
