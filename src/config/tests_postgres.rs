//! `storage.backend` and `[storage.postgres]`: the backend chosen, the url and its
//! sslmode, the pool, lease and node name, and the files, each rule with its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tests::{assert_invalid, invalid, parse};
use super::*;

const PG: &str = "[storage]\nbackend = \"postgres\"\n[storage.postgres]\n";

/// A `[storage]` with the postgres backend and `keys` in `[storage.postgres]`.
fn postgres(keys: &str) -> String {
    format!("{PG}{keys}\n")
}

fn url(url: &str) -> String {
    postgres(&format!("url = \"{url}\""))
}

#[test]
fn the_postgres_backend_is_chosen_with_its_table() {
    let config = parse(&postgres(
        "url = \"postgres://hookd@db.internal:5432/hookd?sslmode=verify-full\"\n\
         pool_size = 4\nnode_name = \"hookd-1\"\nlease = \"30s\"",
    ))
    .unwrap();
    assert_eq!(config.storage.backend, Backend::Postgres);
    let pg = &config.storage.postgres;
    assert_eq!(pg.pool_size, 4);
    assert_eq!(pg.node_name().unwrap(), "hookd-1");
    assert_eq!(pg.lease, Duration::from_secs(30));
    let target = pg.target().unwrap();
    assert_eq!(target.ssl_mode, SslMode::VerifyFull);
    assert_eq!(target.client.get_user(), Some("hookd"));
    assert_eq!(target.client.get_dbname(), Some("hookd"));
    assert_eq!(target.client.get_ports(), [5432]);
    // The redb path is not needed then.
    parse("[storage]\npath = \"\"\nbackend = \"postgres\"\n[storage.postgres]\nurl = \"postgres://h/d\"\n")
        .unwrap();

    let Err(ConfigError::Parse { key, .. }) = parse("[storage]\nbackend = \"mysql\"\n") else {
        panic!("expected a parse error");
    };
    assert_eq!(key, "storage.backend");
    let Err(ConfigError::Parse { key, .. }) =
        parse(&postgres("url = \"postgres://h/d\"\npool = 3"))
    else {
        panic!("expected a parse error");
    };
    assert_eq!(key, "storage.postgres.pool");
}

#[test]
fn the_postgres_url_is_required_parseable_and_without_a_password() {
    assert_invalid(PG, "storage.postgres.url");
    assert_invalid(&url(""), "storage.postgres.url");
    assert_invalid(&url("mysql://hookd@db/hookd"), "storage.postgres.url");
    assert_invalid(&url("host=db user=hookd"), "storage.postgres.url");
    assert_invalid(
        &url("postgres://hookd@db:port/hookd"),
        "storage.postgres.url",
    );
    assert_invalid(
        &url("postgres://hookd@db/hookd?colour=red"),
        "storage.postgres.url",
    );
    assert_invalid(&url("postgres:///hookd"), "storage.postgres.url");
    for with_password in [
        "postgres://hookd:s3cret-pw@db/hookd",
        "postgres://hookd@db/hookd?password=s3cret-pw",
    ] {
        let (key, reason) = invalid(&url(with_password));
        assert_eq!(key, "storage.postgres.url");
        assert!(reason.contains("password_file"), "{reason}");
        assert!(
            !reason.contains("s3cret-pw"),
            "the password is not repeated: {reason}"
        );
        // Whatever the backend: a url that is set is checked.
        let redb = format!("[storage.postgres]\nurl = \"{with_password}\"\n");
        assert_invalid(&redb, "storage.postgres.url");
    }
    // Unset with the redb backend is fine.
    parse("[storage.postgres]\nurl = \"\"\n").unwrap();
}

