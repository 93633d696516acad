//! The harness of the `PgStore` tests: a server shared by the tests running at the same
//! time (each with a database of its own), a node (a `PgStore` with a sink and an
//! observer that record what they were told), and records to store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::tests::testdb::{PASSWORD, TempPostgres};
use super::*;
use crate::config::Postgres;
use crate::ids::uuid_v7;
use crate::store::records::{
    EndpointAuthRecord, EventRecord, SubscriptionRecord, SubscriptionStatus,
};
use crate::store::space::{StorageHealth, StorageState};
use crate::store::*;

/// How long a test waits for something the store does by itself.
pub(super) const WAIT: Duration = Duration::from_secs(30);

/// The server the tests running now share, started by the first of them.
pub(super) fn server() -> Option<Arc<TempPostgres>> {
    static SHARED: Mutex<Weak<TempPostgres>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(pg) = slot.upgrade() {
        return Some(pg);
    }
    let pg = Arc::new(TempPostgres::start()?);
    *slot = Arc::downgrade(&pg);
    Some(pg)
}

/// `[storage.postgres]` for the `hookd` role on `database` (a password file of its own,
/// so that tests running together never read one another's half-written file).
pub(super) fn settings(pg: &TempPostgres, database: &str) -> Postgres {
    let password_file = pg.dir().join(format!("{database}.password"));
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    Postgres {
        password_file: Some(password_file),
        pool_size: 8,
        ..super::tests::settings(pg.hookd_url(database))
    }
}

/// What the writer told the dispatcher.
#[derive(Default)]
pub(super) struct Recorder {
    pub due: Mutex<Vec<DueEntry>>,
    pub fresh: Mutex<Vec<Fresh>>,
    pub forgotten: Mutex<Vec<u128>>,
}

impl DueSink for Recorder {
    fn schedule(&self, entries: Vec<DueEntry>, fresh: Vec<Fresh>) {
        self.due.lock().unwrap().extend(entries);
        self.fresh.lock().unwrap().extend(fresh);
    }

    fn forget(&self, subscriptions: &[u128]) {
        self.forgotten.lock().unwrap().extend(subscriptions);
    }
}

#[derive(Default)]
pub(super) struct Observed {
    pub reports: Mutex<Vec<CommitReport>>,
    pub states: Mutex<Vec<StorageState>>,
}

impl StoreObserver for Observed {
    fn committed(&self, report: &CommitReport) {
        self.reports.lock().unwrap().push(report.clone());
    }

    fn storage_state(&self, state: StorageState) {
        self.states.lock().unwrap().push(state);
    }
}

/// One node: a `PgStore` and what it told its dispatcher and observer.
pub(super) struct Node {
    pub store: PgStore,
    pub shared: Shared,
    pub sink: Arc<Recorder>,
    pub observed: Arc<Observed>,
    /// Ends once every handle on the store is gone and the node has left.
    pub writer: JoinHandle<()>,
}

pub(super) const HOUR: u64 = 3_600_000;

pub(super) fn writer_settings() -> WriterSettings {
    WriterSettings {
        max_age_ms: HOUR,
        disable_after_ms: HOUR,
        min_free: crate::config::MinFree::Bytes(0),
    }
}

pub(super) async fn node(pg: &TempPostgres, database: &str) -> Node {
    node_with(pg, database, writer_settings()).await
}

pub(super) async fn node_with(pg: &TempPostgres, database: &str, writer: WriterSettings) -> Node {
    let shared = Shared {
        snapshots: Snapshots::new(),
        health: StorageHealth::default(),
        commits: Arc::new(CommitStats::default()),
    };
    let sink = Arc::new(Recorder::default());
    let observed = Arc::new(Observed::default());
    let (store, handle) = PgStore::open(
        &settings(pg, database),
        writer,
        shared.clone(),
        HashMap::new(),
        sink.clone(),
        observed.clone(),
    )
    .await
    .unwrap();
    Node {
        store,
        shared,
        sink,
        observed,
        writer: handle,
    }
}

pub(super) fn subscription(types: &[&str]) -> SubscriptionRecord {
    SubscriptionRecord {
        entity: "root".into(),
        status: SubscriptionStatus::Active,
        disabled_reason: None,
        event_types: types.iter().map(|t| t.to_string()).collect(),
        endpoint_url: "https://example.com/".into(),
        endpoint_auth: EndpointAuthRecord::None,
        custom_headers: vec![],
        rate_limit: None,
        description: None,
        signing_secrets: vec![],
        created_ms: 1,
        updated_ms: 1,
        active_since_ms: 1,
        scopes: vec![ALL_SCOPES.into()],
    }
}

/// An event of `event_type`; with `key`, an Idempotency-Key (its byte) over a body
/// (its byte).
pub(super) fn event_of(event_type: &str, n: u32, key: Option<(u8, u8)>) -> NewEvent {
    NewEvent {
        id: uuid_v7(),
        record: EventRecord {
            entity: "root".into(),
            event_type: event_type.into(),
            created_ms: now_ms(),
            body: format!("{{\"n\":{n},\"bytes\":\"\\u00e9\\u0000\"}}").into_bytes(),
        },
        idempotency: key.map(|(key, body)| IdempotencyKey {
            key_hash: [key; 32],
            body_sha256: [body; 32],
        }),
        targets: None,
    }
}

pub(super) fn accepted(outcome: &IngestOutcome) -> Vec<u128> {
    match outcome {
        IngestOutcome::Accepted { deliveries } => deliveries.clone(),
        other => panic!("not accepted: {other:?}"),
    }
}

pub(super) async fn put(node: &Node, record: SubscriptionRecord) -> u128 {
    let id = uuid_v7();
    let stored = node.store.put_subscription(id, record, None).await.unwrap();
    assert_eq!(stored, PutOutcome::Stored);
    id
}
