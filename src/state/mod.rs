//! The job's state machine: what the WAL says happened, and what the engine should do next.
//!
//! [`State`] is fed every [`Event`] of the log in LSN order, replayed at startup or live (the
//! engine appends an event, makes it durable when the step needs it, then applies it: one path
//! for both). It is pure: no I/O, no clock reads, no randomness; time comes in through events and
//! through the `now_unix_us` argument of [`State::summary`].
//!
//! **An event that contradicts the state is an error, never silently absorbed**: the log is then
//! semantically corrupt and the engine must stop, not guess. [`State::apply`] is atomic: on error
//! the state is unchanged, and [`State::check`] answers the same question without applying, so the
//! engine can validate an event before it appends it.
//!
//! Model, in short:
//! - one `LogCreated` first; runs numbered from 1, at most one open (the last one);
//! - batches numbered from 1 across the log; a run plans its batches as consecutive key ranges,
//!   so a run's batches are a contiguous id range and each batch's `lower` is the run's cursor
//!   (the previous batch's `upper`); keys are compared by equality only, never ordered;
//! - a batch goes `Planned` -(copied)-> `Copied` -(deleted)-> `Done` (`Planned` -> `Done` when copy
//!   and delete are one transaction); a failure may park it; an operator reset un-parks it;
//! - an attempt announces its source commit (`BatchCommitting`, a [`Claim`]) before sending it;
//!   `BatchDeleted` confirms it; a claim left unconfirmed (crash, lost connection) is resolved by
//!   the batch's next attempt, which says whether that commit happened, so counts stay exact;
//! - counters of a batch are added to the run that planned it and to the log's totals.

mod batches;
mod snapshot;
mod summary;
#[cfg(test)]
mod tests;

pub use snapshot::SnapshotRefused;

pub use summary::{
    key_text, BatchTally, ConflictEntry, ConflictSummary, ErrorEntry, ProblemBatch, RunProgress,
    RunSummary, Summary, CONFLICTS_LISTED_MAX, PROBLEM_BATCHES_LISTED_MAX, RUNS_LISTED_MAX,
};

use std::collections::BTreeSet;

use self::batches::Batches;
use std::fmt;

use serde::Serialize;

use crate::event::{
    AttemptCounts, BatchCommitting, BatchCopied, BatchDeleted, BatchFailed, BatchPlanned,
    BatchReset, ConflictFound, EarlierCommit, ErrorClass, Event, JobIdentity, Key, LogCreated,
    RunFinished, RunOutcome, RunStarted, SettingsChanged,
};

pub use crate::event::ERROR_MESSAGE_BYTES_MAX;

/// Most conflict records kept in memory; later ones are still counted (see
/// [`State::conflicts_unstored`]). A conflicting row stays in the source, so every later run
/// finds it again: without a limit a long-lived job with unresolved conflicts grows without end.
pub const CONFLICTS_STORED_MAX: usize = 100_000;

/// The part of a batch that runs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Redo the whole batch: copy the rows the archive does not hold yet, then delete the rows
    /// that have an identical archive copy. Idempotent.
    Copy,
    /// The rows are committed in the archive (`BatchCopied`); delete the source rows that have
    /// an identical archive copy.
    Delete,
}

/// What the engine should do next, as answered by [`State::next_action`]. Each action carries
/// everything its execution needs (ids, key range, the run's pinned `NOW()`, rows per batch, the
/// attempt number), so the engine executes it without looking the state up again and decides
/// nothing the state machine should decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The log has no `LogCreated` record yet.
    CreateLog,
    /// No run is open. The engine decides whether to start one; if it does, it is this run.
    StartRun {
        /// The id the new run takes.
        run_id: u64,
    },
    /// Run this pending batch from this step (the lowest-id pending batch of any run).
    ExecuteBatch(BatchOrder),
    /// Plan the open run's next batch. Finding no row means the run is finished.
    PlanNext(PlanOrder),
    /// Nothing is left to plan or execute: the key bound is `None` or the cursor reached it.
    FinishRun {
        /// The open run.
        run_id: u64,
    },
}

/// A pending batch to execute, with everything its transaction needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOrder {
    /// The batch.
    pub batch_id: u64,
    /// Where it (re)starts.
    pub step: Step,
    /// Exclusive lower key bound; `None` = the start of the table.
    pub lower: Option<Key>,
    /// Inclusive upper key bound.
    pub upper: Key,
    /// The `NOW()` of the run that planned the batch, microseconds since the Unix epoch: the
    /// predicate means what it meant when the batch was planned.
    pub now_unix_us: i64,
    /// The attempt this execution is, from 1 (since the batch was planned or last reset); a
    /// failure is recorded under this number.
    pub attempt: u32,
    /// The commit an earlier attempt announced that nothing confirmed: this attempt finds out
    /// whether it happened (its witness key) and says so in its own `BatchCommitting`.
    pub claim: Option<Claim>,
}

/// An attempt's `BatchCommitting` that no `BatchDeleted` has confirmed: its commit may or may
/// not have happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// LSN of the `BatchCommitting` record.
    pub lsn: u64,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// What that attempt's transaction did.
    pub counts: AttemptCounts,
    /// The key that tells whether it committed (`None`: it deleted nothing).
    pub witness: Option<Key>,
}

/// The open run's next batch to plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOrder {
    /// The open run.
    pub run_id: u64,
    /// The run's cursor: keys after it (exclusive; `None` = the start of the table).
    pub after: Option<Key>,
    /// The run's key bound (inclusive).
    pub bound: Key,
    /// Matching rows per batch: as the run recorded it at start, or as last changed live.
    pub rows: u32,
    /// Whether `rows` was changed live for this run (`SettingsChanged`): the operator's size,
    /// which the engine plans exactly; otherwise the engine's adaptive sizing may start from
    /// `rows` and go its own way (`engine::sizing`).
    pub rows_set_live: bool,
    /// The run's pinned `NOW()`, microseconds since the Unix epoch.
    pub now_unix_us: i64,
    /// The id the planned batch takes.
    pub batch_id: u64,
    /// Pause before planning, in milliseconds, as changed live for this run (`SettingsChanged`);
    /// `None`: never changed, the job file's `sleep_ms` applies.
    pub sleep_ms: Option<u32>,
    /// Replica lag bound in seconds for the throttle, as changed live for this run; `None`:
    /// never changed, the job file's bound applies.
    pub max_lag_s: Option<u32>,
}

impl fmt::Display for Action {
    /// The action as a sentence for `status` and `inspect`, e.g. "resume batch 412 at the delete
    /// step" (callers prefix "would " or "next: ").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateLog => write!(f, "create the log"),
            Action::StartRun { .. } => write!(f, "start a new run"),
            Action::ExecuteBatch(order) => {
                match order.step {
                    Step::Copy => write!(f, "run batch {} from the copy step", order.batch_id)?,
                    Step::Delete => {
                        write!(f, "resume batch {} at the delete step", order.batch_id)?;
                    }
                }
                match &order.claim {
                    Some(claim) => write!(
                        f,
                        ", first finding out whether the commit of its attempt {} happened \
                         (cut short before it was confirmed)",
                        claim.attempt
                    ),
                    None => Ok(()),
                }
            }
            Action::PlanNext(order) => match &order.after {
                None => write!(
                    f,
                    "plan the first batch of run {}, up to key {}",
                    order.run_id,
                    key_text(&order.bound)
                ),
                Some(after) => write!(
                    f,
                    "plan the next batch of run {} after key {}, up to key {}",
                    order.run_id,
                    key_text(after),
                    key_text(&order.bound)
                ),
            },
            Action::FinishRun { run_id } => write!(f, "finish run {run_id}"),
        }
    }
}

