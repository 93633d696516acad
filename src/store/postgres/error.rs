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
}

impl From<PostgresError> for crate::store::StoreError {
    fn from(error: PostgresError) -> Self {
        Self::Postgres(Box::new(error))
    }
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
