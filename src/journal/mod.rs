//! The journal: the job's write-ahead log and its state machine, kept in step. It is the only
//! code that appends events, and the one place a log is replayed.
//!
//! **Every append is checked before it reaches the log**: an event that contradicts the state
//! ([`State::check`]) is refused with [`JournalError::Contradiction`] and never written, because
//! once written it would make every later replay fail. After the append the event is applied,
//! made durable when the caller asks ([`Durability::Durable`]) or an observer needs it, and then
//! every [`Observer`] is told.
//!
//! Replay is written once ([`replay_record`]): opening for write ([`Journal::open`]) and reading
//! without a lock ([`Journal::read`]) feed the same function into the same state machine, and a
//! record it refuses stops both with the record's LSN, segment and offset.
//!
//! Compaction ([`Journal::compact`]) replaces the whole log with a snapshot of the state
//! (`State::snapshot`), through the WAL's crash-safe replacement (`WalWriter::replace_with`,
//! protocol in `wal-format.md`). The snapshot is replayed into a fresh state machine before
//! anything is written, and the compaction is refused unless that rebuilds exactly the state
//! it replaces (`State::retained`).

#[doc(hidden)]
pub mod nightly;

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Refusal;
use crate::event::{Event, JobIdentity};
use crate::state::{SnapshotRefused, State, StateError};
use crate::wal::{self, BoxError, Lsn, Record, WalError, WalOptions, WalWriter};
pub use crate::wal::{PendingSync, SyncOutcome};

/// Whether an append must be durable before [`Journal::append`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the log's buffer; durable at the next sync. For events that follow a step and
    /// whose loss replay repairs by redoing the step.
    Buffered,
    /// Synced before returning. For events that precede an irreversible step.
    Durable,
}

/// Something that watches appends: metrics, progress, hooks, the crash test. Every method has
/// a no-op default; observers cannot fail an append.
pub trait Observer: Send {
    /// Whether this observer needs `event` durable before it is told of it (the crash test
    /// kills the process right after a chosen record is durable). Asked before the sync.
    fn needs_durable(&mut self, _event: &Event) -> bool {
        false
    }

    /// After `event` was appended at `lsn` and applied; `durable` when a sync covers it.
    fn post_append(&mut self, _lsn: Lsn, _event: &Event, _durable: bool) {}

    /// Right after [`Observer::post_append`], with the state `event` was applied to: for an
    /// observer that needs what the state made of the event (whether a failed attempt parked
    /// its batch, when a run finished), never the engine's guess of it.
    fn post_apply(&mut self, _event: &Event, _state: &State) {}
}

/// Time spent appending to the log and syncing it, since the journal was opened: the WAL's
/// share of a run's statistics (`archiver run --statistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalTimes {
    /// Records appended.
    pub appends: u64,
    /// Time spent appending them (encoding and writing into the log's buffer or file).
    pub append: Duration,
    /// Syncs made (each an fdatasync of the log).
    pub syncs: u64,
    /// Time spent syncing.
    pub sync: Duration,
}