/// Where a batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// Planned, nothing confirmed: pending at [`Step::Copy`].
    Planned,
    /// Rows committed in the archive: pending at [`Step::Delete`].
    Copied,
    /// Stopped after a batch-class error or after its last attempt; waits for `archiver reset`,
    /// then resumes at `step`.
    Parked {
        /// Where it resumes once reset.
        step: Step,
    },
    /// Copied and deleted: finished.
    Done,
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchStatus::Planned => write!(f, "planned"),
            BatchStatus::Copied => write!(f, "copied"),
            BatchStatus::Parked { step: Step::Copy } => write!(f, "parked at the copy step"),
            BatchStatus::Parked { step: Step::Delete } => write!(f, "parked at the delete step"),
            BatchStatus::Done => write!(f, "done"),
        }
    }
}

/// The last failure of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchError {
    /// LSN of the `BatchFailed` record.
    pub lsn: u64,
    /// Which attempt failed, 1 for the first since the batch was planned or reset.
    pub attempt: u32,
    /// How the error was treated.
    pub class: ErrorClass,
    /// The error text, at most [`ERROR_MESSAGE_BYTES_MAX`] bytes.
    pub message: String,
}

/// One planned key range and everything the log says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Batch number, from 1, unique in the log.
    pub batch_id: u64,
    /// The run that planned it (its counters go to that run, whichever run executes it).
    pub run_id: u64,
    /// LSN of the `BatchPlanned` record.
    pub planned_lsn: u64,
    /// Exclusive lower key bound; `None` = the start of the table.
    pub lower: Option<Key>,
    /// Inclusive upper key bound.
    pub upper: Key,
    /// Matching rows seen in the range when it was planned.
    pub rows_planned: u64,
    /// Where the batch stands.
    pub status: BatchStatus,
    /// Failed attempts since it was planned or last reset; decides parking.
    pub attempts: u32,
    /// Failed attempts in all, resets included.
    pub failures: u64,
    /// Operator resets applied to it.
    pub resets: u64,
    /// The last failure, kept across resets.
    pub last_error: Option<BatchError>,
    /// Rows inserted into the archive (`BatchCopied` plus `BatchDeleted`).
    pub rows_copied: u64,
    /// Rows whose identical copy the archive already held.
    pub rows_already: u64,
    /// Rows deleted from the source.
    pub rows_deleted: u64,
    /// Rows kept in the source because the archive holds a different row under their key.
    pub rows_conflicting: u64,
    /// `ConflictFound` records for this batch.
    pub conflicts: u64,
    /// The last attempt's announced commit, while nothing confirms or resolves it.
    pub claim: Option<Claim>,
}

impl Batch {
    /// True if the batch waits to be executed (planned or copied, not parked).
    pub fn is_pending(&self) -> bool {
        matches!(self.status, BatchStatus::Planned | BatchStatus::Copied)
    }

    /// True if the batch is pending and has failed since it was planned or reset.
    pub fn is_failed(&self) -> bool {
        self.is_pending() && self.attempts > 0
    }

    /// The step the batch runs next if it is pending, or would resume at if it is parked.
    pub fn step(&self) -> Option<Step> {
        match self.status {
            BatchStatus::Planned => Some(Step::Copy),
            BatchStatus::Copied => Some(Step::Delete),
            BatchStatus::Parked { step } => Some(step),
            BatchStatus::Done => None,
        }
    }
}

/// Counters of a run or of the whole log: sums over batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
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
    /// Rows deleted from the source ("moved").
    pub rows_deleted: u64,
    /// Rows kept in the source because of a conflict.
    pub rows_conflicting: u64,
    /// `ConflictFound` records.
    pub conflicts: u64,
    /// `BatchFailed` records.
    pub failures: u64,
}

impl Counts {
    /// What was added to these counters since they were `before` (a run invocation's share).
    pub fn since(&self, before: &Counts) -> Counts {
        Counts {
            batches_planned: self.batches_planned.saturating_sub(before.batches_planned),
            batches_done: self.batches_done.saturating_sub(before.batches_done),
            rows_planned: self.rows_planned.saturating_sub(before.rows_planned),
            rows_copied: self.rows_copied.saturating_sub(before.rows_copied),
            rows_already: self.rows_already.saturating_sub(before.rows_already),
            rows_deleted: self.rows_deleted.saturating_sub(before.rows_deleted),
            rows_conflicting: self
                .rows_conflicting
                .saturating_sub(before.rows_conflicting),
            conflicts: self.conflicts.saturating_sub(before.conflicts),
            failures: self.failures.saturating_sub(before.failures),
        }
    }

    fn add(&mut self, delta: &Counts) {
        self.batches_planned = self.batches_planned.saturating_add(delta.batches_planned);
        self.batches_done = self.batches_done.saturating_add(delta.batches_done);
        self.rows_planned = self.rows_planned.saturating_add(delta.rows_planned);
        self.rows_copied = self.rows_copied.saturating_add(delta.rows_copied);
        self.rows_already = self.rows_already.saturating_add(delta.rows_already);
        self.rows_deleted = self.rows_deleted.saturating_add(delta.rows_deleted);
        self.rows_conflicting = self.rows_conflicting.saturating_add(delta.rows_conflicting);
        self.conflicts = self.conflicts.saturating_add(delta.conflicts);
        self.failures = self.failures.saturating_add(delta.failures);
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunEnd {
    /// LSN of the `RunFinished` record.
    pub lsn: u64,
    /// The recorded outcome.
    pub outcome: RunOutcome,
    /// Wall clock at the end, microseconds since the Unix epoch.
    pub finished_unix_us: i64,
}

/// One run of the job, as recorded by `RunStarted` and what followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Run number, from 1.
    pub run_id: u64,
    /// LSN of the `RunStarted` record.
    pub started_lsn: u64,
    /// The moment `NOW()` stands for in the predicate, microseconds since the Unix epoch.
    pub now_unix_us: i64,
    /// The largest key when the run started; `None` = the source was empty.
    pub key_bound: Option<Key>,
    /// Rows per batch.
    pub batch_rows: u32,
    /// Attempts a batch gets before it is parked (applies to every batch this run executes).
    pub attempts_max: u32,
    /// Wall clock at start, microseconds since the Unix epoch.
    pub started_unix_us: i64,
    /// Upper bound of the last batch this run planned; `None` before its first batch.
    pub cursor: Option<Key>,
    /// Upper bound of the first batch this run planned (its lower bound is the start of the
    /// table): where `status` measures the run's progress from, kept here because a snapshot
    /// may drop the batch itself.
    pub first_upper: Option<Key>,
    /// First batch this run planned; its batches are `first_batch_id..=last_batch_id`.
    pub first_batch_id: Option<u64>,
    /// Last batch this run planned.
    pub last_batch_id: Option<u64>,
    /// Sums over the batches this run planned.
    pub counts: Counts,
    /// Set by `RunFinished`; `None` while the run is open.
    pub finished: Option<RunEnd>,
    /// The time the run actually ran, from its invocations' start and end records.
    pub activity: Activity,
    /// Settings changed while the run ran (`SettingsChanged`); none by default.
    pub live: LiveSettings,
}

/// The time a run actually ran, over its invocations: each starts with `RunStarted` or
/// `RunResumed` and ends with `RunPaused` or `RunFinished`. An invocation whose end the log
/// lacks (killed) is left out, with the rows it moved, so the rate stays true.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Microseconds of the invocations with both ends recorded.
    pub active_us: u64,
    /// Rows those invocations moved.
    pub active_rows: u64,
    /// The invocation under way: its start (microseconds since the Unix epoch) and the run's
    /// rows moved then.
    pub since: Option<(i64, u64)>,
}

