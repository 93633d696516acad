//! The maintenance commands: `hookd backup` (downloads `GET /v1/admin/backup` from the
//! running server with ureq, trusting the CA the config names), and the two offline
//! ones, `hookd restore` and `hookd compact`, which open the database file themselves
//! and so refuse while hookd runs (redb locks the file).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::CliError;
use super::client::{agent, default_url, problem_detail};
use crate::config::{self, Config};
use crate::store;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Configuration file (for the admin token, the address and the CA to trust).
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
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
    /// Configuration file (names the database to replace).
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// A file `hookd backup` wrote.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
}

/// `hookd backup`: downloads a consistent copy to `<out>.partial`, checks that it is a
/// hookd database, then renames it to `out`.
pub fn backup(args: &BackupArgs) -> Result<(), CliError> {
    let config = Config::load(&args.config)?;
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
    let mut file = std::fs::File::create(&partial).map_err(io)?;
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
    println!(
        "wrote {} ({} bytes: {} events, {} deliveries, {} subscriptions)",
        args.out.display(),
        info.bytes,
        info.events,
        info.deliveries,
        info.subscriptions
    );
    Ok(())
}

/// `hookd restore`: refuses while hookd runs; keeps the replaced file as `.bak`.
pub fn restore(args: &RestoreArgs) -> Result<(), CliError> {
    let config = Config::load(&args.config)?;
    let info = store::read_info(&args.from)?;
    let previous = store::place_backup(&args.from, &config.storage.path)?;
    println!(
        "restored {} to {} ({} events, {} deliveries, {} subscriptions)",
        args.from.display(),
        config.storage.path.display(),
        info.events,
        info.deliveries,
        info.subscriptions
    );
    if let Some(previous) = previous {
        println!("the previous database is kept as {}", previous.display());
    }
    println!(
        "the restored file needs the same master key; start hookd to deliver what was pending"
    );
    Ok(())
}

/// `hookd compact`: refuses while hookd runs.
pub fn compact(args: &super::ConfigArgs) -> Result<(), CliError> {
    let config = Config::load(&args.config)?;
    let report = store::compact(&config.storage.path)?;
    println!(
        "compacted {}: {} -> {} bytes",
        config.storage.path.display(),
        report.before_bytes,
        report.after_bytes
    );
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
