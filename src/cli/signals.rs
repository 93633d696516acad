//! Signals of `hookd serve` and `hookd listen`: SIGTERM and SIGINT stop (a second one
//! exits at once), SIGHUP reloads the certificate and log level.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::reload::Reload;

/// A token cancelled on the first SIGTERM or SIGINT. A second signal exits at once, for
/// when a graceful shutdown takes longer than the operator will wait.
pub fn shutdown_on_signal() -> Result<CancellationToken, CliError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(CliError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(CliError::Signal)?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        for round in 0..2 {
            let (name, number) = tokio::select! {
                _ = terminate.recv() => ("SIGTERM", 15),
                _ = interrupt.recv() => ("SIGINT", 2),
            };
            if round == 0 {
                tracing::info!(
                    signal = name,
                    "shutting down; a second signal exits at once"
                );
                crate::notify::stopping();
                cancel.cancel();
            } else {
                tracing::warn!(signal = name, "second signal: exiting without waiting");
                // The shell convention for death by signal: 128 + its number.
                std::process::exit(128 + number);
            }
        }
    });
    Ok(token)
}

/// Turns each SIGHUP into a reload until `shutdown`. Installed before the server
/// starts, so an early SIGHUP cannot kill the process (its default action).
pub fn reload_on_signal(reload: Reload, shutdown: CancellationToken) -> Result<(), CliError> {
    let mut hangup = signal(SignalKind::hangup()).map_err(CliError::Signal)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = hangup.recv() => if received.is_none() { return },
            }
            tracing::info!(
                signal = "SIGHUP",
                "reloading the TLS certificate and log level"
            );
            // The report is logged by the server as each part is applied.
            if reload.reload().await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
