//! The event vocabulary: every fact the engine writes to the WAL, and its exact byte encoding.
//!
//! The WAL itself (`crate::wal`) stores opaque `(record_type, payload)` pairs. This module owns
//! the mapping from [`Event`] to a record type number and a payload encoded with bincode 2.0.x
//! under a fixed configuration ([`payload_config`]): little-endian, fixed-width integers. The
//! layouts are specified field by field in `wal-format.md` and pinned by golden vectors in
//! `tests/golden.rs`; change neither without the other.

// Payload encoding is on-disk code: integer conversions are checked or lossless, never `as`.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::cast_lossless
)]

use serde::{Deserialize, Serialize};

/// Largest payload a record may carry, in bytes: the frame format's limit (`wal::format`),
/// enforced by the writer before anything is written and by the decoder before anything is
/// allocated.
pub use crate::wal::format::PAYLOAD_BYTES_MAX;

/// Longest error message a `BatchFailed` record carries and the state keeps, in bytes; a
/// longer one is cut at a character boundary and ends in "…" ([`cut_message`]).
pub const ERROR_MESSAGE_BYTES_MAX: usize = 2_000;
// A cut message, "…" included, is shorter than the largest payload a record may carry.
const _: () = assert!(ERROR_MESSAGE_BYTES_MAX + "…".len() < PAYLOAD_BYTES_MAX);

/// `message` cut to [`ERROR_MESSAGE_BYTES_MAX`] bytes at a character boundary, with "…" when
/// cut. Cutting a cut message again gives the same text.
pub fn cut_message(message: &str) -> String {
    if message.len() <= ERROR_MESSAGE_BYTES_MAX {
        return message.to_string();
    }
    let mut end = ERROR_MESSAGE_BYTES_MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// The fixed bincode configuration for record payloads. Never change it in place: a new
/// encoding needs a new WAL format version.
pub fn payload_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<PAYLOAD_BYTES_MAX>()
}

/// One column value of a primary key, as stored in the WAL and bound as a query parameter.
/// Primary key columns are never NULL, so there is no NULL variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyValue {
    /// A signed integer column (TINYINT .. BIGINT).
    Int(i64),
    /// An unsigned integer column, or a signed one whose value the server sent unsigned.
    UInt(u64),
    /// Everything the server sends as bytes: strings, DECIMAL, binary, and temporal values in
    /// text protocol form.
    Bytes(Vec<u8>),
    /// A temporal value as sent by the binary protocol: year, month, day, hour, minute, second,
    /// microsecond.
    Date(u16, u8, u8, u8, u8, u8, u32),
    /// A TIME value: negative, days, hours, minutes, seconds, microseconds.
    Time(bool, u32, u8, u8, u8, u32),
}

/// A full primary key value: one entry per key column, in key order.
pub type Key = Vec<KeyValue>;

/// What a job moves where: recorded once, in the first record of a log, so that a different job
/// pointed at the same WAL directory is recognised and refused. It holds no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdentity {
    /// Source server as `host:port` (or socket path), without user or password.
    pub source_server: String,
    /// Source schema (database) name.
    pub source_schema: String,
    /// Source table name.
    pub source_table: String,
    /// Archive server as `host:port`; equal to `source_server` when the archive is on it.
    pub archive_server: String,
    /// Archive schema name.
    pub archive_schema: String,
    /// Archive table name.
    pub archive_table: String,
    /// The `where` predicate exactly as configured.
    pub predicate: String,
}

impl JobIdentity {
    /// Lists, as `field: recorded -> configured`, every field in which `configured` differs.
    pub fn differences(&self, configured: &JobIdentity) -> Vec<String> {
        let pairs = [
            (
                "source server",
                &self.source_server,
                &configured.source_server,
            ),
            (
                "source schema",
                &self.source_schema,
                &configured.source_schema,
            ),
            ("source table", &self.source_table, &configured.source_table),
            (
                "archive server",
                &self.archive_server,
                &configured.archive_server,
            ),
            (
                "archive schema",
                &self.archive_schema,
                &configured.archive_schema,
            ),
            (
                "archive table",
                &self.archive_table,
                &configured.archive_table,
            ),
            ("where predicate", &self.predicate, &configured.predicate),
        ];
        pairs
            .iter()
            .filter(|(_, recorded, now)| recorded != now)
            .map(|(name, recorded, now)| {
                format!("{name}: {recorded:?} in the WAL, {now:?} configured")
            })
            .collect()
    }
}

