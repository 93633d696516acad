//! The command line: clap definitions of every subcommand and the function that carries
//! out each one, each returning a `CliError` that knows its exit status (78, EX_CONFIG,
//! for anything wrong in the configuration). `main.rs` only parses, dispatches, prints
//! the error and exits; the server itself is `crate::run_with`. The maintenance
//! commands (backup, restore, compact) are in `maintenance.rs`, `serve` in `serve.rs`,
//! the admin commands in `admin.rs`, which config file a command reads in `locate.rs`,
//! the man page in `man.rs`; every line printed on stdout goes through `output::print`.

mod locate;
mod maintenance;
mod man;
mod output;
mod serve;
mod signals;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod admin;
pub mod client;

use crate::config::{Config, ConfigError};
use crate::init::{InitError, InitOptions, dev_dir};
use crate::listen::{ListenError, ListenOptions};
use crate::store::StoreError;
use crate::telemetry::TelemetryError;
use crate::tls::TlsError;

pub use locate::{CONFIG_ENV, config_path};
pub use maintenance::{BackupArgs, RestoreArgs, backup, compact, restore, store_copy};
pub use man::man_page;
pub use output::print;
pub use serve::{ServeArgs, serve};
pub use signals::{reload_on_signal, shutdown_on_signal};

/// sysexits.h EX_CONFIG: systemd and packaging scripts tell a bad config from a crash.
pub const EX_CONFIG: u8 = 78;
/// sysexits.h EX_USAGE: a bad command-line argument.
pub const EX_USAGE: u8 = 64;
/// sysexits.h EX_TEMPFAIL: try again later (the database is in use by a running hookd).
pub const EX_TEMPFAIL: u8 = 75;
/// Everything else.
pub const EX_FAILURE: u8 = 1;

/// Every exit status and its meaning: `hookd --help` and the man page show this table.
pub const EXIT_STATUSES: [(u8, &str); 5] = [
    (0, "Success."),
    (
        EX_FAILURE,
        "Any other failure (the server refused a request, a network error, ...).",
    ),
    (EX_USAGE, "A bad command-line argument (EX_USAGE)."),
    (
        EX_TEMPFAIL,
        "Try again later: the database is in use by a running hookd (EX_TEMPFAIL).",
    ),
    (
        EX_CONFIG,
        "The configuration, or a file it names, is wrong (EX_CONFIG); systemd does not \
         restart the service after this status.",
    ),
];

/// The exit statuses as `--help` shows them, after the options.
fn exit_status_help() -> String {
    let mut text = String::from("Exit status:");
    for (code, meaning) in EXIT_STATUSES {
        text.push_str(&format!("\n  {code:<3} {meaning}"));
    }
    text
}

