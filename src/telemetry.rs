//! Logging: one `tracing` subscriber writing human-readable lines to stderr (journald
//! stores them with the unit), filtered by `log.level` unless `RUST_LOG` is set.
//! Installed once at start by the binary; library code only emits events.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("RUST_LOG is not a log filter: {0}")]
    Env(#[source] tracing_subscriber::filter::FromEnvError),
    #[error("\"{level}\" is not a log filter: {source}")]
    Level {
        level: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("logging is already initialised")]
    AlreadyInitialised(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Installs the global subscriber. `RUST_LOG`, when set, replaces `level` so an operator
/// can raise verbosity for one run without editing the config. A second call fails with
/// `AlreadyInitialised` and leaves the first subscriber in place.
pub fn init_logging(level: &str) -> Result<(), TelemetryError> {
    let filter = match std::env::var_os(EnvFilter::DEFAULT_ENV) {
        Some(_) => EnvFilter::try_from_default_env().map_err(TelemetryError::Env)?,
        None => EnvFilter::try_new(level).map_err(|source| TelemetryError::Level {
            level: level.to_owned(),
            source,
        })?,
    };
    let stderr = std::io::stderr();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes are noise in journald and in files.
        .with_ansi(stderr.is_terminal())
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(TelemetryError::AlreadyInitialised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_refuses_a_second_time() {
        // The only test in this crate that installs the global subscriber.
        if std::env::var_os(EnvFilter::DEFAULT_ENV).is_none() {
            assert!(matches!(
                init_logging("hookd=loud"),
                Err(TelemetryError::Level { .. })
            ));
        }
        init_logging("info").unwrap();
        assert!(matches!(
            init_logging("info"),
            Err(TelemetryError::AlreadyInitialised(_))
        ));
    }
}