/// The first record of every log: whose log this is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCreated {
    /// The job this log belongs to.
    pub job: JobIdentity,
    /// Wall clock at creation, microseconds since the Unix epoch (informational).
    pub created_unix_us: i64,
}

/// A run began. Everything a resumed run needs to archive exactly the same set is here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStarted {
    /// Run number, 1 for the first run of the log, increasing by one.
    pub run_id: u64,
    /// The moment `NOW()` stands for in the predicate, microseconds since the Unix epoch. Every
    /// session of the run sets `SET TIMESTAMP` to it.
    pub now_unix_us: i64,
    /// The largest primary key in the source when the run started; batches never go past it.
    /// `None`: the source was empty, so the run has nothing to do.
    pub key_bound: Option<Key>,
    /// Rows per batch for this run.
    pub batch_rows: u32,
    /// Attempts a batch gets before it is parked.
    pub attempts_max: u32,
    /// Wall clock at start, microseconds since the Unix epoch (informational).
    pub started_unix_us: i64,
}

/// A batch was planned: the next key range of the run. Appended without a sync: the batch's
/// first durable record (`BatchCommitting`, or `BatchFailed`) makes it durable before anything
/// the batch does is committed on the source; lost with a crash before that, the batch is
/// simply planned again (with the archive on its own server, its rows copied there by then are
/// found there and not copied again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlanned {
    /// Batch number, unique in the log, increasing by one from 1.
    pub batch_id: u64,
    /// The run this batch belongs to.
    pub run_id: u64,
    /// Exclusive lower key bound; `None` means the start of the table.
    pub lower: Option<Key>,
    /// Inclusive upper key bound.
    pub upper: Key,
    /// Matching rows seen in the range when it was planned.
    pub rows_planned: u64,
}

/// A batch's rows are committed in the archive (used when the archive is on another server,
/// where copy and delete are separate transactions). Appended unsynced once the archive's
/// commit returned, before the attempt's `BatchCommitting` or `BatchFailed`, whose sync makes it
/// durable before the source commits its delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCopied {
    /// The batch.
    pub batch_id: u64,
    /// Rows inserted into the archive.
    pub rows_copied: u64,
    /// Rows whose identical copy the archive already held.
    pub rows_already: u64,
}

/// A batch is finished: its rows with an identical archive copy are deleted from the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchDeleted {
    /// The batch.
    pub batch_id: u64,
    /// Rows inserted into the archive by this attempt.
    pub rows_copied: u64,
    /// Rows whose identical copy the archive already held.
    pub rows_already: u64,
    /// Rows deleted from the source.
    pub rows_deleted: u64,
    /// Rows kept in the source because the archive holds a different row under the same key.
    pub rows_conflicting: u64,
}

/// What one attempt at a batch did (the counts a `BatchDeleted` carries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptCounts {
    /// Rows inserted into the archive by this attempt.
    pub rows_copied: u64,
    /// Rows whose identical copy the archive already held.
    pub rows_already: u64,
    /// Rows deleted from the source.
    pub rows_deleted: u64,
    /// Rows kept in the source because the archive holds a different row under the same key.
    pub rows_conflicting: u64,
}

/// What became of the earlier attempt whose `BatchCommitting` no `BatchDeleted` confirmed (a
/// crash, or a connection lost, between its `COMMIT` being sent and its `BatchDeleted` being
/// made durable), as the attempt writing this record found out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EarlierCommit {
    /// There was none: the batch's last attempt wrote no unconfirmed `BatchCommitting`.
    None,
    /// It committed: its counts (repeated from its record) are the batch's from here on, as if
    /// its `BatchDeleted` had been written. Its `rows_conflicting` are not: the conflicting rows
    /// stayed in the source and this attempt counts them again.
    Committed(AttemptCounts),
    /// It did not commit (rolled back): its counts are dropped.
    RolledBack,
}

