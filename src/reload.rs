//! Reloading a running hookd (what SIGHUP does): the TLS certificate and key are read
//! again from the files named at start, and `log.level` from the config file. A part
//! that fails keeps its current value and says why; connections are never dropped.
//! The CLI turns SIGHUP into `Reload::reload`; tests call it directly and read the
//! report.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::telemetry::LogControl;
use crate::tls::CertResolver;

/// Reload requests that may wait: more would only repeat the same reload.
const QUEUE: usize = 4;

/// How one part of a reload went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reloaded,
    /// Not applicable here (plain HTTP, no config file, `RUST_LOG` set).
    Skipped(&'static str),
    /// The new value was refused; the old one stays.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub certificate: Outcome,
    pub log_level: Outcome,
}

#[derive(Debug, thiserror::Error)]
#[error("hookd is not running, so there is nothing to reload")]
pub struct NotRunning;

/// Asks the running hookd to reload. Cheap to clone.
#[derive(Clone)]
pub struct Reload {
    tx: mpsc::Sender<oneshot::Sender<ReloadReport>>,
}

/// The receiving end, handed to `run_with`.
pub struct Requests {
    rx: mpsc::Receiver<oneshot::Sender<ReloadReport>>,
}

pub fn channel() -> (Reload, Requests) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Reload { tx }, Requests { rx })
}

impl Reload {
    /// Reloads and waits until it is done.
    pub async fn reload(&self) -> Result<ReloadReport, NotRunning> {
        let (reply, report) = oneshot::channel();
        self.tx.send(reply).await.map_err(|_| NotRunning)?;
        report.await.map_err(|_| NotRunning)
    }
}

/// What a reload touches.
pub(crate) struct Reloader {
    pub certificate: Option<Arc<CertResolver>>,
    pub log: Option<LogControl>,
    pub config_path: Option<PathBuf>,
}

impl Reloader {
    fn apply(&self) -> ReloadReport {
        let certificate = match &self.certificate {
            None => Outcome::Skipped("server.plaintext: no certificate"),
            Some(resolver) => match resolver.reload() {
                Ok(()) => {
                    tracing::info!("reloaded the TLS certificate and key");
                    Outcome::Reloaded
                }
                Err(error) => {
                    tracing::error!(%error, "the new TLS certificate or key was refused; still serving the previous one");
                    Outcome::Failed(error.to_string())
                }
            },
        };
        let log_level = self.reload_log_level();
        ReloadReport {
            certificate,
            log_level,
        }
    }

    fn reload_log_level(&self) -> Outcome {
        let Some(log) = &self.log else {
            return Outcome::Skipped("no log control");
        };
        let Some(path) = &self.config_path else {
            return Outcome::Skipped("no config file");
        };
        let config = match Config::load(path) {
            Ok(config) => config,
            Err(error) => {
                tracing::error!(%error, "cannot read the config; log.level is unchanged");
                return Outcome::Failed(error.to_string());
            }
        };
        match log.set_level(&config.log.level) {
            Ok(true) => {
                tracing::info!(level = %config.log.level, "log level reloaded");
                Outcome::Reloaded
            }
            Ok(false) => {
                tracing::info!("RUST_LOG is set and keeps precedence over log.level");
                Outcome::Skipped("RUST_LOG is set")
            }
            Err(error) => {
                tracing::error!(%error, "log.level was refused; unchanged");
                Outcome::Failed(error.to_string())
            }
        }
    }

    /// Serves reload requests until `shutdown`.
    pub async fn serve(self, mut requests: Requests, shutdown: CancellationToken) {
        loop {
            let reply = tokio::select! {
                _ = shutdown.cancelled() => return,
                reply = requests.rx.recv() => match reply {
                    Some(reply) => reply,
                    None => return,
                },
            };
            let _ = reply.send(self.apply());
        }
    }
}
