//! Entities and their tree, inside the writer's transaction.

use super::*;

impl Batch<'_, '_> {
    pub(super) fn create_entity(
        &mut self,
        id: String,
        record: EntityRecord,
    ) -> Result<EntityOutcome, StoreError> {
        if self.subs().entities.exists(&id) || id == crate::ids::EntityId::ROOT {
            return Ok(EntityOutcome::Exists);
        }
        if let Some(parent) = &record.parent {
            if !self.subs().entities.exists(parent) {
                return Ok(EntityOutcome::NotFound);
            }
            if self.subs().entities.depth(parent) >= MAX_DEPTH {
                return Ok(EntityOutcome::InUse(
                    "the tree may be at most 16 levels deep",
                ));
            }
        }
        self.t
            .entities
            .insert(id.as_str(), encode(&record)?.as_slice())?;
        self.changed_mut().entities_mut().insert(id, record);
        Ok(EntityOutcome::Done)
    }

    pub(super) fn delete_entity(&mut self, id: &str) -> Result<EntityOutcome, StoreError> {
        let subs = self.subs();
        if id == crate::ids::EntityId::ROOT || !subs.entities.exists(id) {
            return Ok(EntityOutcome::NotFound);
        }
        if subs.entities.has_children(id) {
            return Ok(EntityOutcome::InUse("it has child entities"));
        }
        if subs.keys.owned_by(id) {
            return Ok(EntityOutcome::InUse("it has API keys"));
        }
        if subs.iter().any(|(_, s)| s.entity == id) {
            return Ok(EntityOutcome::InUse("it has subscriptions"));
        }
        self.t.entities.remove(id)?;
        self.changed_mut().entities_mut().remove(id);
        Ok(EntityOutcome::Done)
    }
}