/// Why the journal refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The log could not be read or written (I/O, corruption, another process holds the lock,
    /// a record replay refused).
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The event contradicts the log: a bug in the caller. Nothing was written.
    #[error("refusing to append {event}: {source}")]
    Contradiction {
        /// The event's name.
        event: &'static str,
        /// What it contradicts.
        #[source]
        source: StateError,
    },
    /// The log belongs to another job. Nothing was read past its first record, nothing written.
    #[error(transparent)]
    ForeignLog(#[from] Refusal),
    /// The state cannot be snapshotted (an empty log); nothing was written.
    #[error("cannot compact: {0}")]
    SnapshotRefused(#[from] SnapshotRefused),
}

/// Decodes one record and applies it: the replay step of every path that reads a log.
pub fn replay_record(state: &mut State, record: &Record<'_>) -> Result<(), BoxError> {
    let event = Event::decode(record.record_type, record.payload)?;
    state.apply(record.lsn, &event)?;
    Ok(())
}

/// Replays the log in `dir` read-only: the state, and how many records it holds.
fn replay_dir(dir: &Path) -> Result<(State, u64), JournalError> {
    let mut state = State::new();
    let mut records = 0;
    wal::read_dir(dir, &mut |record| {
        records += 1;
        replay_record(&mut state, record)
    })?;
    Ok((state, records))
}

/// Bytes the log's segment files take in `dir` (their size on disk, preallocation included).
pub fn log_bytes(dir: &Path) -> Result<u64, JournalError> {
    let segments = wal::scan::segment_files(dir)?;
    Ok(segments.iter().map(|(_, _, bytes)| bytes).sum())
}

/// Whether `dir` already holds a log: any segment file, named as the WAL names them.
pub fn has_log(dir: &Path) -> bool {
    wal::scan::list_segments(dir).is_ok_and(|segments| !segments.is_empty())
}

/// Refuses a log that belongs to another job (`identity` is this job's).
pub fn check_identity(state: &State, identity: &JobIdentity, dir: &Path) -> Result<(), Refusal> {
    let Some(recorded) = state.job() else {
        return Ok(());
    };
    let differences = recorded.differences(identity);
    if differences.is_empty() {
        return Ok(());
    }
    Err(Refusal(format!(
        "the WAL directory {} belongs to another job ({}); point [job] wal_dir at this job's own directory",
        dir.display(),
        differences.join("; ")
    )))
}

/// The log open for appending, and the state it replays to.
pub struct Journal {
    /// The writer; holds the directory lock for the journal's life.
    wal: WalWriter,
    /// Every record of the log applied, in LSN order.
    state: State,
    /// Records the log holds (replayed at open, appended since, or written by a compaction).
    records: u64,
    /// Told of every append, in the order they were added.
    observers: Vec<Box<dyn Observer>>,
    /// Time spent appending and syncing since the journal was opened.
    times: WalTimes,
}

impl Journal {
    /// Opens the log in `dir` for appending (taking its lock, cutting a torn tail, creating the
    /// directory and first segment when there is none) and replays it.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let mut state = State::new();
        let mut records = 0;
        let (wal, report) = WalWriter::open(dir, WalOptions::default(), &mut |record| {
            records += 1;
            replay_record(&mut state, record)
        })?;
        if let Some(cut) = &report.cut {
            tracing::warn!("recovered the WAL: {cut:?}");
        }
        Ok(Journal {
            wal,
            state,
            records,
            observers: Vec::new(),
            times: WalTimes::default(),
        })
    }

    /// Time spent appending and syncing since the journal was opened.
    pub fn times(&self) -> WalTimes {
        self.times
    }

    /// Syncs the log, counting the time in [`Journal::times`].
    fn timed_sync(&mut self) -> Result<(), WalError> {
        let started = Instant::now();
        let result = self.wal.sync();
        self.times.syncs += 1;
        self.times.sync += started.elapsed();
        result
    }

    /// Records the log holds now.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Replays the log in `dir` without locking or changing it (works during a run).
    pub fn read(dir: &Path) -> Result<State, JournalError> {
        Ok(replay_dir(dir)?.0)
    }

    /// The state every appended record has been applied to.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Adds an observer; it sees every later append.
    pub fn observe(&mut self, observer: Box<dyn Observer>) {
        self.observers.push(observer);
    }

    /// Checks `event` against the state, appends it, applies it, syncs when `durability` or an
    /// observer asks, then tells the observers. Returns its LSN.
    pub fn append(&mut self, event: Event, durability: Durability) -> Result<Lsn, JournalError> {
        let contradiction = |source| JournalError::Contradiction {
            event: event.name(),
            source,
        };
        self.state
            .check(self.wal.next_lsn(), &event)
            .map_err(contradiction)?;
        let started = Instant::now();
        let appended = self
            .wal
            .append(event.record_type(), &event.encode_payload());
        self.times.appends += 1;
        self.times.append += started.elapsed();
        let lsn = appended?;
        // Cannot fail after the check passed (apply and check answer the same question).
        self.state.apply(lsn, &event).map_err(contradiction)?;
        self.records += 1;
        let mut durable = durability == Durability::Durable;
        for observer in &mut self.observers {
            durable |= observer.needs_durable(&event);
        }
        if durable {
            self.timed_sync()?;
        }
        for observer in &mut self.observers {
            observer.post_append(lsn, &event, durable);
            observer.post_apply(&event, &self.state);
        }
        Ok(lsn)
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        Ok(self.timed_sync()?)
    }

    /// Starts making every record appended so far durable without waiting for it (group
    /// commit, `engine::parallel`): the returned sync runs on any thread
    /// ([`PendingSync::run`], blocking) while more records are appended, and those records
    /// are durable only once [`Journal::finish_sync`] has taken its outcome.
    pub fn begin_sync(&mut self) -> Result<PendingSync, JournalError> {
        Ok(self.wal.begin_sync()?)
    }

    /// Ends a sync begun by [`Journal::begin_sync`], counting its time in
    /// [`Journal::times`]; an error (a failed fdatasync) leaves the log unusable, as a failed
    /// [`Journal::sync`] does.
    pub fn finish_sync(&mut self, outcome: SyncOutcome) -> Result<(), JournalError> {
        self.times.syncs += 1;
        self.times.sync += outcome.took();
        Ok(self.wal.finish_sync(outcome)?)
    }

    /// Syncs, releases the lock, and returns the state.
    pub fn close(mut self) -> Result<State, JournalError> {
        self.timed_sync()?;
        self.wal.close()?;
        Ok(self.state)
    }
}

