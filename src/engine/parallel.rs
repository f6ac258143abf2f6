//! The batches of a job, in flight side by side: each on its own connection (with the archive
//! on its own server, one to each server), in its own transaction, on its own key range. At
//! most `parallel`
//! (`archiver run --jobs N`, 1 by default) run their statements at once; a batch whose
//! statements are done and which waits for its claim's sync and its `COMMIT` lets the next one
//! start, so even one at a time the server works while the log syncs (at most `parallel` more
//! wait so). With one at a time no batch's statements run beside another's, and the plain
//! statements are right; with more, `Queries::with_neighbours`.
//!
//! Planning stays sequential: each plan starts at the previous batch's upper key and locks its
//! rows (`db::plan_locked`; with the archive on its own server `db::plan_rows_locked`, which
//! also reads them) on a connection taken for the batch, as a future the loop polls beside the
//! batches in flight ([`planning`]: a read waiting for another session's lock must not hold
//! them up); the batch then runs its statements as a future of its own ([`statements`], or
//! [`cross_statements`]: copy into the archive and commit there, read back, settle the source
//! delete) while the loop plans the next one. What the log needs is still written by the loop
//! alone, in the order things happen:
//!
//! - a two-server batch whose archive committed its copy has its `BatchCopied` appended
//!   unsynced when it lands, before its claim or its failure (whose sync makes it durable);
//! - a batch whose statements are done (transaction open) lands; its `BatchCommitting` is
//!   appended unsynced, and **one sync covers every claim appended before it began** (group
//!   commit: with N in flight, fewer syncs than batches); only once that sync has ended is
//!   each of their `COMMIT`s sent ([`commit`]). The sync runs on a blocking thread
//!   (`Journal::begin_sync`, `finish_sync`) while the loop keeps landing batches and queuing
//!   their claims for the next one;
//! - a committed batch's `ConflictFound`s and `BatchDeleted` are appended unsynced, as on the
//!   one-batch path of `engine::batch` (which runs a batch left pending by an earlier
//!   invocation); a failure is recorded (`BatchFailed`, durable) as there.
//!
//! Nothing about "in flight" is in the log: after a crash nothing is, and the pending batches
//! are run again in id order, each with its claim, exactly as after a crash of one batch.
//!
//! **No batch holding locks is left waiting on the loop**: the loop starts batches only while
//! nothing asks it to wait (a stop, a pause flag or command, a control command, a pacing
//! pause, a due throttle check, a due ETA estimate, a retry's backoff); then it stops starting
//! them, lands those in flight and returns, and the one-batch loop does the wait with no
//! transaction open. The statements of batches side by side never wait for each other:
//! `Queries::with_neighbours`.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use mysql_async::Conn;

use super::batch::{committing, cross_order, AfterFailure};
use super::{Engine, Halt};
use crate::db::{self, sql::Queries, Accepts, BatchResult, BatchTimes, DbError, RowValues};
use crate::event::{BatchPlanned, Event, Key};
use crate::journal::{Durability, SyncOutcome};
use crate::state::{Action, BatchOrder, PlanOrder, Step};

/// A batch in flight: its statements, or its commit.
type Flying = Pin<Box<dyn Future<Output = Landing> + Send>>;

/// What a batch in flight came back with.
struct Landing {
    /// The batch.
    order: BatchOrder,
    /// Its connection, unless it failed (then it is dropped: the server rolls back).
    conn: Option<Conn>,
    /// With the archive on its own server: the archive connection, unless the batch failed.
    archive: Option<Conn>,
    /// With the archive on its own server: the copy the archive committed in this attempt
    /// (`BatchCopied`'s counts, `db::CrossAttempt::copied`), recorded when the batch lands.
    copied: Option<(u64, u64)>,
    /// With the archive on its own server: what the servers took of the preferred statements
    /// in this attempt (a flag turned false stays false for the invocation).
    accepts: Option<Accepts>,
    /// When the batch began (its planning read, or its locking read).
    began: Instant,
    /// Its share of the servers' time, by step.
    times: BatchTimes,
    /// How far it got.
    outcome: Outcome,
}

