//! Subscriptions inside the writer's transaction: storing them, pausing and resuming
//! their deliveries (parking), deleting them, and disabling them on hookd's own account.

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
        match (was_active, active) {
            (Some(true), false) => self.repark(id, true)?,
            (Some(false), true) => self.repark(id, false)?,
            _ => {}
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

    /// Parks (`park == true`) or resumes every unfinished delivery of a subscription.
    /// Scans the due queue, which holds exactly the unfinished deliveries.
    pub(super) fn repark(&mut self, subscription: u128, park: bool) -> Result<(), StoreError> {
        let mut found = Vec::new();
        for entry in self.t.due.iter()? {
            let (key, value) = entry?;
            if value.value() == subscription {
                found.push(key.value().1);
            }
        }
        for delivery in found {
            let Some(mut record) = self.load(delivery)? else {
                continue;
            };
            if park && !record.parked {
                self.park(delivery, &mut record)?;
            } else if !park && record.parked {
                let now = self.now;
                self.schedule(delivery, &mut record, now)?;
            } else {
                continue;
            }
            record.updated_ms = self.now;
            self.save(delivery, &record)?;
        }
        self.effects.forget.push(subscription);
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
        let owned: Vec<u128> = self
            .t
            .subscription_deliveries
            .range((id, 0)..=(id, u128::MAX))?
            .map(|entry| entry.map(|(key, _)| key.value().1))
            .collect::<Result<_, _>>()?;
        for delivery in owned {
            let Some(mut record) = self.load(delivery)? else {
                continue;
            };
            if record.state.is_final() {
                continue;
            }
            self.unschedule(delivery, &mut record)?;
            record.state = DeliveryState::Cancelled;
            self.effects.report.cancelled += 1;
            record.updated_ms = self.now;
            self.save(delivery, &record)?;
        }
        self.effects.forget.push(id);
        Ok(true)
    }

    /// DISABLED by hookd: parks its deliveries and tells whoever follows `hookd.*`.
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
            self.repark(id, true)?;
        }
        self.emit(&entity, "hookd.subscription.disabled", &data)
    }
}