impl Activity {
    /// An invocation starts at `at_unix_us`, the run having moved `rows` (one under way whose
    /// end is missing is dropped).
    fn start(&mut self, at_unix_us: i64, rows: u64) {
        self.since = Some((at_unix_us, rows));
    }

    /// The invocation under way ends at `at_unix_us`, the run having moved `rows`.
    fn end(&mut self, at_unix_us: i64, rows: u64) {
        if let Some((start, rows_then)) = self.since.take() {
            let span = u64::try_from(at_unix_us.saturating_sub(start)).unwrap_or(0);
            self.active_us = self.active_us.saturating_add(span);
            self.active_rows = self
                .active_rows
                .saturating_add(rows.saturating_sub(rows_then));
        }
    }
}

/// The settings an operator changed while a run ran (`archiver ctl set`), each the last value
/// recorded; `None` for a setting never changed. They apply to that run only: a new run starts
/// from the job file again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LiveSettings {
    /// Rows per batch, replacing the one `RunStarted` recorded.
    pub batch_rows: Option<u32>,
    /// Pause between batches in milliseconds, replacing the job file's.
    pub sleep_ms: Option<u32>,
    /// Replica lag bound in seconds, replacing the job file's.
    pub max_lag_s: Option<u32>,
    /// LSN of the last `SettingsChanged` (0: none).
    pub changed_lsn: u64,
    /// Wall clock of the last change, microseconds since the Unix epoch (0: none).
    pub changed_unix_us: i64,
}

impl LiveSettings {
    /// Whether any setting was changed.
    pub fn any(&self) -> bool {
        self.changed_lsn != 0
    }
}

impl Run {
    /// True until `RunFinished`.
    pub fn is_open(&self) -> bool {
        self.finished.is_none()
    }

    /// Rows per batch for the run's next batch: as changed live, else as it started with.
    pub fn batch_rows_now(&self) -> u32 {
        self.live.batch_rows.unwrap_or(self.batch_rows)
    }

    /// The ids of the batches this run planned, in order (empty before its first batch).
    pub fn batch_ids(&self) -> std::ops::Range<u64> {
        match (self.first_batch_id, self.last_batch_id) {
            (Some(first), Some(last)) => first..last + 1,
            _ => 0..0,
        }
    }
}

/// A `ConflictFound` record: the archive holds a different row under this key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The batch whose range holds the key.
    pub batch_id: u64,
    /// The conflicting key.
    pub key: Key,
    /// LSN of the record.
    pub lsn: u64,
}

/// An event that contradicts the state: the log is semantically corrupt at `lsn`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record at lsn {lsn} ({event}) contradicts the log before it: {problem}")]
pub struct StateError {
    /// LSN of the offending record.
    pub lsn: u64,
    /// The event's name (`Event::name`).
    pub event: &'static str,
    /// What it contradicts.
    pub problem: Problem,
}

