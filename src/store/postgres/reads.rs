//! The reads, with the semantics, page sizes and bounds of redb's (`redb/listing.rs`,
//! `redb/stats.rs`): newest first, a cursor that is the last id shown (or, when a filter
//! skipped every row examined, the id to continue from), at most `MAX_SCAN` rows
//! examined per listing. Each is one statement on a pooled connection, over one of the
//! schema's indexes; a listing whose caller-side filter (`keep`) skips rows continues
//! with larger steps of the same statement after the last id read, so a page normally
//! costs one statement and never reads more than `MAX_SCAN + 1` rows.

use bytes::Bytes;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PostgresError;
use super::rows::{self, DELIVERY_COLUMNS, col, from_ms, ms, state_code};
use super::store::PgStore;
use super::types::Uuid;
use crate::store::codec::decode;
use crate::store::error::StoreError;
use crate::store::records::{
    AttemptRecord, AttemptRequest, DeliveryRecord, DeliveryState, EventRecord,
};
use crate::store::stats::{AttemptCounters, AttemptStats, MAX_PERIODS, MAX_ROWS, StatsQuery};
use crate::store::{DueEntry, Page, WindowRead};

/// Most rows one listing request examines (as redb's): a selective filter may then
/// answer a short page with a cursor to continue from.
const MAX_SCAN: usize = 20_000;
/// How much each further step of a filtered listing grows.
const STEP_GROWTH: usize = 4;
/// Most events one step reads: their bodies are held until the step is examined, so a
/// step holds no more than a full page does (`MAX_LIMIT` of the API is 500).
const EVENT_STEP: usize = 512;
/// Most deliveries one step reads (a few hundred bytes each).
const DELIVERY_STEP: usize = 4096;

/// How long `/metrics` waits for the due count before it shows what it holds itself.
const COUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Counts the due queue without keeping the writer running (for `/metrics`): the whole
/// cluster's, as on one node, since every node serves the same queue.
#[derive(Clone)]
pub(crate) struct DueCounter(deadpool_postgres::Pool);

impl DueCounter {
    /// Unfinished deliveries in the due queue, or None while the database does not answer.
    pub async fn count(&self) -> Option<u64> {
        let count = async {
            let client = self.0.get().await.ok()?;
            let sql = "SELECT count(*) FROM deliveries WHERE next_attempt_ms IS NOT NULL";
            let row = client.query_one(sql, &[]).await.ok()?;
            row.try_get::<_, i64>(0).ok().map(|n| n as u64)
        };
        tokio::time::timeout(COUNT_WAIT, count).await.ok().flatten()
    }
}

impl PgStore {
    pub fn due_counter(&self) -> DueCounter {
        DueCounter(self.pool.clone())
    }
}

