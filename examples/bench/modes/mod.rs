//! One file per benchmark mode; `main.rs` lists them with their arguments.

pub mod backlog;
pub mod cluster;
pub mod compact;
pub mod diskfull;
pub mod fanout;
pub mod ingest;
pub mod pause;
pub mod rate;
pub mod restart;
pub mod retention;