/// A batch attempt is about to commit its source transaction: what the transaction did, and a
/// key that tells afterwards whether the commit happened. Durable before `COMMIT` is sent (the
/// batch's one sync); the `BatchDeleted` that follows the commit is not synced. If that
/// `BatchDeleted` is lost, the batch's next attempt looks the witness up, inside its own
/// transaction and after its locks (so the earlier transaction has ended): the source lacks
/// the witness key and the archive holds it exactly when the earlier commit happened. So the
/// counts after a crash are exact, never a batch short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCommitting {
    /// The batch.
    pub batch_id: u64,
    /// The attempt, from 1 (as its `BatchOrder` numbered it).
    pub attempt: u32,
    /// What the transaction did, as its `BatchDeleted` will say.
    pub counts: AttemptCounts,
    /// A key this transaction deleted from the source (after copying, on one server); `None`
    /// when it deleted nothing, so that whether it commits changes no count.
    pub witness: Option<Key>,
    /// What this attempt found of the earlier unconfirmed one.
    pub earlier: EarlierCommit,
}

/// The archive holds a row under this key that differs from the source row, so the source row
/// was kept. One record per key, written before the batch's `BatchDeleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictFound {
    /// The batch whose range holds the key.
    pub batch_id: u64,
    /// The conflicting primary key.
    pub key: Key,
}

/// How an error affects the run; decides whether to retry, park, or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Deadlock, lock wait timeout, lost connection, server restart: retry with backoff.
    Transient,
    /// Only this batch is affected (e.g. a value the archive rejects): park it, go on.
    Batch,
    /// The run cannot go on (missing table, permission denied): stop the run.
    Fatal,
}

/// An attempt at a batch failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchFailed {
    /// The batch.
    pub batch_id: u64,
    /// Which attempt failed, 1 for the first.
    pub attempt: u32,
    /// How the error is treated.
    pub class: ErrorClass,
    /// The error as the server or client reported it (never holds a password).
    pub message: String,
}

/// An operator asked for batches to be retried (`archiver reset`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReset {
    /// The batch to retry; its attempt count starts again at zero.
    pub batch_id: u64,
    /// Why, as the operator's command put it.
    pub reason: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOutcome {
    /// Every batch up to the key bound was planned and none is left to execute (some may be
    /// parked or hold conflicts).
    Completed,
}

/// A run is over; the next invocation starts a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFinished {
    /// The run.
    pub run_id: u64,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Wall clock at the end, microseconds since the Unix epoch (informational).
    pub finished_unix_us: i64,
}

/// An invocation continues the open run (the run began in an earlier invocation): from here
/// until the invocation's `RunPaused` or `RunFinished`, the run is running. With those two, the
/// log knows the time a run actually ran, not the hours between nightly invocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResumed {
    /// The open run.
    pub run_id: u64,
    /// Wall clock, microseconds since the Unix epoch.
    pub resumed_unix_us: i64,
}

/// An invocation ends with the run still open (stopped, or failed): it stops running until
/// the next invocation's `RunResumed`. An invocation killed (`kill -9`) writes none; the time
/// it ran is then unknown and left out of the run's active time, with the rows it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPaused {
    /// The open run.
    pub run_id: u64,
    /// Wall clock, microseconds since the Unix epoch.
    pub paused_unix_us: i64,
}

/// Settings an operator changed while a run ran (`archiver ctl set`, the control socket), for
/// the open run from its next batch on, and for its later invocations when it is resumed. A new
/// run starts from the job file's values again. `None`: this record leaves that setting as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsChanged {
    /// The open run.
    pub run_id: u64,
    /// Rows per batch from the next batch planned on (replaces `RunStarted`'s).
    pub batch_rows: Option<u32>,
    /// Pause between batches, in milliseconds (replaces the job file's `sleep_ms`).
    pub sleep_ms: Option<u32>,
    /// Largest replica lag, in seconds, before the throttle holds the run (replaces the job
    /// file's bound).
    pub max_lag_s: Option<u32>,
    /// Wall clock of the change, microseconds since the Unix epoch (informational).
    pub changed_unix_us: i64,
}