impl PgStore {
    /// Runs one statement (prepared once per connection) on a pooled connection.
    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.pool.get().await.map_err(PostgresError::from)?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(PostgresError::from)?;
        Ok(client
            .query(&statement, params)
            .await
            .map_err(PostgresError::from)?)
    }

    pub async fn event(&self, id: u128) -> Result<Option<EventRecord>, StoreError> {
        let rows = self
            .rows(
                "SELECT entity, event_type, created_ms, body FROM events WHERE id = $1",
                &[&Uuid(id)],
            )
            .await?;
        rows.first().map(|row| event(row, 0)).transpose()
    }

    pub async fn event_body(&self, id: u128) -> Result<Option<Bytes>, StoreError> {
        let rows = self
            .rows("SELECT body FROM events WHERE id = $1", &[&Uuid(id)])
            .await?;
        rows.first()
            .map(|row| Ok(Bytes::from(col::<Vec<u8>>(row, 0)?)))
            .transpose()
    }

    pub async fn delivery(&self, id: u128) -> Result<Option<DeliveryRecord>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
        let rows = self.rows(&sql, &[&Uuid(id)]).await?;
        Ok(rows.first().map(|row| rows::delivery(row, 0)).transpose()?)
    }

    /// For each window asked, the subscription's first `limit` due entries after the
    /// key given (or from its start): one statement for all of them, each window a
    /// range of the due index by subscription.
    pub async fn due_windows(
        &self,
        asked: Vec<WindowRead>,
    ) -> Result<Vec<Vec<DueEntry>>, StoreError> {
        let mut subscriptions = Vec::with_capacity(asked.len());
        let mut after_ms = Vec::with_capacity(asked.len());
        let mut after_ids = Vec::with_capacity(asked.len());
        let mut limits = Vec::with_capacity(asked.len());
        for window in &asked {
            subscriptions.push(Uuid(window.subscription));
            // From the start: before every (due time, id) there is.
            let (at, id) = window.after.map_or((i64::MIN, 0), |(at, id)| (ms(at), id));
            after_ms.push(at);
            after_ids.push(Uuid(id));
            limits.push(i64::try_from(window.limit).unwrap_or(i64::MAX));
        }
        let rows = self
            .rows(
                "SELECT w.n, d.next_attempt_ms, d.id
                 FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::int8[])
                     WITH ORDINALITY AS w(subscription, after_ms, after_id, lim, n)
                 CROSS JOIN LATERAL (
                     SELECT id, next_attempt_ms FROM deliveries
                     WHERE subscription = w.subscription AND next_attempt_ms IS NOT NULL
                       AND (next_attempt_ms, id) > (w.after_ms, w.after_id)
                     ORDER BY next_attempt_ms, id
                     LIMIT w.lim) AS d
                 ORDER BY w.n, d.next_attempt_ms, d.id",
                &[&subscriptions, &after_ms, &after_ids, &limits],
            )
            .await?;
        let mut out: Vec<Vec<DueEntry>> = asked.iter().map(|_| Vec::new()).collect();
        for row in &rows {
            // WITH ORDINALITY counts the windows from 1.
            let n: i64 = col(row, 0)?;
            let i = usize::try_from(n - 1).unwrap_or(usize::MAX);
            let (Some(window), Some(read)) = (out.get_mut(i), asked.get(i)) else {
                continue;
            };
            window.push(DueEntry {
                due_ms: from_ms(col(row, 1)?),
                delivery: col::<Uuid>(row, 2)?.0,
                subscription: read.subscription,
            });
        }
        Ok(out)
    }

    /// Every subscription with entries in the due queue, one index seek each (a walk
    /// from one subscription to the next, not of the entries).
    pub async fn due_subscriptions(&self) -> Result<Vec<u128>, StoreError> {
        let rows = self
            .rows(
                "WITH RECURSIVE found(subscription) AS (
                     (SELECT subscription FROM deliveries WHERE next_attempt_ms IS NOT NULL
                      ORDER BY subscription LIMIT 1)
                     UNION ALL
                     SELECT (SELECT d.subscription FROM deliveries AS d
                             WHERE d.next_attempt_ms IS NOT NULL
                               AND d.subscription > found.subscription
                             ORDER BY d.subscription LIMIT 1)
                     FROM found WHERE found.subscription IS NOT NULL)
                 SELECT subscription FROM found WHERE subscription IS NOT NULL",
                &[],
            )
            .await?;
        rows.iter().map(|row| Ok(col::<Uuid>(row, 0)?.0)).collect()
    }

    pub async fn count_event_deliveries(
        &self,
        event: u128,
        keep: impl Fn(&DeliveryRecord) -> bool + Send + 'static,
    ) -> Result<u32, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event = $1");
        let rows = self.rows(&sql, &[&Uuid(event)]).await?;
        let mut count = 0;
        for row in &rows {
            count += u32::from(keep(&rows::delivery(row, 0)?));
        }
        Ok(count)
    }

    /// A delivery's attempts oldest first, numbered from 1, after attempt `after`.
    pub async fn attempts(
        &self,
        delivery: u128,
        after: u32,
        limit: usize,
    ) -> Result<Page<(u32, AttemptRecord, Option<AttemptRequest>)>, StoreError> {
        let rows = self
            .rows(
                "SELECT n, record, request FROM attempts WHERE delivery = $1 AND n > $2
                 ORDER BY n LIMIT $3",
                &[&Uuid(delivery), &rows::count(after), &one_more(limit)],
            )
            .await?;
        let mut page = Page {
            items: Vec::with_capacity(limit.min(rows.len())),
            next: None,
        };
        for row in &rows {
            if page.items.len() == limit {
                page.next = page.items.last().map(|(n, _, _)| u128::from(*n));
                break;
            }
            let n: i32 = col(row, 0)?;
            let request = col::<Option<&[u8]>>(row, 2)?.map(decode).transpose()?;
            page.items.push((
                u32::try_from(n).unwrap_or(0),
                decode(col(row, 1)?)?,
                request,
            ));
        }
        Ok(page)
    }

    /// Events created in `[since_ms, until_ms)`, newest first, before `cursor`, of
    /// `event_type` if given (from its index: a page costs what it returns), that
    /// `keep` accepts.
    pub async fn events_page(
        &self,
        since_ms: u64,
        until_ms: u64,
        event_type: Option<String>,
        cursor: Option<u128>,
        limit: usize,
        keep: impl Fn(&EventRecord) -> bool + Send + 'static,
    ) -> Result<Page<(u128, EventRecord)>, StoreError> {
        let low = Uuid(u128::from(since_ms) << 80);
        let high = cursor.unwrap_or(u128::from(until_ms) << 80);
        let sql = match event_type {
            Some(_) => {
                "SELECT id, entity, event_type, created_ms, body FROM events
                 WHERE event_type = $4 AND id >= $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            }
            None => {
                "SELECT id, entity, event_type, created_ms, body FROM events
                 WHERE id >= $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            }
        };
        let step = async |before: u128, take: i64| {
            let before = Uuid(before);
            match &event_type {
                Some(t) => self.rows(sql, &[&low, &before, &take, t]).await,
                None => self.rows(sql, &[&low, &before, &take]).await,
            }
        };
        let mut scan = Scan::new(limit, high, EVENT_STEP);
        while let Some((before, take)) = scan.next_step() {
            let rows = step(before, take).await?;
            for row in &rows {
                let id = col::<Uuid>(row, 0)?.0;
                if !scan.room(id) {
                    break;
                }
                let record = event(row, 1)?;
                scan.offer(id, record, &keep);
            }
            scan.stepped(rows.len());
        }
        Ok(scan.page)
    }

    /// A subscription's deliveries newest first, before `cursor`. With `state`, only
    /// the deliveries in that state, read from their index.
    pub async fn subscription_deliveries(
        &self,
        subscription: u128,
        state: Option<DeliveryState>,
        cursor: Option<u128>,
        limit: usize,
    ) -> Result<Page<(u128, DeliveryRecord)>, StoreError> {
        let Some(state) = state else {
            return self
                .deliveries_page("subscription", subscription, cursor, limit, |_| true)
                .await;
        };
        let sql = format!(
            "SELECT id, {DELIVERY_COLUMNS} FROM deliveries
             WHERE subscription = $1 AND state = $2 AND id < $3 ORDER BY id DESC LIMIT $4"
        );
        let before = Uuid(cursor.unwrap_or(u128::MAX));
        let rows = self
            .rows(
                &sql,
                &[
                    &Uuid(subscription),
                    &state_code(state),
                    &before,
                    &one_more(limit),
                ],
            )
            .await?;
        let mut page = Page {
            items: Vec::new(),
            next: None,
        };
        for row in &rows {
            if page.items.len() == limit {
                page.next = page.items.last().map(|(last, _)| *last);
                break;
            }
            page.items
                .push((col::<Uuid>(row, 0)?.0, rows::delivery(row, 1)?));
        }
        Ok(page)
    }

    /// An event's deliveries newest first, before `cursor`, that `keep` accepts.
    pub async fn event_deliveries(
        &self,
        event: u128,
        cursor: Option<u128>,
        limit: usize,
        keep: impl Fn(&DeliveryRecord) -> bool + Send + 'static,
    ) -> Result<Page<(u128, DeliveryRecord)>, StoreError> {
        self.deliveries_page("event", event, cursor, limit, keep)
            .await
    }

    /// One page of the deliveries whose `owner` column (`event` or `subscription`, each
    /// with its `(owner, id)` index) is `id`, newest first.
    async fn deliveries_page(
        &self,
        owner: &'static str,
        id: u128,
        cursor: Option<u128>,
        limit: usize,
        keep: impl Fn(&DeliveryRecord) -> bool,
    ) -> Result<Page<(u128, DeliveryRecord)>, StoreError> {
        let sql = format!(
            "SELECT id, {DELIVERY_COLUMNS} FROM deliveries
             WHERE {owner} = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        );
        let mut scan = Scan::new(limit, cursor.unwrap_or(u128::MAX), DELIVERY_STEP);
        while let Some((before, take)) = scan.next_step() {
            let rows = self.rows(&sql, &[&Uuid(id), &Uuid(before), &take]).await?;
            for row in &rows {
                let delivery = col::<Uuid>(row, 0)?.0;
                if !scan.room(delivery) {
                    break;
                }
                scan.offer(delivery, rows::delivery(row, 1)?, &keep);
            }
            scan.stepped(rows.len());
        }
        Ok(scan.page)
    }

    /// Attempt counters of `query`'s periods, summed per period and per subscription,
    /// for the subscriptions `visible` accepts; at most `MAX_ROWS` rows read.
    pub async fn attempt_stats(
        &self,
        query: StatsQuery,
        visible: impl Fn(u128) -> bool + Send + 'static,
    ) -> Result<AttemptStats, StoreError> {
        let scale = query.scale;
        let first = scale.period(query.from_ms);
        let last = scale
            .period(query.until_ms.saturating_sub(1))
            .min(first.saturating_add(MAX_PERIODS as u32 - 1));
        let period = |p: u32| i32::try_from(p).unwrap_or(i32::MAX);
        let rows = self
            .rows(
                "SELECT period, subscription, attempts, succeeded, latency FROM attempt_stats
                 WHERE scale = $1 AND period >= $2 AND period <= $3
                 ORDER BY period, subscription LIMIT $4",
                &[
                    &i16::from(scale.code()),
                    &period(first),
                    &period(last),
                    &one_more(MAX_ROWS),
                ],
            )
            .await?;
        let mut periods = std::collections::BTreeMap::<u32, AttemptCounters>::new();
        let mut subscriptions = std::collections::BTreeMap::<u128, AttemptCounters>::new();
        let truncated = rows.len() > MAX_ROWS;
        for row in rows.iter().take(MAX_ROWS) {
            let subscription = col::<Uuid>(row, 1)?.0;
            if !visible(subscription) {
                continue;
            }
            let at: i32 = col(row, 0)?;
            let latency: Vec<i32> = col(row, 4)?;
            let counters = rows::counters(col(row, 2)?, col(row, 3)?, &latency)?;
            periods
                .entry(u32::try_from(at).unwrap_or(0))
                .or_default()
                .add(&counters);
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
}

/// The event in `row`, whose columns from `at` on are entity, type, created, body.
fn event(row: &Row, at: usize) -> Result<EventRecord, StoreError> {
    Ok(EventRecord {
        entity: col(row, at)?,
        event_type: col(row, at + 1)?,
        created_ms: from_ms(col(row, at + 2)?),
        body: col(row, at + 3)?,
    })
}

/// `limit + 1` as a `LIMIT`: the extra row says whether there is a next page.
fn one_more(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1)
}

