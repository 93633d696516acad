//! `hookd serve`: load the config (creating ./hookd-dev first with `--dev`), bind, run
//! the server until a signal stops it, and with `--dev` print what a developer needs
//! to talk to it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Args;
use tokio::net::TcpListener;

use super::{CliError, reload_on_signal, shutdown_on_signal};
use crate::config::{self, Config};
use crate::init::{InitOptions, dev_dir};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file [default: /etc/hookd/hookd.toml].
    #[arg(long, value_name = "PATH", conflicts_with = "dev")]
    pub config: Option<PathBuf>,
    /// Use ./hookd-dev (created on first use) with a loopback config.
    #[arg(long)]
    pub dev: bool,
}

/// `hookd serve`: load the config (making ./hookd-dev first with `--dev`), bind, and run
/// until SIGTERM or SIGINT; SIGHUP reloads the certificate and the log level.
pub async fn serve(args: &ServeArgs) -> Result<(), CliError> {
    let config = serve_config(args)?;
    let log = crate::telemetry::init_logging(&config.log.level)?;
    let addr = config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Bind { addr, source })?;
    let shutdown = shutdown_on_signal()?;
    let (reload, requests) = crate::reload::channel();
    reload_on_signal(reload, shutdown.clone())?;
    if args.dev {
        let bound = listener.local_addr().unwrap_or(addr);
        eprintln!("{}", dev_hints(&config, bound));
    }
    let options = crate::RunOptions {
        metrics_listener: None,
        reload: Some(requests),
        log: Some(log),
    };
    crate::run_with(config, listener, shutdown, options)
        .await
        .map_err(CliError::Run)
}

fn serve_config(args: &ServeArgs) -> Result<Config, CliError> {
    if !args.dev {
        let path = args
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
        return Ok(Config::load(&path)?);
    }
    let dir = dev_dir();
    let path = dir.join("hookd.toml");
    if !path.exists() {
        let options = InitOptions {
            missing_only: false,
            dev: true,
        };
        crate::init::init(&dir, &options)?;
        eprintln!("created a development instance in {}", dir.display());
    }
    Ok(Config::load(&path)?)
}

/// What a developer needs to talk to the dev server, ready to paste.
fn dev_hints(config: &Config, bound: SocketAddr) -> String {
    let mut shown = bound;
    // A wildcard address is not something a client can connect to.
    if shown.ip().is_unspecified() {
        shown.set_ip(Ipv4Addr::LOCALHOST.into());
    }
    let scheme = if config.server.plaintext {
        "http"
    } else {
        "https"
    };
    let url = format!("{scheme}://{shown}");
    let token = config.secrets.admin_token_file.display();
    let ca = config.delivery.extra_ca_file.clone().unwrap_or_else(|| {
        let tls_dir = config.server.tls_cert.parent().unwrap_or(Path::new(""));
        tls_dir.join("ca.pem")
    });
    let ca = ca.display();
    let console = if config.console.enabled {
        format!("\n  console      {url}/console/ (sign in with the admin token)")
    } else {
        String::new()
    };
    format!(
        "hookd development server\n\
         \x20 API          {url}{console}\n\
         \x20 admin token  {token}\n\
         \x20              export HOOKD_TOKEN=$(cat {token})\n\
         \x20 CA to trust  {ca}\n\
         \x20              curl --cacert {ca} -H \"Authorization: Bearer $HOOKD_TOKEN\" {url}/v1/subscriptions"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_hints_name_a_connectable_url_the_token_and_the_ca() {
        let config = Config::from_toml(
            "[delivery]\nextra_ca_file = \"tls/ca.pem\"\n",
            Path::new("./hookd-dev"),
        )
        .unwrap();
        let hints = dev_hints(&config, "0.0.0.0:8443".parse().unwrap());
        assert!(hints.contains("https://127.0.0.1:8443"), "{hints}");
        assert!(
            hints.contains("console      https://127.0.0.1:8443/console/"),
            "{hints}"
        );
        assert!(
            hints.contains("export HOOKD_TOKEN=$(cat ./hookd-dev/admin.token)"),
            "{hints}"
        );
        assert!(
            hints.contains("curl --cacert ./hookd-dev/tls/ca.pem"),
            "{hints}"
        );
    }
}
