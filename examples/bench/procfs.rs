//! What /proc says about a process: resident memory now and at its peak, CPU time
//! spent, and whether the bench runs as root.

/// /proc reports CPU times in USER_HZ ticks, which Linux fixes at 100 per second for
/// user space on every architecture it supports.
pub const TICKS_PER_SECOND: f64 = 100.0;

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

/// User plus system CPU time of the process so far, in ticks (fields 14 and 15 of
/// /proc/<pid>/stat, counted after the command name, which may contain spaces).
pub fn cpu_ticks(pid: u32) -> u64 {
    // utime is field 14, stime field 15.
    stat_field(pid, 14).unwrap_or(0) + stat_field(pid, 15).unwrap_or(0)
}

/// As `cpu_ticks`, plus the CPU time of the children it has reaped (cutime, cstime).
pub fn cpu_ticks_with_children(pid: u32) -> u64 {
    cpu_ticks(pid) + stat_field(pid, 16).unwrap_or(0) + stat_field(pid, 17).unwrap_or(0)
}

/// The parent's pid (field 4).
pub fn parent(pid: u32) -> Option<u32> {
    stat_field(pid, 4).map(|p| p as u32)
}

/// Field `i` (numbered from 1, as proc(5) does) of /proc/<pid>/stat, if numeric.
fn stat_field(pid: u32, i: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    // after_name starts at field 3 (state).
    after_name.split_whitespace().nth(i - 3)?.parse().ok()
}

/// Resets the process's VmHWM to its current VmRSS (`echo 5 > clear_refs`), so the next
/// read is the peak of what follows. False where the kernel or permissions refuse it.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Whether this process runs with user id 0 (mounting a tmpfs needs it).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .is_some_and(|effective| effective == "0")
}
