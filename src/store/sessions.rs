//! Console sessions and portal links, as every backend keeps them: a session is valid on
//! whichever node reads it, closing it ends it everywhere, and a link is redeemed at
//! most once however many nodes try at the same moment.
//!
//! The store sees only the SHA-256 of a token (`TokenHash`), never the token, and the
//! SHA-256 of the API key behind it (`None` for the admin token). Times travel as
//! durations from now (`expires_in`): PostgreSQL sets and compares expiry with the
//! database's own clock, so nodes' clocks never have to agree.
//!
//! Bounds: each table holds at most the `limit` its caller passes; opening one more
//! first drops those that end soonest (the expired ones first), so signing in over and
//! over can only push sessions out, never grow the store. Expired entries are never
//! served; redb (one node: `redb/sessions.rs`) drops them from memory as it meets
//! them, PostgreSQL in the retention pass (`postgres/purge.rs`).

use std::time::Duration;

use ring::digest::{SHA256, digest};

use super::{Backend, Store, StoreError};

/// Longest life the store gives a session or link (ten years): far beyond any real one,
/// and within what both an `Instant` and a PostgreSQL `timestamptz` can add.
pub(crate) const MAX_LIFE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The SHA-256 of a session's or link's token: how the store names them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        Self(hash)
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// What a portal session or link is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalScope {
    pub entity: String,
    pub permissions: Vec<String>,
}

/// A console (or portal) session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The SHA-256 of the API key that opened it; `None`: the admin token.
    pub key_sha256: Option<[u8; 32]>,
    /// A customer-portal session's entity and permissions (`None`: the console).
    pub portal: Option<PortalScope>,
    pub csrf: String,
    /// A one-time message for the next page (`take_notice` takes it).
    pub notice: Option<String>,
    /// How long it has left: its life when opened, what remains when read.
    pub expires_in: Duration,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("key", &self.key_sha256.map(|_| ".."))
            .field("portal", &self.portal)
            .field("notice", &self.notice)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A portal link waiting to be opened.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkRecord {
    /// The SHA-256 of the API key that made it; `None`: the admin token.
    pub key_sha256: Option<[u8; 32]>,
    pub scope: PortalScope,
    /// How long it has left: its life when made, what remains when redeemed.
    pub expires_in: Duration,
}

impl std::fmt::Debug for LinkRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRecord")
            .field("key", &self.key_sha256.map(|_| ".."))
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

impl Store {
    /// Opens a session named `token` for `record.expires_in`, making room first if the
    /// store holds `limit` sessions already (the ones ending soonest go).
    pub async fn open_session(
        &self,
        token: TokenHash,
        record: SessionRecord,
        limit: usize,
    ) -> Result<(), StoreError> {
        on_backend!(self, b => b.open_session(token, record, limit).await)
    }

    /// The session `token` names, or None when there is none or it has expired. Its
    /// notice is read, not taken (see `take_notice`).
    pub async fn session(&self, token: TokenHash) -> Result<Option<SessionRecord>, StoreError> {
        on_backend!(self, b => b.session(token).await)
    }

    /// Ends a session on every node (nothing happens if there is none).
    pub async fn close_session(&self, token: TokenHash) -> Result<(), StoreError> {
        on_backend!(self, b => b.close_session(token).await)
    }

    /// Leaves a message for the session's next page (replacing any not yet shown).
    pub async fn set_notice(&self, token: TokenHash, notice: String) -> Result<(), StoreError> {
        on_backend!(self, b => b.set_notice(token, notice).await)
    }

    /// Takes the session's message: of several readers at once, only one gets it.
    pub async fn take_notice(&self, token: TokenHash) -> Result<Option<String>, StoreError> {
        on_backend!(self, b => b.take_notice(token).await)
    }

    /// Stores a portal link for `record.expires_in`, making room first if `limit` links
    /// are waiting already (the ones ending soonest go).
    pub async fn create_link(
        &self,
        token: TokenHash,
        record: LinkRecord,
        limit: usize,
    ) -> Result<(), StoreError> {
        on_backend!(self, b => b.create_link(token, record, limit).await)
    }

    /// Takes a link out: of any number of calls, on any nodes, at most one gets it.
    /// None when there is none, it was taken, or it expired.
    pub async fn redeem_link(&self, token: TokenHash) -> Result<Option<LinkRecord>, StoreError> {
        on_backend!(self, b => b.redeem_link(token).await)
    }

    /// Whether a link is waiting to be opened (nothing is taken).
    pub async fn link_waiting(&self, token: TokenHash) -> Result<bool, StoreError> {
        on_backend!(self, b => b.link_waiting(token).await)
    }
}
