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

use std::path::Path;

use crate::config::Refusal;
use crate::event::{Event, JobIdentity};
use crate::state::{State, StateError};
use crate::wal::{self, BoxError, Lsn, Record, WalError, WalOptions, WalWriter};

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
}

/// Decodes one record and applies it: the replay step of every path that reads a log.
pub fn replay_record(state: &mut State, record: &Record<'_>) -> Result<(), BoxError> {
    let event = Event::decode(record.record_type, record.payload)?;
    state.apply(record.lsn, &event)?;
    Ok(())
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
    /// Told of every append, in the order they were added.
    observers: Vec<Box<dyn Observer>>,
}

impl Journal {
    /// Opens the log in `dir` for appending (taking its lock, cutting a torn tail, creating the
    /// directory and first segment when there is none) and replays it.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let mut state = State::new();
        let (wal, report) = WalWriter::open(dir, WalOptions::default(), &mut |record| {
            replay_record(&mut state, record)
        })?;
        if let Some(cut) = &report.cut {
            tracing::warn!("recovered the WAL: {cut:?}");
        }
        Ok(Journal {
            wal,
            state,
            observers: Vec::new(),
        })
    }

    /// Replays the log in `dir` without locking or changing it (works during a run).
    pub fn read(dir: &Path) -> Result<State, JournalError> {
        let mut state = State::new();
        wal::read_dir(dir, &mut |record| replay_record(&mut state, record))?;
        Ok(state)
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
        let lsn = self
            .wal
            .append(event.record_type(), &event.encode_payload())?;
        // Cannot fail after the check passed (apply and check answer the same question).
        self.state.apply(lsn, &event).map_err(contradiction)?;
        let mut durable = durability == Durability::Durable;
        for observer in &mut self.observers {
            durable |= observer.needs_durable(&event);
        }
        if durable {
            self.wal.sync()?;
        }
        for observer in &mut self.observers {
            observer.post_append(lsn, &event, durable);
        }
        Ok(lsn)
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        Ok(self.wal.sync()?)
    }

    /// Syncs, releases the lock, and returns the state.
    pub fn close(mut self) -> Result<State, JournalError> {
        self.wal.sync()?;
        self.wal.close()?;
        Ok(self.state)
    }
}