/// What an event contradicts. Key values are rendered as text by [`key_text`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// LSNs must increase: a record applied twice, or out of order.
    #[error("lsn is not greater than the previous record's lsn {previous}")]
    LsnNotIncreasing {
        /// The last LSN applied.
        previous: u64,
    },
    /// Every log starts with `LogCreated`.
    #[error("the log has no LogCreated record before it")]
    NoLogCreated,
    /// `LogCreated` appears once.
    #[error("the log was already created at lsn {created_lsn}")]
    LogAlreadyCreated {
        /// LSN of the first `LogCreated`.
        created_lsn: u64,
    },
    /// A run started while another is open.
    #[error("run {run_id} is still open")]
    RunStillOpen {
        /// The open run.
        run_id: u64,
    },
    /// Run ids increase by one from 1.
    #[error("run {got} started, but the next run id is {expected}")]
    RunIdOutOfOrder {
        /// Id in the record.
        got: u64,
        /// `next_run_id()`.
        expected: u64,
    },
    /// A run parameter that must be positive is 0.
    #[error("run {run_id} has {field} 0")]
    ZeroLimit {
        /// The run.
        run_id: u64,
        /// `batch_rows` or `attempts_max`.
        field: &'static str,
    },
    /// A key with no column.
    #[error("a key has no column")]
    EmptyKey,
    /// A key's column count differs from the run's key bound.
    #[error("a key has {got} columns, but run {run_id}'s key bound has {expected}")]
    KeyWidth {
        /// The run whose bound sets the width.
        run_id: u64,
        /// Columns in the bound.
        expected: usize,
        /// Columns in the record's key.
        got: usize,
    },
    /// Batch execution or planning, with no run open.
    #[error("no run is open")]
    NoOpenRun,
    /// The record names a run other than the open one.
    #[error("it names run {run_id}, but the open run is {open_run_id}")]
    NotOpenRun {
        /// Run in the record.
        run_id: u64,
        /// The open run.
        open_run_id: u64,
    },
    /// Batch ids increase by one from 1.
    #[error("batch {got} planned, but the next batch id is {expected}")]
    BatchIdOutOfOrder {
        /// Id in the record.
        got: u64,
        /// `next_batch_id()`.
        expected: u64,
    },
    /// A batch planned for a run whose source was empty.
    #[error("run {run_id} has no key bound (its source was empty), so it plans no batch")]
    RunHasNoBound {
        /// The run.
        run_id: u64,
    },
    /// A batch planned after the run's cursor reached its bound.
    #[error("run {run_id} already planned up to its key bound {bound}")]
    PlannedPastBound {
        /// The run.
        run_id: u64,
        /// The bound, as text.
        bound: String,
    },
    /// A batch's lower bound is not where the run's previous batch ended.
    #[error(
        "batch {batch_id} starts after {lower}, but run {run_id}'s cursor is at {cursor} \
         (batches must follow each other)"
    )]
    LowerNotCursor {
        /// The batch.
        batch_id: u64,
        /// The run.
        run_id: u64,
        /// The record's lower bound as text ("the start of the table" for `None`).
        lower: String,
        /// The run's cursor as text.
        cursor: String,
    },
    /// A batch whose lower and upper bounds are equal holds no key.
    #[error("batch {batch_id} has equal lower and upper bounds {key}")]
    EmptyRange {
        /// The batch.
        batch_id: u64,
        /// The bound, as text.
        key: String,
    },
    /// The record names a batch never planned.
    #[error("batch {batch_id} was never planned")]
    UnknownBatch {
        /// The batch.
        batch_id: u64,
    },
    /// The batch is not in a status this record can follow.
    #[error("batch {batch_id} is {status}, but this record needs it {needs}")]
    WrongStatus {
        /// The batch.
        batch_id: u64,
        /// Its status.
        status: BatchStatus,
        /// What the record needs, as words.
        needs: &'static str,
    },
    /// A failed attempt's number is not the next one.
    #[error("batch {batch_id} failed attempt {got}, but its next attempt is {expected}")]
    AttemptOutOfOrder {
        /// The batch.
        batch_id: u64,
        /// Attempt in the record.
        got: u32,
        /// `attempts + 1`.
        expected: u32,
    },
    /// A record after an unconfirmed `BatchCommitting` that does not say what became of it.
    #[error(
        "batch {batch_id}'s commit announced at lsn {claim_lsn} is unconfirmed, and this record \
         does not say whether it happened"
    )]
    ClaimUnresolved {
        /// The batch.
        batch_id: u64,
        /// LSN of its `BatchCommitting`.
        claim_lsn: u64,
    },
    /// A record resolves an earlier commit of a batch that has none unconfirmed.
    #[error(
        "it says what became of an earlier commit of batch {batch_id}, which has none unconfirmed"
    )]
    NoClaim {
        /// The batch.
        batch_id: u64,
    },
    /// Counts that must repeat those of the batch's `BatchCommitting` differ from them.
    #[error("its counts differ from those batch {batch_id} announced at lsn {claim_lsn}")]
    ClaimCountsDiffer {
        /// The batch.
        batch_id: u64,
        /// LSN of its `BatchCommitting`.
        claim_lsn: u64,
    },
    /// A run finished while one of its batches is still to be executed.
    #[error("run {run_id} finished, but its batch {batch_id} is still pending")]
    RunHasPendingBatch {
        /// The run.
        run_id: u64,
        /// Its lowest pending batch.
        batch_id: u64,
    },
    /// A record other than the open snapshot's images or its end (a second `SnapshotStarted`
    /// included).
    #[error(
        "the snapshot started at lsn {started_lsn} is still open: only its images and \
         SnapshotFinished may follow"
    )]
    SnapshotOpen {
        /// LSN of the open snapshot's `SnapshotStarted`.
        started_lsn: u64,
    },
    /// Snapshot images or `SnapshotFinished` without a `SnapshotStarted` before them.
    #[error("no snapshot is open")]
    NoSnapshotOpen,
    /// A snapshot that follows a log must cover that log to its last record.
    #[error("the snapshot covers the log up to lsn {covers_lsn}, but the log before it ends at lsn {last_lsn}")]
    SnapshotNotAtEnd {
        /// `covers_lsn` of the record.
        covers_lsn: u64,
        /// The last LSN applied.
        last_lsn: u64,
    },
    /// A snapshot that begins a log continues the numbering of the log it replaces.
    #[error("the snapshot covers the log up to lsn {covers_lsn}, which is not before the snapshot itself")]
    SnapshotCoversItself {
        /// `covers_lsn` of the record.
        covers_lsn: u64,
    },
    /// A chunk brings more images of a kind than `SnapshotStarted` announced.
    #[error("the snapshot announced {declared} {images} images, and this record brings more")]
    SnapshotTooManyImages {
        /// "run", "batch" or "conflict".
        images: &'static str,
        /// The count announced.
        declared: u64,
    },
    /// `SnapshotFinished` with fewer images of a kind than announced.
    #[error("the snapshot announced {declared} {images} images but holds {collected}")]
    SnapshotImagesMissing {
        /// "run", "batch" or "conflict".
        images: &'static str,
        /// The count announced.
        declared: u64,
        /// The images received.
        collected: u64,
    },
    /// `SnapshotFinished` names another snapshot than the open one.
    #[error("it closes the snapshot covering lsn {covers_lsn}, but the open one covers lsn {open_covers_lsn}")]
    SnapshotEndMismatch {
        /// `covers_lsn` of the record.
        covers_lsn: u64,
        /// `covers_lsn` of the open snapshot.
        open_covers_lsn: u64,
    },
    /// The images do not make a state a valid log could reach.
    #[error("the snapshot's images do not make a valid state: {detail}")]
    SnapshotInvalid {
        /// What is wrong, in words.
        detail: String,
    },
    /// The snapshot follows its log but does not rebuild that log's state.
    #[error("the snapshot does not rebuild the state of the log it follows: its {part} differ")]
    SnapshotDiffers {
        /// The first part that differs ("runs", "batches", ...).
        part: &'static str,
    },
}

/// The state reconstructed from a log. See the module documentation.
///
/// **What it holds.** Replayed from an uncompacted log: every run, every batch ever planned,
/// the first [`CONFLICTS_STORED_MAX`] conflicts. After a snapshot kept with `keep_runs`
/// ([`State::snapshot`]): one [`Run`] per run (with its counts, so totals and per-run figures
/// stay whole), every batch that is not done (pending, parked: any run), the done batches of
/// the last `keep_runs` runs only, and at most [`CONFLICTS_STORED_MAX`] conflicts; so memory is
/// bounded by live batches + `keep_runs` runs' batches + conflicts + one `Run` per run, not by
/// the job's history. Batch ids are then sparse, hence a map by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The job, from `LogCreated`.
    job: Option<JobIdentity>,
    /// LSN of `LogCreated` (0 before it).
    created_lsn: u64,
    /// Wall clock of `LogCreated`, microseconds since the Unix epoch.
    created_unix_us: i64,
    /// LSN of the last event applied (0 = none).
    last_lsn: u64,
    /// Runs; `runs[i]` has id `i + 1`. Only the last one may be open.
    runs: Vec<Run>,
    /// Batches held, by id: all of them, or after a snapshot the ones it kept. A map, not a
    /// `Vec` indexed by id: after a snapshot the ids held are sparse (a parked batch of run 3
    /// beside the batches of run 365), and a `Vec` with an offset would hold a slot for every
    /// dropped id in between; the map costs a logarithmic lookup per event, which replay
    /// does not notice.
    batches: Batches,
    /// The largest batch id planned (0 = none); the ids below it need not all be held.
    last_batch_id: u64,
    /// Ids of the batches with status Planned or Copied.
    pending: BTreeSet<u64>,
    /// Ids of the parked batches.
    parked: BTreeSet<u64>,
    /// The first [`CONFLICTS_STORED_MAX`] conflict records, in log order.
    conflicts: Vec<Conflict>,
    /// Conflict records beyond the stored ones.
    conflicts_unstored: u64,
    /// Sums over all batches.
    totals: Counts,
    /// A snapshot whose `SnapshotStarted` is applied and whose `SnapshotFinished` is not: its
    /// images so far. While it is open, only snapshot records apply.
    open_snapshot: Option<Box<snapshot::OpenSnapshot>>,
}

fn lower_text(lower: Option<&Key>) -> String {
    match lower {
        None => "the start of the table".to_string(),
        Some(key) => format!("key {}", key_text(key)),
    }
}

