//! Console sessions and portal links with redb: two bounded maps in this process's
//! memory, keyed by the token's SHA-256, behind the same `Store` methods as
//! PostgreSQL's tables.
//!
//! Not redb tables, on purpose: a redb store has one node, so there is nothing to share;
//! every console request reads its session and every page after a form takes its
//! notice, and in redb each write is a group commit with its fsync, which a session
//! does not need to outlive a restart. A restart signs everyone out and forgets the
//! links not yet opened, as hookd always did: a sign-in or a new link is the cure.
//!
//! Bounds as in `store::sessions`: at most `limit` entries; when full, the expired go
//! first, then the one ending soonest. An expired entry is never served, and is dropped
//! when it is met or when the map is full.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::RedbStore;
use crate::store::StoreError;
use crate::store::sessions::{LinkRecord, MAX_LIFE, SessionRecord, TokenHash};

struct Entry<V> {
    value: V,
    expires: Instant,
}

/// A map of entries that end, holding at most the `limit` each insert names.
struct Bounded<V> {
    map: Mutex<HashMap<TokenHash, Entry<V>>>,
}

impl<V> Default for Bounded<V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> Bounded<V> {
    fn insert(&self, key: TokenHash, value: V, life: Duration, limit: usize) {
        let now = Instant::now();
        // Within MAX_LIFE the addition cannot overflow; were it to, the entry would
        // simply end now.
        let expires = now.checked_add(life.min(MAX_LIFE)).unwrap_or(now);
        let mut map = self.lock();
        if map.len() >= limit {
            map.retain(|_, e| e.expires > now);
        }
        if map.len() >= limit
            && let Some(soonest) = map.iter().min_by_key(|(_, e)| e.expires).map(|(k, _)| *k)
        {
            map.remove(&soonest);
        }
        map.insert(key, Entry { value, expires });
    }

    /// A live entry's value and what is left of its life; an expired one is dropped.
    fn get(&self, key: &TokenHash) -> Option<(V, Duration)> {
        let mut map = self.lock();
        let entry = map.get(key)?;
        match left(entry) {
            Some(left) => Some((entry.value.clone(), left)),
            None => {
                map.remove(key);
                None
            }
        }
    }

    /// Takes an entry out; None if absent or expired (dropped either way).
    fn take(&self, key: &TokenHash) -> Option<(V, Duration)> {
        let entry = self.lock().remove(key)?;
        let left = left(&entry)?;
        Some((entry.value, left))
    }

    /// Applies `f` to a live entry's value.
    fn update<R>(&self, key: &TokenHash, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let mut map = self.lock();
        let entry = map.get_mut(key)?;
        (entry.expires > Instant::now()).then(|| f(&mut entry.value))
    }

