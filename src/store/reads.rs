//! The `Store` reads: records by id, the dispatcher's due windows, the counters and the
//! listings, each from whichever backend the store has (writes and the rest of the
//! facade are in `mod.rs`).

use super::*;

impl Store {
    pub async fn event(&self, id: u128) -> Result<Option<EventRecord>, StoreError> {
        on_backend!(self, b => b.event(id).await)
    }

    /// The bytes every delivery of event `id` sends, or None if it no longer exists.
    pub async fn event_body(&self, id: u128) -> Result<Option<bytes::Bytes>, StoreError> {
        on_backend!(self, b => b.event_body(id).await)
    }

    pub async fn delivery(&self, id: u128) -> Result<Option<DeliveryRecord>, StoreError> {
        on_backend!(self, b => b.delivery(id).await)
    }

    /// For each window asked, the subscription's first `limit` due entries after the
    /// key given (or from its start): how the dispatcher fills its bounded in-memory
    /// window of a subscription's work.
    pub async fn due_windows(
        &self,
        asked: Vec<WindowRead>,
    ) -> Result<Vec<Vec<DueEntry>>, StoreError> {
        on_backend!(self, b => b.due_windows(asked).await)
    }

    /// Every subscription with entries in the due queue: how the sweeper finds a deleted
    /// subscription's leftovers at start.
    pub async fn due_subscriptions(&self) -> Result<Vec<u128>, StoreError> {
        on_backend!(self, b => b.due_subscriptions().await)
    }

    /// Attempt counters over a range of minutes or hours (at most `stats::MAX_PERIODS`),
    /// summed per period and per subscription, for the subscriptions `visible` accepts
    /// (the caller's subtree).
    pub async fn attempt_stats(
        &self,
        query: stats::StatsQuery,
        visible: impl Fn(u128) -> bool + Send + 'static,
    ) -> Result<stats::AttemptStats, StoreError> {
        on_backend!(self, b => b.attempt_stats(query, visible).await)
    }

    /// How many deliveries of an event `keep` accepts (it fans out to at most one per
    /// subscription, so this is bounded by the subscriptions there are).
    pub async fn count_event_deliveries(
        &self,
        event: u128,
        keep: impl Fn(&DeliveryRecord) -> bool + Send + 'static,
    ) -> Result<u32, StoreError> {
        on_backend!(self, b => b.count_event_deliveries(event, keep).await)
    }

    /// A delivery's attempts in order, with the request headers each sent, from
    /// attempt `after + 1`.
    pub async fn attempts(
        &self,
        delivery: u128,
        after: u32,
        limit: usize,
    ) -> Result<Page<(u32, AttemptRecord, Option<AttemptRequest>)>, StoreError> {
        on_backend!(self, b => b.attempts(delivery, after, limit).await)
    }

    /// Events created in `[since_ms, until_ms)`, newest first, of one type if given,
    /// those `keep` accepts, from before `cursor`.
    pub async fn events_page(
        &self,
        since_ms: u64,
        until_ms: u64,
        event_type: Option<String>,
        cursor: Option<u128>,
        limit: usize,
        keep: impl Fn(&EventRecord) -> bool + Send + 'static,
    ) -> Result<Page<(u128, EventRecord)>, StoreError> {
        on_backend!(self, b => {
            b.events_page(since_ms, until_ms, event_type, cursor, limit, keep)
                .await
        })
    }

    /// A subscription's deliveries, newest first, in one state if given.
    pub async fn subscription_deliveries(
        &self,
        subscription: u128,
        state: Option<DeliveryState>,
        cursor: Option<u128>,
        limit: usize,
    ) -> Result<Page<(u128, DeliveryRecord)>, StoreError> {
        on_backend!(self, b => {
            b.subscription_deliveries(subscription, state, cursor, limit)
                .await
        })
    }

    /// An event's deliveries that `keep` accepts, newest first.
    pub async fn event_deliveries(
        &self,
        event: u128,
        cursor: Option<u128>,
        limit: usize,
        keep: impl Fn(&DeliveryRecord) -> bool + Send + 'static,
    ) -> Result<Page<(u128, DeliveryRecord)>, StoreError> {
        on_backend!(self, b => b.event_deliveries(event, cursor, limit, keep).await)
    }
}