impl State {
    /// An empty state: nothing applied; the next action is [`Action::CreateLog`].
    pub fn new() -> State {
        State::default()
    }

    /// Applies one event (live or replayed). An event that contradicts the state is an error
    /// and leaves the state unchanged.
    pub fn apply(&mut self, lsn: u64, event: &Event) -> Result<(), StateError> {
        let rebuilt = self.verdict(lsn, event).map_err(|problem| StateError {
            lsn,
            event: event.name(),
            problem,
        })?;
        if let Some(rebuilt) = rebuilt {
            // `SnapshotFinished`: the snapshot's state replaces this one whole.
            *self = rebuilt;
            return Ok(());
        }
        self.last_lsn = lsn;
        match event {
            Event::LogCreated(e) => self.apply_log_created(lsn, e),
            Event::RunStarted(e) => self.apply_run_started(lsn, e),
            Event::BatchPlanned(e) => self.apply_batch_planned(lsn, e),
            Event::BatchCopied(e) => self.apply_batch_copied(e),
            Event::BatchDeleted(e) => self.apply_batch_deleted(e),
            Event::BatchCommitting(e) => self.apply_batch_committing(lsn, e),
            Event::ConflictFound(e) => self.apply_conflict_found(lsn, e),
            Event::BatchFailed(e) => self.apply_batch_failed(lsn, e),
            Event::BatchReset(e) => self.apply_batch_reset(e),
            Event::RunFinished(e) => self.apply_run_finished(lsn, e),
            Event::RunResumed(e) => {
                let run = self.run_mut(e.run_id);
                run.activity
                    .start(e.resumed_unix_us, run.counts.rows_deleted);
            }
            Event::RunPaused(e) => {
                let run = self.run_mut(e.run_id);
                run.activity.end(e.paused_unix_us, run.counts.rows_deleted);
            }
            Event::SettingsChanged(e) => self.apply_settings_changed(lsn, e),
            Event::SnapshotStarted(e) => self.apply_snapshot_started(lsn, e),
            Event::SnapshotRuns(e) => self.collect_snapshot(|open| {
                open.runs.extend(e.runs.iter().cloned());
            }),
            Event::SnapshotBatches(e) => self.collect_snapshot(|open| {
                open.batches.extend(e.batches.iter().cloned());
            }),
            Event::SnapshotConflicts(e) => self.collect_snapshot(|open| {
                open.conflicts.extend(e.conflicts.iter().cloned());
            }),
            Event::SnapshotActivity(e) => self.collect_snapshot(|open| {
                open.activity.extend(e.activity.iter().cloned());
            }),
            Event::SnapshotSettings(e) => self.collect_snapshot(|open| {
                open.settings.extend(e.settings.iter().cloned());
            }),
            Event::SnapshotClaims(e) => self.collect_snapshot(|open| {
                open.claims.extend(e.claims.iter().cloned());
            }),
            Event::SnapshotFinished(_) => unreachable!("a verdict on it is the rebuilt state"),
        }
        Ok(())
    }

    /// Whether `apply(lsn, event)` would succeed, without applying it. The engine calls this
    /// before appending a live event, so that a bug never writes a contradiction to the log.
    pub fn check(&self, lsn: u64, event: &Event) -> Result<(), StateError> {
        self.verdict(lsn, event)
            .map(|_| ())
            .map_err(|problem| StateError {
                lsn,
                event: event.name(),
                problem,
            })
    }

    /// What `apply` answers, without applying: the contradiction, or for a `SnapshotFinished`
    /// the state the snapshot rebuilds (built once, whether to check or to apply).
    fn verdict(&self, lsn: u64, event: &Event) -> Result<Option<State>, Problem> {
        if lsn <= self.last_lsn {
            return Err(Problem::LsnNotIncreasing {
                previous: self.last_lsn,
            });
        }
        if let Some(open) = &self.open_snapshot {
            return self.check_in_snapshot(open, lsn, event);
        }
        match event {
            Event::SnapshotStarted(e) => self.check_snapshot_started(lsn, e).map(|()| None),
            Event::SnapshotRuns(_)
            | Event::SnapshotBatches(_)
            | Event::SnapshotConflicts(_)
            | Event::SnapshotActivity(_)
            | Event::SnapshotSettings(_)
            | Event::SnapshotClaims(_)
            | Event::SnapshotFinished(_) => Err(Problem::NoSnapshotOpen),
            _ => self.contradiction(event).map(|()| None),
        }
    }

    fn contradiction(&self, event: &Event) -> Result<(), Problem> {
        match (event, &self.job) {
            (Event::LogCreated(_), None) => return Ok(()),
            (Event::LogCreated(_), Some(_)) => {
                return Err(Problem::LogAlreadyCreated {
                    created_lsn: self.created_lsn,
                })
            }
            (_, None) => return Err(Problem::NoLogCreated),
            (_, Some(_)) => {}
        }
        match event {
            Event::LogCreated(_)
            | Event::SnapshotStarted(_)
            | Event::SnapshotRuns(_)
            | Event::SnapshotBatches(_)
            | Event::SnapshotConflicts(_)
            | Event::SnapshotActivity(_)
            | Event::SnapshotSettings(_)
            | Event::SnapshotClaims(_)
            | Event::SnapshotFinished(_) => unreachable!("handled above"),
            Event::RunStarted(e) => self.check_run_started(e),
            Event::BatchPlanned(e) => self.check_batch_planned(e),
            Event::BatchCopied(e) => {
                self.check_executing(e.batch_id, &[BatchStatus::Planned], "planned")?;
                Ok(())
            }
            Event::BatchDeleted(e) => self.check_batch_deleted(e),
            Event::BatchCommitting(e) => self.check_batch_committing(e),
            Event::ConflictFound(e) => self.check_conflict_found(e),
            Event::BatchFailed(e) => self.check_batch_failed(e),
            Event::BatchReset(e) => match self.batch(e.batch_id) {
                None => Err(Problem::UnknownBatch {
                    batch_id: e.batch_id,
                }),
                Some(b) if b.status == BatchStatus::Done => Err(Problem::WrongStatus {
                    batch_id: e.batch_id,
                    status: b.status,
                    needs: "not done",
                }),
                Some(_) => Ok(()),
            },
            Event::RunFinished(e) => self.check_run_finished(e),
            Event::RunResumed(e) => self.open_run_named(e.run_id).map(|_| ()),
            Event::RunPaused(e) => self.open_run_named(e.run_id).map(|_| ()),
            Event::SettingsChanged(e) => self.check_settings_changed(e),
        }
    }

    fn check_run_started(&self, e: &RunStarted) -> Result<(), Problem> {
        if let Some(open) = self.open_run() {
            return Err(Problem::RunStillOpen {
                run_id: open.run_id,
            });
        }
        if e.run_id != self.next_run_id() {
            return Err(Problem::RunIdOutOfOrder {
                got: e.run_id,
                expected: self.next_run_id(),
            });
        }
        if e.batch_rows == 0 {
            return Err(Problem::ZeroLimit {
                run_id: e.run_id,
                field: "batch_rows",
            });
        }
        if e.attempts_max == 0 {
            return Err(Problem::ZeroLimit {
                run_id: e.run_id,
                field: "attempts_max",
            });
        }
        if e.key_bound.as_ref().is_some_and(|k| k.is_empty()) {
            return Err(Problem::EmptyKey);
        }
        Ok(())
    }

