//! What callers hand the store's write side and what it answers, whichever backend
//! applies them.

use super::records::{AttemptRecord, DeliveryRecord, EventRecord};

/// How long an Idempotency-Key is remembered.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// Policy values the writer applies itself (from `[delivery]` and `[storage]`).
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub max_age_ms: u64,
    pub disable_after_ms: u64,
    pub min_free: crate::config::MinFree,
}

/// An event to store. Its fan-out is decided by the writer at commit time, against the
/// subscriptions as they are in that transaction.
#[derive(Debug)]
pub struct NewEvent {
    pub id: u128,
    pub record: EventRecord,
    pub idempotency: Option<IdempotencyKey>,
    /// Deliver to exactly these subscriptions instead of matching (a test ping).
    pub targets: Option<Vec<u128>>,
}

#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// SHA-256 of (entity, 0, key): keys are scoped per entity.
    pub key_hash: [u8; 32],
    pub body_sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Accepted {
        deliveries: Vec<u128>,
    },
    /// The key was seen with the same body: the original event and its fan-out count.
    Duplicate {
        event: u128,
        deliveries: u32,
    },
    /// The key was seen with another body.
    Conflict,
}

/// What the dispatcher decided after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    RetryAt(u64),
    Failed,
}

#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub delivery: u128,
    pub attempt: AttemptRecord,
    /// The request's headers, secrets masked (empty: none to record).
    pub request_headers: Vec<(String, String)>,
    pub next: NextStep,
    /// The endpoint answered 410 Gone: its subscription is disabled.
    pub gone: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    Queued(DeliveryRecord),
    NotFound,
    Cancelled,
    SubscriptionInactive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// New deliveries queued, and whether the per-request cap stopped the scan (then
    /// `resume_ms` is where a follow-up replay should start).
    Queued {
        queued: u32,
        resume_ms: Option<u64>,
    },
    NotFound,
    SubscriptionInactive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Stored,
    /// The subscription changed since the caller read it (`expected_updated_ms`).
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityOutcome {
    Done,
    Exists,
    /// The entity (or the parent named) does not exist.
    NotFound,
    /// Refused, with the reason.
    InUse(&'static str),
}

/// One bounded step over one subscription's deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// The subscription was deleted: cancel up to `limit` of its unfinished deliveries.
    Cancel { subscription: u128, limit: usize },
    /// The subscription is not ACTIVE: visit up to `limit` of its deliveries older than
    /// `delivery.max_age`, in creation order after the delivery `after` (0 for the
    /// first), and end those still unfinished FAILED.
    Expire {
        subscription: u128,
        after: u128,
        limit: usize,
    },
    /// The subscription was made ACTIVE again at `since_ms`: visit up to `limit` of its
    /// RETRYING deliveries after the delivery `after` (0 for the first), and make those
    /// whose retry was scheduled before then due now.
    Resume {
        subscription: u128,
        since_ms: u64,
        after: u128,
        limit: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Deliveries this step cancelled, ended FAILED or made due (for `Resume`).
    pub ended: usize,
    /// For `Expire` and `Resume`, the last delivery visited: the next step's `after`.
    pub last: Option<u128>,
    /// Whether the step stopped at its limit (another step has work); false once
    /// nothing is left for now.
    pub more: bool,
}

impl SweepOutcome {
    /// A step that walked the deliveries `visited`, at most `limit` of them.
    pub(crate) fn walked(ended: usize, visited: &[u128], limit: usize) -> Self {
        Self {
            ended,
            last: visited.last().copied(),
            more: visited.len() == limit,
        }
    }
}
