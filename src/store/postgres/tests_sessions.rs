//! Console sessions and portal links in PostgreSQL, against a real server, with two
//! nodes (two `PgStore`s, two pools) on one database: a session opened on one is read,
//! given a notice and closed on the other; a notice and a link are each taken once
//! however the two nodes race for them; the tables stay within their limit; expired rows
//! are never served and the retention pass removes them, a bounded number per step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::tests::testdb::TempPostgres;
use super::tests_support::*;
use super::*;
use crate::config::Postgres;
use crate::store::sessions::{LinkRecord, PortalScope, SessionRecord, TokenHash};
use crate::store::*;

const MINUTE: Duration = Duration::from_secs(60);

/// A node named `name` (each with its own pool) on `database`.
async fn node_named(pg: &TempPostgres, database: &str, name: &str) -> PgStore {
    let shared = Shared {
        snapshots: Snapshots::new(),
        health: StorageHealth::default(),
        commits: Arc::new(CommitStats::default()),
    };
    let config = Postgres {
        node_name: Some(name.to_owned()),
        ..settings(pg, database)
    };
    let (store, _writer) = PgStore::open(
        &config,
        writer_settings(),
        shared,
        HashMap::new(),
        Arc::new(Recorder::default()),
        Arc::new(Observed::default()),
    )
    .await
    .unwrap();
    store
}

async fn two_nodes() -> Option<(Arc<TempPostgres>, String, PgStore, PgStore)> {
    let pg = server()?;
    let database = pg.create_database();
    let a = node_named(&pg, &database, "node-a").await;
    let b = node_named(&pg, &database, "node-b").await;
    Some((pg, database, a, b))
}

fn session(key: Option<[u8; 32]>, portal: Option<PortalScope>, life: Duration) -> SessionRecord {
    SessionRecord {
        key_sha256: key,
        portal,
        csrf: "csrf-token".into(),
        notice: None,
        expires_in: life,
    }
}

fn link(life: Duration) -> LinkRecord {
    LinkRecord {
        key_sha256: Some([3; 32]),
        scope: PortalScope {
            entity: "root".into(),
            permissions: vec!["manage".into(), "read".into()],
        },
        expires_in: life,
    }
}

