//! One batch, executed as its [`BatchOrder`] says and recorded in the journal: on the source
//! server as one transaction, or in two steps with the archive on its own server. A failure
//! the batch can survive is recorded (`BatchFailed`) and the run goes on; one that stops the
//! run is recorded and returned.

use std::time::Instant;

use super::backoff::Backoff;
use super::{Engine, Halt};

use crate::db::{self, BatchResult, CrossOrder, DbError, DbResult, RowValues};
use crate::error::Error;
use crate::event::{
    cut_message, AttemptCounts, BatchCommitting, BatchCopied, BatchDeleted, BatchFailed,
    ConflictFound, EarlierCommit, ErrorClass, Event,
};
use crate::journal::Durability;
use crate::state::{key_text, BatchOrder, Step};

impl Engine<'_> {
    /// Runs a batch once and records the outcome. `Err` only for what stops the run: an error
    /// that is not the batch's (fatal SQL errors, the WAL), a server that stays unreachable,
    /// a stop request while reconnecting. Failing to reach a server is not an attempt at the
    /// batch.
    ///
    /// The attempt's wall time, from when its servers were reached to when its outcome was
    /// recorded (not the wait after a failure), goes to the batch duration histogram.
    pub(super) async fn execute(&mut self, order: BatchOrder) -> Result<(), Halt> {
        // With the archive on the source server, copy and delete are one transaction, so both
        // steps redo the whole (idempotent) batch; with its own server, Delete skips the copy.
        let started;
        let result = match self.config.archive.endpoint {
            None => {
                // A pending batch run again (after a failure or a crash): it locks its range
                // itself (batches just planned run in `engine::parallel`).
                let conn = self.servers.source(order.now_unix_us).await?;
                let began = Instant::now();
                let range = (order.lower.as_ref(), &order.upper);
                let witness = order.claim.as_ref().and_then(|c| c.witness.as_ref());
                let times = &mut self.batch_times;
                let result =
                    match db::execute_batch(conn, &self.queries, range, None, witness, times).await
                    {
                        Ok(result) => {
                            let event = committing(&order, &result);
                            if let Err(error) = self.journal.append(event, Durability::Durable) {
                                db::rollback(conn).await;
                                return Err(error.into());
                            }
                            let times = &mut self.batch_times;
                            db::commit(conn, times).await.map(|()| result)
                        }
                        Err(error) => Err(error),
                    };
                started = began;
                result
            }
            Some(_) => {
                let (result, began) = self.execute_cross(&order).await?;
                started = began;
                result
            }
        };
        match result {
            Ok(result) => {
                let recorded = self.record_done(order.batch_id, &result);
                self.metrics.observe_batch(started.elapsed());
                let conflicts = u64::try_from(result.conflicts.len()).expect("fits in u64");
                (self.sizing).batch_done(result.rows_deleted + conflicts, started.elapsed());
                recorded
            }
            Err(error) => {
                self.metrics.observe_batch(started.elapsed());
                self.sizing.batch_failed(started.elapsed());
                self.record_failure(&order, error).await
            }
        }
    }

    /// A batch with the archive on another server (`db::execute_cross_batch`): lock the
    /// source rows (source transaction), copy them into the archive and commit there (step
    /// Copy only), keep deleted exactly the locked rows whose committed archive copy is
    /// identical; then record `BatchCopied` (unsynced) if the archive committed a copy,
    /// `BatchCommitting` durably (which makes both durable: one sync per batch), and commit the
    /// source transaction. After a crash between the two commits, replay resumes at step
    /// Delete, which copies nothing again (or, when the crash came before `BatchCopied` was
    /// durable, at step Copy, which finds every row in the archive and copies none). The inner
    /// result is the batch's, with the moment the attempt began once both servers were reached.
    async fn execute_cross(
        &mut self,
        order: &BatchOrder,
    ) -> Result<(DbResult<BatchResult>, Instant), Halt> {
        // On error both connections are dropped, which closes them and makes each server roll
        // back its open transaction.
        let (mut source, mut archive) = self.servers.take_both(order.now_unix_us).await?;
        let started = Instant::now();
        let cross = cross_order(order, None, self.servers_at_once());
        let (accepts, times) = (&mut self.servers.accepts, &mut self.batch_times);
        let attempt = db::execute_cross_batch(
            &mut source,
            &mut archive,
            &self.queries,
            cross,
            accepts,
            times,
        )
        .await;
        self.record_copied(order.batch_id, attempt.copied)?;
        let result = match attempt.result {
            Ok(result) => result,
            Err(error) => return Ok((Err(error), started)),
        };
        let event = committing(order, &result);
        if let Err(error) = self.journal.append(event, Durability::Durable) {
            db::rollback(&mut source).await;
            return Err(error.into());
        }
        let committed = db::commit(&mut source, &mut self.batch_times).await;
        if committed.is_ok() {
            self.servers.put_back(source, archive);
        }
        Ok((committed.map(|()| result), started))
    }

    /// Records, unsynced, the copy the archive committed in a two-server batch attempt
    /// (`db::CrossAttempt::copied`): `BatchCopied`, whose counts are the batch's copy counts
    /// (`BatchDeleted` carries none, so that nothing is counted twice: wal-format.md). The
    /// attempt's next record, `BatchCommitting` or `BatchFailed`, is durable and makes it so.
    pub(super) fn record_copied(
        &mut self,
        batch_id: u64,
        copied: Option<(u64, u64)>,
    ) -> Result<(), Halt> {
        let Some((rows_copied, rows_already)) = copied else {
            return Ok(());
        };
        let event = Event::BatchCopied(BatchCopied {
            batch_id,
            rows_copied,
            rows_already,
        });
        self.journal.append(event, Durability::Buffered)?;
        Ok(())
    }

    /// Records a batch whose source commit went through: its conflicts, then `BatchDeleted`,
    /// all unsynced (the attempt's `BatchCommitting`, durable, already holds its counts).
    pub(super) fn record_done(&mut self, batch_id: u64, result: &BatchResult) -> Result<(), Halt> {
        for key in &result.conflicts {
            tracing::warn!(
                "conflict: the archive holds a different row under key {} (batch {batch_id}); the source row was kept",
                key_text(key)
            );
            let event = Event::ConflictFound(ConflictFound {
                batch_id,
                key: key.clone(),
            });
            self.journal.append(event, Durability::Buffered)?;
        }
        let conflicts = u64::try_from(result.conflicts.len()).expect("conflicts fit in u64");
        let event = Event::BatchDeleted(BatchDeleted {
            batch_id,
            rows_copied: result.rows_copied,
            rows_already: result.rows_already,
            rows_deleted: result.rows_deleted,
            rows_conflicting: conflicts,
        });
        self.journal.append(event, Durability::Buffered)?;
        self.log_progress(batch_id, result);
        Ok(())
    }

    /// One line per batch at `-v`: what it moved, and where its run stands.
    fn log_progress(&self, batch_id: u64, result: &BatchResult) {
        let state = self.journal.state();
        let Some(run) = state.run_of(batch_id) else {
            return;
        };
        tracing::info!(
            "batch {batch_id}: moved {} rows ({} already archived, {} kept for conflicts); run {}: {} rows moved in {} of {} batches",
            result.rows_deleted,
            result.rows_already,
            result.conflicts.len(),
            run.run_id,
            run.counts.rows_deleted,
            run.counts.batches_done,
            run.counts.batches_planned
        );
    }

    /// Records a failed attempt durably. A fatal error stops the run (the next run retries the
    /// batch); after a transient one, waits before the next attempt (a stop cuts the wait).
    async fn record_failure(&mut self, order: &BatchOrder, error: DbError) -> Result<(), Halt> {
        self.servers.drop_all();
        match self.record_failed(order, error)? {
            AfterFailure::Wait(delay) => {
                self.shutdown.sleep(delay).await;
                Ok(())
            }
            AfterFailure::GoOn => Ok(()),
            AfterFailure::Stop(error) => Err(Halt::Fail(error)),
        }
    }

    /// Records a failed attempt durably, and says what follows. `Err` only when the log
    /// cannot record it.
    pub(super) fn record_failed(
        &mut self,
        order: &BatchOrder,
        error: DbError,
    ) -> Result<AfterFailure, Halt> {
        let (batch_id, attempt) = (order.batch_id, order.attempt);
        let class = error.class();
        let message = cut_message(&error.to_string());
        tracing::warn!("batch {batch_id} attempt {attempt} failed ({class:?}): {message}");
        let event = Event::BatchFailed(BatchFailed {
            batch_id,
            attempt,
            class,
            message,
        });
        self.journal.append(event, Durability::Durable)?;
        Ok(match class {
            ErrorClass::Fatal => AfterFailure::Stop(Error::BatchStopped {
                batch_id,
                source: error,
            }),
            ErrorClass::Transient => AfterFailure::Wait(Backoff::RETRY.delay(attempt)),
            ErrorClass::Batch => AfterFailure::GoOn,
        })
    }
}

