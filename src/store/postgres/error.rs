//! What can go wrong reaching or preparing the database. Messages name the config key
//! at fault where there is one, and never carry the password: it is read from its file
//! and handed to the client, and no variant holds it.

use std::error::Error;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("storage.postgres.url: {0}")]
    Url(String),
    #[error("storage.postgres.node_name: {0}")]
    NodeName(String),
    #[error("storage.postgres.password_file = {}: cannot read: {source}", path.display())]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("storage.postgres.password_file = {}: the file holds no password", path.display())]
    EmptyPassword { path: PathBuf },
    #[error("TLS to the database: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("the database connection pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
    // The client's errors print only their kind ("db error"); the server's reason is
    // in their sources, so these print the whole chain.
    #[error("cannot connect to the database: {}", chain(error))]
    Connect { error: deadpool_postgres::PoolError },
    #[error("database: {}", chain(error))]
    Query { error: tokio_postgres::Error },
    #[error("the database runs PostgreSQL {found}; hookd needs 12 or newer")]
    ServerTooOld { found: String },
    #[error(
        "the database's schema is version {found}, newer than this hookd knows ({known}): \
         a newer hookd has migrated it; run that release on this node too"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("hookd_meta.schema_version is {0:?}, not a version number")]
    SchemaVersion(String),
    #[error("the database holds {0}, which no record of this build has")]
    Column(String),
}

impl From<tokio_postgres::Error> for PostgresError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Query { error }
    }
}

impl From<deadpool_postgres::PoolError> for PostgresError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Connect { error }
    }
}

impl PostgresError {
    /// The server's SQLSTATE, when the database refused something.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        let error = match self {
            Self::Query { error } => error,
            Self::Connect {
                error: deadpool_postgres::PoolError::Backend(error),
            } => error,
            _ => return None,
        };
        error.as_db_error().map(|db| db.code())
    }

    /// Whether the database aborted the transaction to break a deadlock or keep it
    /// serializable: applying it again from the start is the cure.
    pub fn is_victim(&self) -> bool {
        use tokio_postgres::error::SqlState;
        self.code().is_some_and(|code| {
            *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
        })
    }

    /// Whether this failed because the database cannot be reached or cannot work now
    /// (refused or lost connections, a restart or failover in progress, no room, a
    /// statement that ran out of time): the work can be retried once it answers again,
    /// unlike a refusal of what was asked or a bug.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Connect { error } => pool_unavailable(error),
            Self::Query { error } => client_unavailable(error),
            _ => false,
        }
    }
}

fn pool_unavailable(error: &deadpool_postgres::PoolError) -> bool {
    use deadpool_postgres::PoolError;
    match error {
        PoolError::Timeout(_) | PoolError::Closed => true,
        PoolError::Backend(error) => client_unavailable(error),
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => false,
    }
}

fn client_unavailable(error: &tokio_postgres::Error) -> bool {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        // 08: connection exception; 53: insufficient resources (disk full, too many
        // connections); 58: system error (I/O); 57P0x: shutting down, starting up;
        // 57014: a statement cancelled by its timeout; 25006: read-only (a standby,
        // say during a failover).
        return ["08", "53", "58", "57P"]
            .iter()
            .any(|c| code.starts_with(c))
            || code == "57014"
            || code == "25006";
    }
    if error.is_closed() {
        return true;
    }
    let mut next = std::error::Error::source(error);
    while let Some(source) = next {
        if source.is::<std::io::Error>() {
            return true;
        }
        next = source.source();
    }
    // The client's own kinds without a source: a connect or TLS handshake that timed
    // out or failed (the kind itself is private; its text is its stable name).
    matches!(
        error.to_string().as_str(),
        "timeout waiting for server" | "error performing TLS handshake"
    )
}

/// `error: its source: that one's source...`, without repeats (some errors print their
/// source in their own message too).
fn chain(error: &dyn Error) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !out.ends_with(&text) {
            let _ = write!(out, ": {text}");
        }
        next = source.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::error::StoreError;
    use deadpool_postgres::{PoolError, TimeoutType};

    #[test]
    fn an_unreachable_database_is_a_storage_failure_and_a_bad_column_is_not() {
        for down in [PoolError::Closed, PoolError::Timeout(TimeoutType::Create)] {
            let error = PostgresError::from(down);
            assert!(error.is_unavailable(), "{error}");
            assert!(StoreError::Postgres(error).is_io());
        }
        let bug = PostgresError::Column("delivery state code 9".into());
        assert!(!bug.is_unavailable() && !bug.is_victim());
        assert!(!StoreError::Postgres(bug).is_io());
    }
}
