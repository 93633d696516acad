//! Everything the CLI prints on stdout goes through `print`. `println!` panics when
//! stdout is a pipe whose reader has gone (`hookd subscription list | head -1`: Rust
//! ignores SIGPIPE, so the write fails with EPIPE); here that failure becomes
//! `CliError::StdoutClosed`, which `main` turns into a quiet, successful exit, as
//! `cat` or `grep` end when `head` has read enough.

use std::fmt::Display;
use std::io::{ErrorKind, Write};

use super::CliError;

/// Writes `text` to stdout and flushes, so a closed pipe is noticed here and not in a
/// destructor that cannot report it.
pub fn print(text: impl Display) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|error| match error.kind() {
            ErrorKind::BrokenPipe => CliError::StdoutClosed,
            _ => CliError::Stdout(error),
        })
}

/// A note for the person at the terminal (where a list's next page starts), on stderr
/// so that stdout carries only the table. Lost, not fatal, if stderr is closed.
pub fn hint(text: impl Display) {
    let _ = writeln!(std::io::stderr(), "{text}");
}
