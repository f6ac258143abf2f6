//! `archiver`: moves old rows from a MySQL/MariaDB table into an archive table in batches,
//! archive then delete, with an append-only write-ahead log as the source of truth for progress.
//!
//! See `ARCHITECTURE.md` for the map of modules and the invariants they keep.

pub mod cli;
pub mod config;
pub mod db;
pub mod engine;
pub mod error;
pub mod event;
pub mod hooks;
pub mod journal;
pub mod ops;
pub mod state;
pub mod wal;