    fn open_run_named(&self, run_id: u64) -> Result<&Run, Problem> {
        let open = self.open_run().ok_or(Problem::NoOpenRun)?;
        if open.run_id != run_id {
            return Err(Problem::NotOpenRun {
                run_id,
                open_run_id: open.run_id,
            });
        }
        Ok(open)
    }

    fn check_batch_planned(&self, e: &BatchPlanned) -> Result<(), Problem> {
        let run = self.open_run_named(e.run_id)?;
        if e.batch_id != self.next_batch_id() {
            return Err(Problem::BatchIdOutOfOrder {
                got: e.batch_id,
                expected: self.next_batch_id(),
            });
        }
        let bound = run
            .key_bound
            .as_ref()
            .ok_or(Problem::RunHasNoBound { run_id: run.run_id })?;
        if run.cursor.as_ref() == Some(bound) {
            return Err(Problem::PlannedPastBound {
                run_id: run.run_id,
                bound: key_text(bound),
            });
        }
        if e.lower != run.cursor {
            return Err(Problem::LowerNotCursor {
                batch_id: e.batch_id,
                run_id: run.run_id,
                lower: lower_text(e.lower.as_ref()),
                cursor: lower_text(run.cursor.as_ref()),
            });
        }
        if e.upper.len() != bound.len() {
            return Err(Problem::KeyWidth {
                run_id: run.run_id,
                expected: bound.len(),
                got: e.upper.len(),
            });
        }
        if e.lower.as_ref() == Some(&e.upper) {
            return Err(Problem::EmptyRange {
                batch_id: e.batch_id,
                key: key_text(&e.upper),
            });
        }
        Ok(())
    }

    /// Checks that a run is open and that the batch exists with one of `allowed` statuses.
    fn check_executing(
        &self,
        batch_id: u64,
        allowed: &[BatchStatus],
        needs: &'static str,
    ) -> Result<&Batch, Problem> {
        if self.open_run().is_none() {
            return Err(Problem::NoOpenRun);
        }
        let batch = self
            .batch(batch_id)
            .ok_or(Problem::UnknownBatch { batch_id })?;
        if !allowed.contains(&batch.status) {
            return Err(Problem::WrongStatus {
                batch_id,
                status: batch.status,
                needs,
            });
        }
        Ok(batch)
    }

    /// A `BatchDeleted` after a `BatchCommitting` confirms it: same counts.
    fn check_batch_deleted(&self, e: &BatchDeleted) -> Result<(), Problem> {
        let allowed = [BatchStatus::Planned, BatchStatus::Copied];
        let batch = self.check_executing(e.batch_id, &allowed, "planned or copied")?;
        match &batch.claim {
            Some(claim) if claim.counts != attempt_counts(e) => Err(Problem::ClaimCountsDiffer {
                batch_id: e.batch_id,
                claim_lsn: claim.lsn,
            }),
            _ => Ok(()),
        }
    }

    /// A `BatchCommitting` must say what became of the batch's unconfirmed claim, if it has
    /// one (repeating its counts when it committed), and only then.
    fn check_batch_committing(&self, e: &BatchCommitting) -> Result<(), Problem> {
        let allowed = [BatchStatus::Planned, BatchStatus::Copied];
        let batch = self.check_executing(e.batch_id, &allowed, "planned or copied")?;
        if let Some(witness) = &e.witness {
            if witness.len() != batch.upper.len() {
                return Err(Problem::KeyWidth {
                    run_id: batch.run_id,
                    expected: batch.upper.len(),
                    got: witness.len(),
                });
            }
        }
        match (&batch.claim, &e.earlier) {
            (None, EarlierCommit::None) | (Some(_), EarlierCommit::RolledBack) => Ok(()),
            (Some(claim), EarlierCommit::Committed(counts)) if *counts != claim.counts => {
                Err(Problem::ClaimCountsDiffer {
                    batch_id: e.batch_id,
                    claim_lsn: claim.lsn,
                })
            }
            (Some(_), EarlierCommit::Committed(_)) => Ok(()),
            (Some(claim), EarlierCommit::None) => Err(Problem::ClaimUnresolved {
                batch_id: e.batch_id,
                claim_lsn: claim.lsn,
            }),
            (None, _) => Err(Problem::NoClaim {
                batch_id: e.batch_id,
            }),
        }
    }

    fn check_conflict_found(&self, e: &ConflictFound) -> Result<(), Problem> {
        let batch = self.check_executing(
            e.batch_id,
            &[BatchStatus::Planned, BatchStatus::Copied],
            "planned or copied",
        )?;
        if e.key.len() != batch.upper.len() {
            return Err(Problem::KeyWidth {
                run_id: batch.run_id,
                expected: batch.upper.len(),
                got: e.key.len(),
            });
        }
        Ok(())
    }

    fn check_batch_failed(&self, e: &BatchFailed) -> Result<(), Problem> {
        let batch = self.check_executing(
            e.batch_id,
            &[BatchStatus::Planned, BatchStatus::Copied],
            "planned or copied",
        )?;
        let expected = batch.attempts.saturating_add(1);
        if e.attempt != expected {
            return Err(Problem::AttemptOutOfOrder {
                batch_id: e.batch_id,
                got: e.attempt,
                expected,
            });
        }
        Ok(())
    }

    /// A live change names the open run, and keeps at least one row per batch.
    fn check_settings_changed(&self, e: &SettingsChanged) -> Result<(), Problem> {
        self.open_run_named(e.run_id)?;
        if e.batch_rows == Some(0) {
            return Err(Problem::ZeroLimit {
                run_id: e.run_id,
                field: "batch_rows",
            });
        }
        Ok(())
    }

    fn check_run_finished(&self, e: &RunFinished) -> Result<(), Problem> {
        let run = self.open_run_named(e.run_id)?;
        if let Some(&batch_id) = self.pending.range(run.batch_ids()).next() {
            return Err(Problem::RunHasPendingBatch {
                run_id: run.run_id,
                batch_id,
            });
        }
        Ok(())
    }

    // The apply_* functions run after `check` accepted the event: a failed lookup here is a
    // bug in this module, hence the `expect`s.

    fn apply_log_created(&mut self, lsn: u64, e: &LogCreated) {
        self.job = Some(e.job.clone());
        self.created_lsn = lsn;
        self.created_unix_us = e.created_unix_us;
    }

    fn apply_run_started(&mut self, lsn: u64, e: &RunStarted) {
        self.runs.push(Run {
            run_id: e.run_id,
            started_lsn: lsn,
            now_unix_us: e.now_unix_us,
            key_bound: e.key_bound.clone(),
            batch_rows: e.batch_rows,
            attempts_max: e.attempts_max,
            started_unix_us: e.started_unix_us,
            cursor: None,
            first_upper: None,
            first_batch_id: None,
            last_batch_id: None,
            counts: Counts::default(),
            finished: None,
            activity: Activity {
                since: Some((e.started_unix_us, 0)),
                ..Activity::default()
            },
            live: LiveSettings::default(),
        });
    }

