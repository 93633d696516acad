//! The in-memory snapshot of subscriptions (plus the entity tree, the API keys and the
//! event-type catalog's scopes) that fan-out matches against and authentication reads,
//! so neither costs a disk read. The writer owns the only mutable copy: it applies each
//! subscription change to a clone and publishes the clone after the commit succeeds, so
//! readers never see a change that was not durably stored.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use super::records::{SubscriptionRecord, SubscriptionStatus};
use super::tenancy::{EntityTree, KeyIndex};

/// The scope a subscription's creator held to receive every event type.
pub const ALL_SCOPES: &str = "*";

#[derive(Debug, Default, Clone)]
pub struct SubscriptionIndex {
    all: BTreeMap<u128, Arc<SubscriptionRecord>>,
    /// Exact event type -> active subscriptions naming it.
    exact: HashMap<String, Vec<u128>>,
    /// (prefix, subscription) for `*` (empty prefix) and `family.*` patterns.
    wildcards: Vec<(String, u128)>,
    pub entities: EntityTree,
    pub keys: KeyIndex,
    /// Event type -> the scope needed to receive it (the catalog and `hookd.*`).
    catalog: Arc<HashMap<String, String>>,
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

    pub(super) fn with_tenancy(
        mut self,
        entities: EntityTree,
        keys: KeyIndex,
        catalog: HashMap<String, String>,
    ) -> Self {
        self.entities = entities;
        self.keys = keys;
        self.catalog = Arc::new(catalog);
        self
    }

    pub(super) fn entities_mut(&mut self) -> &mut EntityTree {
        &mut self.entities
    }

    pub(super) fn keys_mut(&mut self) -> &mut KeyIndex {
        &mut self.keys
    }

    /// The scope needed to receive or read events of this type; `None` for a type
    /// outside the catalog.
    pub fn scope_of(&self, event_type: &str) -> Option<&str> {
        self.catalog.get(event_type).map(String::as_str)
    }

    /// Every catalog type and its scope.
    pub fn catalog(&self) -> &HashMap<String, String> {
        &self.catalog
    }

    /// Whether one subscription (whatever its status) receives an event: its type
    /// matches a pattern, its entity is the subscription's or below it, and its scope
    /// is among the scopes stored with the subscription.
    pub fn receives(
        &self,
        subscription: &SubscriptionRecord,
        entity: &str,
        event_type: &str,
    ) -> bool {
        self.entities.within(entity, &subscription.entity)
            && self.scope_allows(subscription, event_type)
            && subscription
                .event_types
                .iter()
                .any(|pattern| pattern_matches(pattern, event_type))
    }

    fn scope_allows(&self, subscription: &SubscriptionRecord, event_type: &str) -> bool {
        match self.scope_of(event_type) {
            None => true,
            Some(scope) => subscription
                .scopes
                .iter()
                .any(|s| s == ALL_SCOPES || s == scope),
        }
    }

    pub fn get(&self, id: u128) -> Option<&Arc<SubscriptionRecord>> {
        self.all.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u128, &Arc<SubscriptionRecord>)> {
        self.all.iter()
    }

    /// Subscriptions in id order, after `cursor` (exclusive) when given.
    pub fn after(
        &self,
        cursor: Option<u128>,
    ) -> impl Iterator<Item = (u128, &Arc<SubscriptionRecord>)> {
        let from = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        self.all
            .range((from, Bound::Unbounded))
            .map(|(id, r)| (*id, r))
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
            self.all.get(id).is_some_and(|sub| {
                self.entities.within(entity, &sub.entity) && self.scope_allows(sub, event_type)
            })
        });
        found
    }
}

/// `*`, `family.*` or an exact type.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    pattern == "*"
        || pattern == event_type
        || pattern
            .strip_suffix('*')
            .is_some_and(|family| event_type.starts_with(family))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(entity: &str, types: &[&str], status: SubscriptionStatus) -> SubscriptionRecord {
        SubscriptionRecord {
            status,
            ..crate::store::testing::subscription_to(entity, types)
        }
    }

    fn tree(entities: &[(&str, Option<&str>)]) -> EntityTree {
        let mut tree = EntityTree::default();
        for (id, parent) in entities {
            let record = crate::store::records::EntityRecord {
                name: id.to_string(),
                parent: parent.map(str::to_owned),
                created_ms: 0,
            };
            tree.insert(id.to_string(), record);
        }
        tree
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
                sub(
                    crate::ids::EntityId::ROOT,
                    &["v2.*"],
                    SubscriptionStatus::Active,
                ),
            ),
        ])
        .with_tenancy(
            tree(&[("a", None), ("b", None)]),
            KeyIndex::default(),
            HashMap::new(),
        );
        assert_eq!(index.matching("a", "v2.job.created"), vec![1, 2, 3, 7]);
        assert_eq!(index.matching("a", "v3.other"), vec![3]);
        assert_eq!(index.matching("b", "v2.job.deleted"), vec![6, 7]);
    }

    #[test]
    fn receives_agrees_with_matching_for_one_subscription() {
        let index = SubscriptionIndex::default().with_tenancy(
            tree(&[("a", None), ("b", None)]),
            KeyIndex::default(),
            HashMap::new(),
        );
        let s = sub("a", &["v2.job.*", "x"], SubscriptionStatus::Deactivated);
        assert!(index.receives(&s, "a", "v2.job.created"));
        assert!(index.receives(&s, "a", "x"));
        assert!(!index.receives(&s, "a", "v2.other"));
        assert!(!index.receives(&s, "b", "x"));
    }

    #[test]
    fn an_organisation_receives_its_companies_events_within_its_scopes() {
        let catalog = HashMap::from([
            ("export.done".to_string(), "exports:read".to_string()),
            ("invoice.paid".to_string(), "invoices:read".to_string()),
        ]);
        let mut org = sub("org", &["*"], SubscriptionStatus::Active);
        org.scopes = vec!["exports:read".into()];
        let index = SubscriptionIndex::from_records([
            (1, org),
            (2, sub("co1", &["*"], SubscriptionStatus::Active)),
            (3, sub("co2", &["*"], SubscriptionStatus::Active)),
        ])
        .with_tenancy(
            tree(&[("org", None), ("co1", Some("org")), ("co2", Some("org"))]),
            KeyIndex::default(),
            catalog,
        );
        assert_eq!(index.matching("co1", "export.done"), vec![1, 2]);
        assert_eq!(
            index.matching("co1", "invoice.paid"),
            vec![2],
            "the org lacks invoices:read"
        );
        assert_eq!(index.matching("org", "export.done"), vec![1]);
        assert_eq!(
            index.matching("co2", "other.type"),
            vec![1, 3],
            "outside the catalog: no scope"
        );
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
