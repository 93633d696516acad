//! The real hookd binary as a child process (`hookd serve`), for tests that kill it,
//! signal it or read its resident memory from `/proc`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{Api, Options, TestCa, WAIT, write_state};

/// Log lines of a child kept for a failure report: the last `LOG_LINES`.
const LOG_LINES: usize = 400;

/// A hookd child process and the API it serves.
pub struct Daemon {
    pub child: Process,
    pub api: Api,
    /// The last lines the process wrote to stderr.
    pub log: Log,
}

/// The tail of a child's stderr, read on its own thread as long as the child writes.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<VecDeque<String>>>);

impl Log {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap();
        if lines.len() == LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The lines kept so far, one a line.
    pub fn text(&self) -> String {
        let lines = self.0.lock().unwrap();
        lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// The child process, killed when dropped: a test that fails half-way must not leave
/// a daemon running.
pub struct Process(Child);

impl std::ops::Deref for Process {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Already ended when the test stopped it itself.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes `root/hookd.toml` for `spawn`, with the files it names.
pub fn configure(root: &Path, ca: &TestCa, options: &Options) {
    let config = write_state(root, ca, options, "127.0.0.1:0");
    std::fs::write(root.join("hookd.toml"), config).unwrap();
}

/// Starts `hookd serve` on `root` and waits for its "serving" log line, which names
/// the port it bound (the config asks for port 0). `HOOKD_BIN` names another binary
/// to run (a release build, to measure it); by default it is the one cargo built.
pub fn spawn(root: &Path, ca: &TestCa) -> Daemon {
    let binary = std::env::var_os("HOOKD_BIN").map_or_else(
        || env!("CARGO_BIN_EXE_hookd").into(),
        std::path::PathBuf::from,
    );
    let mut child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(root.join("hookd.toml"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Log::default();
    let kept = log.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(rest) = line.split("address=Some(127.0.0.1:").nth(1) {
                    let port: u16 = rest.split(')').next().unwrap().parse().unwrap();
                    let _ = tx.send(port);
                    sent = true;
                }
            }
            kept.push(line);
        }
    });
    let child = Process(child);
    let Ok(port) = rx.recv_timeout(WAIT) else {
        panic!("hookd did not log its address in time:\n{}", log.text());
    };
    Daemon {
        child,
        api: Api::new(port, ca),
        log,
    }
}

impl Daemon {
    /// A memory figure of the process in KiB from `/proc/PID/status`: `VmHWM` (peak
    /// resident so far) or `VmRSS` (resident now).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("/proc/PID/status has {field}"))
    }
}