/// What a compaction did, or (dry) would do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompactReport {
    /// Whether this is only what it would do (nothing was written).
    pub dry_run: bool,
    /// Runs kept in full detail.
    pub keep_runs: u32,
    /// Records in the log before.
    pub records_before: u64,
    /// Records after: the snapshot.
    pub records_after: u64,
    /// Segment files before.
    pub segments_before: u64,
    /// Their size on disk, in bytes (preallocated).
    pub bytes_before: u64,
    /// Segment files after (dry run: 1).
    pub segments_after: u64,
    /// Their size on disk, in bytes (dry run: the bytes of the records, before preallocation).
    pub bytes_after: u64,
    /// Runs in the log (every one is kept, older ones as totals).
    pub runs: u64,
    /// Batches the log holds after: every batch not done, and those of the kept runs.
    pub batches_kept: u64,
    /// Done batches of older runs, summarized into their run's totals.
    pub batches_summarized: u64,
    /// Wall time, in milliseconds.
    pub elapsed_ms: u64,
}

impl CompactReport {
    /// The report for people.
    pub fn lines(&self) -> Vec<String> {
        let (verb, size) = if self.dry_run {
            ("would compact", "bytes of records")
        } else {
            ("compacted", "bytes on disk")
        };
        vec![
            format!(
                "{verb} the log: {} records in {} segment(s), {} bytes on disk -> {} records in {} segment(s), {} {size}",
                self.records_before,
                self.segments_before,
                self.bytes_before,
                self.records_after,
                self.segments_after,
                self.bytes_after
            ),
            format!(
                "history: {} run(s) kept, the last {} in full detail; {} batch(es) kept, {} done batch(es) of older runs summarized into their run's totals",
                self.runs, self.keep_runs, self.batches_kept, self.batches_summarized
            ),
            format!("took {} ms", self.elapsed_ms),
        ]
    }
}

/// A record as the WAL stores it: its type and payload.
type RawRecord = (u16, Vec<u8>);