/// The rows of `table`, counted by the database itself.
fn count(pg: &TempPostgres, database: &str, table: &str) -> u64 {
    pg.psql(database, &format!("SELECT count(*) FROM {table}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_on_one_node_is_served_and_closed_by_another() {
    let Some((pg, database, a, b)) = two_nodes().await else {
        return;
    };
    let portal = PortalScope {
        entity: "root".into(),
        permissions: vec!["read".into()],
    };
    let token = TokenHash::of("console-cookie");
    let opened = session(Some([7; 32]), Some(portal), MINUTE);
    a.open_session(token, opened.clone(), 100).await.unwrap();

    let read = b.session(token).await.unwrap().expect("node b serves it");
    assert_eq!(read.key_sha256, opened.key_sha256);
    assert_eq!(read.portal, opened.portal);
    assert_eq!(
        (read.csrf.as_str(), read.notice.as_ref()),
        ("csrf-token", None)
    );
    assert!(
        read.expires_in <= MINUTE && read.expires_in > MINUTE - WAIT,
        "{:?}",
        read.expires_in
    );
    // Only hashes are stored: neither the cookie nor anything made from it but its hash.
    let stored = pg.psql(
        &database,
        "SELECT encode(token_sha256, 'hex') || ' ' || encode(key_sha256, 'hex') FROM console_sessions",
    );
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(stored, format!("{} {}", hex(&token.0), hex(&[7; 32])));

    // A notice left through one node is shown once, whichever node shows it.
    b.set_notice(token, "Subscription saved.".into())
        .await
        .unwrap();
    let read = a.session(token).await.unwrap().unwrap();
    assert_eq!(read.notice.as_deref(), Some("Subscription saved."));
    assert_eq!(
        a.take_notice(token).await.unwrap().as_deref(),
        Some("Subscription saved.")
    );
    assert_eq!(b.take_notice(token).await.unwrap(), None);
    assert_eq!(b.session(token).await.unwrap().unwrap().notice, None);

    // The admin token's session has no key; it is served on both nodes alike.
    let admin = TokenHash::of("admin-cookie");
    b.open_session(admin, session(None, None, MINUTE), 100)
        .await
        .unwrap();
    let read = a.session(admin).await.unwrap().unwrap();
    assert_eq!((read.key_sha256, read.portal), (None, None));

    // Signing out on node b ends the session on node a.
    b.close_session(token).await.unwrap();
    assert!(a.session(token).await.unwrap().is_none());
    a.set_notice(token, "too late".into()).await.unwrap();
    assert_eq!(a.take_notice(token).await.unwrap(), None);
    assert!(a.session(admin).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_and_a_notice_raced_for_by_two_nodes_are_taken_once() {
    let Some((_pg, _database, a, b)) = two_nodes().await else {
        return;
    };
    for n in 0..20 {
        let token = TokenHash::of(&format!("link-{n}"));
        a.create_link(token, link(MINUTE), 100).await.unwrap();
        assert!(b.link_waiting(token).await.unwrap());
        let (first, second) = tokio::join!(
            tokio::spawn({
                let a = a.clone();
                async move { a.redeem_link(token).await.unwrap() }
            }),
            tokio::spawn({
                let b = b.clone();
                async move { b.redeem_link(token).await.unwrap() }
            }),
        );
        let opened: Vec<LinkRecord> = [first.unwrap(), second.unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(opened.len(), 1, "link {n} opened once");
        assert_eq!(opened[0].scope, link(MINUTE).scope);
        assert_eq!(opened[0].key_sha256, Some([3; 32]));
        assert!(opened[0].expires_in <= MINUTE && opened[0].expires_in > MINUTE - WAIT);
        assert!(!a.link_waiting(token).await.unwrap());
        assert!(b.redeem_link(token).await.unwrap().is_none());

        let cookie = TokenHash::of(&format!("session-{n}"));
        a.open_session(cookie, session(None, None, MINUTE), 100)
            .await
            .unwrap();
        b.set_notice(cookie, format!("notice {n}")).await.unwrap();
        let (first, second) = tokio::join!(
            tokio::spawn({
                let a = a.clone();
                async move { a.take_notice(cookie).await.unwrap() }
            }),
            tokio::spawn({
                let b = b.clone();
                async move { b.take_notice(cookie).await.unwrap() }
            }),
        );
        let shown: Vec<String> = [first.unwrap(), second.unwrap()]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(shown, vec![format!("notice {n}")], "notice {n} shown once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_hold_their_limit_and_drop_what_ends_soonest() {
    let Some((pg, database, a, b)) = two_nodes().await else {
        return;
    };
    // Five sign-ins on alternating nodes into room for three: the two that end soonest
    // (the first two) go.
    let tokens: Vec<TokenHash> = (0..5).map(|n| TokenHash::of(&format!("s{n}"))).collect();
    for (n, &token) in tokens.iter().enumerate() {
        let node = if n % 2 == 0 { &a } else { &b };
        let life = MINUTE + Duration::from_secs(n as u64);
        node.open_session(token, session(None, None, life), 3)
            .await
            .unwrap();
    }
    assert_eq!(count(&pg, &database, "console_sessions"), 3);
    for (n, &token) in tokens.iter().enumerate() {
        assert_eq!(a.session(token).await.unwrap().is_some(), n >= 2, "{n}");
    }
    // A newcomer ending sooner than all of them still gets in: room is made first.
    let short = TokenHash::of("short");
    b.open_session(short, session(None, None, Duration::from_secs(5)), 3)
        .await
        .unwrap();
    assert!(a.session(short).await.unwrap().is_some());
    assert!(a.session(tokens[2]).await.unwrap().is_none());
    assert_eq!(count(&pg, &database, "console_sessions"), 3);

    for n in 0..4u64 {
        let token = TokenHash::of(&format!("l{n}"));
        let life = MINUTE + Duration::from_secs(n);
        a.create_link(token, link(life), 2).await.unwrap();
    }
    assert_eq!(count(&pg, &database, "portal_links"), 2);
    assert!(!b.link_waiting(TokenHash::of("l1")).await.unwrap());
    assert!(b.link_waiting(TokenHash::of("l3")).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rows_are_never_served_and_the_retention_pass_removes_them() {
    let Some((pg, database, a, b)) = two_nodes().await else {
        return;
    };
    let expired: Vec<TokenHash> = (0..3).map(|n| TokenHash::of(&format!("old-{n}"))).collect();
    for &token in &expired {
        a.open_session(token, session(None, None, Duration::ZERO), 100)
            .await
            .unwrap();
    }
    let live = TokenHash::of("live");
    a.open_session(live, session(None, None, MINUTE), 100)
        .await
        .unwrap();
    let (old_link, live_link) = (TokenHash::of("old-link"), TokenHash::of("live-link"));
    a.create_link(old_link, link(Duration::ZERO), 100)
        .await
        .unwrap();
    a.create_link(live_link, link(MINUTE), 100).await.unwrap();

    for &token in &expired {
        assert!(b.session(token).await.unwrap().is_none());
        b.set_notice(token, "never shown".into()).await.unwrap();
        assert_eq!(b.take_notice(token).await.unwrap(), None);
    }
    assert!(!b.link_waiting(old_link).await.unwrap());
    assert_eq!(
        count(&pg, &database, "console_sessions"),
        4,
        "kept until purged"
    );

    // One step of a full pass removes at most its limit of each table.
    let cutoff = now_ms();
    let step = b
        .purge(cutoff, cutoff, PurgeCursor::default(), 2)
        .await
        .unwrap();
    assert_eq!(step.sessions, 3, "two sessions and the link: {step:?}");
    assert_eq!(count(&pg, &database, "console_sessions"), 2);
    assert_eq!(count(&pg, &database, "portal_links"), 1);
    // A pass that only walks events (a slice) leaves them; the next full pass ends them.
    let slice = PurgeCursor::events_between(0, None);
    let step = a.purge(cutoff, cutoff, slice, 2).await.unwrap();
    assert_eq!(step.sessions, 0);
    let step = a
        .purge(cutoff, cutoff, PurgeCursor::default(), 2)
        .await
        .unwrap();
    assert_eq!(step.sessions, 1);
    assert_eq!(count(&pg, &database, "console_sessions"), 1);

    assert!(a.session(live).await.unwrap().is_some());
    assert!(b.redeem_link(live_link).await.unwrap().is_some());
    assert!(b.redeem_link(old_link).await.unwrap().is_none());
}