#[test]
fn the_postgres_sslmode_is_one_that_encrypts_unless_disabled_or_local() {
    let mode = |text: &str| {
        let config = parse(&url(text)).unwrap();
        config.storage.postgres.target().unwrap().ssl_mode
    };
    assert_eq!(
        mode("postgres://hookd@db.internal/hookd"),
        SslMode::VerifyFull
    );
    assert_eq!(mode("postgres://hookd@10.0.0.5/hookd"), SslMode::VerifyFull);
    assert_eq!(mode("postgres://hookd@localhost/hookd"), SslMode::Disable);
    assert_eq!(
        mode("postgres://hookd@127.0.0.1:5433/hookd"),
        SslMode::Disable
    );
    assert_eq!(mode("postgres://hookd@[::1]/hookd"), SslMode::Disable);
    assert_eq!(
        mode("postgres://hookd@%2Frun%2Fpostgresql/hookd"),
        SslMode::Disable
    );
    assert_eq!(
        mode("postgres://hookd@127.0.0.1,db.internal/hookd"),
        SslMode::VerifyFull,
        "one remote host is enough to need TLS"
    );
    assert_eq!(
        mode("postgres://hookd@db/hookd?sslmode=disable"),
        SslMode::Disable
    );
    assert_eq!(
        mode("postgres://hookd@localhost/hookd?sslmode=require"),
        SslMode::Require
    );
    assert_eq!(
        mode("postgres://hookd@db/hookd?connect_timeout=5&sslmode=verify-ca"),
        SslMode::VerifyCa
    );
    assert_eq!(
        mode("postgresql://hookd@db/hookd?sslmode=verify-full&application_name=x"),
        SslMode::VerifyFull
    );
    for refused in [
        "postgres://hookd@db/hookd?sslmode=prefer",
        "postgres://hookd@db/hookd?sslmode=allow",
        "postgres://hookd@db/hookd?sslmode=verify_full",
        "postgres://hookd@db/hookd?sslmode=require&sslmode=disable",
        "postgres://hookd@%2Frun%2Fpostgresql/hookd?sslmode=require",
    ] {
        let (key, reason) = invalid(&url(refused));
        assert_eq!(key, "storage.postgres.url", "{refused}");
        assert!(reason.contains("sslmode"), "{refused}: {reason}");
    }
}

#[test]
fn postgres_pool_size_lease_and_node_name_rules() {
    let base = "url = \"postgres://hookd@db/hookd\"\n";
    let keys = |extra: &str| postgres(&format!("{base}{extra}"));
    assert_invalid(&keys("pool_size = 0"), "storage.postgres.pool_size");
    assert_invalid(&keys("pool_size = 1025"), "storage.postgres.pool_size");
    parse(&keys("pool_size = 1")).unwrap();
    parse(&keys("pool_size = 1024")).unwrap();
    assert_invalid(&keys("lease = \"999ms\""), "storage.postgres.lease");
    parse(&keys("lease = \"1s\"")).unwrap();
    for name in ["hookd 1", " ", "nöde", "a\\tb"] {
        assert_invalid(
            &keys(&format!("node_name = \"{name}\"")),
            "storage.postgres.node_name",
        );
    }
    let long = "n".repeat(64);
    assert_invalid(
        &keys(&format!("node_name = \"{long}\"")),
        "storage.postgres.node_name",
    );
    let config = parse(&keys(&format!("node_name = \"{}\"", &long[1..]))).unwrap();
    assert_eq!(config.storage.postgres.node_name().unwrap(), &long[1..]);
    // These hold whatever the backend.
    assert_invalid(
        "[storage.postgres]\npool_size = 0\n",
        "storage.postgres.pool_size",
    );
    // Unset, the node is named after its host.
    let host = Postgres::default().node_name().unwrap();
    assert!(
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic()),
        "{host:?}"
    );
}

#[test]
fn postgres_files_resolve_against_the_folder_of_the_file() {
    let config = Config::from_toml(
        &postgres(
            "url = \"postgres://hookd@db/hookd\"\npassword_file = \"pg.password\"\n\
             ca_file = \"/srv/db-ca.pem\"",
        ),
        Path::new("/etc/hookd"),
    )
    .unwrap();
    let pg = &config.storage.postgres;
    assert_eq!(
        pg.password_file,
        Some(PathBuf::from("/etc/hookd/pg.password"))
    );
    assert_eq!(pg.ca_file, Some(PathBuf::from("/srv/db-ca.pem")));
    let unset = parse(&postgres(
        "url = \"postgres://h/d\"\npassword_file = \"\"\nca_file = \"\"",
    ))
    .unwrap();
    assert_eq!(unset.storage.postgres.password_file, None);
    assert_eq!(unset.storage.postgres.ca_file, None);
}
