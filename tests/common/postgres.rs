//! A throwaway PostgreSQL server per test: Debian's server binaries
//! (`/usr/lib/postgresql/<highest version>/bin`), a data folder in a temp dir, listening
//! on 127.0.0.1 on a free port and on a unix socket in that dir. Loopback connections
//! are trusted except for the role `hookd`, which must give its password (`PASSWORD`),
//! so a test can prove that `storage.postgres.password_file` is what gets it in.
//!
//! PostgreSQL refuses to run as root, and CI runs the tests as root: then initdb,
//! pg_ctl and the server run as `nobody` (uid and gid 65534, through `setpriv`), and the
//! folders they write are handed to that user first. Readiness is pg_ctl's own wait,
//! which reads the state the server writes into `postmaster.pid` (no fixed sleeps).
//!
//! Without the binaries `start` returns None (the test skips), unless
//! `HOOKD_REQUIRE_POSTGRES=1`, when it panics. Only std and tempfile are used, so a unit
//! test in src can include this file too:
//! `#[cfg(test)] #[path = "../../../tests/common/postgres.rs"] mod testdb;`
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The superuser initdb creates; trusted on loopback and on the socket.
pub const SUPERUSER: &str = "postgres";
/// The role hookd connects as in tests; it owns the databases `create_database` makes.
pub const ROLE: &str = "hookd";
/// `ROLE`'s password, asked for over TCP (scram-sha-256).
pub const PASSWORD: &str = "hookd-test-password-6f2c91";
/// Set to 1 (CI) to fail instead of skipping when the binaries are missing.
pub const REQUIRE_ENV: &str = "HOOKD_REQUIRE_POSTGRES";

/// Where Debian installs each major version's server binaries.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";
/// `nobody` and `nogroup` on Debian: who runs the server when the tests run as root.
const NOBODY: u32 = 65534;
/// Seconds pg_ctl waits for the server to accept connections (or to stop).
const WAIT_SECONDS: &str = "60";
/// Tries at a free port: another test may take the one found before the server binds.
const PORT_TRIES: usize = 5;

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// A TLS certificate (PEM chain, leaf first) and its key (PEM) for the server.
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct TempPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// The tests run as root: server commands run as `NOBODY`.
    as_nobody: bool,
    running: bool,
    /// The watchdog (`stop_at_exit`) and the only writer of the pipe it reads.
    watchdog: Option<(ChildStdin, Child)>,
}

