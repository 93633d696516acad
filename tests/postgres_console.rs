//! The console and the portal across two nodes on one PostgreSQL database: a session
//! opened on one node is served by the other, a notice left on one is shown once on the
//! other, signing out on one ends the session on both, and a portal link opened on both
//! at the same moment opens once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test's failure report

mod common;

use common::console::{csrf_of, set_cookie, text};
use common::postgres::{PASSWORD, TempPostgres};
use common::{ADMIN_TOKEN, Hookd, Options};

/// A node named `name` on `database` (every node has the same admin token).
async fn node(pg: &TempPostgres, database: &str, name: &str) -> Hookd {
    let password = pg.dir().join(format!("{database}.password"));
    std::fs::write(&password, PASSWORD).unwrap();
    let storage = format!(
        "backend = \"postgres\"\npath = \"data/hookd.redb\"\nmin_free = \"0\"\n\
         [storage.postgres]\nurl = \"{}\"\npassword_file = \"{}\"\nnode_name = \"{name}\"\n",
        pg.hookd_url(database),
        password.display()
    );
    Hookd::start(Options {
        storage,
        ..Options::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_portal_links_hold_across_nodes() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let database = pg.create_database();
    let a = node(&pg, &database, "node-a").await;
    let b = node(&pg, &database, "node-b").await;

    let session = a.sign_in(ADMIN_TOKEN).await;
    let home = b
        .page("GET", "/console/", Some(&session.cookie), None)
        .await;
    assert_eq!(home.status, 200, "node b serves node a's session");

    // A form on node a leaves its notice; node b shows it, once.
    let created = a
        .page(
            "POST",
            "/console/entities",
            Some(&session.cookie),
            Some(&format!("csrf={}&id=acme&name=Acme", session.csrf)),
        )
        .await;
    assert_eq!(created.status, 303, "{}", text(&created));
    let shown = b
        .page("GET", "/console/", Some(&session.cookie), None)
        .await;
    assert!(text(&shown).contains("Entity created."));
    let again = a
        .page("GET", "/console/", Some(&session.cookie), None)
        .await;
    assert_eq!(again.status, 200);
    assert!(!text(&again).contains("Entity created."), "shown once");

    // Signing out on node b ends the session on node a too.
    let out = b
        .page(
            "POST",
            "/console/sign-out",
            Some(&session.cookie),
            Some(&format!("csrf={}", session.csrf)),
        )
        .await;
    assert_eq!(out.status, 303);
    let after = a
        .page("GET", "/console/", Some(&session.cookie), None)
        .await;
    assert_eq!(after.status, 303);
    assert_eq!(after.headers["location"], "/console/sign-in");

    // A link made on node a, its page loaded on both nodes, its form sent to both at
    // once: one portal session opens.
    let link = a.portal_link("root", &["read"]).await;
    let mut forms = Vec::new();
    for node in [&a, &b] {
        let page = node.page("GET", &link, None, None).await;
        assert_eq!(page.status, 200, "{}", text(&page));
        let pre = set_cookie(&page, "hookd_open").unwrap();
        let csrf = csrf_of(&text(&page)).unwrap();
        forms.push((format!("hookd_open={pre}"), format!("csrf={csrf}")));
    }
    let (on_a, on_b) = tokio::join!(
        a.page("POST", &link, Some(&forms[0].0), Some(&forms[0].1)),
        b.page("POST", &link, Some(&forms[1].0), Some(&forms[1].1)),
    );
    let mut statuses = [on_a.status, on_b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [303, 404], "opened once");
    let opened = if on_a.status == 303 { on_a } else { on_b };
    let portal = format!(
        "hookd_portal={}",
        set_cookie(&opened, "hookd_portal").unwrap()
    );
    for node in [&a, &b] {
        let page = node.page("GET", &link, None, None).await;
        assert_eq!(page.status, 404, "the used link is gone on every node");
        let home = node.page("GET", "/portal", Some(&portal), None).await;
        assert_eq!(
            home.status, 200,
            "the portal session is served on every node"
        );
    }
}
