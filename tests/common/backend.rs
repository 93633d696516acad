//! Which storage backend the daemons of this run use: `HOOKD_TEST_BACKEND` unset or
//! `redb` (a temp redb file per state folder), or `postgres` (a database per state
//! folder on one throwaway PostgreSQL server per test binary).
//!
//! The server starts with the first test that needs it and is shared by every test of
//! the binary; it is stopped and deleted when the process ends (`stop_at_exit`), since
//! a static is never dropped. A state folder's database is made the first time its
//! config is written and named in the folder (`postgres.database`), so a daemon started
//! again on the same folder finds its data, as it finds its redb file.
//!
//! Tests that only make sense on redb return early through `redb_only`, which prints
//! why: `grep -rn 'redb_only(' tests/` is the list.

use std::path::Path;
use std::sync::OnceLock;

use super::postgres::{PASSWORD, TempPostgres};

/// The switch.
pub const BACKEND_ENV: &str = "HOOKD_TEST_BACKEND";
/// Where a state folder names its database.
const DATABASE_FILE: &str = "postgres.database";
/// The password file of the `hookd` role in a state folder (relative to its config).
const PASSWORD_FILE: &str = "postgres.password";
/// Every daemon of a state folder has this name: one started again on the same folder
/// (after SIGKILL too) is the same node coming back, as on one host, and takes its own
/// partitions up at once instead of waiting for their leases to run out.
const NODE_NAME: &str = "test-node";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redb,
    Postgres,
}

/// The backend this run tests, from `HOOKD_TEST_BACKEND`.
pub fn backend() -> Backend {
    static CHOSEN: OnceLock<Backend> = OnceLock::new();
    *CHOSEN.get_or_init(|| match std::env::var(BACKEND_ENV).as_deref() {
        Err(_) | Ok("" | "redb") => Backend::Redb,
        Ok("postgres") => Backend::Postgres,
        Ok(other) => panic!("{BACKEND_ENV}={other:?}: expected \"redb\" or \"postgres\""),
    })
}

/// Whether this run is on redb. On PostgreSQL it prints why the calling test does not
/// apply there, and the test returns at once:
/// `if !common::redb_only("why") { return; }`.
pub fn redb_only(why: &str) -> bool {
    if backend() == Backend::Redb {
        return true;
    }
    eprintln!("skipped on PostgreSQL ({BACKEND_ENV}=postgres): {why}");
    false
}

/// This binary's server, started by the first caller.
pub fn server() -> &'static TempPostgres {
    static SERVER: OnceLock<TempPostgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut pg = TempPostgres::start()
            .unwrap_or_else(|| panic!("{BACKEND_ENV}=postgres but PostgreSQL is not installed"));
        pg.stop_at_exit();
        pg
    })
}

/// The `[storage]` keys and the `[storage.postgres]` table that put the daemon of the
/// state folder `root` on its database, made now if the folder has none yet; `extra`
/// is the test's own `[storage]` keys. Empty on redb, and when `extra` names a backend
/// itself (the test chose its storage).
pub fn storage_keys(root: &Path, extra: &str) -> (String, String) {
    let chosen = extra
        .lines()
        .any(|line| line.trim_start().starts_with("backend"));
    if backend() == Backend::Redb || chosen {
        return (String::new(), String::new());
    }
    let pg = server();
    let database = database_of(root).unwrap_or_else(|| {
        let name = pg.create_database();
        std::fs::write(root.join(DATABASE_FILE), &name).unwrap();
        name
    });
    std::fs::write(root.join(PASSWORD_FILE), format!("{PASSWORD}\n")).unwrap();
    let table = format!(
        "\n[storage.postgres]\nurl = \"{}\"\npassword_file = \"{PASSWORD_FILE}\"\n\
         node_name = \"{NODE_NAME}\"\n",
        pg.hookd_url(&database)
    );
    ("backend = \"postgres\"\n".to_owned(), table)
}

/// The database of the state folder `root`, if its daemon runs on PostgreSQL.
pub fn database_of(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join(DATABASE_FILE)).ok()
}

/// What the daemon of the state folder `root` has stored, for a test that looks for a
/// secret in clear: the redb file's bytes, or on PostgreSQL every row of every table as
/// text with `bytea` in the escape format (printable bytes as themselves), so a secret
/// stored in clear in any column shows as it is.
pub fn stored_bytes(root: &Path) -> Vec<u8> {
    let Some(database) = database_of(root) else {
        return std::fs::read(root.join("data/hookd.redb")).unwrap();
    };
    let pg = server();
    let tables = pg.psql(
        &database,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    );
    let mut all = String::new();
    for table in tables.lines() {
        let sql = format!("SET bytea_output = 'escape'; SELECT t::text FROM \"{table}\" t");
        all.push_str(&pg.psql(&database, &sql));
        all.push('\n');
    }
    all.into_bytes()
}