// Snapshot records (issue 8, log compaction). A compacted log is one snapshot of the state
// replay reconstructed: `SnapshotStarted`, then chunks of images (`SnapshotRuns`,
// `SnapshotBatches`, `SnapshotConflicts`, and since issue 9 `SnapshotSettings` when runs had
// settings changed live), then `SnapshotFinished`. The images are wire types of their own, field
// for field the state's `Run`, `Batch`, `Counts`, `Conflict`, ..., so that the in-memory
// structs may change without changing the format; `src/state` converts both ways.

/// Largest encoded payload of one snapshot chunk record, in bytes: chunks are filled with images
/// while their encoded size stays within it. A quarter of [`PAYLOAD_BYTES_MAX`], so that one
/// image (a batch holds two keys and an error message, a few KiB with InnoDB's 3,072-byte key
/// limit) never pushes a chunk near the frame limit, and a chunk is a moderate read, write and
/// `inspect` line. A single image larger than the bound goes alone in its chunk.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 256 * 1024;
const _: () = assert!(SNAPSHOT_CHUNK_BYTES_MAX * 4 <= PAYLOAD_BYTES_MAX);

/// Counters of a run or of the whole log (the state's `Counts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsImage {
    /// Batches planned.
    pub batches_planned: u64,
    /// Batches done.
    pub batches_done: u64,
    /// Matching rows seen when the batches were planned.
    pub rows_planned: u64,
    /// Rows inserted into the archive.
    pub rows_copied: u64,
    /// Rows whose identical copy the archive already held.
    pub rows_already: u64,
    /// Rows deleted from the source.
    pub rows_deleted: u64,
    /// Rows kept in the source because of a conflict.
    pub rows_conflicting: u64,
    /// `ConflictFound` records.
    pub conflicts: u64,
    /// `BatchFailed` records.
    pub failures: u64,
}

/// How a run ended (the state's `RunEnd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEndImage {
    /// LSN of the `RunFinished` record (in the log the snapshot covers).
    pub lsn: u64,
    /// The recorded outcome.
    pub outcome: RunOutcome,
    /// Wall clock at the end, microseconds since the Unix epoch.
    pub finished_unix_us: i64,
}

/// One run (the state's `Run`), every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunImage {
    /// Run number, from 1.
    pub run_id: u64,
    /// LSN of the `RunStarted` record.
    pub started_lsn: u64,
    /// The moment `NOW()` stands for, microseconds since the Unix epoch.
    pub now_unix_us: i64,
    /// The largest key when the run started; `None` = the source was empty.
    pub key_bound: Option<Key>,
    /// Rows per batch.
    pub batch_rows: u32,
    /// Attempts a batch gets before it is parked.
    pub attempts_max: u32,
    /// Wall clock at start, microseconds since the Unix epoch.
    pub started_unix_us: i64,
    /// Upper bound of the last batch the run planned.
    pub cursor: Option<Key>,
    /// Upper bound of the first batch the run planned.
    pub first_upper: Option<Key>,
    /// First batch the run planned.
    pub first_batch_id: Option<u64>,
    /// Last batch the run planned.
    pub last_batch_id: Option<u64>,
    /// Sums over the batches the run planned.
    pub counts: CountsImage,
    /// How it ended; `None` while open.
    pub finished: Option<RunEndImage>,
}

/// The part of a batch that runs next (the state's `Step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepImage {
    /// Copy, then delete.
    Copy,
    /// Delete only.
    Delete,
}

/// Where a batch stands (the state's `BatchStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchStatusImage {
    /// Planned, nothing confirmed.
    Planned,
    /// Rows committed in the archive.
    Copied,
    /// Waits for `archiver reset`, then resumes at `step`.
    Parked {
        /// Where it resumes.
        step: StepImage,
    },
    /// Copied and deleted.
    Done,
}

/// The last failure of a batch (the state's `BatchError`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchErrorImage {
    /// LSN of the `BatchFailed` record.
    pub lsn: u64,
    /// Which attempt failed.
    pub attempt: u32,
    /// How the error was treated.
    pub class: ErrorClass,
    /// The error text, at most [`ERROR_MESSAGE_BYTES_MAX`] bytes (plus "…").
    pub message: String,
}

