//! Subscriptions, entities and API keys inside a batch. They are rare, and another
//! node may have changed the same rows, so each is written at once, in the batch's
//! order, rather than with the batch's bulk rows at the end: what the database says
//! (a compare-and-set that found another revision, a foreign key that another node's
//! delete broke) decides the answer and whether the snapshot changes, before the
//! commands after it are decided. A refusal the database may legitimately give runs
//! in a savepoint (`guarded`), so it undoes that command alone, not the batch.
//!
//! The refusals redb makes (from the snapshot) come first, with the same reasons; the
//! database's own checks (primary keys, foreign keys) close the races between nodes.

use deadpool_postgres::Client;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::PostgresError;
use super::batch::Batch;
use super::types::Uuid;
use super::writer::PutArgs;
use crate::ids::{EntityId, SubscriptionId};
use crate::store::codec::{decode, encode};
use crate::store::error::StoreError;
use crate::store::records::{EntityRecord, SubscriptionRecord, SubscriptionStatus};
use crate::store::requests::{EntityOutcome, PutOutcome};
use crate::store::tenancy::{ApiKeyRecord, MAX_DEPTH};

/// A command's own answer, beside the batch's fate.
type Answer<T> = Result<T, StoreError>;

const INSERT_SUBSCRIPTION: &str = "
    INSERT INTO subscriptions (id, entity, record) VALUES ($1, $2, $3)
    ON CONFLICT (id) DO UPDATE
        SET entity = excluded.entity, record = excluded.record,
            revision = subscriptions.revision + 1
    RETURNING revision";
/// The compare-and-set of an edit made against what the caller read.
const UPDATE_SUBSCRIPTION_AT: &str = "
    UPDATE subscriptions SET entity = $2, record = $3, revision = revision + 1
    WHERE id = $1 AND revision = $4
    RETURNING revision";
const UPDATE_RECORD: &str = "
    UPDATE subscriptions SET record = $2, revision = revision + 1 WHERE id = $1
    RETURNING revision";
const READ_SUBSCRIPTION: &str = "SELECT revision, record FROM subscriptions WHERE id = $1";
const DELETE_SUBSCRIPTION: &str = "DELETE FROM subscriptions WHERE id = $1 RETURNING id";
const DELETE_HEALTH: &str = "DELETE FROM subscription_health WHERE subscription = $1";
const INSERT_ENTITY: &str = "
    INSERT INTO entities (id, name, parent, created_ms) VALUES ($1, $2, $3, $4)
    ON CONFLICT (id) DO NOTHING RETURNING id";
const DELETE_ENTITY: &str = "DELETE FROM entities WHERE id = $1 RETURNING id";
const INSERT_KEY: &str =
    "INSERT INTO api_keys (id, sha256, entity, record) VALUES ($1, $2, $3, $4) RETURNING id";
const DELETE_KEY: &str = "DELETE FROM api_keys WHERE id = $1 RETURNING id";

