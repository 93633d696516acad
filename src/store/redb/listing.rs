//! Paginated reads behind the API's lists: events newest first, an event's or a
//! subscription's deliveries, a delivery's attempts, and the count of an event's
//! deliveries a caller may see. Each is one short read transaction off the async
//! threads, bounded by its page size and by `MAX_SCAN` rows examined.

use redb::ReadTransaction;

use super::RedbStore;
use super::tables::{
    ATTEMPT_REQUESTS, ATTEMPTS, DELIVERIES, EVENT_DELIVERIES, EVENT_TYPES, EVENTS,
    SUBSCRIPTION_DELIVERIES, SUBSCRIPTION_STATES,
};
use crate::store::codec::decode;
use crate::store::records::{
    AttemptRecord, AttemptRequest, DeliveryRecord, DeliveryState, EventRecord,
};
use crate::store::{Page, StoreError};

/// Most rows one listing request examines. A selective filter may then answer a short
/// page with a cursor to continue from, rather than scanning the whole log at once.
const MAX_SCAN: usize = 20_000;

impl RedbStore {
    pub async fn count_event_deliveries(
        &self,
        event: u128,
        keep: impl Fn(&DeliveryRecord) -> bool + Send + 'static,
    ) -> Result<u32, StoreError> {
        self.read(move |txn| {
            let deliveries = txn.open_table(DELIVERIES)?;
            let mut count = 0;
            for entry in txn
                .open_table(EVENT_DELIVERIES)?
                .range((event, 0)..=(event, u128::MAX))?
            {
                let delivery = entry?.0.value().1;
                if let Some(g) = deliveries.get(delivery)? {
                    count += u32::from(keep(&decode::<DeliveryRecord>(g.value())?));
                }
            }
            Ok(count)
        })
        .await
    }

    /// A delivery's attempts oldest first, numbered from 1, after attempt `after`.
    pub async fn attempts(
        &self,
        delivery: u128,
        after: u32,
        limit: usize,
    ) -> Result<Page<(u32, AttemptRecord, Option<AttemptRequest>)>, StoreError> {
        self.read(move |txn| {
            let mut page = Page {
                items: Vec::new(),
                next: None,
            };
            let first = after.saturating_add(1);
            let requests = txn.open_table(ATTEMPT_REQUESTS)?;
            for entry in txn
                .open_table(ATTEMPTS)?
                .range((delivery, first)..=(delivery, u32::MAX))?
            {
                let (key, value) = entry?;
                if page.items.len() == limit {
                    page.next = page.items.last().map(|(n, _, _)| u128::from(*n));
                    break;
                }
                let request = requests
                    .get(key.value())?
                    .map(|guard| decode(guard.value()))
                    .transpose()?;
                page.items
                    .push((key.value().1, decode(value.value())?, request));
            }
            Ok(page)
        })
        .await
    }

    /// Events newest first, from before `cursor` (exclusive), created in
    /// `[since_ms, until_ms)`, that `keep` accepts.
    /// Events newest first between `since_ms` and `until_ms`, before `cursor`, of
    /// `event_type` if given (read from its index: a page costs what it returns), that
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
        self.read(move |txn| {
            let low = u128::from(since_ms) << 80;
            let high = cursor.unwrap_or(u128::from(until_ms) << 80);
            let mut page = Page {
                items: Vec::new(),
                next: None,
            };
            let events = txn.open_table(EVENTS)?;
            let mut consider = |scanned: usize, id: u128, record: EventRecord| {
                if page.items.len() == limit || scanned == MAX_SCAN {
                    page.next = Some(page.items.last().map_or(id + 1, |(last, _)| *last));
                    return false;
                }
                if keep(&record) {
                    page.items.push((id, record));
                }
                true
            };
            match event_type.as_deref() {
                Some(event_type) => {
                    let index = txn.open_table(EVENT_TYPES)?;
                    let range = index.range((event_type, low)..(event_type, high))?;
                    for (scanned, entry) in range.rev().enumerate() {
                        let id = entry?.0.value().1;
                        let Some(guard) = events.get(id)? else {
                            continue;
                        };
                        if !consider(scanned, id, decode(guard.value())?) {
                            break;
                        }
                    }
                }
                None => {
                    for (scanned, entry) in events.range(low..high)?.rev().enumerate() {
                        let (key, value) = entry?;
                        if !consider(scanned, key.value(), decode(value.value())?) {
                            break;
                        }
                    }
                }
            }
            Ok(page)
        })
        .await
    }

    /// A subscription's deliveries newest first, before `cursor`, that `keep` accepts.
    /// With `state`, only the deliveries in that state, read from their index.
    pub async fn subscription_deliveries(
        &self,
        subscription: u128,
        state: Option<DeliveryState>,
        cursor: Option<u128>,
        limit: usize,
    ) -> Result<Page<(u128, DeliveryRecord)>, StoreError> {
        self.read(move |txn| match state {
            None => deliveries_page(
                txn,
                SUBSCRIPTION_DELIVERIES,
                subscription,
                cursor,
                limit,
                |_| true,
            ),
            Some(state) => {
                let deliveries = txn.open_table(DELIVERIES)?;
                let index = txn.open_table(SUBSCRIPTION_STATES)?;
                let code = state.code();
                let high = cursor.unwrap_or(u128::MAX);
                let mut page = Page {
                    items: Vec::new(),
                    next: None,
                };
                let range = index.range((subscription, code, 0)..(subscription, code, high))?;
                for entry in range.rev() {
                    let delivery = entry?.0.value().2;
                    if page.items.len() == limit {
                        page.next = page.items.last().map(|(last, _)| *last);
                        break;
                    }
                    if let Some(guard) = deliveries.get(delivery)? {
                        page.items.push((delivery, decode(guard.value())?));
                    }
                }
                Ok(page)
            }
        })
        .await
    }

    /// An event's deliveries newest first, before `cursor`, that `keep` accepts.
    pub async fn event_deliveries(
        &self,
        event: u128,
        cursor: Option<u128>,
        limit: usize,
        keep: impl Fn(&DeliveryRecord) -> bool + Send + 'static,
    ) -> Result<Page<(u128, DeliveryRecord)>, StoreError> {
        let table = EVENT_DELIVERIES;
        self.read(move |txn| deliveries_page(txn, table, event, cursor, limit, keep))
            .await
    }
}

/// One page of the deliveries an index table (`(owner, delivery)`) lists for `owner`,
/// newest first, examining at most `MAX_SCAN` rows.
fn deliveries_page(
    txn: &ReadTransaction,
    table: redb::TableDefinition<(u128, u128), ()>,
    owner: u128,
    cursor: Option<u128>,
    limit: usize,
    keep: impl Fn(&DeliveryRecord) -> bool,
) -> Result<Page<(u128, DeliveryRecord)>, StoreError> {
    let deliveries = txn.open_table(DELIVERIES)?;
    let high = cursor.unwrap_or(u128::MAX);
    let mut page = Page {
        items: Vec::new(),
        next: None,
    };
    let owned = txn.open_table(table)?;
    for (scanned, entry) in owned.range((owner, 0)..(owner, high))?.rev().enumerate() {
        let delivery = entry?.0.value().1;
        if page.items.len() == limit || scanned == MAX_SCAN {
            page.next = Some(page.items.last().map_or(delivery + 1, |(last, _)| *last));
            break;
        }
        if let Some(guard) = deliveries.get(delivery)? {
            let record: DeliveryRecord = decode(guard.value())?;
            if keep(&record) {
                page.items.push((delivery, record));
            }
        }
    }
    Ok(page)
}