/// One batch (the state's `Batch`), every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchImage {
    /// Batch number.
    pub batch_id: u64,
    /// The run that planned it.
    pub run_id: u64,
    /// LSN of the `BatchPlanned` record.
    pub planned_lsn: u64,
    /// Exclusive lower key bound; `None` = the start of the table.
    pub lower: Option<Key>,
    /// Inclusive upper key bound.
    pub upper: Key,
    /// Matching rows seen when planned.
    pub rows_planned: u64,
    /// Where the batch stands.
    pub status: BatchStatusImage,
    /// Failed attempts since planned or last reset.
    pub attempts: u32,
    /// Failed attempts in all.
    pub failures: u64,
    /// Operator resets applied to it.
    pub resets: u64,
    /// The last failure.
    pub last_error: Option<BatchErrorImage>,
    /// Rows inserted into the archive.
    pub rows_copied: u64,
    /// Rows whose identical copy the archive already held.
    pub rows_already: u64,
    /// Rows deleted from the source.
    pub rows_deleted: u64,
    /// Rows kept in the source because of a conflict.
    pub rows_conflicting: u64,
    /// `ConflictFound` records for this batch.
    pub conflicts: u64,
}

/// One stored conflict (the state's `Conflict`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictImage {
    /// The batch whose range holds the key.
    pub batch_id: u64,
    /// The conflicting key.
    pub key: Key,
    /// LSN of the `ConflictFound` record.
    pub lsn: u64,
}

/// The settings a run had changed live (the state's `LiveSettings`), for a run that has some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSettingsImage {
    /// The run.
    pub run_id: u64,
    /// LSN of its last `SettingsChanged`.
    pub changed_lsn: u64,
    /// Rows per batch, if changed.
    pub batch_rows: Option<u32>,
    /// Pause between batches in milliseconds, if changed.
    pub sleep_ms: Option<u32>,
    /// Replica lag bound in seconds, if changed.
    pub max_lag_s: Option<u32>,
    /// Wall clock of the last change, microseconds since the Unix epoch.
    pub changed_unix_us: i64,
}

/// A snapshot of the replayed state begins: everything that is not a list, and how many images
/// of each kind follow before `SnapshotFinished`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStarted {
    /// Last LSN of the log the snapshot stands for.
    pub covers_lsn: u64,
    /// The job (as `LogCreated` recorded it).
    pub job: JobIdentity,
    /// LSN of the original `LogCreated`.
    pub created_lsn: u64,
    /// Wall clock of the original `LogCreated`, microseconds since the Unix epoch.
    pub created_unix_us: i64,
    /// Wall clock when the snapshot was taken, microseconds since the Unix epoch (informational).
    pub taken_unix_us: i64,
    /// Runs whose done batches the snapshot keeps (the last ones); older runs keep their
    /// counts only.
    pub keep_runs: u32,
    /// Sums over every batch ever planned.
    pub totals: CountsImage,
    /// Conflict records counted but not stored.
    pub conflicts_unstored: u64,
    /// Run images that follow.
    pub runs: u64,
    /// Batch images that follow.
    pub batches: u64,
    /// Conflict images that follow.
    pub conflicts: u64,
}

/// A chunk of run images, in run order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRuns {
    /// The images.
    pub runs: Vec<RunImage>,
}

/// The time a run actually ran (the state's `Activity`), for the runs that have any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityImage {
    /// The run.
    pub run_id: u64,
    /// Microseconds the run ran, over the invocations whose start and end the log holds.
    pub active_us: u64,
    /// Rows those invocations moved.
    pub active_rows: u64,
    /// The start of the invocation under way (microseconds since the Unix epoch), if one is.
    pub since_unix_us: Option<i64>,
    /// The run's rows moved when it started (0 when none is under way).
    pub since_rows: u64,
}

/// A chunk of activity images, in run order (runs without activity have none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotActivity {
    /// The images.
    pub activity: Vec<ActivityImage>,
}

/// A chunk of batch images, in id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBatches {
    /// The images.
    pub batches: Vec<BatchImage>,
}