#[derive(Debug, Parser)]
#[command(
    name = "hookd",
    version,
    about = "Webhook sender: durable ingest, signed HTTPS delivery",
    long_about = "hookd accepts events from producers over an HTTPS API, stores each one in a \
        single redb database file before acknowledging it, and delivers it to every \
        subscribed endpoint over HTTPS, signed the Standard Webhooks way. Failed \
        deliveries are retried with backoff for up to 72 hours. The same binary runs the \
        server, a development receiver, the admin commands that call a running server, \
        and the offline maintenance commands.",
    after_long_help = exit_status_help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    ///
    /// Runs in the foreground until SIGTERM or SIGINT, which stop accepting requests
    /// and give in-flight attempts server.shutdown_grace to finish; SIGHUP reloads the
    /// TLS certificate and key and the log level. Under systemd it reports readiness
    /// (READY=1) once it is listening and its database is open. With --dev it creates
    /// ./hookd-dev on first use (config, local CA, certificate, master key, admin token)
    /// and serves on 127.0.0.1:8443.
    Serve(ServeArgs),
    /// Check the configuration and the files it names, then exit.
    ///
    /// Loads the configuration and every file it names (TLS certificate and key,
    /// master key, admin token, extra CA file) without starting anything. Prints "ok"
    /// and exits 0, or names the key and line at fault and exits 78.
    CheckConfig(ConfigArgs),
    /// Write a config, a local CA and certificate, a master key and an admin token.
    ///
    /// Writes DIR/hookd.toml, a local CA (DIR/tls/ca.pem, ca.key), a certificate for
    /// localhost signed by it (DIR/tls/cert.pem, key.pem), a 32-byte master key and an
    /// admin token. An existing file is never overwritten: if any exists, nothing is
    /// written. With --missing-only (what the packages run after installing) it
    /// creates only the absent key, token and certificate files.
    Init(InitArgs),
    /// Development receiver: HTTPS on 127.0.0.1, verifies and prints each delivery.
    ///
    /// Serves HTTPS on 127.0.0.1:PORT with the development certificate, checks the
    /// signature of every delivery with the subscription's signing secret and prints
    /// its headers and body.
    Listen(ListenArgs),
    /// Entities (customer accounts) of a running hookd.
    Entity(admin::EntityArgs),
    /// API keys of a running hookd.
    Key(admin::KeyArgs),
    /// Subscriptions of a running hookd.
    Subscription(admin::SubscriptionArgs),
    /// Post an event to a running hookd.
    Event(admin::EventArgs),
    /// Inspect or retry a delivery of a running hookd.
    Delivery(admin::DeliveryArgs),
    /// Download a consistent copy of the database from the running server.
    Backup(BackupArgs),
    /// Put a backup in place of the database (hookd must be stopped); keeps the old
    /// file as <path>.bak.
    Restore(RestoreArgs),
    /// Rewrite the database file without its free pages (hookd must be stopped).
    Compact(ConfigArgs),
    /// Move the stored data between backends (hookd must be stopped).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Write the man page (roff) to stdout; packaging/hookd.1 is its output.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy everything from the redb file one config names into the empty PostgreSQL
    /// database another names, or back.
    ///
    /// Entities, API keys, subscriptions with their sealed secrets (both configs must
    /// name the same master key), events, deliveries with their state and due times,
    /// attempts, attempt counters and idempotency records. Into PostgreSQL, in one
    /// transaction: a copy that fails leaves the database empty. Back into redb, from
    /// one consistent snapshot into a new file that replaces the target (absent, or
    /// holding no data) only once complete. Prints what it read and what the target
    /// holds afterwards, and fails unless they match. hookd must be stopped: the redb
    /// file is opened exclusively, and a copy from PostgreSQL refuses while any node
    /// beats.
    Copy(CopyArgs),
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The config whose [storage] names the store to copy from (redb or PostgreSQL).
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,
    /// The config whose [storage] names the store to copy into (the other backend).
    #[arg(long, value_name = "PATH")]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[arg(long, value_name = "PATH", help = locate::CONFIG_HELP)]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// The file to read: `--config`, else as `config_path` finds it.
    pub fn path(&self) -> PathBuf {
        config_path(self.config.as_deref())
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder to write into (created if missing).
    pub dir: PathBuf,
    /// Create only absent key, token and certificate files, at the paths DIR/hookd.toml
    /// names; never touch the config.
    #[arg(long)]
    pub missing_only: bool,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long)]
    pub port: u16,
    /// The subscription's signing secret (whsec_...).
    #[arg(long, value_name = "WHSEC")]
    pub secret: String,
    /// PEM certificate to serve.
    #[arg(long, value_name = "PATH", default_value_os_t = dev_dir().join("tls/cert.pem"))]
    pub cert: PathBuf,
    /// PEM key of that certificate.
    #[arg(long, value_name = "PATH", default_value_os_t = dev_dir().join("tls/key.pem"))]
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error("{key} = {}: {source}", path.display())]
    Tls {
        key: &'static str,
        path: PathBuf,
        source: TlsError,
    },
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("{}: not found; `hookd serve --dev` creates a development certificate, or pass --cert and --key", path.display())]
    NoCertificate { path: PathBuf },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install the signal handlers: {0}")]
    Signal(#[source] std::io::Error),
    #[error("server failed: {0}")]
    Run(#[source] crate::RunError),
    #[error("cannot reach {url}: {source}")]
    Http {
        url: String,
        source: Box<ureq::Error>,
    },
    #[error("hookd answered {status}: {detail}")]
    Api { status: u16, detail: String },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{url}: {source}")]
    Request {
        url: String,
        source: Box<ureq::Error>,
    },
    #[error("the server answered {status}: {detail}")]
    Refused { status: u16, detail: String },
    #[error("the copy does not match what was read: {0}")]
    CopyMismatch(String),
    #[error(
        "hookd {0} works on the redb file, and this config keeps its data in PostgreSQL (storage.backend = \"postgres\"): use the database's own tools (pg_dump and pg_restore, VACUUM)"
    )]
    RedbOnly(&'static str),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Stdout's reader has gone (`| head`): not a failure, `main` exits quietly.
    #[error("standard output is closed")]
    StdoutClosed,
    #[error("cannot write to standard output: {0}")]
    Stdout(#[source] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Tls { .. } | Self::Telemetry(_) => EX_CONFIG,
            Self::Run(error) if error.is_config() => EX_CONFIG,
            Self::Init(InitError::Config(_)) => EX_CONFIG,
            Self::Listen(ListenError::Secret(_)) | Self::Usage(_) => EX_USAGE,
            Self::RedbOnly(_) => EX_CONFIG,
            Self::Store(StoreError::Locked(_) | StoreError::NodesRunning(_)) => EX_TEMPFAIL,
            _ => EX_FAILURE,
        }
    }
}

