//! The PostgreSQL backend's foundations (`storage.backend = "postgres"`): a connection
//! pool built from `[storage.postgres]` (`connect.rs`) and the schema, migrated at start
//! under an advisory lock so that nodes starting together migrate once (`schema.rs`),
//! and ids as `uuid` (`types.rs`).
//! Nothing here reads or writes hookd's records yet; the `Store` operations come on top.

mod cluster;
mod connect;
mod copy;
mod error;
mod listen;
mod node;
mod schema;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cluster;
#[cfg(test)]
mod tests_listen;
#[cfg(test)]
mod tests_node;
#[cfg(test)]
mod tests_schema;
mod types;

// What the backend's `Store` will call; until it exists only the tests do.
#[allow(unused_imports)]
pub use connect::pool;
pub use copy::from_redb as copy_from_redb;
pub use error::PostgresError;
#[allow(unused_imports)]
pub use schema::{Migrated, PARTITIONS, latest, migrate, partition_of};
#[allow(unused_imports)]
pub use types::Uuid;
