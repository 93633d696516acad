//! The PostgreSQL backend (`storage.backend = "postgres"`): a connection pool built
//! from `[storage.postgres]` (`connect.rs`), the schema, migrated at start under an
//! advisory lock so that nodes starting together migrate once (`schema.rs`), ids as
//! `uuid` (`types.rs`), and the `Store` operations on top: `PgStore` (`store.rs`), the
//! group-commit writer (`writer.rs`, deciding in `batch.rs`, `ingest.rs`,
//! `outcomes.rs`, `changes.rs` and `sweep.rs`, writing in `flush.rs` through
//! `columns.rs`), retention (`purge.rs`) and the reads (`reads.rs`). Between nodes:
//! partition leases (`cluster.rs`), LISTEN/NOTIFY (`listen.rs`) and what a node does
//! with both (`node.rs`); console sessions and portal links (`sessions.rs`); `copy.rs`
//! fills an empty database from a redb file.
//!
//! `PgStore::open` takes the node's first heartbeat, then starts the writer, the
//! heartbeat, the listener and `node::follow`; the writer notifies the other nodes
//! inside each commit and fences attempt outcomes by the partition's epoch.

mod batch;
mod changes;
mod cluster;
mod columns;
mod connect;
mod copy;
mod copy_out;
mod error;
mod flush;
mod ingest;
mod listen;
mod node;
mod outcomes;
mod purge;
mod reads;
mod rows;
mod schema;
mod sessions;
mod store;
mod sweep;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cluster;
#[cfg(test)]
mod tests_fence;
#[cfg(test)]
mod tests_listen;
#[cfg(test)]
mod tests_node;
#[cfg(test)]
mod tests_outcomes;
#[cfg(test)]
mod tests_purge;
#[cfg(test)]
mod tests_schema;
#[cfg(test)]
mod tests_sessions;
#[cfg(test)]
mod tests_store;
#[cfg(test)]
mod tests_support;
#[cfg(test)]
mod tests_sweep;
mod types;
mod writer;

// What the backend's `Store` will call; until it exists only the tests do.
#[allow(unused_imports)]
pub use connect::pool;
pub use copy::from_redb as copy_from_redb;
pub use copy_out::to_redb as copy_to_redb;
pub use error::PostgresError;
pub(crate) use reads::DueCounter;
#[allow(unused_imports)]
pub use schema::{Migrated, PARTITIONS, latest, migrate, partition_of};
#[allow(unused_imports)]
pub(crate) use store::PgStore;
#[allow(unused_imports)]
pub use types::Uuid;
