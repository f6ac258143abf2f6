//! [`Error`]: why a command failed, by the kind its caller decides on. The engine and the
//! operator commands return it; the CLI turns each kind into an exit code (`cli::exit`), by
//! matching on the type, never by searching messages.
//!
//! The lower layers keep their own types ([`ConfigError`], [`Refusal`], [`WalError`],
//! [`JournalError`], [`DbError`]); converting into [`Error`] sorts them: whatever means "the
//! job as configured cannot run, nothing changed" becomes [`Error::Config`] or
//! [`Error::Refused`], wherever it was found.

use crate::config::{ConfigError, Refusal};
use crate::db::DbError;
use crate::journal::JournalError;
use crate::state::StateError;
use crate::wal::WalError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job file or the command line is wrong; nothing was changed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The job cannot run against these tables, this server or this log as configured (a
    /// pre-flight finding, access denied, another job's log); nothing was changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The log could not be read or written (I/O, corruption, the lock held by another
    /// process).
    #[error(transparent)]
    Wal(#[from] WalError),
    /// An event contradicts the log: a bug; nothing was written.
    #[error("refusing to append {event}: {source}")]
    Contradiction {
        /// The event's name.
        event: &'static str,
        /// What it contradicts.
        source: StateError,
    },
    /// A server error that stops the run (the next run resumes).
    #[error(transparent)]
    Db(DbError),
    /// A batch failed with an error that stops the run; it is recorded, and retried next run.
    #[error("batch {batch_id} failed with an error that stops the run; fix the cause and run again (the batch is retried): {source}")]
    BatchStopped {
        /// The batch.
        batch_id: u64,
        /// What failed.
        source: DbError,
    },
    /// Anything no caller decides on (a report that cannot be written, a directory that is not
    /// a log): the command failed.
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl From<DbError> for Error {
    fn from(error: DbError) -> Error {
        match error {
            DbError::Refused(refusal) => Error::Refused(refusal),
            DbError::Config(config) => Error::Config(config),
            other => Error::Db(other),
        }
    }
}

impl From<JournalError> for Error {
    fn from(error: JournalError) -> Error {
        match error {
            JournalError::Wal(wal) => Error::Wal(wal),
            JournalError::Contradiction { event, source } => Error::Contradiction { event, source },
            JournalError::ForeignLog(refusal) => Error::Refused(refusal),
            JournalError::SnapshotRefused(refused) => Error::Failed(refused.into()),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Error {
        Error::Failed(anyhow::Error::new(error).context("cannot write the output"))
    }
}

/// Result of a command.
pub type Result<T, E = Error> = std::result::Result<T, E>;