/// A chunk of stored conflict images, in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotConflicts {
    /// The images.
    pub conflicts: Vec<ConflictImage>,
}

/// A chunk of run settings images, in run order: the runs whose settings were changed live.
/// Written after the run images, before `SnapshotFinished`; a snapshot of a log without live
/// changes has none (so `SnapshotStarted` does not count them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSettings {
    /// The images.
    pub settings: Vec<RunSettingsImage>,
}

/// A batch's `BatchCommitting` that no `BatchDeleted` confirmed yet (the state's `Claim`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimImage {
    /// The batch (not done).
    pub batch_id: u64,
    /// LSN of the `BatchCommitting` record.
    pub lsn: u64,
    /// Its attempt.
    pub attempt: u32,
    /// Its counts.
    pub counts: AttemptCounts,
    /// Its witness key.
    pub witness: Option<Key>,
}

/// A chunk of unconfirmed commit images, in batch order: the batches whose last attempt's
/// commit is not known to have happened. Written after the batch images, before
/// `SnapshotFinished`; not announced by `SnapshotStarted` (at most one per batch image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotClaims {
    /// The images.
    pub claims: Vec<ClaimImage>,
}

/// The snapshot is complete: replay replaces its state with the one the images rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFinished {
    /// The `covers_lsn` of the `SnapshotStarted` it closes.
    pub covers_lsn: u64,
}

/// Encoded payload size of `value`, in bytes, without building it.
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    let mut size = bincode::enc::write::SizeWriter::default();
    // Sizing cannot fail for these plain data types; a failure is a bug.
    bincode::serde::encode_into_writer(value, &mut size, payload_config())
        .expect("event payload sizes");
    size.bytes_written
}

/// `images` cut into consecutive chunks whose encoded `Vec` (an 8-byte count, then the images)
/// is at most `bytes_max`, except that an image larger than that goes alone in its chunk.
pub fn chunk_images<T: Serialize>(images: Vec<T>, bytes_max: usize) -> Vec<Vec<T>> {
    const COUNT_BYTES: usize = 8;
    let mut chunks = Vec::new();
    let mut chunk = Vec::new();
    let mut chunk_bytes = COUNT_BYTES;
    for image in images {
        let bytes = encoded_len(&image);
        if !chunk.is_empty() && chunk_bytes + bytes > bytes_max {
            chunks.push(std::mem::take(&mut chunk));
            chunk_bytes = COUNT_BYTES;
        }
        chunk_bytes += bytes;
        chunk.push(image);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// Why a record's payload could not be turned into an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record type is not one this version knows.
    #[error("unknown record type {0}")]
    UnknownType(u16),
    /// The payload does not decode as the type's struct.
    #[error("payload of record type {record_type} ({name}) does not decode: {message}")]
    Payload {
        /// The record type.
        record_type: u16,
        /// The type's name.
        name: &'static str,
        /// What bincode said.
        message: String,
    },
    /// The payload decodes but has bytes left over.
    #[error("payload of record type {record_type} ({name}) has {extra} trailing bytes")]
    Trailing {
        /// The record type.
        record_type: u16,
        /// The type's name.
        name: &'static str,
        /// Bytes after the decoded value.
        extra: usize,
    },
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail for these plain data types; a failure is a bug.
    bincode::serde::encode_to_vec(value, payload_config()).expect("event payload encodes")
}

fn decode<T: serde::de::DeserializeOwned>(
    record_type: u16,
    name: &'static str,
    payload: &[u8],
) -> Result<T, DecodeError> {
    let (value, used) =
        bincode::serde::decode_from_slice(payload, payload_config()).map_err(|e| {
            DecodeError::Payload {
                record_type,
                name,
                message: e.to_string(),
            }
        })?;
    if used != payload.len() {
        return Err(DecodeError::Trailing {
            record_type,
            name,
            extra: payload.len() - used,
        });
    }
    Ok(value)
}

/// THE record-type table: each event's WAL record type number and name, written once. The
/// enum, its numbers, its names, encoding, decoding and JSON all come from this list; a number
/// never changes and is never reused (`wal-format.md`, "Record types").
macro_rules! record_types {
    ($($number:literal => $variant:ident),+ $(,)?) => {
        /// Every record the engine writes. The discriminant is the WAL record type.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Event {
            $(
                #[doc = concat!("Record type ", stringify!($number), ".")]
                $variant($variant),
            )+
        }

        /// Every known record type, with its name, in number order.
        pub const RECORD_TYPES: &[(u16, &str)] = &[$(($number, stringify!($variant))),+];

        impl Event {
            /// The WAL record type of this event.
            pub fn record_type(&self) -> u16 {
                match self {
                    $(Event::$variant(_) => $number,)+
                }
            }

            /// The payload bytes of this event.
            pub fn encode_payload(&self) -> Vec<u8> {
                match self {
                    $(Event::$variant(e) => encode(e),)+
                }
            }

            /// The size of [`Event::encode_payload`]'s bytes, without building them.
            pub fn payload_len(&self) -> usize {
                match self {
                    $(Event::$variant(e) => encoded_len(e),)+
                }
            }

            /// Decodes a record's payload given its type. Never panics, never allocates more
            /// than [`PAYLOAD_BYTES_MAX`] whatever the bytes say.
            pub fn decode(record_type: u16, payload: &[u8]) -> Result<Event, DecodeError> {
                let name = type_name(record_type).ok_or(DecodeError::UnknownType(record_type))?;
                Ok(match record_type {
                    $($number => Event::$variant(decode(record_type, name, payload)?),)+
                    _ => unreachable!("type_name knows only the types of the table"),
                })
            }

            /// The event as a JSON value (for `inspect --format json`).
            pub fn to_json(&self) -> serde_json::Value {
                let value = match self {
                    $(Event::$variant(e) => serde_json::to_value(e),)+
                };
                value.expect("event converts to JSON")
            }
        }
    };
}

