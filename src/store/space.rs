//! Whether the store can take new work: the free disk under the database against
//! `storage.min_free`, and whether the last write failed (ENOSPC, EIO). The writer sets
//! the state; the API (507, 503, `/readyz`), the dispatcher (no attempt whose outcome
//! cannot be recorded) and the metrics read it, and each change is logged once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::MinFree;

/// What the store can do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageState {
    /// Everything writes.
    Ok,
    /// Free disk is below `storage.min_free`: new events are refused (507) while the
    /// outcomes, purges and changes of the work already accepted still write.
    LowDisk,
    /// A write failed (the disk is full, or failing): nothing writes until the writer
    /// has reopened the database and a probe write succeeded.
    Faulted,
}

impl StorageState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::LowDisk => "low_disk",
            Self::Faulted => "faulted",
        }
    }
}

/// The current `StorageState`, shared by everyone who acts on it.
#[derive(Clone)]
pub struct StorageHealth {
    state: watch::Sender<StorageState>,
}

impl Default for StorageHealth {
    fn default() -> Self {
        Self {
            state: watch::Sender::new(StorageState::Ok),
        }
    }
}

impl StorageHealth {
    pub fn state(&self) -> StorageState {
        *self.state.borrow()
    }

    /// Tells of every change (for waiting until writes succeed again).
    pub fn watch(&self) -> watch::Receiver<StorageState> {
        self.state.subscribe()
    }

    /// Sets the state; true when it changed (so the caller logs the change once).
    pub(super) fn set(&self, next: StorageState) -> bool {
        self.state.send_if_modified(|state| {
            let changed = *state != next;
            *state = next;
            changed
        })
    }
}

/// How often the free space is read: a `statvfs` per commit would cost little, but
/// this bounds it whatever the commit rate. At most this much ingest can land below
/// `min_free` before new events are refused.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Free disk under the database, read at most every `CHECK_EVERY`.
pub(super) struct DiskSpace {
    dir: PathBuf,
    min_free: MinFree,
    checked: Option<Instant>,
    low: bool,
}

impl DiskSpace {
    pub fn new(db_path: &Path, min_free: MinFree) -> Self {
        let dir = super::folder_of(db_path);
        Self {
            dir,
            min_free,
            checked: None,
            low: false,
        }
    }

    /// Whether free space is below `min_free`. A file system that cannot be read is
    /// not called low: the write itself will say whether the disk is full.
    pub fn low(&mut self) -> bool {
        if self.checked.is_some_and(|at| at.elapsed() < CHECK_EVERY) {
            return self.low;
        }
        self.checked = Some(Instant::now());
        self.low = match free_and_total(&self.dir) {
            Ok((free, total)) => free < self.min_free.bytes(total),
            Err(error) => {
                tracing::debug!(%error, dir = %self.dir.display(), "cannot read free disk space");
                false
            }
        };
        self.low
    }
}

impl DiskSpace {
    /// Whether at least `bytes` are free now (read now, not from the last check).
    pub fn has_room(&mut self, bytes: u64) -> bool {
        self.checked = None;
        free_and_total(&self.dir).map_or(true, |(free, _)| free >= bytes)
    }
}

/// (bytes available to an unprivileged writer, file system size).
fn free_and_total(dir: &Path) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok((
        stat.f_bavail.saturating_mul(stat.f_frsize),
        stat.f_blocks.saturating_mul(stat.f_frsize),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_follows_min_free() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hookd.redb");
        assert!(!DiskSpace::new(&db, MinFree::Bytes(0)).low());
        assert!(DiskSpace::new(&db, MinFree::Bytes(u64::MAX)).low());
        assert!(DiskSpace::new(&db, MinFree::Percent(100.0)).low());
    }

    #[test]
    fn each_change_is_told_once() {
        let health = StorageHealth::default();
        let mut seen = health.watch();
        assert!(!health.set(StorageState::Ok));
        assert!(health.set(StorageState::Faulted));
        assert!(!health.set(StorageState::Faulted));
        assert!(seen.has_changed().unwrap());
        assert_eq!(*seen.borrow_and_update(), StorageState::Faulted);
        assert_eq!(health.state().as_str(), "faulted");
    }
}