impl Batch<'_> {
    pub(super) async fn put_subscription(
        &mut self,
        client: &Client,
        args: &PutArgs,
    ) -> Result<Answer<PutOutcome>, StoreError> {
        let id = args.id;
        let mut record = args.record.clone();
        let before = self.subscription(id);
        if let Some(expected) = args.expected_updated_ms {
            if before.as_ref().map(|b| b.updated_ms) != Some(expected) {
                return Ok(Ok(PutOutcome::Conflict));
            }
        }
        let was_active = before
            .as_ref()
            .map(|b| b.status == SubscriptionStatus::Active);
        let active = record.status == SubscriptionStatus::Active;
        if active && was_active == Some(false) {
            record.active_since_ms = self.now;
        }
        let bytes = encode(&record)?;
        let key = Uuid(id);
        let written = match (args.expected_updated_ms, self.revision(id)) {
            (None, _) => {
                guarded(client, INSERT_SUBSCRIPTION, &[&key, &record.entity, &bytes]).await?
            }
            (Some(_), Some(revision)) => {
                let params: [&(dyn ToSql + Sync); 4] = [&key, &record.entity, &bytes, &revision];
                guarded(client, UPDATE_SUBSCRIPTION_AT, &params).await?
            }
            // Never read from the database by this node: nothing to compare against.
            (Some(_), None) => Ok(Vec::new()),
        };
        let rows = match written {
            Ok(rows) => rows,
            Err(refused) => return Ok(Err(PostgresError::from(refused).into())),
        };
        let Some(row) = rows.first() else {
            // Another node changed (or deleted) it since this node read it: take what
            // the database holds now, so the caller's next read is current here too.
            self.reread_subscription(client, id).await?;
            return Ok(Ok(PutOutcome::Conflict));
        };
        self.revisions
            .insert(id, Some(row.try_get(0).map_err(PostgresError::from)?));
        self.changed_mut().upsert(id, record);
        if was_active.is_some_and(|was| was != active) {
            self.effects.forget.push(id);
        }
        Ok(Ok(PutOutcome::Stored))
    }

    /// Puts the subscription as the database holds it into the snapshot.
    async fn reread_subscription(&mut self, client: &Client, id: u128) -> Result<(), StoreError> {
        let statement = client
            .prepare_cached(READ_SUBSCRIPTION)
            .await
            .map_err(PostgresError::from)?;
        let row = client
            .query_opt(&statement, &[&Uuid(id)])
            .await
            .map_err(PostgresError::from)?;
        let was_active = self.is_active(id);
        match row {
            Some(row) => {
                let revision: i64 = row.try_get(0).map_err(PostgresError::from)?;
                let bytes: Vec<u8> = row.try_get(1).map_err(PostgresError::from)?;
                let record: SubscriptionRecord = decode(&bytes)?;
                let active = record.status == SubscriptionStatus::Active;
                self.revisions.insert(id, Some(revision));
                self.changed_mut().upsert(id, record);
                if was_active != active {
                    self.effects.forget.push(id);
                }
            }
            None => {
                self.revisions.insert(id, None);
                self.changed_mut().remove(id);
                self.effects.forget.push(id);
            }
        }
        Ok(())
    }

    pub(super) async fn delete_subscription(
        &mut self,
        client: &Client,
        id: u128,
    ) -> Result<bool, StoreError> {
        let (delete, health) = tokio::try_join!(
            client.prepare_cached(DELETE_SUBSCRIPTION),
            client.prepare_cached(DELETE_HEALTH),
        )
        .map_err(PostgresError::from)?;
        let key: [&(dyn ToSql + Sync); 1] = [&Uuid(id)];
        let (deleted, _) = tokio::try_join!(
            biased;
            client.query(&delete, &key),
            client.execute(&health, &key),
        )
        .map_err(PostgresError::from)?;
        if self.subs().get(id).is_some() {
            self.changed_mut().remove(id);
            // Its unfinished deliveries are cancelled by the sweeper, a bounded step at
            // a time.
            self.effects.forget.push(id);
        }
        self.revisions.insert(id, None);
        self.health.remove(&id);
        Ok(!deleted.is_empty())
    }

    /// DISABLED by hookd: its deliveries wait (and expire), and whoever follows `hookd.*`
    /// is told.
    pub(super) async fn disable(
        &mut self,
        client: &Client,
        id: u128,
        reason: String,
    ) -> Result<(), StoreError> {
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
        let statement = client
            .prepare_cached(UPDATE_RECORD)
            .await
            .map_err(PostgresError::from)?;
        let row = client
            .query_opt(&statement, &[&Uuid(id), &encode(&record)?])
            .await
            .map_err(PostgresError::from)?;
        let Some(row) = row else {
            // Deleted by another node meanwhile: nothing left to disable.
            self.revisions.insert(id, None);
            self.changed_mut().remove(id);
            self.effects.forget.push(id);
            return Ok(());
        };
        self.revisions
            .insert(id, Some(row.try_get(0).map_err(PostgresError::from)?));
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
        self.changed_mut().upsert(id, record);
        if was_active {
            self.effects.forget.push(id);
        }
        self.emit(&entity, "hookd.subscription.disabled", &data);
        Ok(())
    }

    // ---- entities and keys -----------------------------------------------------

    pub(super) async fn create_entity(
        &mut self,
        client: &Client,
        id: &str,
        record: &EntityRecord,
    ) -> Result<EntityOutcome, StoreError> {
        if self.subs().entities.exists(id) || id == EntityId::ROOT {
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
        let created = super::rows::ms(record.created_ms);
        let params: [&(dyn ToSql + Sync); 4] = [&id, &record.name, &record.parent, &created];
        match guarded(client, INSERT_ENTITY, &params).await? {
            Ok(rows) if rows.is_empty() => return Ok(EntityOutcome::Exists),
            Ok(_) => {}
            // The parent was deleted by another node meanwhile.
            Err(refused) if refused.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                return Ok(EntityOutcome::NotFound);
            }
            Err(refused) => return Err(PostgresError::from(refused).into()),
        }
        self.changed_mut()
            .entities_mut()
            .insert(id.to_owned(), record.clone());
        Ok(EntityOutcome::Done)
    }

    pub(super) async fn delete_entity(
        &mut self,
        client: &Client,
        id: &str,
    ) -> Result<EntityOutcome, StoreError> {
        let subs = self.subs();
        if id == EntityId::ROOT || !subs.entities.exists(id) {
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
        let outcome = match guarded(client, DELETE_ENTITY, &[&id]).await? {
            Ok(rows) if rows.is_empty() => EntityOutcome::NotFound,
            Ok(_) => EntityOutcome::Done,
            // Another node gave it a child, a key or a subscription meanwhile.
            Err(refused) if refused.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                let by = refused.as_db_error().and_then(|db| db.table());
                return Ok(EntityOutcome::InUse(match by {
                    Some("api_keys") => "it has API keys",
                    Some("entities") => "it has child entities",
                    _ => "it has subscriptions",
                }));
            }
            Err(refused) => return Err(PostgresError::from(refused).into()),
        };
        self.changed_mut().entities_mut().remove(id);
        Ok(outcome)
    }

    pub(super) async fn create_key(
        &mut self,
        client: &Client,
        id: u128,
        record: &ApiKeyRecord,
    ) -> Result<Answer<()>, StoreError> {
        let bytes = encode(record)?;
        let hash = record.sha256.as_slice();
        let params: [&(dyn ToSql + Sync); 4] = [&Uuid(id), &hash, &record.entity, &bytes];
        if let Err(refused) = guarded(client, INSERT_KEY, &params).await? {
            // Its entity deleted by another node meanwhile, or the key already there.
            return Ok(Err(PostgresError::from(refused).into()));
        }
        self.changed_mut().keys_mut().insert(id, record.clone());
        Ok(Ok(()))
    }

    pub(super) async fn revoke_key(
        &mut self,
        client: &Client,
        id: u128,
    ) -> Result<bool, StoreError> {
        let statement = client
            .prepare_cached(DELETE_KEY)
            .await
            .map_err(PostgresError::from)?;
        let rows = client
            .query(&statement, &[&Uuid(id)])
            .await
            .map_err(PostgresError::from)?;
        if self.subs().keys.get(id).is_some() {
            self.changed_mut().keys_mut().remove(id);
        }
        Ok(!rows.is_empty())
    }
}

/// Runs one statement in a savepoint: when the database refuses it (a constraint),
/// only it is undone and the refusal is handed back; a failure of the connection or
/// the transaction fails the batch. Prepared first, so that the savepoint, the
/// statement and its release go out in that order in one round trip.
async fn guarded(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Result<Vec<Row>, tokio_postgres::Error>, PostgresError> {
    let statement = client.prepare_cached(sql).await?;
    let (saved, done, released) = tokio::join!(
        biased;
        client.batch_execute("SAVEPOINT one_change"),
        client.query(&statement, params),
        client.batch_execute("RELEASE SAVEPOINT one_change"),
    );
    saved?;
    match done {
        Ok(rows) => {
            released?;
            Ok(Ok(rows))
        }
        Err(error) => {
            if error.as_db_error().is_none() {
                return Err(error.into());
            }
            let error = PostgresError::from(error);
            if error.is_unavailable() {
                return Err(error);
            }
            client
                .batch_execute("ROLLBACK TO SAVEPOINT one_change; RELEASE SAVEPOINT one_change")
                .await?;
            match error {
                PostgresError::Query { error } => Ok(Err(error)),
                other => Err(other),
            }
        }
    }
}