/// `hookd check-config`: everything `serve` reads before it binds, without binding.
pub fn check_config(args: &ConfigArgs) -> Result<(), CliError> {
    let path = args.path();
    let config = Config::load(&path)?;
    if !config.server.plaintext {
        crate::tls::server_config(&config.server.tls_cert, &config.server.tls_key).map_err(
            |source| CliError::Tls {
                key: "server.tls_cert",
                path: config.server.tls_cert.clone(),
                source,
            },
        )?;
    }
    if let Some(ca) = &config.delivery.extra_ca_file {
        crate::tls::load_certs(ca).map_err(|source| CliError::Tls {
            key: "delivery.extra_ca_file",
            path: ca.clone(),
            source,
        })?;
    }
    config.master_key()?;
    config.admin_token()?;
    print(format_args!("ok: {}\n", path.display()))
}

/// `hookd init DIR [--missing-only]`, always with the production (non-dev) config.
pub fn init(args: &InitArgs) -> Result<(), CliError> {
    let options = InitOptions {
        missing_only: args.missing_only,
        dev: false,
    };
    let report = crate::init::init(&args.dir, &options)?;
    if report.created.is_empty() {
        print("nothing to create: every file exists\n")?;
    }
    for path in &report.created {
        print(format_args!("created {}\n", path.display()))?;
    }
    if !args.missing_only {
        print(format_args!(
            "\nconfig        {}\nadmin token   {}\nCA to trust   {}\n",
            report.config.display(),
            report.admin_token_file.display(),
            report.ca_cert.display()
        ))?;
    }
    Ok(())
}

/// `hookd listen`: the development receiver, until SIGTERM or SIGINT.
pub async fn listen(args: ListenArgs) -> Result<(), CliError> {
    // Only warnings (failed handshakes); deliveries themselves go to stdout.
    crate::telemetry::init_logging("warn")?;
    for path in [&args.cert, &args.key] {
        if !path.exists() {
            return Err(CliError::NoCertificate { path: path.clone() });
        }
    }
    let shutdown = shutdown_on_signal()?;
    let options = ListenOptions {
        port: args.port,
        secret: args.secret,
        cert: args.cert,
        key: args.key,
    };
    crate::listen::listen(options, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command and argument below `command` that has no help text.
    fn without_help(command: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if !matches!(id, "help" | "version") && arg.get_help().is_none() {
                out.push(format!("{path} {id}"));
            }
        }
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                out.push(path.clone());
            }
            without_help(sub, &path, out);
        }
    }

    #[test]
    fn every_command_and_argument_has_help() {
        let mut missing = Vec::new();
        without_help(&Cli::command(), "hookd", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn subcommands_parse_with_their_defaults() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.command);
        let Ok(Command::Serve(serve)) = parse(&["hookd", "serve", "--dev"]) else {
            panic!("serve --dev");
        };
        assert!(serve.dev && serve.config.is_none());
        assert!(parse(&["hookd", "serve", "--dev", "--config", "x.toml"]).is_err());
        let Ok(Command::CheckConfig(check)) = parse(&["hookd", "check-config"]) else {
            panic!("check-config");
        };
        assert_eq!(check.config, None);
        let Ok(Command::Init(init)) = parse(&["hookd", "init", "/tmp/x", "--missing-only"]) else {
            panic!("init");
        };
        assert!(init.missing_only && init.dir == Path::new("/tmp/x"));
        let Ok(Command::Listen(listen)) =
            parse(&["hookd", "listen", "--port", "9000", "--secret", "whsec_x"])
        else {
            panic!("listen");
        };
        assert_eq!(listen.port, 9000);
        assert_eq!(listen.cert, Path::new("./hookd-dev/tls/cert.pem"));
        assert_eq!(listen.key, Path::new("./hookd-dev/tls/key.pem"));
        assert!(parse(&["hookd", "listen", "--secret", "whsec_x"]).is_err());
    }

    #[test]
    fn check_config_passes_on_a_fresh_init_and_fails_with_78_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        crate::init::init(
            dir.path(),
            &InitOptions {
                missing_only: false,
                dev: false,
            },
        )
        .unwrap();
        let args = ConfigArgs {
            config: Some(dir.path().join("hookd.toml")),
        };
        check_config(&args).unwrap();

        std::fs::write(dir.path().join("master.key"), b"short").unwrap();
        let error = check_config(&args).unwrap_err();
        assert_eq!(error.exit_code(), EX_CONFIG, "{error}");

        std::fs::remove_file(dir.path().join("tls/cert.pem")).unwrap();
        let error = check_config(&args).unwrap_err();
        assert!(matches!(error, CliError::Tls { .. }), "{error}");
        assert_eq!(error.exit_code(), EX_CONFIG);

        std::fs::write(args.path(), "[server]\nlistn = 1\n").unwrap();
        let error = check_config(&args).unwrap_err();
        assert_eq!(error.exit_code(), EX_CONFIG);
        assert!(error.to_string().contains("line 2, column 1"), "{error}");
    }
}