/// A newest-first listing filtered by `keep`, read in steps: the first asks for one
/// page and the row after it; while the filter leaves the page short, each next step
/// reads `STEP_GROWTH` times more (up to a bound on what a step holds) after the last
/// id read, until the page is full, the rows run out, or `MAX_SCAN` rows were examined
/// (then the cursor says where to go on).
struct Scan<T> {
    page: Page<(u128, T)>,
    limit: usize,
    /// Rows examined so far.
    scanned: usize,
    /// The exclusive upper bound of the next step: the last id read.
    before: u128,
    step: usize,
    /// The largest step.
    max_step: usize,
    /// Rows the current step asked for.
    asked: usize,
    done: bool,
}

impl<T> Scan<T> {
    fn new(limit: usize, before: u128, max_step: usize) -> Self {
        let step = limit.saturating_add(1);
        Self {
            page: Page {
                items: Vec::new(),
                next: None,
            },
            limit,
            scanned: 0,
            before,
            step,
            max_step: max_step.max(step),
            asked: 0,
            done: false,
        }
    }

    /// The next step's (upper bound, row count), or None when the page is decided.
    fn next_step(&mut self) -> Option<(u128, i64)> {
        if self.done {
            return None;
        }
        // At most one row past what may be examined: it only sets the cursor.
        self.asked = self.step.min(MAX_SCAN + 1 - self.scanned);
        Some((self.before, i64::try_from(self.asked).unwrap_or(i64::MAX)))
    }

