//! The attempt counters' rows in redb (`attempt_stats_v1`): written once per row at the
//! end of each batch, purged with retention, summed for a query.

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::{ReadTransaction, ReadableTable};

use super::ops::Batch;
use super::tables::ATTEMPT_STATS;
use crate::store::error::StoreError;
use crate::store::stats::{
    AttemptCounters, AttemptStats, MAX_PERIODS, MAX_ROWS, MINUTE_ROWS_KEPT_MS, PendingStats, Scale,
    StatsQuery,
};

impl Batch<'_, '_> {
    /// Adds the batch's counters to their rows.
    pub(super) fn write_stats(&mut self, pending: PendingStats) -> Result<(), StoreError> {
        for (key, counters) in pending.0 {
            let mut row = match self.t.attempt_stats.get(key)? {
                Some(old) => AttemptCounters::decode(old.value())?,
                None => AttemptCounters::default(),
            };
            row.add(&counters);
            self.t.attempt_stats.insert(key, row.encode().as_slice())?;
        }
        Ok(())
    }

    /// Removes up to `limit` of the oldest rows of each scale that have expired: hour
    /// rows before `before_ms`, minute rows before it or a day ago, whichever is later.
    /// Rows sort by period, so the expired ones are always at the start.
    pub(super) fn purge_stats(&mut self, before_ms: u64, limit: usize) -> Result<u64, StoreError> {
        let mut removed = 0;
        for scale in Scale::ALL {
            let cutoff = match scale {
                Scale::Minute => before_ms.max(self.now.saturating_sub(MINUTE_ROWS_KEPT_MS)),
                Scale::Hour => before_ms,
            };
            let code = scale.code();
            let end = (code, scale.period(cutoff), 0u128);
            let old: Vec<(u8, u32, u128)> = self
                .t
                .attempt_stats
                .range((code, 0u32, 0u128)..end)?
                .take(limit)
                .map(|entry| entry.map(|(key, _)| key.value()))
                .collect::<Result<_, _>>()?;
            for key in old {
                self.t.attempt_stats.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Sums the rows of `query` for the subscriptions `visible` accepts (a read transaction
/// on a blocking thread; see `Store::attempt_stats`).
pub(super) fn read(
    txn: &ReadTransaction,
    query: StatsQuery,
    visible: &dyn Fn(u128) -> bool,
) -> Result<AttemptStats, StoreError> {
    let scale = query.scale;
    let code = scale.code();
    let first = scale.period(query.from_ms);
    let last = scale
        .period(query.until_ms.saturating_sub(1))
        .min(first.saturating_add(MAX_PERIODS as u32 - 1));
    let table = txn.open_table(ATTEMPT_STATS)?;
    let mut periods: BTreeMap<u32, AttemptCounters> = BTreeMap::new();
    let mut subscriptions: BTreeMap<u128, AttemptCounters> = BTreeMap::new();
    let mut truncated = false;
    let range = (
        Bound::Included((code, first, 0u128)),
        Bound::Included((code, last, u128::MAX)),
    );
    for (n, entry) in table.range(range)?.enumerate() {
        if n == MAX_ROWS {
            truncated = true;
            break;
        }
        let (key, value) = entry?;
        let (_, period, subscription) = key.value();
        if !visible(subscription) {
            continue;
        }
        let counters = AttemptCounters::decode(value.value())?;
        periods.entry(period).or_default().add(&counters);
        subscriptions
            .entry(subscription)
            .or_default()
            .add(&counters);
    }
    Ok(AttemptStats {
        periods: periods
            .into_iter()
            .map(|(period, counters)| (u64::from(period) * scale.millis(), counters))
            .collect(),
        subscriptions: subscriptions.into_iter().collect(),
        truncated,
    })
}
