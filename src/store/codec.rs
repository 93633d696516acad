//! The only place records become bytes. Each record kind has a version byte written in
//! front of its postcard encoding; postcard is not self-describing, so a reader that
//! finds another version must not guess: it reports `StoreError::RecordVersion` and the
//! migration that should have rewritten the record is the bug to fix.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::StoreError;

/// A stored record kind and the layout version it is written with.
pub trait Record: Serialize + DeserializeOwned {
    const KIND: &'static str;
    const VERSION: u8;
}

pub fn encode<R: Record>(record: &R) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(record, vec![R::VERSION]).map_err(|source| StoreError::Encode {
        kind: R::KIND,
        source,
    })
}

pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, StoreError> {
    match bytes.split_first() {
        Some((&version, rest)) if version == R::VERSION => {
            postcard::from_bytes(rest).map_err(|source| StoreError::Decode {
                kind: R::KIND,
                source,
            })
        }
        Some((&version, _)) => Err(StoreError::RecordVersion {
            kind: R::KIND,
            found: version,
            expected: R::VERSION,
        }),
        None => Err(StoreError::RecordVersion {
            kind: R::KIND,
            found: 0,
            expected: R::VERSION,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{DeliveryRecord, DeliveryState};

    #[test]
    fn round_trips_with_a_version_byte_and_refuses_other_versions() {
        let record = DeliveryRecord {
            event: 1,
            subscription: 2,
            state: DeliveryState::Retrying,
            attempts: 3,
            next_attempt_ms: Some(4),
            last_status: Some(500),
            last_error: None,
            created_ms: 5,
            updated_ms: 6,
            parked: false,
            retry_once: true,
        };
        let mut bytes = encode(&record).unwrap();
        assert_eq!(bytes[0], DeliveryRecord::VERSION);
        assert_eq!(decode::<DeliveryRecord>(&bytes).unwrap(), record);
        bytes[0] = 99;
        assert!(matches!(
            decode::<DeliveryRecord>(&bytes),
            Err(StoreError::RecordVersion { found: 99, .. })
        ));
        assert!(decode::<DeliveryRecord>(&[]).is_err());
    }

    #[test]
    fn an_event_head_reads_the_leading_fields_of_an_event() {
        use crate::store::records::{EventHead, EventRecord};
        let event = EventRecord {
            entity: "acme".into(),
            event_type: "order.paid".into(),
            created_ms: 7,
            body: vec![b'x'; 1000],
        };
        let head: EventHead = decode(&encode(&event).unwrap()).unwrap();
        assert_eq!(
            (head.entity.as_str(), head.event_type.as_str()),
            ("acme", "order.paid")
        );
    }

    #[test]
    fn a_delivery_head_reads_the_leading_fields_of_a_delivery() {
        use crate::store::records::DeliveryHead;
        let record = DeliveryRecord {
            event: 1 << 100,
            subscription: 7,
            state: DeliveryState::Retrying,
            attempts: 3,
            next_attempt_ms: Some(9),
            last_status: Some(500),
            last_error: Some("refused".into()),
            created_ms: 1,
            updated_ms: 2,
            parked: false,
            retry_once: false,
        };
        let head: DeliveryHead = decode(&encode(&record).unwrap()).unwrap();
        assert_eq!(
            (head.event, head.subscription, head.state),
            (1 << 100, 7, DeliveryState::Retrying)
        );
    }
}
