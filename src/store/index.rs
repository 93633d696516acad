//! The in-memory snapshot of subscriptions that fan-out matches against, so matching an
//! event costs no disk read. The writer owns the only mutable copy: it applies each
//! subscription change to a clone and publishes the clone after the commit succeeds, so
//! readers never see a change that was not durably stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::records::{SubscriptionRecord, SubscriptionStatus};
use crate::ids::EntityId;

#[derive(Debug, Default, Clone)]
pub struct SubscriptionIndex {
    all: BTreeMap<u128, Arc<SubscriptionRecord>>,
    /// Exact event type -> active subscriptions naming it.
    exact: HashMap<String, Vec<u128>>,
    /// (prefix, subscription) for `*` (empty prefix) and `family.*` patterns.
    wildcards: Vec<(String, u128)>,
}

impl SubscriptionIndex {
    pub fn from_records(records: impl IntoIterator<Item = (u128, SubscriptionRecord)>) -> Self {
        let mut index = Self::default();
        for (id, record) in records {
            index.all.insert(id, Arc::new(record));
        }
        index.rebuild();
        index
    }

    pub fn get(&self, id: u128) -> Option<&Arc<SubscriptionRecord>> {
        self.all.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u128, &Arc<SubscriptionRecord>)> {
        self.all.iter()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub(super) fn upsert(&mut self, id: u128, record: SubscriptionRecord) {
        self.all.insert(id, Arc::new(record));
        self.rebuild();
    }

    pub(super) fn remove(&mut self, id: u128) {
        self.all.remove(&id);
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.exact.clear();
        self.wildcards.clear();
        for (&id, record) in &self.all {
            if record.status != SubscriptionStatus::Active {
                continue;
            }
            for pattern in &record.event_types {
                if pattern == "*" {
                    self.wildcards.push((String::new(), id));
                } else if let Some(family) = pattern.strip_suffix('*') {
                    self.wildcards.push((family.to_owned(), id));
                } else {
                    self.exact.entry(pattern.clone()).or_default().push(id);
                }
            }
        }
    }

    /// Active subscriptions that receive an event of `event_type` for `entity`, each
    /// once, in id order.
    pub fn matching(&self, entity: &str, event_type: &str) -> Vec<u128> {
        let mut found: Vec<u128> = self.exact.get(event_type).cloned().unwrap_or_default();
        found.extend(
            self.wildcards
                .iter()
                .filter(|(prefix, _)| event_type.starts_with(prefix.as_str()))
                .map(|(_, id)| *id),
        );
        found.sort_unstable();
        found.dedup();
        found.retain(|id| {
            self.all
                .get(id)
                .is_some_and(|sub| receives_entity(&sub.entity, entity))
        });
        found
    }
}

/// Whether one subscription (whatever its status) matches an event.
pub fn receives(subscription: &SubscriptionRecord, entity: &str, event_type: &str) -> bool {
    receives_entity(&subscription.entity, entity)
        && subscription.event_types.iter().any(|pattern| {
            pattern == "*"
                || pattern == event_type
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|family| event_type.starts_with(family))
        })
}

/// A subscription receives the events of its own entity and of every entity below it;
/// the root is above every entity.
fn receives_entity(subscriber: &str, event_entity: &str) -> bool {
    subscriber == event_entity || subscriber == EntityId::ROOT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::EndpointAuthRecord;

    fn sub(entity: &str, types: &[&str], status: SubscriptionStatus) -> SubscriptionRecord {
        SubscriptionRecord {
            entity: entity.into(),
            status,
            disabled_reason: None,
            event_types: types.iter().map(|t| t.to_string()).collect(),
            endpoint_url: "https://example.com/".into(),
            endpoint_auth: EndpointAuthRecord::None,
            custom_headers: vec![],
            rate_limit: None,
            description: None,
            signing_secrets: vec![],
            created_ms: 0,
            updated_ms: 0,
            active_since_ms: 0,
        }
    }

    #[test]
    fn matches_exact_family_and_star_once_each() {
        let index = SubscriptionIndex::from_records([
            (1, sub("a", &["v2.job.created"], SubscriptionStatus::Active)),
            (
                2,
                sub(
                    "a",
                    &["v2.job.*", "v2.job.created"],
                    SubscriptionStatus::Active,
                ),
            ),
            (3, sub("a", &["*"], SubscriptionStatus::Active)),
            (4, sub("a", &["v2.job.deleted"], SubscriptionStatus::Active)),
            (5, sub("a", &["*"], SubscriptionStatus::Deactivated)),
            (6, sub("b", &["*"], SubscriptionStatus::Active)),
            (
                7,
                sub(EntityId::ROOT, &["v2.*"], SubscriptionStatus::Active),
            ),
        ]);
        assert_eq!(index.matching("a", "v2.job.created"), vec![1, 2, 3, 7]);
        assert_eq!(index.matching("a", "v3.other"), vec![3]);
        assert_eq!(index.matching("b", "v2.job.deleted"), vec![6, 7]);
    }

    #[test]
    fn receives_agrees_with_matching_for_one_subscription() {
        let s = sub("a", &["v2.job.*", "x"], SubscriptionStatus::Deactivated);
        assert!(receives(&s, "a", "v2.job.created"));
        assert!(receives(&s, "a", "x"));
        assert!(!receives(&s, "a", "v2.other"));
        assert!(!receives(&s, "b", "x"));
    }

    #[test]
    fn upsert_and_remove_change_matching() {
        let mut index = SubscriptionIndex::default();
        index.upsert(1, sub("a", &["x"], SubscriptionStatus::Active));
        assert_eq!(index.matching("a", "x"), vec![1]);
        index.upsert(1, sub("a", &["x"], SubscriptionStatus::Deactivated));
        assert!(index.matching("a", "x").is_empty());
        index.remove(1);
        assert!(index.is_empty());
    }
}
