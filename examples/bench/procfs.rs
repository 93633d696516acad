//! What /proc says about a process: resident memory now and at its peak.

/// A `kB` line of /proc/<pid>/status (`VmHWM:`, `VmRSS:`), 0 once the process is gone.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
