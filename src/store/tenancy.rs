//! Tenancy in memory: the entity tree (organisation -> companies) and the API keys,
//! both part of the snapshot the writer publishes after each commit, so authenticating
//! a request and deciding what a caller sees cost no disk read.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::codec::Record;
use super::records::EntityRecord;
use crate::ids::EntityId;

/// Entities deeper than this are refused: it bounds every walk up the tree.
pub const MAX_DEPTH: usize = 16;

/// An API key: only the SHA-256 of the key is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub entity: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub sha256: [u8; 32],
    pub created_ms: u64,
}

impl Record for ApiKeyRecord {
    const KIND: &'static str = "api key";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Default)]
pub struct EntityTree {
    entities: BTreeMap<String, EntityRecord>,
}

impl EntityTree {
    pub fn get(&self, id: &str) -> Option<&EntityRecord> {
        self.entities.get(id)
    }

    pub fn exists(&self, id: &str) -> bool {
        self.entities.contains_key(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &EntityRecord)> {
        self.entities.iter()
    }

    /// Entities in id order, after `cursor` (exclusive) when given.
    pub fn after(&self, cursor: Option<&str>) -> impl Iterator<Item = (&String, &EntityRecord)> {
        let from = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        self.entities.range::<str, _>((from, Bound::Unbounded))
    }

    /// Whether `entity` is `ancestor` or below it. Every entity is below the root.
    pub fn within(&self, entity: &str, ancestor: &str) -> bool {
        if ancestor == EntityId::ROOT {
            return self.exists(entity);
        }
        let mut current = entity;
        for _ in 0..=MAX_DEPTH {
            if current == ancestor {
                return true;
            }
            match self.entities.get(current).and_then(|e| e.parent.as_deref()) {
                Some(parent) => current = parent,
                None => return false,
            }
        }
        false
    }

    /// Levels between the root and `id` (a top-level organisation is 1).
    pub fn depth(&self, id: &str) -> usize {
        let mut depth = 0;
        let mut current = id;
        while let Some(parent) = self.entities.get(current).and_then(|e| e.parent.as_deref()) {
            depth += 1;
            current = parent;
            if depth > MAX_DEPTH {
                break;
            }
        }
        depth + usize::from(id != EntityId::ROOT)
    }

    pub fn has_children(&self, id: &str) -> bool {
        self.entities
            .values()
            .any(|e| e.parent.as_deref() == Some(id))
    }

    pub(super) fn insert(&mut self, id: String, record: EntityRecord) {
        self.entities.insert(id, record);
    }

    pub(super) fn remove(&mut self, id: &str) {
        self.entities.remove(id);
    }
}

/// A key as authentication needs it.
#[derive(Debug, Clone)]
pub struct KeyView {
    pub id: u128,
    pub record: ApiKeyRecord,
}

#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    by_hash: HashMap<[u8; 32], Arc<KeyView>>,
    by_id: BTreeMap<u128, [u8; 32]>,
}

impl KeyIndex {
    /// The key whose SHA-256 is `hash`. Keys carry 256 random bits, so the lookup's
    /// timing can only reveal something about a digest, never about a key.
    pub fn find(&self, hash: &[u8; 32]) -> Option<&Arc<KeyView>> {
        self.by_hash.get(hash)
    }

    pub fn get(&self, id: u128) -> Option<&Arc<KeyView>> {
        self.by_id.get(&id).and_then(|hash| self.by_hash.get(hash))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<KeyView>> {
        self.after(None)
    }

    /// Keys in id order, after `cursor` (exclusive) when given.
    pub fn after(&self, cursor: Option<u128>) -> impl Iterator<Item = &Arc<KeyView>> {
        let from = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        self.by_id
            .range((from, Bound::Unbounded))
            .filter_map(|(_, hash)| self.by_hash.get(hash))
    }

    pub fn owned_by(&self, entity: &str) -> bool {
        self.by_hash.values().any(|k| k.record.entity == entity)
    }

    pub(super) fn insert(&mut self, id: u128, record: ApiKeyRecord) {
        self.by_id.insert(id, record.sha256);
        self.by_hash
            .insert(record.sha256, Arc::new(KeyView { id, record }));
    }

    pub(super) fn remove(&mut self, id: u128) {
        if let Some(hash) = self.by_id.remove(&id) {
            self.by_hash.remove(&hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(parent: Option<&str>) -> EntityRecord {
        EntityRecord {
            name: "n".into(),
            parent: parent.map(str::to_owned),
            created_ms: 0,
        }
    }

    #[test]
    fn within_walks_up_to_the_ancestor() {
        let mut tree = EntityTree::default();
        tree.insert("org".into(), entity(None));
        tree.insert("co1".into(), entity(Some("org")));
        tree.insert("co2".into(), entity(Some("org")));
        tree.insert("other".into(), entity(None));
        assert!(tree.within("co1", "org"));
        assert!(tree.within("co1", "co1"));
        assert!(tree.within("co1", EntityId::ROOT));
        assert!(!tree.within("org", "co1"));
        assert!(!tree.within("co1", "co2"));
        assert!(!tree.within("co1", "other"));
        assert!(!tree.within("ghost", EntityId::ROOT));
        assert!(tree.has_children("org"));
        assert_eq!(tree.depth("co1"), 2);
        assert_eq!(tree.depth("org"), 1);
    }
}
