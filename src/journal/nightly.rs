//! Synthetic nightly runs through the real journal, no database: what a job that runs every
//! night appends (a run of `batches` batches, each planned and deleted), for the growth test and
//! the compaction benchmark (`cargo bench --bench compaction`). Not used by the product.

use super::{Durability, Journal, JournalError};
use crate::event::{
    BatchDeleted, BatchPlanned, Event, JobIdentity, KeyValue, LogCreated, RunFinished, RunOutcome,
    RunStarted,
};

/// Rows per synthetic batch.
const ROWS_PER_BATCH: u64 = 1_000;

/// One synthetic night's wall clock, microseconds since the Unix epoch.
fn night_unix_us(run_id: u64) -> i64 {
    let day_us: i64 = 86_400_000_000;
    1_767_225_600_000_000 + i64::try_from(run_id).unwrap_or(0) * day_us
}

/// The job every synthetic log belongs to.
pub fn identity() -> JobIdentity {
    JobIdentity {
        source_server: "db1:3306".into(),
        source_schema: "shop".into(),
        source_table: "orders".into(),
        archive_server: "db1:3306".into(),
        archive_schema: "shop".into(),
        archive_table: "orders_archive".into(),
        predicate: "created_at < NOW() - INTERVAL 90 DAY".into(),
    }
}

/// Appends the next night's run: `batches` batches of [`ROWS_PER_BATCH`] rows, each planned
/// (durable, as the engine does) and deleted, then the run's end. Creates the log first if it
/// has no `LogCreated`.
pub fn append_night(journal: &mut Journal, batches: u64) -> Result<(), JournalError> {
    if journal.state().job().is_none() {
        let event = Event::LogCreated(LogCreated {
            job: identity(),
            created_unix_us: night_unix_us(0),
        });
        journal.append(event, Durability::Durable)?;
    }
    let run_id = journal.state().next_run_id();
    let first_key = journal.state().next_batch_id() * ROWS_PER_BATCH;
    let now = night_unix_us(run_id);
    let bound = first_key + batches * ROWS_PER_BATCH;
    let started = Event::RunStarted(RunStarted {
        run_id,
        now_unix_us: now,
        key_bound: Some(vec![KeyValue::UInt(bound)]),
        batch_rows: 1_000,
        attempts_max: 5,
        started_unix_us: now,
    });
    journal.append(started, Durability::Durable)?;
    let mut lower = None;
    for i in 1..=batches {
        let upper = vec![KeyValue::UInt(first_key + i * ROWS_PER_BATCH)];
        let batch_id = journal.state().next_batch_id();
        let planned = Event::BatchPlanned(BatchPlanned {
            batch_id,
            run_id,
            lower: lower.replace(upper.clone()),
            upper,
            rows_planned: ROWS_PER_BATCH,
        });
        journal.append(planned, Durability::Buffered)?;
        let deleted = Event::BatchDeleted(BatchDeleted {
            batch_id,
            rows_copied: ROWS_PER_BATCH,
            rows_already: 0,
            rows_deleted: ROWS_PER_BATCH,
            rows_conflicting: 0,
        });
        journal.append(deleted, Durability::Buffered)?;
    }
    let finished = Event::RunFinished(RunFinished {
        run_id,
        outcome: RunOutcome::Completed,
        finished_unix_us: now + 3_600_000_000,
    });
    journal.append(finished, Durability::Durable)?;
    Ok(())
}