enum Outcome {
    /// Statements done, transaction open: `BatchCommitting` is due, then `COMMIT`.
    Ready(BatchResult),
    /// Committed.
    Committed(BatchResult),
    /// Failed; the transaction is rolled back.
    Failed(DbError),
}

/// The batch's statements, on its own connection: `locked` holds the keys its planning read
/// locked (transaction open), else it locks its range itself.
fn statements(
    mut conn: Conn,
    queries: Arc<Queries>,
    order: BatchOrder,
    locked: Option<Vec<Key>>,
    began: Instant,
) -> Flying {
    Box::pin(async move {
        let mut times = BatchTimes::default();
        let range = (order.lower.as_ref(), &order.upper);
        let witness = order.claim.as_ref().and_then(|c| c.witness.clone());
        let result = db::execute_batch(
            &mut conn,
            &queries,
            range,
            locked,
            witness.as_ref(),
            &mut times,
        )
        .await;
        Landing::new((order, began, times), conn, result, Outcome::Ready)
    })
}

/// A two-server batch's statements (`db::execute_cross_batch`), on its own source and archive
/// connections: `planned` holds the rows its planning read locked (source transaction open),
/// else it locks its range itself.
fn cross_statements(
    (mut source, mut archive): (Conn, Conn),
    queries: Arc<Queries>,
    order: BatchOrder,
    planned: Option<Vec<RowValues>>,
    (began, mut accepts, at_once): (Instant, Accepts, bool),
) -> Flying {
    Box::pin(async move {
        let mut times = BatchTimes::default();
        let cross = cross_order(&order, planned, at_once);
        let attempt = db::execute_cross_batch(
            &mut source,
            &mut archive,
            &queries,
            cross,
            &mut accepts,
            &mut times,
        )
        .await;
        let mut landing = Landing::new(
            (order, began, times),
            source,
            attempt.result,
            Outcome::Ready,
        );
        landing.archive = landing.conn.is_some().then_some(archive);
        landing.copied = attempt.copied;
        landing.accepts = Some(accepts);
        landing
    })
}

/// A planning read in flight: what it planned, on the connection it took.
struct Planned {
    order: PlanOrder,
    conn: Conn,
    /// When the read began (the batch's locks count from then).
    started: Instant,
    /// The batch's upper key, its rows, and what is locked; `None` when no matching row is
    /// left.
    result: Result<Option<PlanOutcome>, DbError>,
}

/// A batch planned: its upper key, its matching rows, and what its planning read locked
/// (`None`: planned without locks, another session held a row).
type PlanOutcome = (Key, u64, Option<Locked>);

/// What a planning read locked, its transaction left open for the batch to run in.
enum Locked {
    /// With the archive on the source server: the keys of the rows locked.
    Keys(Vec<Key>),
    /// With the archive on its own server: the rows locked, as read (the client carries them
    /// to the archive's server).
    Rows(Vec<RowValues>),
}

/// The next batch's planning read (`db::plan_locked`, with the archive on its own server
/// `db::plan_rows_locked`, which also reads the rows; or without locks when another session
/// holds a row it meets: `db::plan_unlocked_after`), as a future the loop polls beside the
/// batches in flight: a read waiting for another session's lock must not stop them from going
/// on.
fn planning(mut conn: Conn, queries: Arc<Queries>, order: PlanOrder, cross: bool) -> PlanningRead {
    Box::pin(async move {
        let started = Instant::now();
        let (after, bound) = (order.after.as_ref(), &order.bound);
        let locked = match cross {
            false => db::plan_locked(&mut conn, &queries, after, bound, order.rows)
                .await
                .map(|planned| {
                    planned.map(|(upper, keys)| (upper, keys.len() as u64, Locked::Keys(keys)))
                }),
            true => db::plan_rows_locked(&mut conn, &queries, after, bound, order.rows)
                .await
                .map(|planned| {
                    planned.map(|(upper, rows)| (upper, rows.len() as u64, Locked::Rows(rows)))
                }),
        };
        let result = match locked {
            Ok(planned) => Ok(planned.map(|(upper, rows, locked)| (upper, rows, Some(locked)))),
            Err(error) => {
                let plan = (after, bound, order.rows);
                db::plan_unlocked_after(&mut conn, &queries, plan, order.batch_id, error)
                    .await
                    .map(|planned| planned.map(|(upper, rows)| (upper, rows, None)))
            }
        };
        Planned {
            order,
            conn,
            started,
            result,
        }
    })
}

