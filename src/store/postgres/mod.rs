//! The PostgreSQL backend's foundations (`storage.backend = "postgres"`): a connection
//! pool built from `[storage.postgres]` (`connect.rs`). Nothing here reads or writes
//! hookd's records yet; the `Store` operations come on top.

mod connect;
mod error;
#[cfg(test)]
mod tests;

// What the backend's `Store` will call; until it exists only the tests do.
#[allow(unused_imports)]
pub use connect::pool;
pub use error::PostgresError;
