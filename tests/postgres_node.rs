//! The daemon on the PostgreSQL backend, end to end: an event posted over HTTPS is
//! committed in a throwaway database and delivered, signed, to a receiver on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use common::postgres::{PASSWORD, TempPostgres};
use common::{Hookd, Options, Receiver, verify};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_postgres_delivers_what_it_accepted() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let database = pg.create_database();
    let password = pg.dir().join(format!("{database}.password"));
    std::fs::write(&password, PASSWORD).unwrap();
    let storage = format!(
        "backend = \"postgres\"\npath = \"data/hookd.redb\"\nmin_free = \"0\"\n\
         [storage.postgres]\nurl = \"{}\"\npassword_file = \"{}\"\nnode_name = \"node-a\"\n",
        pg.hookd_url(&database),
        password.display()
    );
    let hookd = Hookd::start(Options {
        storage,
        ..Options::default()
    })
    .await;
    let mut receiver = Receiver::start(&hookd.ca).await;
    let (_, secret) = hookd.subscribe(&receiver.url, &["*"]).await;
    let accepted = hookd
        .post_event("job.created", json!({"on": "postgres"}))
        .await;
    let got = receiver.next().await;
    assert!(verify(&got, &secret));
    assert_eq!(got.header("webhook-id"), accepted["id"].as_str().unwrap());
    let delivery = hookd.first_delivery(&accepted).await;
    hookd.wait_for_delivery_state(&delivery, "SUCCEEDED").await;
    assert_eq!(pg.psql(&database, "SELECT count(*) FROM events"), "1");
    assert_eq!(
        pg.psql(&database, "SELECT count(*) FROM attempts"),
        "1",
        "the outcome is in the database"
    );
}