    fn apply_batch_planned(&mut self, lsn: u64, e: &BatchPlanned) {
        let delta = Counts {
            batches_planned: 1,
            rows_planned: e.rows_planned,
            ..Counts::default()
        };
        let run = self.runs.last_mut().expect("checked: the open run");
        run.first_batch_id.get_or_insert(e.batch_id);
        run.first_upper.get_or_insert_with(|| e.upper.clone());
        run.last_batch_id = Some(e.batch_id);
        run.cursor = Some(e.upper.clone());
        run.counts.add(&delta);
        self.totals.add(&delta);
        self.last_batch_id = e.batch_id;
        let planned = self.batches.push(Batch {
            batch_id: e.batch_id,
            run_id: e.run_id,
            planned_lsn: lsn,
            lower: e.lower.clone(),
            upper: e.upper.clone(),
            rows_planned: e.rows_planned,
            status: BatchStatus::Planned,
            attempts: 0,
            failures: 0,
            resets: 0,
            last_error: None,
            rows_copied: 0,
            rows_already: 0,
            rows_deleted: 0,
            rows_conflicting: 0,
            conflicts: 0,
            claim: None,
        });
        assert!(planned.is_ok(), "checked: batch ids increase");
        self.pending.insert(e.batch_id);
    }

    /// Adds `delta` to a batch's run and to the totals.
    fn count(&mut self, run_id: u64, delta: &Counts) {
        self.run_mut(run_id).counts.add(delta);
        self.totals.add(delta);
    }

    fn apply_batch_copied(&mut self, e: &BatchCopied) {
        let batch = self.batch_mut(e.batch_id);
        batch.status = BatchStatus::Copied;
        batch.rows_copied = batch.rows_copied.saturating_add(e.rows_copied);
        batch.rows_already = batch.rows_already.saturating_add(e.rows_already);
        let run_id = batch.run_id;
        let delta = Counts {
            rows_copied: e.rows_copied,
            rows_already: e.rows_already,
            ..Counts::default()
        };
        self.count(run_id, &delta);
    }

    fn apply_batch_deleted(&mut self, e: &BatchDeleted) {
        let batch = self.batch_mut(e.batch_id);
        batch.status = BatchStatus::Done;
        batch.rows_copied = batch.rows_copied.saturating_add(e.rows_copied);
        batch.rows_already = batch.rows_already.saturating_add(e.rows_already);
        batch.rows_deleted = batch.rows_deleted.saturating_add(e.rows_deleted);
        batch.rows_conflicting = batch.rows_conflicting.saturating_add(e.rows_conflicting);
        let run_id = batch.run_id;
        let delta = Counts {
            batches_done: 1,
            rows_copied: e.rows_copied,
            rows_already: e.rows_already,
            rows_deleted: e.rows_deleted,
            rows_conflicting: e.rows_conflicting,
            ..Counts::default()
        };
        self.count(run_id, &delta);
        self.pending.remove(&e.batch_id);
        self.batch_mut(e.batch_id).claim = None;
    }

    /// The attempt's claim replaces the earlier one; an earlier commit found to have happened
    /// counts now, as its lost `BatchDeleted` would have (less its conflicting rows, which
    /// stayed in the source and are counted by the attempt that finds them again).
    fn apply_batch_committing(&mut self, lsn: u64, e: &BatchCommitting) {
        let batch = self.batch_mut(e.batch_id);
        if let EarlierCommit::Committed(earlier) = &e.earlier {
            batch.rows_copied = batch.rows_copied.saturating_add(earlier.rows_copied);
            batch.rows_already = batch.rows_already.saturating_add(earlier.rows_already);
            batch.rows_deleted = batch.rows_deleted.saturating_add(earlier.rows_deleted);
        }
        batch.claim = Some(Claim {
            lsn,
            attempt: e.attempt,
            counts: e.counts,
            witness: e.witness.clone(),
        });
        let run_id = batch.run_id;
        if let EarlierCommit::Committed(earlier) = &e.earlier {
            let delta = Counts {
                rows_copied: earlier.rows_copied,
                rows_already: earlier.rows_already,
                rows_deleted: earlier.rows_deleted,
                ..Counts::default()
            };
            self.count(run_id, &delta);
        }
    }

    fn apply_conflict_found(&mut self, lsn: u64, e: &ConflictFound) {
        let batch = self.batch_mut(e.batch_id);
        batch.conflicts = batch.conflicts.saturating_add(1);
        let run_id = batch.run_id;
        self.count(
            run_id,
            &Counts {
                conflicts: 1,
                ..Counts::default()
            },
        );
        if self.conflicts.len() < CONFLICTS_STORED_MAX {
            self.conflicts.push(Conflict {
                batch_id: e.batch_id,
                key: e.key.clone(),
                lsn,
            });
        } else {
            self.conflicts_unstored = self.conflicts_unstored.saturating_add(1);
        }
    }

    fn apply_batch_failed(&mut self, lsn: u64, e: &BatchFailed) {
        // The run executing the batch sets the limit: a reset batch of an old run is retried
        // under the attempts the operator configured for the current run.
        let attempts_max = self
            .open_run()
            .expect("checked: a run is open")
            .attempts_max;
        let batch = self.batch_mut(e.batch_id);
        let step = batch.step().expect("checked: the batch is pending");
        batch.attempts = e.attempt;
        batch.failures = batch.failures.saturating_add(1);
        batch.last_error = Some(BatchError {
            lsn,
            attempt: e.attempt,
            class: e.class,
            message: crate::event::cut_message(&e.message),
        });
        let park = match e.class {
            ErrorClass::Batch => true,
            ErrorClass::Transient | ErrorClass::Fatal => e.attempt >= attempts_max,
        };
        if park {
            batch.status = BatchStatus::Parked { step };
        }
        let run_id = batch.run_id;
        self.count(
            run_id,
            &Counts {
                failures: 1,
                ..Counts::default()
            },
        );
        if park {
            self.pending.remove(&e.batch_id);
            self.parked.insert(e.batch_id);
        }
    }

    fn apply_batch_reset(&mut self, e: &BatchReset) {
        let batch = self.batch_mut(e.batch_id);
        batch.attempts = 0;
        batch.resets = batch.resets.saturating_add(1);
        if let BatchStatus::Parked { step } = batch.status {
            batch.status = match step {
                Step::Copy => BatchStatus::Planned,
                Step::Delete => BatchStatus::Copied,
            };
            self.parked.remove(&e.batch_id);
            self.pending.insert(e.batch_id);
        }
    }

    fn apply_run_finished(&mut self, lsn: u64, e: &RunFinished) {
        let run = self.run_mut(e.run_id);
        run.activity
            .end(e.finished_unix_us, run.counts.rows_deleted);
        run.finished = Some(RunEnd {
            lsn,
            outcome: e.outcome,
            finished_unix_us: e.finished_unix_us,
        });
    }

