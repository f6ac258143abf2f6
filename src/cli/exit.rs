//! Exit codes, for schedulers, and the one place that maps outcomes and errors to them.
//! Documented in README.md; never renumber.

use crate::engine::RunEnd;
use crate::error::Error;
use crate::ops::inspect::InspectVerdict;
use crate::wal::WalError;

/// Done: everything that matched is archived; nothing needs attention.
pub const DONE: u8 = 0;
/// An error stopped the job (server unreachable, corrupt WAL, fatal SQL error). The next run
/// resumes where it stopped.
pub const ERROR: u8 = 1;
/// Stopped early (signal, `--max-runtime`, `--until`) with work left; the next run resumes.
pub const STOPPED: u8 = 2;
/// Done, but attention is needed: conflicts were found or batches are parked.
pub const ATTENTION: u8 = 3;
/// The job file or the tables it names are wrong; nothing was changed.
pub const CONFIG: u8 = 64;
/// Another process holds this job's WAL lock (a run is active); nothing was changed.
pub const LOCKED: u8 = 75;

/// The exit code an error stands for, by its kind.
pub fn for_error(error: &Error) -> u8 {
    match error {
        Error::Config(_) | Error::Refused(_) => CONFIG,
        Error::Wal(WalError::Locked { .. }) => LOCKED,
        Error::Wal(_)
        | Error::Contradiction { .. }
        | Error::Db(_)
        | Error::BatchStopped { .. }
        | Error::Failed(_) => ERROR,
    }
}

/// The exit code of a run that ended without an error.
pub fn for_run(end: RunEnd) -> u8 {
    match end {
        RunEnd::Done => DONE,
        RunEnd::Stopped => STOPPED,
        RunEnd::Attention => ATTENTION,
    }
}

/// The exit code of `replay --inspect`: non-zero when the log is corrupt.
pub fn for_inspect(verdict: InspectVerdict) -> u8 {
    match verdict {
        InspectVerdict::Corrupt => ERROR,
        InspectVerdict::Clean | InspectVerdict::TornTail => DONE,
    }
}
