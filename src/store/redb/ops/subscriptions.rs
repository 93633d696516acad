//! Subscriptions inside the writer's transaction: storing them, pausing and resuming
//! them, deleting them, and disabling them on hookd's own account. Each writes the
//! subscription alone, whatever it has pending: its deliveries keep their `due` entries,
//! the dispatcher drops or reads its window, and the sweeper (`sweep.rs`) expires a
//! paused subscription's deliveries and cancels a deleted one's in bounded steps.

use super::*;

impl Batch<'_, '_> {
    // ---- subscriptions ---------------------------------------------------------

    pub(super) fn put_subscription(
        &mut self,
        id: u128,
        mut record: SubscriptionRecord,
        expected_updated_ms: Option<u64>,
    ) -> Result<PutOutcome, StoreError> {
        let before = self.subscription(id);
        if let Some(expected) = expected_updated_ms {
            if before.as_ref().map(|b| b.updated_ms) != Some(expected) {
                return Ok(PutOutcome::Conflict);
            }
        }
        let was_active = before
            .as_ref()
            .map(|b| b.status == SubscriptionStatus::Active);
        let active = record.status == SubscriptionStatus::Active;
        if active && was_active == Some(false) {
            record.active_since_ms = self.now;
        }
        self.store_subscription(id, record)?;
        if was_active.is_some_and(|was| was != active) {
            self.effects.forget.push(id);
        }
        Ok(PutOutcome::Stored)
    }

    pub(super) fn store_subscription(
        &mut self,
        id: u128,
        record: SubscriptionRecord,
    ) -> Result<(), StoreError> {
        self.t
            .subscriptions
            .insert(id, encode(&record)?.as_slice())?;
        let current = self.current;
        self.changed
            .get_or_insert_with(|| current.clone())
            .upsert(id, record);
        Ok(())
    }

    pub(super) fn delete_subscription(&mut self, id: u128) -> Result<bool, StoreError> {
        if self.t.subscriptions.remove(id)?.is_none() {
            return Ok(false);
        }
        let current = self.current;
        self.changed
            .get_or_insert_with(|| current.clone())
            .remove(id);
        self.t.health.remove(id)?;
        self.t.failing.remove(id)?;
        // Its unfinished deliveries are cancelled by the sweeper, a bounded step at a time.
        self.effects.forget.push(id);
        Ok(true)
    }

    /// DISABLED by hookd: its deliveries wait (and expire), and whoever follows `hookd.*`
    /// is told.
    pub(super) fn disable(&mut self, id: u128, reason: String) -> Result<(), StoreError> {
        let Some(mut record) = self.subscription(id) else {
            return Ok(());
        };
        if record.status == SubscriptionStatus::Disabled {
            return Ok(());
        }
        let was_active = record.status == SubscriptionStatus::Active;
        record.status = SubscriptionStatus::Disabled;
        record.disabled_reason = Some(reason.clone());
        record.updated_ms = self.now;
        tracing::warn!(subscription = %SubscriptionId(id), %reason, "subscription disabled");
        let data = serde_json::json!({
            "subscription": {
                "id": SubscriptionId(id).to_string(),
                "entityId": record.entity,
                "endpointUrl": record.endpoint_url,
                "eventTypes": record.event_types,
                "status": "DISABLED",
                "disabledReason": reason,
            },
            "reason": reason,
        });
        let entity = record.entity.clone();
        self.store_subscription(id, record)?;
        if was_active {
            self.effects.forget.push(id);
        }
        self.emit(&entity, "hookd.subscription.disabled", &data)
    }
}
