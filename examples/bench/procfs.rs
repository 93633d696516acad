//! What /proc says about a process: resident memory now and at its peak (which can be
//! reset).

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

/// Resets the process's VmHWM to its current VmRSS (`echo 5 > clear_refs`), so the next
/// read is the peak of what follows. False where the kernel or permissions refuse it.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}