/// A planning read in flight.
type PlanningRead = Pin<Box<dyn Future<Output = Planned> + Send>>;

/// The batch's source `COMMIT`, once its `BatchCommitting` is durable (its archive
/// connection, if any, comes along).
fn commit(ready: Ready) -> Flying {
    let Ready {
        order,
        mut conn,
        archive,
        result,
        began,
    } = ready;
    Box::pin(async move {
        let mut times = BatchTimes::default();
        let committed = db::commit(&mut conn, &mut times).await.map(|()| result);
        let mut landing = Landing::new((order, began, times), conn, committed, Outcome::Committed);
        landing.archive = archive.filter(|_| landing.conn.is_some());
        landing
    })
}

impl Landing {
    /// What a step of a batch came back with: its result as `ok` makes it, or its failure (its
    /// connection then dropped: the server rolls back what is left of the transaction).
    fn new<T>(
        (order, began, times): (BatchOrder, Instant, BatchTimes),
        conn: Conn,
        result: Result<T, DbError>,
        ok: impl FnOnce(T) -> Outcome,
    ) -> Landing {
        let (conn, outcome) = match result {
            Ok(value) => (Some(conn), ok(value)),
            Err(error) => (None, Outcome::Failed(error)),
        };
        Landing {
            order,
            conn,
            archive: None,
            copied: None,
            accepts: None,
            began,
            times,
            outcome,
        }
    }
}

/// A batch whose statements are done and whose claim is appended: it commits once a sync
/// that began after the claim was appended has ended.
struct Ready {
    order: BatchOrder,
    conn: Conn,
    archive: Option<Conn>,
    result: BatchResult,
    began: Instant,
}

/// The batches in flight and why the loop stopped starting new ones.
#[derive(Default)]
struct Flight {
    /// The futures.
    flying: FuturesUnordered<Flying>,
    /// Their batch ids (and those of the batches waiting for a sync).
    busy: BTreeSet<u64>,
    /// The batches whose statements are running (not yet landed).
    in_statements: BTreeSet<u64>,
    /// Planning found no row left: the run finishes once these land.
    exhausted: bool,
    /// Wait this long before the next attempt of a batch that failed transiently.
    backoff: Option<Duration>,
    /// What stops the run, once these have landed.
    halt: Option<Halt>,
    /// The next batch's planning read, if one is in flight (one at a time: each plan starts
    /// where the previous one ended).
    planning: Option<PlanningRead>,
    /// The sync in progress, on a blocking thread, while the loop goes on.
    sync: Option<tokio::task::JoinHandle<SyncOutcome>>,
    /// The batches whose claims that sync makes durable.
    syncing: Vec<Ready>,
    /// The batches whose claims were appended after it began: the next sync's.
    queued: Vec<Ready>,
}