    fn remove(&self, key: &TokenHash) {
        self.lock().remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TokenHash, Entry<V>>> {
        // Each operation leaves the map consistent at every step (one insert or remove
        // at a time), so a map poisoned by a panic elsewhere is used as it is.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What is left of a live entry's life; None once it has ended.
fn left<V>(entry: &Entry<V>) -> Option<Duration> {
    let now = Instant::now();
    (entry.expires > now).then(|| entry.expires.duration_since(now))
}

/// The sessions and links of one redb store (shared by its clones).
#[derive(Default)]
pub(super) struct Memory {
    sessions: Bounded<SessionRecord>,
    links: Bounded<LinkRecord>,
}

/// The `Store` methods of `store::sessions`, as the redb backend runs them: no disk, no
/// writer, no blocking beyond a short lock.
impl RedbStore {
    pub async fn open_session(
        &self,
        token: TokenHash,
        record: SessionRecord,
        limit: usize,
    ) -> Result<(), StoreError> {
        let life = record.expires_in;
        self.memory.sessions.insert(token, record, life, limit);
        Ok(())
    }

    pub async fn session(&self, token: TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .memory
            .sessions
            .get(&token)
            .map(|(record, left)| SessionRecord {
                expires_in: left,
                ..record
            }))
    }

    pub async fn close_session(&self, token: TokenHash) -> Result<(), StoreError> {
        self.memory.sessions.remove(&token);
        Ok(())
    }

    pub async fn set_notice(&self, token: TokenHash, notice: String) -> Result<(), StoreError> {
        self.memory
            .sessions
            .update(&token, |record| record.notice = Some(notice));
        Ok(())
    }

    pub async fn take_notice(&self, token: TokenHash) -> Result<Option<String>, StoreError> {
        Ok(self
            .memory
            .sessions
            .update(&token, |record| record.notice.take())
            .flatten())
    }

    pub async fn create_link(
        &self,
        token: TokenHash,
        record: LinkRecord,
        limit: usize,
    ) -> Result<(), StoreError> {
        let life = record.expires_in;
        self.memory.links.insert(token, record, life, limit);
        Ok(())
    }

    pub async fn redeem_link(&self, token: TokenHash) -> Result<Option<LinkRecord>, StoreError> {
        Ok(self
            .memory
            .links
            .take(&token)
            .map(|(record, left)| LinkRecord {
                expires_in: left,
                ..record
            }))
    }

    pub async fn link_waiting(&self, token: TokenHash) -> Result<bool, StoreError> {
        Ok(self.memory.links.get(&token).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sessions::PortalScope;

    fn key(n: usize) -> TokenHash {
        TokenHash::of(&n.to_string())
    }

    fn session() -> SessionRecord {
        SessionRecord {
            key_sha256: None,
            portal: None,
            csrf: "c".into(),
            notice: None,
            expires_in: Duration::from_secs(60),
        }
    }

    #[test]
    fn entries_are_bounded_and_the_soonest_ending_go_first() {
        let map = Bounded::default();
        let life = Duration::from_secs(60);
        for n in 0..5 {
            map.insert(key(n), n, life + Duration::from_millis(n as u64), 3);
        }
        assert_eq!(map.len(), 3);
        assert!(map.get(&key(0)).is_none() && map.get(&key(1)).is_none());
        let (value, left) = map.get(&key(4)).unwrap();
        assert_eq!(value, 4);
        assert!(left > Duration::from_secs(59) && left <= life + Duration::from_millis(4));

        // An expired entry is never served, and is dropped when met.
        map.insert(key(9), 9, Duration::ZERO, 3);
        assert_eq!(map.len(), 3);
        assert!(map.get(&key(9)).is_none());
        assert_eq!(map.len(), 2);
        map.insert(key(8), 8, Duration::ZERO, 3);
        assert!(map.take(&key(8)).is_none());
        assert!(map.update(&key(8), |v| *v).is_none());
    }

    #[test]
    fn a_full_map_drops_the_expired_before_any_live_entry() {
        let map = Bounded::default();
        map.insert(key(0), 0, Duration::ZERO, 2);
        map.insert(key(1), 1, Duration::from_secs(60), 2);
        map.insert(key(2), 2, Duration::from_secs(30), 2);
        assert!(map.get(&key(1)).is_some() && map.get(&key(2)).is_some());
    }

    #[tokio::test]
    async fn notices_are_taken_once_and_links_open_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _writer) = super::super::tests::open(&dir.path().join("s.redb"));
        let token = TokenHash::of("cookie");
        store.open_session(token, session(), 10).await.unwrap();
        store.set_notice(token, "done".into()).await.unwrap();
        let read = store.session(token).await.unwrap().unwrap();
        assert_eq!(read.notice.as_deref(), Some("done"));
        assert_eq!(
            store.take_notice(token).await.unwrap().as_deref(),
            Some("done")
        );
        assert_eq!(store.take_notice(token).await.unwrap(), None);
        store.close_session(token).await.unwrap();
        assert!(store.session(token).await.unwrap().is_none());
        store.set_notice(token, "late".into()).await.unwrap();
        assert!(store.session(token).await.unwrap().is_none());

        let link = LinkRecord {
            key_sha256: Some([7; 32]),
            scope: PortalScope {
                entity: "root".into(),
                permissions: vec!["read".into()],
            },
            expires_in: Duration::from_secs(60),
        };
        let token = TokenHash::of("link");
        store.create_link(token, link.clone(), 10).await.unwrap();
        assert!(store.link_waiting(token).await.unwrap());
        let redeemed = store.redeem_link(token).await.unwrap().unwrap();
        assert_eq!(redeemed.scope, link.scope);
        assert_eq!(redeemed.key_sha256, link.key_sha256);
        assert!(store.redeem_link(token).await.unwrap().is_none());
        assert!(!store.link_waiting(token).await.unwrap());
        let short = LinkRecord {
            expires_in: Duration::ZERO,
            ..link
        };
        store.create_link(token, short, 10).await.unwrap();
        assert!(!store.link_waiting(token).await.unwrap());
        assert!(store.redeem_link(token).await.unwrap().is_none());
    }
}
