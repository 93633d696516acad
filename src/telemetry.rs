//! Logging: one `tracing` subscriber writing to stderr, filtered by `log.level` unless
//! `RUST_LOG` is set. Installed once at start by the binary; library code only emits
//! events. The filter sits behind a reload layer, so SIGHUP can change `log.level`
//! without a restart (`LogControl`).
//!
//! Under systemd (`JOURNAL_STREAM` names our stderr) each line is written the way
//! journald parses a service's stream natively: a `<N>` syslog priority prefix
//! (sd-daemon(3)), no timestamp (journald stamps each entry), no colour. That needs no
//! extra crate and no socket: the stream systemd connects to stderr already is journald.
//! Elsewhere, plain text lines with timestamps, coloured only on a terminal.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

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
    #[error("the log filter cannot be replaced: {0}")]
    Reload(#[from] reload::Error),
}

/// Changes the level of the installed subscriber.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` chose the filter at start; it keeps precedence over the config.
    from_env: bool,
}

impl LogControl {
    /// Applies `level` (an `EnvFilter` directive). Returns false, changing nothing, when
    /// `RUST_LOG` set the filter: the operator's explicit override wins over the file.
    pub fn set_level(&self, level: &str) -> Result<bool, TelemetryError> {
        if self.from_env {
            return Ok(false);
        }
        let filter = parse_level(level)?;
        self.handle.reload(filter)?;
        Ok(true)
    }
}

fn parse_level(level: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::try_new(level).map_err(|source| TelemetryError::Level {
        level: level.to_owned(),
        source,
    })
}

/// Installs the global subscriber. `RUST_LOG`, when set, replaces `level` so an operator
/// can raise verbosity for one run without editing the config. A second call fails with
/// `AlreadyInitialised` and leaves the first subscriber in place.
pub fn init_logging(level: &str) -> Result<LogControl, TelemetryError> {
    let from_env = std::env::var_os(EnvFilter::DEFAULT_ENV).is_some();
    let filter = if from_env {
        EnvFilter::try_from_default_env().map_err(TelemetryError::Env)?
    } else {
        parse_level(level)?
    };
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if stderr_is_journal() {
        let layer = tracing_subscriber::fmt::layer()
            .event_format(Journald)
            .with_ansi(false)
            .with_writer(std::io::stderr);
        registry.with(layer).try_init()
    } else {
        let layer = tracing_subscriber::fmt::layer()
            // Colour codes are noise in files and pipes.
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr);
        registry.with(layer).try_init()
    };
    installed.map_err(|e| TelemetryError::AlreadyInitialised(Box::new(e)))?;
    Ok(LogControl { handle, from_env })
}

/// systemd sets `JOURNAL_STREAM=<device>:<inode>` of the stream it connected; it is
/// inherited by children whose stderr may be something else, so the pair is compared
/// with what stderr really is.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let stderr = std::io::stderr();
    let Ok(fd) = stderr.as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// A journald line: `<priority>target: message field=value ...`.
struct Journald;

/// sd-daemon(3) / syslog priorities.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(writer, "<{}>{}: ", priority(meta.level()), meta.target())?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

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
        let control = init_logging("info").unwrap();
        assert!(matches!(
            init_logging("info"),
            Err(TelemetryError::AlreadyInitialised(_))
        ));
        if std::env::var_os(EnvFilter::DEFAULT_ENV).is_none() {
            assert!(control.set_level("debug").unwrap());
            assert!(tracing::enabled!(Level::DEBUG));
            assert!(control.set_level("warn").unwrap());
            assert!(!tracing::enabled!(Level::INFO));
            assert!(control.set_level("hookd=nonsense").is_err());
            assert!(
                !tracing::enabled!(Level::INFO),
                "a bad level changes nothing"
            );
        }
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journald_lines_carry_a_priority_and_no_timestamp_or_colour() {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(Journald)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(status = 503, "delivery failed");
            tracing::warn!("slow");
            tracing::info!(port = 1, "serving");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "<3>hookd::telemetry::tests: delivery failed status=503",
                "<4>hookd::telemetry::tests: slow",
                "<6>hookd::telemetry::tests: serving port=1",
            ]
        );
    }
}