impl Engine<'_> {
    /// Runs batches side by side, starting with the plan `first`, until something asks the
    /// loop to wait or the run has nothing left to start; returns once every batch in flight
    /// has landed. See the module doc.
    pub(super) async fn run_parallel(&mut self, first: PlanOrder) -> Result<(), Halt> {
        if self.progress.estimate_due() {
            self.estimate_rows_left(&first).await;
        }
        let queries = Arc::new(self.queries.clone());
        let jobs = self.config.batching.parallel as usize;
        let mut flight = Flight::default();
        let mut next = Some(Action::PlanNext(first));
        loop {
            // At most `jobs` batches run their statements at once. A batch whose statements
            // are done, waiting for its sync and `COMMIT`, lets the next one start, so that
            // the server works while the log syncs; at most `jobs` more wait so.
            while flight.halt.is_none()
                && flight.backoff.is_none()
                && !flight.exhausted
                && flight.planning.is_none()
                && flight.in_statements.len() < jobs
                && flight.busy.len() < 2 * jobs
            {
                let action = match next.take() {
                    Some(action) => action,
                    None if self.wants_a_wait() => break,
                    None => match self.journal.state().next_action_besides(&flight.busy) {
                        Some(action) => action,
                        None => break,
                    },
                };
                match action {
                    Action::PlanNext(order) => self.launch_plan(order, &queries, &mut flight).await,
                    Action::ExecuteBatch(order) => {
                        self.launch_batch(order, &queries, &mut flight).await;
                    }
                    // Finishing the run (or anything else) is the one-batch loop's, with
                    // nothing in flight.
                    _ => break,
                }
            }
            if flight.flying.is_empty() && flight.sync.is_none() && flight.planning.is_none() {
                break;
            }
            match flight.next_event().await {
                Wake::Planned(planned) => self.planned(*planned, &queries, &mut flight).await,
                Wake::Landed(landed) => {
                    let mut landed = vec![*landed];
                    while let Some(Some(more)) = flight.flying.next().now_or_never() {
                        landed.push(more);
                    }
                    self.land(landed, &mut flight)?;
                }
                Wake::Synced(synced) => self.synced(synced, &mut flight)?,
            }
            self.start_sync(&mut flight)?;
        }
        if let Some(halt) = flight.halt {
            return Err(halt);
        }
        if let Some(delay) = flight.backoff {
            if self.shutdown.sleep(delay).await {
                return Err(Halt::Stop);
            }
        }
        Ok(())
    }

    /// Whether the loop must stop starting batches, so that what it waits for is waited for
    /// with none in flight.
    fn wants_a_wait(&self) -> bool {
        let sleep_ms = self.sleep_ms();
        self.shutdown.requested()
            || self.sentinel.as_ref().is_some_and(|s| s.is_set())
            || self.control.as_ref().is_some_and(|c| c.has_news())
            || !self.throttle.pause_before(sleep_ms).is_zero()
            || self.throttle.due()
            || self.progress.estimate_due()
    }

    /// Starts planning a batch on a connection of its own ([`planning`]).
    async fn launch_plan(
        &mut self,
        mut order: PlanOrder,
        queries: &Arc<Queries>,
        flight: &mut Flight,
    ) {
        order.rows = self.sizing.rows(order.rows, order.rows_set_live);
        let cross = self.config.archive.endpoint.is_some();
        match self.servers.take_source(order.now_unix_us).await {
            Ok(conn) => flight.planning = Some(planning(conn, queries.clone(), order, cross)),
            Err(halt) => flight.stop(halt),
        }
    }

    /// Records a planned batch (`BatchPlanned`, unsynced) and starts its statements on the
    /// connection its planning read took, its rows locked (and, with the archive on its own
    /// server, on an archive connection of its own); or, when no matching row is left,
    /// finishes the run once nothing of it is pending.
    async fn planned(&mut self, planned: Planned, queries: &Arc<Queries>, flight: &mut Flight) {
        let Planned {
            order,
            conn,
            started,
            result,
        } = planned;
        self.plan_times.add_since(started);
        let (upper, rows_planned, locked) = match result {
            Ok(Some(planned)) => planned,
            Ok(None) => {
                self.servers.give_back(conn, order.now_unix_us);
                flight.exhausted = true;
                // With no batch of ours planned and not yet committed (pending ones are
                // started before any plan), the run is done; else it finishes, from the
                // one-batch loop, once they are.
                if flight.busy.is_empty() {
                    if let Err(halt) = self.finish_run(order.run_id) {
                        flight.stop(halt);
                    }
                } else {
                    // A batch waiting for its sync is in `busy` but no longer in `flying`:
                    // finishing when nothing flies wrote RunFinished before its commit.
                    tracing::debug!(
                        "no matching row left; the run finishes once batches {:?} commit",
                        flight.busy
                    );
                }
                return;
            }
            Err(error) => return flight.stop(error.into()),
        };
        // With the archive on its own server, the batch's archive connection, had before the
        // plan is recorded: without one, the planning transaction is dropped with its
        // connection (the server rolls it back) and nothing was planned.
        let archive = match self.config.archive.endpoint {
            None => None,
            Some(_) => match self.servers.take_archive().await {
                Ok(archive) => Some(archive),
                Err(halt) => return flight.stop(halt),
            },
        };
        let event = Event::BatchPlanned(BatchPlanned {
            batch_id: order.batch_id,
            run_id: order.run_id,
            lower: order.after.clone(),
            upper: upper.clone(),
            rows_planned,
        });
        // On error the connection is dropped with its transaction (the server rolls it back).
        if let Err(error) = self.journal.append(event, Durability::Buffered) {
            return flight.stop(error.into());
        }
        let batch = BatchOrder {
            batch_id: order.batch_id,
            step: Step::Copy,
            lower: order.after,
            upper,
            now_unix_us: order.now_unix_us,
            attempt: 1,
            claim: None,
        };
        let began = if locked.is_some() {
            started
        } else {
            Instant::now()
        };
        let batch_id = batch.batch_id;
        let statements = self.planned_statements((conn, archive), queries, batch, locked, began);
        flight.launch(batch_id, statements);
    }

    /// A planned batch's statements: on the source connection of its planning read, and on
    /// `archive` when the archive has its own server.
    fn planned_statements(
        &self,
        (conn, archive): (Conn, Option<Conn>),
        queries: &Arc<Queries>,
        batch: BatchOrder,
        locked: Option<Locked>,
        began: Instant,
    ) -> Flying {
        let queries = queries.clone();
        match (archive, locked) {
            (Some(archive), locked) => {
                let rows = match locked {
                    Some(Locked::Rows(rows)) => Some(rows),
                    _ => None,
                };
                let how = (began, self.servers.accepts, self.servers_at_once());
                cross_statements((conn, archive), queries, batch, rows, how)
            }
            (None, locked) => {
                let keys = match locked {
                    Some(Locked::Keys(keys)) => Some(keys),
                    _ => None,
                };
                statements(conn, queries, batch, keys, began)
            }
        }
    }

    /// Starts a pending batch (run again after a failure) on a connection of its own.
    async fn launch_batch(
        &mut self,
        order: BatchOrder,
        queries: &Arc<Queries>,
        flight: &mut Flight,
    ) {
        let source = match self.servers.take_source(order.now_unix_us).await {
            Ok(conn) => conn,
            Err(halt) => return flight.stop(halt),
        };
        let (batch_id, queries) = (order.batch_id, queries.clone());
        let statements = match self.config.archive.endpoint {
            None => statements(source, queries, order, None, Instant::now()),
            Some(_) => {
                let archive = match self.servers.take_archive().await {
                    Ok(archive) => archive,
                    Err(halt) => return flight.stop(halt),
                };
                let how = (Instant::now(), self.servers.accepts, self.servers_at_once());
                cross_statements((source, archive), queries, order, None, how)
            }
        };
        flight.launch(batch_id, statements);
    }

    /// Records what the batches that landed together did: the claims of those ready to
    /// commit, appended and queued for the next sync ([`Engine::start_sync`]) before their
    /// `COMMIT`s are sent; the outcome of those committed or failed. `Err` only for the log: the batches still in flight are then
    /// dropped with their connections, and the server rolls their transactions back.
    fn land(&mut self, landed: Vec<Landing>, flight: &mut Flight) -> Result<(), Halt> {
        for landing in landed {
            let Landing {
                order,
                conn,
                archive,
                copied,
                accepts,
                began,
                times,
                outcome,
            } = landing;
            self.batch_times.add(&times);
            // A batch's first landing is its statements' (its commit's comes later).
            flight.in_statements.remove(&order.batch_id);
            if let Some(accepts) = accepts {
                let known = &mut self.servers.accepts;
                known.load_data &= accepts.load_data;
                known.delete_returning &= accepts.delete_returning;
            }
            // The archive's commit of the copy, recorded before what follows it (the claim,
            // or the failure, whose sync makes it durable).
            self.record_copied(order.batch_id, copied)?;
            match outcome {
                Outcome::Ready(result) => {
                    // The size of the batch planned next learns from this one now, not at
                    // its commit: the next one is planned while this one waits for its sync.
                    let conflicts = u64::try_from(result.conflicts.len()).expect("fits in u64");
                    let rows = result.rows_deleted + conflicts;
                    self.sizing.batch_done(rows, began.elapsed());
                    self.journal
                        .append(committing(&order, &result), Durability::Buffered)?;
                    let conn = conn.expect("a ready batch keeps its connection");
                    flight.queued.push(Ready {
                        order,
                        conn,
                        archive,
                        result,
                        began,
                    });
                }
                Outcome::Committed(result) => {
                    flight.busy.remove(&order.batch_id);
                    self.record_done(order.batch_id, &result)?;
                    let took = began.elapsed();
                    self.metrics.observe_batch(took);
                    self.throttle.batch_finished(took);
                    let conn = conn.expect("a committed batch keeps its connection");
                    self.servers.give_back(conn, order.now_unix_us);
                    if let Some(archive) = archive {
                        self.servers.give_back_archive(archive);
                    }
                    self.show_progress();
                }
                Outcome::Failed(error) => {
                    flight.busy.remove(&order.batch_id);
                    self.metrics.observe_batch(began.elapsed());
                    self.sizing.batch_failed(began.elapsed());
                    // Idle connections may be as broken as this one was.
                    self.servers.drop_all();
                    match self.record_failed(&order, error)? {
                        AfterFailure::Wait(delay) => {
                            flight.backoff = Some(flight.backoff.map_or(delay, |d| d.max(delay)));
                        }
                        AfterFailure::GoOn => {}
                        AfterFailure::Stop(error) => flight.stop(Halt::Fail(error)),
                    }
                }
            }
        }
        Ok(())
    }

    /// The sync in progress ended: the claims it covers are durable, and their batches commit.
    fn synced(
        &mut self,
        synced: Result<SyncOutcome, tokio::task::JoinError>,
        flight: &mut Flight,
    ) -> Result<(), Halt> {
        flight.sync = None;
        let outcome = synced
            .map_err(|e| Halt::Fail(anyhow::anyhow!("the WAL sync did not end: {e}").into()))?;
        self.journal.finish_sync(outcome)?;
        for ready in std::mem::take(&mut flight.syncing) {
            flight.flying.push(commit(ready));
        }
        Ok(())
    }

    /// Group commit: when no sync is in progress and claims wait for one, begins a sync of
    /// everything appended so far on a blocking thread, so that the batches in flight go on
    /// (and land, and queue their claims for the next sync) while it runs. The batches it
    /// covers commit when it ends.
    fn start_sync(&mut self, flight: &mut Flight) -> Result<(), Halt> {
        if flight.sync.is_some() || flight.queued.is_empty() {
            return Ok(());
        }
        let pending = self.journal.begin_sync()?;
        flight.syncing = std::mem::take(&mut flight.queued);
        flight.sync = Some(tokio::task::spawn_blocking(move || pending.run()));
        Ok(())
    }
}