    /// Whether row `id` may be examined; if not, the page is decided and the cursor
    /// set (as redb's: after the last item, or from `id` when nothing was kept).
    fn room(&mut self, id: u128) -> bool {
        if self.page.items.len() == self.limit || self.scanned == MAX_SCAN {
            self.page.next = Some(self.page.items.last().map_or(id + 1, |(last, _)| *last));
            self.done = true;
            return false;
        }
        true
    }

    fn offer(&mut self, id: u128, item: T, keep: &impl Fn(&T) -> bool) {
        self.scanned += 1;
        self.before = id;
        if keep(&item) {
            self.page.items.push((id, item));
        }
    }

    /// A step returned `rows`: fewer than asked means the listing ran out.
    fn stepped(&mut self, rows: usize) {
        if rows < self.asked {
            self.done = true;
        }
        self.step = self.step.saturating_mul(STEP_GROWTH).min(self.max_step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a scan over `rows` ids (newest first from `rows`), answering each step as
    /// the database would; the page and the steps' sizes.
    fn run(
        rows: u128,
        limit: usize,
        keep: impl Fn(&u128) -> bool,
    ) -> (Page<(u128, u128)>, Vec<i64>) {
        let mut scan = Scan::new(limit, rows + 1, DELIVERY_STEP);
        let mut steps = Vec::new();
        while let Some((before, take)) = scan.next_step() {
            steps.push(take);
            let found: Vec<u128> = (1..before).rev().take(take as usize).collect();
            for &id in &found {
                if !scan.room(id) {
                    break;
                }
                scan.offer(id, id, &keep);
            }
            scan.stepped(found.len());
        }
        (scan.page, steps)
    }

    #[test]
    fn a_scan_fills_its_page_in_growing_steps_and_stops_at_its_bound() {
        // Everything kept: one step of a page and one more row, which sets the cursor.
        let (page, steps) = run(1000, 10, |_| true);
        assert_eq!(
            (page.items.len(), page.next, steps),
            (10, Some(991), vec![11])
        );
        // The rows run out: no cursor.
        let (page, steps) = run(5, 10, |_| true);
        assert_eq!((page.items.len(), page.next, steps), (5, None, vec![11]));
        // Every tenth kept: steps grow until the page is full.
        let (page, steps) = run(1000, 10, |id| id % 10 == 0);
        assert_eq!(page.items.len(), 10);
        assert_eq!(page.next, Some(910));
        assert_eq!(steps, vec![11, 44, 176]);
        // Nothing kept: MAX_SCAN rows examined, each step bounded, and the cursor is the
        // row after the last one examined.
        let (page, steps) = run(30_000, 50, |_| false);
        assert!(page.items.is_empty());
        assert_eq!(page.next, Some(30_000 - MAX_SCAN as u128 + 1));
        assert_eq!(steps.iter().sum::<i64>(), MAX_SCAN as i64 + 1);
        assert!(
            steps.iter().all(|&s| s <= DELIVERY_STEP as i64),
            "{steps:?}"
        );
    }
}
