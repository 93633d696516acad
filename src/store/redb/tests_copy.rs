//! `hookd store copy` from a redb file into a real PostgreSQL: every kind of record
//! arrives, with the counts matching and the bytes the API reads unchanged; a database
//! that already holds data is refused untouched; a running hookd's file is refused.

use super::maintenance::open_offline;
use super::tables;
use super::tests::{event, open, subscription, succeed};
use super::*;
use crate::config::{Backend, Postgres, Storage};
use crate::store::records::EntityRecord;
use crate::store::testdb::{PASSWORD, TempPostgres};
use crate::store::*;

fn target(pg: &TempPostgres) -> Storage {
    let password_file = pg.dir().join("copy.password");
    std::fs::write(&password_file, PASSWORD).unwrap();
    Storage {
        backend: Backend::Postgres,
        postgres: Postgres {
            url: Some(pg.hookd_url(&pg.create_database())),
            password_file: Some(password_file),
            node_name: Some("copy".into()),
            ..Postgres::default()
        },
        ..Storage::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appliance_is_copied_into_an_empty_database() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.redb");
    let (store, writer) = open(&path);
    let child = EntityRecord {
        name: "Acme".into(),
        parent: Some("root".into()),
        created_ms: 1,
    };
    store.create_entity("acme".into(), child).await.unwrap();
    let key = ApiKeyRecord {
        entity: "acme".into(),
        name: "producer".into(),
        scopes: vec!["events:write".into()],
        sha256: [7; 32],
        created_ms: 2,
    };
    store.create_key(42, key).await.unwrap();
    let sub = crate::ids::uuid_v7();
    store
        .put_subscription(sub, subscription(), None)
        .await
        .unwrap();
    // Three events, one with an idempotency key; the first delivery succeeds (an
    // attempt with its request headers and a counter row), the others stay due.
    let mut deliveries = Vec::new();
    for outcome in store
        .ingest(vec![event(0, Some(9)), event(1, None), event(2, None)])
        .await
        .unwrap()
    {
        let IngestOutcome::Accepted { deliveries: d } = outcome else {
            panic!("{outcome:?}");
        };
        deliveries.extend(d);
    }
    succeed(&store, deliveries[0]).await;
    // The second fails once (a retry due later, and a failing streak): every table has
    // rows to compare when the data comes back.
    super::tests_due::fail(&store, deliveries[1], now_ms() + 60_000).await;
    let body = store.event_body(store.delivery(deliveries[1]).await.unwrap().unwrap().event);
    let body = body.await.unwrap().unwrap();

    // While hookd holds the file, the copy is refused.
    let from = Storage {
        path: path.clone(),
        ..Storage::default()
    };
    let to = target(&pg);
    let busy = copy(&from, &to).await.err().unwrap();
    assert!(matches!(busy, StoreError::Locked(_)), "{busy}");
    drop(store);
    writer.join();

    let report = copy(&from, &to).await.unwrap();
    assert_eq!(report.read, report.written);
    let expected = Counts {
        entities: 2,
        subscriptions: 1,
        api_keys: 1,
        events: 3,
        deliveries: 3,
        attempts: 2,
        idempotency: 1,
        attempt_stats: 2,
    };
    assert_eq!(report.written, expected);

    let database = to
        .postgres
        .url
        .as_deref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let sql = |query: &str| pg.psql(database, query);
    assert_eq!(sql("SELECT parent FROM entities WHERE id = 'acme'"), "root");
    assert_eq!(sql("SELECT entity FROM api_keys"), "acme");
    assert_eq!(
        sql("SELECT count(*) FROM deliveries WHERE next_attempt_ms IS NOT NULL"),
        "2",
        "the unfinished deliveries are due"
    );
    // Ids made in the same millisecond are not ordered: name the delivery.
    assert_eq!(
        sql(&format!(
            "SELECT state FROM deliveries WHERE id = '{:032x}'",
            deliveries[0]
        )),
        "2"
    );
    assert_eq!(
        sql("SELECT count(*) FROM attempts WHERE request IS NOT NULL"),
        "1"
    );
    let stored = sql(&format!(
        "SELECT encode(body, 'escape') FROM events e JOIN deliveries d ON d.event = e.id \
         WHERE d.id = '{:032x}'",
        deliveries[1]
    ));
    assert_eq!(
        stored.as_bytes(),
        &body[..],
        "the signed bytes are unchanged"
    );

    // Copying again into the same database is refused and changes nothing.
    let again = copy(&from, &to).await.err().unwrap();
    assert!(matches!(again, StoreError::TargetNotEmpty(_)), "{again}");
    assert_eq!(sql("SELECT count(*) FROM events"), "3");

    // And back to one VM: refused while a node beats on the database.
    let back_path = dir.path().join("back.redb");
    let back = Storage {
        path: back_path.clone(),
        ..Storage::default()
    };
    sql("INSERT INTO nodes (name) VALUES ('node-a')");
    let running = copy(&to, &back).await.err().unwrap();
    assert!(
        matches!(&running, StoreError::NodesRunning(names) if names == "node-a"),
        "{running}"
    );
    assert!(!back_path.exists());
    assert!(!dir.path().join("back.redb.copying").exists());
    sql("DELETE FROM nodes");
    let report = copy(&to, &back).await.unwrap();
    assert_eq!((report.read, report.written), (expected, expected));
    assert!(!dir.path().join("back.redb.copying").exists());
    // Every table, indexes and due queue included, holds what the original file did.
    let (original, copied) = (
        open_offline(&path).unwrap(),
        open_offline(&back_path).unwrap(),
    );
    let mut compare = Compare {
        a: original.begin_read().unwrap(),
        b: copied.begin_read().unwrap(),
        differ: Vec::new(),
    };
    tables::visit_all(&mut compare).unwrap();
    assert!(
        compare.differ.is_empty(),
        "tables differ: {:?}",
        compare.differ
    );
    drop((compare, copied));
    // A file that holds data is not overwritten.
    let again = copy(&to, &back).await.err().unwrap();
    assert!(matches!(again, StoreError::TargetNotEmpty(_)), "{again}");
}

/// Collects the names of the tables whose rows differ between two files.
struct Compare {
    a: ::redb::ReadTransaction,
    b: ::redb::ReadTransaction,
    differ: Vec<String>,
}

impl tables::Visit for Compare {
    fn visit<K: ::redb::Key + 'static, V: ::redb::Value + 'static>(
        &mut self,
        table: ::redb::TableDefinition<'static, K, V>,
    ) -> Result<(), StoreError> {
        use ::redb::{ReadableTable, TableHandle};
        type Rows = Vec<(Vec<u8>, Vec<u8>)>;
        let rows = |txn: &::redb::ReadTransaction| -> Result<Rows, StoreError> {
            let mut rows = Vec::new();
            for entry in txn.open_table(table)?.iter()? {
                let (key, value) = entry?;
                rows.push((
                    K::as_bytes(&key.value()).as_ref().to_vec(),
                    V::as_bytes(&value.value()).as_ref().to_vec(),
                ));
            }
            Ok(rows)
        };
        if table.name() != "meta" && rows(&self.a)? != rows(&self.b)? {
            self.differ.push(table.name().to_owned());
        }
        Ok(())
    }
}