impl TempPostgres {
    /// A running server without TLS, or None (skip) when PostgreSQL is not installed.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// A running server with `ssl = on` and `tls`'s certificate.
    pub fn start_tls(tls: &ServerTls) -> Option<Self> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<&ServerTls>) -> Option<Self> {
        let Some(bin) = find_bin() else {
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                panic!(
                    "{REQUIRE_ENV}=1 but no PostgreSQL server binaries under \
                     {DEBIAN_ROOT}/*/bin (apt-get install postgresql)"
                );
            }
            eprintln!(
                "skipping: no PostgreSQL server binaries under {DEBIAN_ROOT}/*/bin \
                 (apt-get install postgresql; {REQUIRE_ENV}=1 fails instead)"
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("hookd-pg-")
            .tempdir()
            .unwrap();
        // The server's user must be able to walk into the dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let as_nobody = std::fs::metadata("/proc/self").unwrap().uid() == 0;
        let mut pg = Self {
            bin,
            dir,
            port: 0,
            as_nobody,
            running: false,
            watchdog: None,
        };
        pg.init(tls);
        pg.start_on_free_port();
        pg.psql(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"),
        );
        Some(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's URL to the `postgres` database (trusted: no password).
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// `ROLE`'s URL to `database`, without its password (which `PASSWORD` holds).
    pub fn hookd_url(&self, database: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{database}", self.port)
    }

    /// The folder of the server's unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The temp dir, for a test's own files (a password file, a CA bundle).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new empty database owned by `ROLE`; its name.
    pub fn create_database(&self) -> String {
        let name = format!("hookd_test_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name} OWNER {ROLE}"));
        name
    }

    /// Runs `sql` as the superuser over the socket; its output, unaligned and tuples
    /// only (`a|b` a row). Panics with psql's message when it fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ])
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "10");
        let output = run(clean_env(&mut command));
        assert!(
            output.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Stops the server (fast shutdown: sessions are ended, nothing is lost).
    pub fn stop(&mut self) {
        let output = self.pg_ctl(&["stop", "-m", "fast"]);
        assert!(
            output.status.success(),
            "pg_ctl stop: {}",
            describe(&output)
        );
        self.running = false;
    }

    /// Starts the stopped server again: same data, same port, same URLs.
    pub fn start_again(&mut self) {
        let output = self.pg_ctl(&["start"]);
        assert!(
            output.status.success(),
            "pg_ctl start: {}\n{}",
            describe(&output),
            self.log()
        );
        self.running = true;
    }

    /// Makes sure the server stops and its folder goes when this process ends, however
    /// it ends (a panic, `exit`, SIGKILL), for a server kept in a static, whose `Drop`
    /// never runs. A watchdog process in a process group of its own (so a Ctrl-C to the
    /// tests does not end it first) waits for the end of a pipe whose only writer is
    /// this process (the pipe is close-on-exec, so no child inherits it); the kernel
    /// closes it when the process ends, and the watchdog then stops the server
    /// (immediate: nothing in it is kept) and deletes the folder.
    pub fn stop_at_exit(&mut self) {
        if self.watchdog.is_some() {
            return;
        }
        let stop = self.pg_ctl_command(&["stop", "-m", "immediate"]);
        let mut watchdog = Command::new("sh");
        watchdog
            .arg("-c")
            .arg(r#"cat >/dev/null; "$@" >/dev/null 2>&1; rm -rf -- "$0""#)
            .arg(self.dir.path())
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = clean_env(&mut watchdog)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the PostgreSQL watchdog: {error}"));
        let pipe = child.stdin.take().expect("the watchdog's stdin is piped");
        self.watchdog = Some((pipe, child));
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("run/server.log")).unwrap_or_default()
    }

    fn init(&self, tls: Option<&ServerTls>) {
        let data = self.data_dir();
        for dir in [&data, &self.socket_dir()] {
            std::fs::create_dir(dir).unwrap();
            // PostgreSQL insists that only its user can read the data folder.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            self.give(dir);
        }
        let output = run(self
            .server_command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            // Only the cluster's first files; the server itself keeps fsync on.
            .arg("--no-sync"));
        assert!(output.status.success(), "initdb: {}", describe(&output));
        // First match wins: the hookd role must give its password even on loopback.
        self.write_owned(
            "pg_hba.conf",
            &format!(
                "local all all trust\n\
                 host all {ROLE} 127.0.0.1/32 scram-sha-256\n\
                 host all all 127.0.0.1/32 trust\n"
            ),
            0o600,
        );
        let mut settings = format!(
            "listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             logging_collector = off\n",
            self.socket_dir().display()
        );
        if let Some(tls) = tls {
            self.write_owned("server.crt", &tls.cert_pem, 0o600);
            self.write_owned("server.key", &tls.key_pem, 0o600);
            settings
                .push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        self.write_owned("hookd_test.conf", &settings, 0o600);
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        conf.write_all(b"\ninclude 'hookd_test.conf'\n").unwrap();
    }

    fn start_on_free_port(&mut self) {
        for _ in 0..PORT_TRIES {
            self.port = free_port();
            // The port goes on the command line (not in the config file) so that
            // start_again uses the one that worked.
            let output = self.pg_ctl(&["start"]);
            if output.status.success() {
                self.running = true;
                return;
            }
            let log = self.log();
            if !log.contains("could not bind") && !log.contains("could not create any TCP") {
                panic!("pg_ctl start: {}\n{log}", describe(&output));
            }
        }
        panic!(
            "no free port for PostgreSQL after {PORT_TRIES} tries:\n{}",
            self.log()
        );
    }

    fn pg_ctl(&self, action: &[&str]) -> Output {
        run(&mut self.pg_ctl_command(action))
    }

    fn pg_ctl_command(&self, action: &[&str]) -> Command {
        let log = self.dir.path().join("run/server.log");
        let mut command = self.server_command("pg_ctl");
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(log)
            .args(["-o", &format!("-p {}", self.port)])
            .args(["-w", "-t", WAIT_SECONDS, "-s"])
            .args(action);
        command
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A server binary, run as `NOBODY` when the tests run as root.
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.as_nobody {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={NOBODY}"))
                .arg(format!("--regid={NOBODY}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(path);
            command
        } else {
            Command::new(path)
        };
        // A working folder the server's user can read (initdb warns otherwise).
        command.current_dir(self.dir.path());
        clean_env(&mut command);
        command
    }

    /// Writes a file into the data folder, owned by the server's user.
    fn write_owned(&self, name: &str, text: &str, mode: u32) {
        let path = self.data_dir().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        self.give(&path);
    }

    fn give(&self, path: &Path) {
        if self.as_nobody {
            std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.running {
            // Immediate: no checkpoint; the data folder is deleted next anyway.
            let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        }
        // Dropped before the process ends: the watchdog finds the server stopped,
        // deletes the folder and exits.
        if let Some((pipe, mut watchdog)) = self.watchdog.take() {
            drop(pipe);
            let _ = watchdog.wait();
        }
    }
}

/// The highest major version's bin folder with a server in it.
fn find_bin() -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir(DEBIAN_ROOT).ok()?.flatten() {
        let Ok(version) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let bin = entry.path().join("bin");
        let complete = ["initdb", "pg_ctl", "postgres", "psql"]
            .iter()
            .all(|program| bin.join(program).is_file());
        if complete && best.as_ref().is_none_or(|(found, _)| version > *found) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Without the caller's libpq settings, which would redirect psql or the server.
fn clean_env(command: &mut Command) -> &mut Command {
    for name in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSSLMODE",
        "PGSERVICE",
        "PGOPTIONS",
        "PGDATA",
    ] {
        command.env_remove(name);
    }
    command
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}

fn describe(output: &Output) -> String {
    format!(
        "{}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
