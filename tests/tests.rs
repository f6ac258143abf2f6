//! Scratch test binary of the WAL helper; the lead's declares the same modules.

mod golden;
mod wal;