/// What the two-server batch `order` is to do (`db::execute_cross_batch`): its range, its
/// step, its claim's witness; `planned`: the rows its planning read locked, else it locks its
/// range again; `at_once`: whether its two servers work at the same time
/// ([`Engine::servers_at_once`]).
pub(super) fn cross_order(
    order: &BatchOrder,
    planned: Option<Vec<RowValues>>,
    at_once: bool,
) -> CrossOrder<'_> {
    CrossOrder {
        range: (order.lower.as_ref(), &order.upper),
        planned,
        copy: order.step == Step::Copy,
        witness: order.claim.as_ref().and_then(|c| c.witness.as_ref()),
        at_once,
    }
}

/// What follows a failed attempt, once recorded.
pub(super) enum AfterFailure {
    /// Wait this long before the next attempt (a transient error).
    Wait(std::time::Duration),
    /// Go on at once (the batch is parked, or tried again).
    GoOn,
    /// Stop the run with this error (a fatal one; the next run retries the batch).
    Stop(Error),
}

/// The durable record an attempt writes just before its source `COMMIT`: what the transaction
/// did, its witness, and what it found of the earlier attempt's unconfirmed commit. A claim
/// without a witness deleted nothing, so it counts the same whether it committed or not.
pub(super) fn committing(order: &BatchOrder, result: &BatchResult) -> Event {
    let earlier = match (&order.claim, result.earlier_committed) {
        (None, _) => EarlierCommit::None,
        (Some(claim), Some(false)) => {
            tracing::warn!(
                "batch {}: the commit of attempt {} did not happen (rolled back when it was cut short); this attempt moves its rows",
                order.batch_id,
                claim.attempt
            );
            EarlierCommit::RolledBack
        }
        (Some(claim), _) => {
            if claim.witness.is_some() {
                tracing::warn!(
                    "batch {}: the commit of attempt {} had happened before it was cut short ({} rows moved then); counted now",
                    order.batch_id,
                    claim.attempt,
                    claim.counts.rows_deleted
                );
            }
            EarlierCommit::Committed(claim.counts)
        }
    };
    let conflicts = u64::try_from(result.conflicts.len()).expect("conflicts fit in u64");
    Event::BatchCommitting(BatchCommitting {
        batch_id: order.batch_id,
        attempt: order.attempt,
        counts: AttemptCounts {
            rows_copied: result.rows_copied,
            rows_already: result.rows_already,
            rows_deleted: result.rows_deleted,
            rows_conflicting: conflicts,
        },
        witness: result.witness.clone(),
        earlier,
    })
}