record_types! {
    1 => LogCreated,
    2 => RunStarted,
    3 => BatchPlanned,
    4 => BatchCopied,
    5 => BatchDeleted,
    6 => ConflictFound,
    7 => BatchFailed,
    8 => BatchReset,
    9 => RunFinished,
    10 => SnapshotStarted,
    11 => SnapshotRuns,
    12 => SnapshotBatches,
    13 => SnapshotConflicts,
    14 => SnapshotFinished,
    15 => SettingsChanged,
    16 => SnapshotSettings,
    17 => RunResumed,
    18 => RunPaused,
    19 => SnapshotActivity,
    20 => BatchCommitting,
    21 => SnapshotClaims,
}

/// The largest record type this version knows.
pub const RECORD_TYPE_MAX: u16 = RECORD_TYPES[RECORD_TYPES.len() - 1].0;
// The table is in increasing order and never uses 0 (it marks unused space on disk), so its
// last number is the largest.
const _: () = {
    let mut previous = 0;
    let mut i = 0;
    while i < RECORD_TYPES.len() {
        assert!(RECORD_TYPES[i].0 > previous);
        previous = RECORD_TYPES[i].0;
        i += 1;
    }
};

impl Event {
    /// The event's name, as `inspect` prints it.
    pub fn name(&self) -> &'static str {
        type_name(self.record_type()).unwrap_or("Unknown")
    }

    /// The event for a person on one line (`inspect`'s text form): its JSON, except that a
    /// snapshot record is summed up (counts, first and last ids) instead of listing its images,
    /// which may run to a quarter MiB; `to_json` carries them whole.
    pub fn text(&self) -> String {
        fn ids(first: Option<u64>, last: Option<u64>) -> String {
            match (first, last) {
                (Some(first), Some(last)) => format!(" {first}..={last}"),
                _ => String::new(),
            }
        }
        match self {
            Event::SnapshotStarted(e) => format!(
                "history up to lsn {} summarized here: every run's totals, the done batches of \
                 the last {} runs only; {} runs, {} batches, {} conflicts follow; {} batches \
                 planned in all",
                e.covers_lsn, e.keep_runs, e.runs, e.batches, e.conflicts, e.totals.batches_planned
            ),
            Event::SnapshotRuns(e) => format!(
                "{} runs{}",
                e.runs.len(),
                ids(
                    e.runs.first().map(|r| r.run_id),
                    e.runs.last().map(|r| r.run_id)
                )
            ),
            Event::SnapshotBatches(e) => format!(
                "{} batches{}",
                e.batches.len(),
                ids(
                    e.batches.first().map(|b| b.batch_id),
                    e.batches.last().map(|b| b.batch_id)
                )
            ),
            Event::SnapshotConflicts(e) => format!("{} conflicts", e.conflicts.len()),
            Event::SnapshotActivity(e) => format!("activity of {} runs", e.activity.len()),
            Event::SnapshotSettings(e) => format!(
                "live settings of {} runs{}",
                e.settings.len(),
                ids(
                    e.settings.first().map(|s| s.run_id),
                    e.settings.last().map(|s| s.run_id)
                )
            ),
            Event::SnapshotClaims(e) => format!(
                "unconfirmed commits of {} batches{}",
                e.claims.len(),
                ids(
                    e.claims.first().map(|c| c.batch_id),
                    e.claims.last().map(|c| c.batch_id)
                )
            ),
            Event::SnapshotFinished(e) => {
                format!("closes the snapshot covering lsn {}", e.covers_lsn)
            }
            other => other.to_json().to_string(),
        }
    }
}

