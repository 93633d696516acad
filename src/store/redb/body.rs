//! An event's body read by itself, for delivery attempts that did not get it from
//! ingest. The dispatcher reads it once per event and shares it among every delivery
//! of the event in progress (`dispatch::bodies`), so an attempt otherwise reads only
//! its small delivery record.

use bytes::Bytes;

use super::RedbStore;
use super::tables::EVENTS;
use crate::store::codec::decode;
use crate::store::error::StoreError;
use crate::store::records::EventRecord;

impl RedbStore {
    pub async fn event_body(&self, id: u128) -> Result<Option<Bytes>, StoreError> {
        self.read(move |txn| {
            txn.open_table(EVENTS)?
                .get(id)?
                .map(|g| decode::<EventRecord>(g.value()).map(|event| Bytes::from(event.body)))
                .transpose()
        })
        .await
    }
}
