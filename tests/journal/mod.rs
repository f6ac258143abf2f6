//! The journal (WAL + state machine) without a database: log compaction over a year of
//! synthetic nightly runs, and compaction killed at random moments.

mod crash;
mod growth;