/// The name of a record type, or `None` for a type this version does not know.
pub fn type_name(record_type: u16) -> Option<&'static str> {
    RECORD_TYPES
        .iter()
        .find(|(number, _)| *number == record_type)
        .map(|(_, name)| *name)
}

/// Longest byte-string key column shown, in bytes, before it is cut with "…".
const KEY_VALUE_BYTES_SHOWN_MAX: usize = 64;

/// A key for people: `(1000)`, `(7, 'abc', '2024-01-01 00:00:00')`.
pub fn key_text(key: &Key) -> String {
    let values: Vec<String> = key.iter().map(value_text).collect();
    format!("({})", values.join(", "))
}

fn value_text(value: &KeyValue) -> String {
    match value {
        KeyValue::Int(v) => v.to_string(),
        KeyValue::UInt(v) => v.to_string(),
        KeyValue::Bytes(bytes) => {
            let shown = &bytes[..bytes.len().min(KEY_VALUE_BYTES_SHOWN_MAX)];
            let cut = if shown.len() < bytes.len() { "…" } else { "" };
            match std::str::from_utf8(shown) {
                Ok(text) => format!("'{}{cut}'", text.replace('\'', "''")),
                Err(_) => {
                    let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
                    format!("0x{hex}{cut}")
                }
            }
        }
        KeyValue::Date(year, month, day, hour, minute, second, micro) => {
            let fraction = if *micro > 0 {
                format!(".{micro:06}")
            } else {
                String::new()
            };
            format!("'{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}{fraction}'")
        }
        KeyValue::Time(negative, days, hours, minutes, seconds, micro) => {
            let sign = if *negative { "-" } else { "" };
            let hours = u64::from(*days) * 24 + u64::from(*hours);
            let fraction = if *micro > 0 {
                format!(".{micro:06}")
            } else {
                String::new()
            };
            format!("'{sign}{hours:02}:{minutes:02}:{seconds:02}{fraction}'")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_once_at_a_character_boundary() {
        assert_eq!(cut_message("short"), "short");
        let long = "é".repeat(ERROR_MESSAGE_BYTES_MAX);
        let cut = cut_message(&long);
        assert!(cut.len() <= ERROR_MESSAGE_BYTES_MAX + "…".len());
        assert!(cut.ends_with('…'));
        assert_eq!(cut_message(&cut), cut, "cutting again changes nothing");
    }

    #[test]
    fn the_record_type_table_is_in_increasing_order_and_never_uses_zero() {
        let mut previous = 0;
        for (number, name) in RECORD_TYPES {
            assert!(
                *number > previous,
                "{name}: numbers increase, 0 marks unused space"
            );
            assert_eq!(type_name(*number), Some(*name));
            previous = *number;
        }
        assert_eq!(type_name(0), None);
        assert_eq!(type_name(RECORD_TYPE_MAX + 1), None);
    }
}