/// What the loop waits for: a batch landing, or the sync in progress ending.
enum Wake {
    Landed(Box<Landing>),
    Planned(Box<Planned>),
    Synced(Result<SyncOutcome, tokio::task::JoinError>),
}

impl Flight {
    /// Waits for the next batch to land or the sync in progress to end; there must be one.
    async fn next_event(&mut self) -> Wake {
        let (flying, sync, planning) = (&mut self.flying, &mut self.sync, &mut self.planning);
        tokio::select! {
            Some(landed) = flying.next(), if !flying.is_empty() => Wake::Landed(Box::new(landed)),
            planned = async { planning.as_mut().expect("checked").await }, if planning.is_some() => {
                *planning = None;
                Wake::Planned(Box::new(planned))
            }
            synced = async { sync.as_mut().expect("checked").await }, if sync.is_some() => {
                Wake::Synced(synced)
            }
        }
    }

    /// Puts a batch's statements in flight.
    fn launch(&mut self, batch_id: u64, statements: Flying) {
        self.busy.insert(batch_id);
        self.in_statements.insert(batch_id);
        self.flying.push(statements);
    }

    /// Stops starting batches; `halt` ends the run once those in flight have landed.
    fn stop(&mut self, halt: Halt) {
        self.halt.get_or_insert(halt);
    }
}
