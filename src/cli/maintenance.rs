//! The maintenance commands: `hookd backup` (downloads `GET /v1/admin/backup` from the
//! running server with ureq, trusting the CA the config names), and the two offline
//! ones, `hookd restore` and `hookd compact`, which open the database file themselves
//! and so refuse while hookd runs (redb locks the file).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;

use super::CliError;
use super::client::{agent, default_url, problem_detail};
use super::locate::{CONFIG_HELP, config_path};
use super::output::print;
use crate::config::Config;
use crate::store;

/// A backup holds every event's payload and the sealed secrets: only its owner reads it.
const BACKUP_MODE: u32 = 0o600;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[arg(long, value_name = "PATH", help = CONFIG_HELP)]
    pub config: Option<PathBuf>,
    /// Where to write the backup (replaced only once the download is complete).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The server's URL [default: from server.listen, as https://localhost:PORT].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// PEM CA bundle to trust instead of the one the config names.
    #[arg(long, value_name = "PATH")]
    pub cacert: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[arg(long, value_name = "PATH", help = CONFIG_HELP)]
    pub config: Option<PathBuf>,
    /// A file `hookd backup` wrote.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
}

/// `hookd backup`: downloads a consistent copy to `<out>.partial` (mode 0600), checks
/// that it is a hookd database, then renames it to `out`.
pub fn backup(args: &BackupArgs) -> Result<(), CliError> {
    let config = Config::load(&config_path(args.config.as_deref()))?;
    let token = config.admin_token()?;
    let url = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => default_url(&config),
    };
    let agent = agent(&config, args.cacert.as_deref())?;
    let response = agent
        .get(format!("{url}/v1/admin/backup"))
        .header("authorization", format!("Bearer {}", token.expose()))
        .call()
        .map_err(|source| CliError::Request {
            url: url.clone(),
            source: Box::new(source),
        })?;
    let status = response.status().as_u16();
    if status != 200 {
        let detail = response
            .into_body()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        return Err(CliError::Refused {
            status,
            detail: problem_detail(&detail),
        });
    }
    let partial = with_suffix(&args.out, "partial");
    let io = |source| CliError::Io {
        path: partial.clone(),
        source,
    };
    // A leftover from an interrupted run may have another mode, which opening it would
    // keep: the file is made anew, 0600 from its first byte.
    match std::fs::remove_file(&partial) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(io(error)),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(BACKUP_MODE)
        .open(&partial)
        .map_err(io)?;
    let mut reader = response.into_body().into_reader();
    std::io::copy(&mut reader, &mut file).map_err(io)?;
    file.flush().map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    let info = store::read_info(&partial)?;
    std::fs::rename(&partial, &args.out).map_err(|source| CliError::Io {
        path: args.out.clone(),
        source,
    })?;
    print(format_args!(
        "wrote {} ({} bytes: {} events, {} deliveries, {} subscriptions)\n",
        args.out.display(),
        info.bytes,
        info.events,
        info.deliveries,
        info.subscriptions
    ))
}

/// `hookd restore`: refuses while hookd runs; keeps the replaced file as `.bak`.
pub fn restore(args: &RestoreArgs) -> Result<(), CliError> {
    let config = Config::load(&config_path(args.config.as_deref()))?;
    redb_only(&config, "restore")?;
    let info = store::read_info(&args.from)?;
    let previous = store::place_backup(&args.from, &config.storage.path)?;
    print(format_args!(
        "restored {} to {} ({} events, {} deliveries, {} subscriptions)\n",
        args.from.display(),
        config.storage.path.display(),
        info.events,
        info.deliveries,
        info.subscriptions
    ))?;
    if let Some(previous) = previous {
        print(format_args!(
            "the previous database is kept as {}\n",
            previous.display()
        ))?;
    }
    print("the restored file needs the same master key; start hookd to deliver what was pending\n")
}

/// Refuses `command` (which works on the redb file) when the config keeps its data in
/// PostgreSQL, rather than act on a file that is not the store.
fn redb_only(config: &Config, command: &'static str) -> Result<(), CliError> {
    match config.storage.backend {
        crate::config::Backend::Redb => Ok(()),
        crate::config::Backend::Postgres => Err(CliError::RedbOnly(command)),
    }
}

/// `hookd compact`: refuses while hookd runs.
pub fn compact(args: &super::ConfigArgs) -> Result<(), CliError> {
    let config = Config::load(&args.path())?;
    redb_only(&config, "compact")?;
    let report = store::compact(&config.storage.path)?;
    print(format_args!(
        "compacted {}: {} -> {} bytes\n",
        config.storage.path.display(),
        report.before_bytes,
        report.after_bytes
    ))
}

/// `hookd store copy --from CONFIG --to CONFIG`.
pub fn store_copy(args: &super::CopyArgs) -> Result<(), CliError> {
    let from = Config::load(&args.from)?;
    let to = Config::load(&args.to)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            path: args.to.clone(),
            source,
        })?;
    let report = runtime.block_on(store::copy(&from.storage, &to.storage))?;
    let (read, written) = (report.read, report.written);
    let rows = [
        ("entities", read.entities, written.entities),
        ("api keys", read.api_keys, written.api_keys),
        ("subscriptions", read.subscriptions, written.subscriptions),
        ("events", read.events, written.events),
        ("deliveries", read.deliveries, written.deliveries),
        ("attempts", read.attempts, written.attempts),
        (
            "attempt counters",
            read.attempt_stats,
            written.attempt_stats,
        ),
        ("idempotency keys", read.idempotency, written.idempotency),
    ];
    let mut text = format!("{:<18} {:>12} {:>12}\n", "", "read", "in target");
    for (name, read, written) in rows {
        text.push_str(&format!("{name:<18} {read:>12} {written:>12}\n"));
    }
    print(&text)?;
    if read != written {
        return Err(CliError::CopyMismatch(format!("{read:?} / {written:?}")));
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_names_localhost_for_loopback_and_wildcard_listens() {
        let base = Path::new("/etc/hookd");
        let at = |listen: &str| {
            let text = format!("[server]\nlisten = \"{listen}\"\n");
            default_url(&Config::from_toml(&text, base).unwrap())
        };
        assert_eq!(at("0.0.0.0:8443"), "https://localhost:8443");
        assert_eq!(at("127.0.0.1:9000"), "https://localhost:9000");
        assert_eq!(at("10.1.2.3:8443"), "https://10.1.2.3:8443");
        assert_eq!(at("[2001:db8::1]:8443"), "https://[2001:db8::1]:8443");
    }

    #[test]
    fn problem_details_are_shown_by_their_detail() {
        assert_eq!(
            problem_detail(r#"{"status":401,"detail":"the token is not valid"}"#),
            "the token is not valid"
        );
        assert_eq!(problem_detail("plain text\n"), "plain text");
    }
}
