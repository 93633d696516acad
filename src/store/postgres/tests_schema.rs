//! The schema against a real PostgreSQL: nodes starting together migrate exactly once,
//! a migrated database is left as it is, a newer schema is refused, the database keeps
//! the invariants the schema declares, and ids keep their order as `uuid`s.

use super::tests::testdb::TempPostgres;
use super::tests::{client, hookd, scalar};
use super::*;

/// How long a test waits for a migration.
const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_exactly_once() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let database = pg.create_database();
    let settings = hookd(&pg, &database);
    // Connected first, so that the three migrations reach the server at the same time.
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(client(&settings).await.unwrap());
    }
    let runs = nodes.into_iter().map(|mut client| {
        tokio::spawn(async move { migrate(&mut client).await.map_err(|e| e.to_string()) })
    });
    let mut outcomes = Vec::new();
    for run in runs.collect::<Vec<_>>() {
        outcomes.push(
            tokio::time::timeout(WAIT, run)
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    outcomes.sort_by_key(|m| m.from);
    let known = latest();
    let expected = [
        Migrated { from: 0, to: known },
        Migrated {
            from: known,
            to: known,
        },
        Migrated {
            from: known,
            to: known,
        },
    ];
    assert_eq!(outcomes, expected);
    assert_eq!(
        pg.psql(&database, "SELECT count(*) FROM partitions"),
        PARTITIONS.to_string()
    );
    assert_eq!(pg.psql(&database, "SELECT id FROM entities"), "root");
    assert_eq!(
        pg.psql(
            &database,
            "SELECT value FROM hookd_meta WHERE key = 'schema_version'"
        ),
        known.to_string()
    );
}

#[tokio::test]
async fn migrating_a_migrated_database_changes_nothing() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let database = pg.create_database();
    let mut client = client(&hookd(&pg, &database)).await.unwrap();
    let first = migrate(&mut client).await.unwrap();
    assert_eq!((first.from, first.to), (0, latest()));
    let tables = "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM \
                  information_schema.tables WHERE table_schema = 'public'";
    let before = pg.psql(&database, tables);
    for name in [
        "events",
        "deliveries",
        "attempts",
        "partitions",
        "nodes",
        "portal_links",
    ] {
        assert!(before.split(',').any(|t| t == name), "{name} in {before}");
    }
    let again = migrate(&mut client).await.unwrap();
    assert_eq!((again.from, again.to), (latest(), latest()));
    assert_eq!(pg.psql(&database, tables), before);
    assert_eq!(pg.psql(&database, "SELECT count(*) FROM hookd_meta"), "1");
}

#[tokio::test]
async fn a_schema_newer_than_this_build_is_refused_untouched() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let database = pg.create_database();
    let mut client = client(&hookd(&pg, &database)).await.unwrap();
    migrate(&mut client).await.unwrap();
    let newer = latest() + 1;
    pg.psql(
        &database,
        &format!("UPDATE hookd_meta SET value = '{newer}' WHERE key = 'schema_version'"),
    );
    let error = migrate(&mut client).await.unwrap_err();
    assert!(
        matches!(error, PostgresError::SchemaTooNew { found, known } if found == newer && known == latest()),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(
        shown.contains(&format!("version {newer}, newer than")),
        "{shown}"
    );
    assert_eq!(
        pg.psql(
            &database,
            "SELECT value FROM hookd_meta WHERE key = 'schema_version'"
        ),
        newer.to_string()
    );

    pg.psql(
        &database,
        "UPDATE hookd_meta SET value = 'one' WHERE key = 'schema_version'",
    );
    let error = migrate(&mut client).await.unwrap_err();
    assert!(
        matches!(error, PostgresError::SchemaVersion(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_database_computes_partitions_and_keeps_the_due_invariant() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let database = pg.create_database();
    let mut client = client(&hookd(&pg, &database)).await.unwrap();
    migrate(&mut client).await.unwrap();
    let event = Uuid(crate::ids::uuid_v7());
    client
        .execute(
            "INSERT INTO events (id, entity, event_type, created_ms, body)
             VALUES ($1, 'root', 'a.b', 1, '\\x7b7d')",
            &[&event],
        )
        .await
        .unwrap();
    for _ in 0..20 {
        let subscription = Uuid(crate::ids::uuid_v7());
        let row = client
            .query_one(
                "INSERT INTO deliveries (id, event, subscription, state, next_attempt_ms,
                     created_ms, updated_ms)
                 VALUES (gen_random_uuid(), $1, $2, 0, 5, 1, 1)
                 RETURNING partition",
                &[&event, &subscription],
            )
            .await
            .unwrap();
        let partition: i16 = row.get(0);
        assert_eq!(partition, partition_of(subscription.0));
        assert!((0..PARTITIONS).contains(&partition));
    }
    let insert = |state: i16, next: Option<i64>, retry_once: bool| {
        let client = &client;
        async move {
            client
                .execute(
                    "INSERT INTO deliveries (id, event, subscription, state, next_attempt_ms,
                         created_ms, updated_ms, retry_once)
                     VALUES (gen_random_uuid(), $1, gen_random_uuid(), $2, $3, 1, 1, $4)",
                    &[&event, &state, &next, &retry_once],
                )
                .await
                .map_err(PostgresError::from)
        }
    };
    let violation = Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION);
    assert_eq!(insert(1, None, false).await.unwrap_err().code(), violation);
    assert_eq!(
        insert(2, Some(9), false).await.unwrap_err().code(),
        violation
    );
    insert(2, Some(9), true).await.unwrap();
    insert(3, None, false).await.unwrap();
    // Deleting the event takes its deliveries with it.
    let deleted = client.execute("DELETE FROM events", &[]).await.unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(
        scalar::<i64>(&client, "SELECT count(*) FROM deliveries").await,
        0
    );
}

#[tokio::test]
async fn ids_travel_as_uuids_in_the_order_of_their_u128() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let database = pg.create_database();
    let client = client(&hookd(&pg, &database)).await.unwrap();
    let mut ids: Vec<u128> = vec![0, 1, 0xff, 1 << 64, u128::MAX, u128::MAX - 1];
    ids.extend((0..20).map(|_| crate::ids::uuid_v7()));
    ids.push(0x0190_0000_0000_7000_8000_0000_0000_0001);
    let params: Vec<Uuid> = ids.iter().copied().map(Uuid).collect();
    let rows = client
        .query(
            "SELECT id, id::text AS shown FROM unnest($1::uuid[]) AS t(id) ORDER BY 1",
            &[&params],
        )
        .await
        .unwrap();
    ids.sort_unstable();
    let read: Vec<u128> = rows.iter().map(|row| row.get::<_, Uuid>(0).0).collect();
    assert_eq!(read, ids);
    let last: String = rows[rows.len() - 1].get(1);
    assert_eq!(last, "ffffffff-ffff-ffff-ffff-ffffffffffff");
    let text: String = client
        .query_one(
            "SELECT $1::uuid::text",
            &[&Uuid(0x0190_0000_0000_7000_8000_0000_0000_0001)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(text, "01900000-0000-7000-8000-000000000001");
}