/// The snapshot of `state` as (type, payload) records, and the state they rebuild when
/// replayed from `first_lsn`. Refuses a snapshot that would not rebuild
/// `state.retained(keep_runs)` exactly: the log is never replaced by one that says less than
/// promised.
fn snapshot_records(
    state: &State,
    keep_runs: u32,
    first_lsn: Lsn,
    taken_unix_us: i64,
) -> Result<(Vec<RawRecord>, State), JournalError> {
    let events = state.snapshot(keep_runs, taken_unix_us)?;
    // Applied after the log it replaces, as the WAL shows it while a compaction finishes: the
    // state machine then checks that the snapshot rebuilds `state.retained(keep_runs)` exactly,
    // and the result is what a replay of the compacted log alone gives.
    let mut rebuilt = state.clone();
    for (lsn, event) in (first_lsn..).zip(&events) {
        rebuilt
            .apply(lsn, event)
            .map_err(|source| JournalError::Contradiction {
                event: event.name(),
                source,
            })?;
    }
    let records = events
        .iter()
        .map(|event| (event.record_type(), event.encode_payload()))
        .collect();
    Ok((records, rebuilt))
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Journal {
    /// Replaces the log with a snapshot of the state that keeps the last `keep_runs` runs in
    /// full detail, crash-safely: the WAL's protocol leaves either the old log or the new one
    /// whole at every instant. The journal goes on appending after the snapshot.
    pub fn compact(
        self,
        keep_runs: u32,
        now_unix_us: i64,
    ) -> Result<(Journal, CompactReport), JournalError> {
        let started = Instant::now();
        let Journal {
            mut wal,
            state,
            records,
            observers,
            times,
        } = self;
        let (snapshot, rebuilt) = snapshot_records(&state, keep_runs, wal.next_lsn(), now_unix_us)?;
        let batches_before = state.batches().count() as u64;
        let replaced = wal.replace_with(&snapshot)?;
        let report = CompactReport {
            dry_run: false,
            keep_runs,
            records_before: records,
            records_after: snapshot.len() as u64,
            segments_before: replaced.segments_before as u64,
            bytes_before: replaced.bytes_before,
            segments_after: replaced.segments_after as u64,
            bytes_after: replaced.bytes_after,
            runs: rebuilt.runs().len() as u64,
            batches_kept: rebuilt.batches().count() as u64,
            batches_summarized: batches_before - rebuilt.batches().count() as u64,
            elapsed_ms: elapsed_ms(started),
        };
        let journal = Journal {
            wal,
            state: rebuilt,
            records: report.records_after,
            observers,
            times,
        };
        Ok((journal, report))
    }

    /// What [`Journal::compact`] would do to the log in `dir`, read without its lock; writes
    /// nothing.
    pub fn plan_compaction(
        dir: &Path,
        keep_runs: u32,
        now_unix_us: i64,
    ) -> Result<CompactReport, JournalError> {
        let started = Instant::now();
        let (state, records) = replay_dir(dir)?;
        let segments = wal::scan::segment_files(dir)?;
        let segments_before = segments.len() as u64;
        let bytes_before = segments.iter().map(|(_, _, bytes)| bytes).sum();
        let (snapshot, rebuilt) =
            snapshot_records(&state, keep_runs, state.last_lsn() + 1, now_unix_us)?;
        let record_bytes: usize = snapshot
            .iter()
            .map(|(_, payload)| payload.len() + wal::FRAME_OVERHEAD_BYTES)
            .sum();
        Ok(CompactReport {
            dry_run: true,
            keep_runs,
            records_before: records,
            records_after: snapshot.len() as u64,
            segments_before,
            bytes_before,
            segments_after: 1,
            bytes_after: (wal::HEADER_BYTES + record_bytes) as u64,
            runs: rebuilt.runs().len() as u64,
            batches_kept: rebuilt.batches().count() as u64,
            batches_summarized: (state.batches().count() - rebuilt.batches().count()) as u64,
            elapsed_ms: elapsed_ms(started),
        })
    }
}