    /// Each setting the record carries replaces the open run's; the others stay.
    fn apply_settings_changed(&mut self, lsn: u64, e: &SettingsChanged) {
        let live = &mut self.run_mut(e.run_id).live;
        live.batch_rows = e.batch_rows.or(live.batch_rows);
        live.sleep_ms = e.sleep_ms.or(live.sleep_ms);
        live.max_lag_s = e.max_lag_s.or(live.max_lag_s);
        live.changed_lsn = lsn;
        live.changed_unix_us = e.changed_unix_us;
    }

    fn batch_mut(&mut self, batch_id: u64) -> &mut Batch {
        self.batches
            .get_mut(batch_id)
            .expect("checked: the batch exists")
    }

    fn run_mut(&mut self, run_id: u64) -> &mut Run {
        let index = run_id.checked_sub(1).expect("run ids start at 1") as usize;
        &mut self.runs[index]
    }

    /// What the engine should do next. See [`Action`]; pending batches come before planning,
    /// lowest id first, whichever run planned them.
    pub fn next_action(&self) -> Action {
        if self.job.is_none() {
            return Action::CreateLog;
        }
        let Some(run) = self.open_run() else {
            return Action::StartRun {
                run_id: self.next_run_id(),
            };
        };
        if let Some(batch) = self.pending_batches().next() {
            return Action::ExecuteBatch(self.order_for(batch));
        }
        self.plan_or_finish(run)
    }

    /// The open run's next plan while its cursor is short of its bound, else its finish.
    fn plan_or_finish(&self, run: &Run) -> Action {
        match &run.key_bound {
            Some(bound) if run.cursor.as_ref() != Some(bound) => Action::PlanNext(PlanOrder {
                run_id: run.run_id,
                after: run.cursor.clone(),
                bound: bound.clone(),
                rows: run.batch_rows_now(),
                rows_set_live: run.live.batch_rows.is_some(),
                now_unix_us: run.now_unix_us,
                batch_id: self.next_batch_id(),
                sleep_ms: run.live.sleep_ms,
                max_lag_s: run.live.max_lag_s,
            }),
            _ => Action::FinishRun { run_id: run.run_id },
        }
    }

    /// [`State::next_action`] for an engine with the batches in `busy` already in flight
    /// (`parallel`): the lowest pending batch not in `busy`, else the next plan while the open
    /// run's cursor is short of its bound, else `None` while `busy` holds a batch of the open
    /// run (whatever is left is in flight: wait for it), else what `next_action` says. With
    /// `busy` empty, or no run open, it is `next_action`. Nothing about "in flight" is in the log: after a crash
    /// nothing is, and the pending batches are run again, each with its claim.
    pub fn next_action_besides(&self, busy: &BTreeSet<u64>) -> Option<Action> {
        let Some(run) = self.open_run().filter(|_| !busy.is_empty()) else {
            return Some(self.next_action());
        };
        if let Some(batch) = self.pending_batches().find(|b| !busy.contains(&b.batch_id)) {
            return Some(Action::ExecuteBatch(self.order_for(batch)));
        }
        match self.plan_or_finish(run) {
            plan @ Action::PlanNext(_) => Some(plan),
            _ if self.pending.iter().any(|id| busy.contains(id)) => None,
            finish => Some(finish),
        }
    }

    /// The order that runs pending `batch` next.
    fn order_for(&self, batch: &Batch) -> BatchOrder {
        let planned_by = self.run(batch.run_id).expect("a batch names a known run");
        BatchOrder {
            batch_id: batch.batch_id,
            step: batch.step().expect("a pending batch has a step"),
            lower: batch.lower.clone(),
            upper: batch.upper.clone(),
            now_unix_us: planned_by.now_unix_us,
            attempt: batch.attempts.saturating_add(1),
            claim: batch.claim.clone(),
        }
    }

    /// The job, once `LogCreated` is applied.
    pub fn job(&self) -> Option<&JobIdentity> {
        self.job.as_ref()
    }

    /// Wall clock of `LogCreated`, microseconds since the Unix epoch (`None` before it).
    pub fn created_unix_us(&self) -> Option<i64> {
        self.job.as_ref().map(|_| self.created_unix_us)
    }

    /// LSN of the last event applied (0 = none).
    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    /// A run by id.
    pub fn run(&self, run_id: u64) -> Option<&Run> {
        let index = usize::try_from(run_id.checked_sub(1)?).ok()?;
        self.runs.get(index)
    }

    /// The run started and not finished, if any (always the last run).
    pub fn open_run(&self) -> Option<&Run> {
        self.runs.last().filter(|run| run.is_open())
    }

    /// The most recent run, open or finished.
    pub fn last_run(&self) -> Option<&Run> {
        self.runs.last()
    }

    /// Every run, by id.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// A batch by id; `None` for an id never planned, and for a done batch of an old run
    /// that a snapshot dropped.
    pub fn batch(&self, batch_id: u64) -> Option<&Batch> {
        self.batches.get(batch_id)
    }

    /// Every batch held, by id (after a snapshot, not every batch ever planned: see
    /// [`State`]).
    pub fn batches(&self) -> impl Iterator<Item = &Batch> {
        self.batches.iter()
    }

    /// The run that planned a batch, also for a batch a snapshot dropped (runs keep their
    /// batch id ranges).
    pub fn run_of(&self, batch_id: u64) -> Option<&Run> {
        match self.batch(batch_id) {
            Some(batch) => self.run(batch.run_id),
            None => self
                .runs
                .iter()
                .rev()
                .find(|run| run.batch_ids().contains(&batch_id)),
        }
    }

    /// Batches waiting to be executed (planned or copied, not parked), by id.
    pub fn pending_batches(&self) -> impl Iterator<Item = &Batch> {
        self.pending
            .iter()
            .map(|&id| self.batch(id).expect("pending ids are batches"))
    }

    /// Parked batches, by id.
    pub fn parked_batches(&self) -> impl Iterator<Item = &Batch> {
        self.parked
            .iter()
            .map(|&id| self.batch(id).expect("parked ids are batches"))
    }

    /// Pending batches that failed since they were planned or reset, by id.
    pub fn failed_batches(&self) -> impl Iterator<Item = &Batch> {
        self.pending_batches().filter(|b| b.attempts > 0)
    }

    /// The id the next `BatchPlanned` must carry: 1 + the largest seen.
    pub fn next_batch_id(&self) -> u64 {
        self.last_batch_id + 1
    }

    /// The id the next `RunStarted` must carry: 1 + the largest seen.
    pub fn next_run_id(&self) -> u64 {
        self.runs.len() as u64 + 1
    }

    /// Stored conflict records (the first [`CONFLICTS_STORED_MAX`]), in log order.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// Conflict records counted but not stored because of [`CONFLICTS_STORED_MAX`].
    pub fn conflicts_unstored(&self) -> u64 {
        self.conflicts_unstored
    }

    /// Sums over every batch of every run.
    pub fn totals(&self) -> &Counts {
        &self.totals
    }
}

/// The counts a `BatchDeleted` carries, as its attempt's `BatchCommitting` announced them.
pub fn attempt_counts(e: &BatchDeleted) -> AttemptCounts {
    AttemptCounts {
        rows_copied: e.rows_copied,
        rows_already: e.rows_already,
        rows_deleted: e.rows_deleted,
        rows_conflicting: e.rows_conflicting,
    }
}
