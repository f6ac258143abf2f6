//! The write-ahead log: an append-only sequence of typed, checksummed records in numbered,
//! preallocated segment files inside one directory. It is payload-agnostic: it stores
//! `(record_type, payload)` pairs and knows nothing of events (see `crate::event`).
//!
//! - [`format`](mod@format): the bytes (header, frame, naming), pure functions;
//!   `wal-format.md` specifies them.
//! - [`scan`]: the read-only scanner shared by recovery, [`read_dir`] and `inspect`; it classifies
//!   damage as a torn tail (cut by recovery) or corruption (refused).
//! - [`writer`]: [`WalWriter`], the only code that writes a log directory, under an exclusive lock.
//! - [`compact`]: [`WalWriter::replace_with`], which replaces the whole log with one base segment
//!   (compaction), crash-safely.
//! - [`fs`]: the filesystem seam the writer goes through, with a fault-injecting test double.
//! - [`stress`]: the deterministic append loop the crash test drives in a child process.
//!
//! **Invariant: a record is reported durable ([`WalWriter::sync`] returned `Ok`) only after
//! fdatasync of every byte of it returned success; recovery never invents a record and never
//! drops a durable one without failing loudly.**

// The on-disk code converts between integer widths only where the conversion is checked
// (`try_from` with a handled error or a stated invariant) or lossless (`From`): a silent
// truncation or sign change here is a corrupt log. Applies to every submodule.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::cast_lossless
)]

pub mod compact;
pub mod format;
pub mod fs;
pub mod scan;
pub mod stress;
pub mod writer;

use std::path::{Path, PathBuf};

pub use compact::Replacement;
pub use format::{DEFAULT_SEGMENT_BYTES, FRAME_OVERHEAD_BYTES, HEADER_BYTES, SEGMENT_BYTES_FIRST};
pub use scan::{read_dir, CompactLeftover, DirReport, SegmentStatus, SegmentSummary};
pub use writer::{OpenReport, PendingSync, SyncOutcome, WalWriter};

/// Log sequence number: the first record of a log has LSN 1 (or, after a compaction, the first
/// LSN of its base segment), each next record the next number.
pub type Lsn = u64;

/// The error type replay visitors ([`WalWriter::open`], [`read_dir`]) may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How recovery treats a damaged last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Cut the last segment at a torn tail (an invalid record with nothing valid after it);
    /// refuse anything else. The default.
    #[default]
    TolerateTornTail,
    /// Explicit salvage: cut the last segment at its first invalid record even when valid
    /// records follow it (they are lost). Damage in any earlier segment is still refused.
    SalvageLastSegment,
}

/// How a writer is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Largest size of a new segment file in bytes (preallocated), between
    /// [`format::SEGMENT_BYTES_MIN`] and [`format::SEGMENT_BYTES_MAX`]. A new log's first
    /// segment is [`SEGMENT_BYTES_FIRST`] (or this, if smaller) and each next one doubles the
    /// previous one's size up to this ([`format::next_segment_bytes`]).
    pub segment_bytes: u64,
    /// What recovery may cut.
    pub recovery: RecoveryMode,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            recovery: RecoveryMode::TolerateTornTail,
        }
    }
}

/// One record as read back from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its type (never 0).
    pub record_type: u16,
    /// Its payload.
    pub payload: &'a [u8],
    /// Sequence number of the segment holding it.
    pub segment_seq: u64,
    /// Offset of its frame in that segment file.
    pub offset: u64,
}

/// What recovery cut from the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    /// The segment file.
    pub segment: PathBuf,
    /// Offset of the cut: the first byte of the invalid record, where appending resumes.
    pub offset: u64,
    /// Non-zero bytes discarded after the cut (zeroed on disk when opening for write).
    pub bytes_discarded: u64,
    /// What was found at the cut.
    pub detail: String,
    /// Whether the cut needed [`RecoveryMode::SalvageLastSegment`] (valid records followed).
    pub salvaged: bool,
}

/// Why a WAL operation failed. `Io` and `Corruption` are kept apart: an I/O error may go away on
/// retry, corruption needs a person.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The operating system refused an operation.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "fdatasync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The log's bytes are damaged beyond what recovery may cut. Nothing was changed on disk.
    #[error(
        "the WAL is corrupt: {}, offset {offset}: {detail}; nothing was changed on disk; run `archiver replay --inspect --wal-dir {}` to see the damage",
        path.display(),
        dir_of(path).display()
    )]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Offset of the damage in the file.
        offset: u64,
        /// What was found and what was expected.
        detail: String,
    },
    /// Another process holds the directory lock.
    #[error("{}", locked_message(dir, *pid))]
    Locked {
        /// The WAL directory.
        dir: PathBuf,
        /// The holder's pid, as it wrote it into the lock file (if readable).
        pid: Option<u32>,
    },
    /// An earlier write or sync failed; the writer refuses everything after it.
    #[error("the WAL writer is poisoned by an earlier failed write or sync; restart the process so that it recovers from the log")]
    Poisoned,
    /// The caller passed a record the log cannot hold.
    #[error("record refused: {0}")]
    InvalidRecord(String),
    /// The options are out of bounds.
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
    /// The replay visitor refused a record; opening or reading was aborted.
    #[error("replay stopped at lsn {lsn} ({}, offset {offset}): {source}", path.display())]
    Visitor {
        /// The record's LSN.
        lsn: Lsn,
        /// Its segment file.
        path: PathBuf,
        /// Its offset.
        offset: u64,
        /// The visitor's error.
        #[source]
        source: BoxError,
    },
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn locked_message(dir: &Path, pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!(
            "another archiver process (pid {pid}) holds the WAL lock on {}; wait for it to finish or stop it",
            dir.display()
        ),
        None => format!(
            "another archiver process holds the WAL lock on {}; wait for it to finish or stop it",
            dir.display()
        ),
    }
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WalError {
        let path = path.to_path_buf();
        move |source| WalError::Io { op, path, source }
    }

    /// Whether this error means the log's bytes are damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(self, WalError::Corruption { .. })
    }
}
