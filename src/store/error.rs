//! Errors of the store layer. Sources are kept; nothing here is shown to API callers
//! beyond "internal error" (the log carries the detail).

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database: {0}")]
    Open(#[from] redb::DatabaseError),
    #[error("transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("table: {0}")]
    Table(#[from] redb::TableError),
    #[error("storage: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("commit: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("setting durability: {0}")]
    Durability(#[from] redb::SetDurabilityError),
    #[error("encoding a {kind} record: {source}")]
    Encode {
        kind: &'static str,
        source: postcard::Error,
    },
    #[error("decoding a {kind} record: {source}")]
    Decode {
        kind: &'static str,
        source: postcard::Error,
    },
    #[error("a {kind} record has layout version {found}, this build reads {expected}")]
    RecordVersion {
        kind: &'static str,
        found: u8,
        expected: u8,
    },
    #[error("the database has schema version {found}, this build knows up to {known}")]
    SchemaTooNew { found: u32, known: u32 },
    #[error("the batch this request was committed with failed: {0}")]
    Shared(#[source] std::sync::Arc<StoreError>),
    #[error("rolled back because another request in the same batch failed")]
    Aborted,
    #[error("storage.backend = \"{0}\" is not available in this build yet; use \"redb\"")]
    BackendNotBuilt(&'static str),
    #[error(
        "the target already holds hookd data ({0}); `hookd store copy` fills only an empty one"
    )]
    TargetNotEmpty(String),
    #[error(
        "store copy goes between storage.backend = \"redb\" and \"postgres\": one config must name each"
    )]
    CopyDirection,
    #[error("hookd nodes are running on the source database ({0}); stop every node before copying")]
    NodesRunning(String),
    #[error(
        "this hookd keeps its data in PostgreSQL: back it up with pg_dump or the database's own backups"
    )]
    BackupElsewhere,
    #[error("the store writer has stopped")]
    WriterGone,
    #[error(
        "storage is unavailable: a write failed (a disk full or failing, or the database unreachable); retry shortly"
    )]
    Unavailable,
    #[error("free disk space is below storage.min_free; new events are refused")]
    LowDisk,
    #[error(
        "{}: the database is open in another process; stop hookd first (systemctl stop hookd)",
        .0.display()
    )]
    Locked(std::path::PathBuf),
    #[error("{}: no database there", .0.display())]
    Missing(std::path::PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a readable redb database: {source}", path.display())]
    NotADatabase {
        path: std::path::PathBuf,
        source: redb::DatabaseError,
    },
    #[error("{}: a redb database, but not hookd's (no schema version)", .0.display())]
    NotHookd(std::path::PathBuf),
    #[error("compaction: {0}")]
    Compaction(#[from] redb::CompactionError),
    #[error("table {0} is not in the schema's table list (store/redb/tables.rs)")]
    UnknownTable(String),
    #[error("a blocking store task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Postgres(#[from] super::postgres::PostgresError),
}

impl StoreError {
    /// Whether this failed because storage cannot write now (an I/O error such as ENOSPC
    /// or EIO, or redb refusing after one): the writer reopens the database and the work
    /// can be retried, unlike a bug or a corrupt record.
    pub fn is_io(&self) -> bool {
        let storage = match self {
            Self::Unavailable => return true,
            Self::Shared(inner) => return inner.is_io(),
            // The database unreachable, restarting or out of room: retried later, as
            // an I/O failure of a redb file is.
            Self::Postgres(error) => return error.is_unavailable(),
            Self::Storage(e) => e,
            Self::Commit(redb::CommitError::Storage(e)) => e,
            Self::Transaction(redb::TransactionError::Storage(e)) => e,
            Self::Table(redb::TableError::Storage(e)) => e,
            Self::Open(redb::DatabaseError::Storage(e)) => e,
            _ => return false,
        };
        matches!(
            storage,
            redb::StorageError::Io(_) | redb::StorageError::PreviousIo
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_failures_are_found_through_their_sources() {
        let full = std::io::Error::from_raw_os_error(28); // ENOSPC
        let commit = StoreError::Commit(redb::CommitError::Storage(redb::StorageError::Io(full)));
        assert!(commit.is_io());
        let after = StoreError::Storage(redb::StorageError::PreviousIo);
        assert!(StoreError::Shared(std::sync::Arc::new(after)).is_io());
        assert!(StoreError::Unavailable.is_io());
        assert!(!StoreError::Aborted.is_io());
        assert!(!StoreError::LowDisk.is_io());
    }
}
