//! The archive job: replays the journal, then loops "ask the state machine what next, do it
//! against the server, append the event" until the run is done or asked to stop. The engine
//! executes [`Action`]s and decides nothing the state machine should: each action carries its
//! key range, the run's pinned `NOW()`, its rows and attempt number.
//!
//! **Every event that precedes an irreversible step is durable before that step**: a batch's
//! `BatchPlanned` is synced before its transaction starts. Events that follow a step
//! (`BatchDeleted`, `ConflictFound`) are appended unsynced and made durable by the next sync; if
//! a crash loses them, replay sees the batch as planned and runs its transaction again, which is
//! idempotent (it copies only what the archive lacks and deletes only rows with an identical
//! archive copy).
//!
//! - `servers`: the connections, reconnection, the pinned `NOW()`.
//! - `batch`: one batch, on one server or two.
//! - [`backoff`]: the one waiting rule; [`shutdown`]: the stop request every wait listens to.

pub mod backoff;
mod batch;
#[cfg(feature = "crash-hook")]
pub mod crash_hook;
pub mod progress;
pub mod sentinel;
mod servers;
pub mod shutdown;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::JobConfig;
use crate::db::{self, sql::Queries, DbError};
use crate::error::Error;
use crate::event::{ErrorClass, Event, LogCreated, RunFinished, RunOutcome, RunStarted};
use crate::journal::{self, Durability, Journal, JournalError};
use crate::state::{Action, Counts, PlanOrder, State};

use self::backoff::Backoff;
use self::progress::Progress;
pub use self::sentinel::Sentinel;
use self::servers::Servers;
pub use self::shutdown::{Shutdown, ShutdownTrigger};

/// Most consecutive failures of a step that is not a batch (planning, starting or finishing a
/// run) that are retried; then the run stops with the last error. Each retry reconnects within
/// `reconnect_timeout_s`, so this bounds a server that accepts connections and keeps failing
/// the same read (query killed, shutting down) without ever going away.
const STEP_FAILURES_MAX: u32 = 20;

/// How a run invocation ended; the CLI maps it to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// All work done; nothing needs attention.
    Done,
    /// Stopped on request (signal, time window) with work left; the next run resumes.
    Stopped,
    /// Done, but conflicts were found or batches are parked.
    Attention,
}

/// Why a step did not complete: a stop request interrupted a wait, or an error.
#[derive(Debug)]
pub enum Halt {
    /// A stop was requested while waiting; nothing was left half-done.
    Stop,
    /// The step failed.
    Fail(Error),
}

impl From<Error> for Halt {
    fn from(error: Error) -> Halt {
        Halt::Fail(error)
    }
}

impl From<DbError> for Halt {
    fn from(error: DbError) -> Halt {
        Halt::Fail(error.into())
    }
}

impl From<JournalError> for Halt {
    fn from(error: JournalError) -> Halt {
        Halt::Fail(error.into())
    }
}

/// Wall clock, microseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The live job: the journal, the connections, the statements.
struct Engine<'a> {
    /// The job.
    config: &'a JobConfig,
    /// Its statements, from the pre-flight.
    queries: Queries,
    /// The log and the state, appended together.
    journal: Journal,
    /// The connections.
    servers: Servers<'a>,
    /// Stop requests; interrupts waits.
    shutdown: Shutdown,
    /// The stop and pause flag files, checked before every step.
    sentinel: Option<Sentinel>,
    /// What the watcher sees: a bar on a terminal, lines in a log.
    progress: Progress,
}

impl Engine<'_> {
    /// Does one action. `Ok` when the action's event was recorded (or, for a batch, its
    /// failure was recorded and the run goes on).
    async fn step(&mut self, action: Action) -> Result<(), Halt> {
        match action {
            Action::CreateLog => {
                let event = Event::LogCreated(LogCreated {
                    job: self.config.identity(),
                    created_unix_us: now_unix_us(),
                });
                self.journal.append(event, Durability::Durable)?;
            }
            Action::StartRun { run_id } => self.start_run(run_id).await?,
            Action::PlanNext(order) => {
                let pause = std::time::Duration::from_millis(self.config.batching.sleep_ms.into());
                if !pause.is_zero() && self.shutdown.sleep(pause).await {
                    return Err(Halt::Stop);
                }
                self.plan_next(order).await?;
            }
            Action::FinishRun { run_id } => self.finish_run(run_id)?,
            Action::ExecuteBatch(order) => self.execute(order).await?,
        }
        Ok(())
    }

    async fn start_run(&mut self, run_id: u64) -> Result<(), Halt> {
        let now = now_unix_us();
        let bound = db::key_bound(self.servers.source(now).await?, &self.queries).await?;
        let event = Event::RunStarted(RunStarted {
            run_id,
            now_unix_us: now,
            key_bound: bound,
            batch_rows: self.config.batching.rows,
            attempts_max: self.config.batching.attempts_max,
            started_unix_us: now,
        });
        self.journal.append(event, Durability::Durable)?;
        tracing::info!("started run {run_id}");
        Ok(())
    }

    async fn plan_next(&mut self, order: PlanOrder) -> Result<(), Halt> {
        let conn = self.servers.source(order.now_unix_us).await?;
        let planned = db::plan(
            conn,
            &self.queries,
            order.after.as_ref(),
            &order.bound,
            order.rows,
        )
        .await?;
        let Some((upper, rows_planned)) = planned else {
            return self.finish_run(order.run_id);
        };
        if self.progress.estimate_due() {
            self.estimate_rows_left(&order).await;
        }
        let event = Event::BatchPlanned(crate::event::BatchPlanned {
            batch_id: order.batch_id,
            run_id: order.run_id,
            lower: order.after,
            upper,
            rows_planned,
        });
        self.journal.append(event, Durability::Durable)?;
        Ok(())
    }

    /// Asks the server how many matching rows the run has left, for the ETA: first a bounded
    /// exact count, then (if the count was refused or too slow) the optimizer's estimate. A
    /// failure costs only the ETA: it is logged and the run goes on.
    async fn estimate_rows_left(&mut self, order: &PlanOrder) {
        let moved = self
            .journal
            .state()
            .open_run()
            .map_or(0, |run| run.counts.rows_deleted);
        let count_first = !self.progress.has_estimate();
        let Ok(conn) = self.servers.source(order.now_unix_us).await else {
            return;
        };
        let (after, bound) = (order.after.as_ref(), &order.bound);
        let mut rows_left = progress::RowsLeft::Unknown;
        if count_first {
            match db::count_rows(conn, &self.queries, after, bound).await {
                Ok(rows) => rows_left = progress::RowsLeft::Counted(rows),
                Err(error) => tracing::debug!("no count of the rows left ({error})"),
            }
        }
        if rows_left == progress::RowsLeft::Unknown {
            match db::estimate_rows(conn, &self.queries, after, bound).await {
                Ok(Some(rows)) => rows_left = progress::RowsLeft::Estimated(rows),
                Ok(None) => tracing::debug!("the plan gives no estimate of the rows left"),
                Err(error) => tracing::debug!("no estimate of the rows left ({error})"),
            }
        }
        self.progress.estimated(rows_left, moved);
    }

    /// Shows where the open run stands.
    fn show_progress(&mut self) {
        if let Some(run) = self.journal.state().open_run() {
            let (id, counts, rows) = (run.run_id, run.counts, run.batch_rows);
            self.progress
                .update(id, counts.rows_deleted, counts.batches_done, rows);
        }
    }

    fn finish_run(&mut self, run_id: u64) -> Result<(), Halt> {
        let event = Event::RunFinished(RunFinished {
            run_id,
            outcome: RunOutcome::Completed,
            finished_unix_us: now_unix_us(),
        });
        self.journal.append(event, Durability::Durable)?;
        tracing::info!("finished run {run_id}");
        Ok(())
    }

    /// Whether a step that failed with `halt` may be tried again after a pause: a lost
    /// connection while planning or reconnecting changed nothing. Anything else stops the run.
    fn retryable(halt: &Halt) -> bool {
        matches!(halt, Halt::Fail(Error::Db(error)) if error.class() == ErrorClass::Transient)
    }

    /// The loop. One invocation resumes an unfinished run, or starts one; it never starts a
    /// second.
    async fn run_loop(&mut self) -> Result<RunEnd, Error> {
        let mut finished_a_run = false;
        let mut failures = 0;
        loop {
            if self.shutdown.requested() {
                return Ok(ended(finished_a_run));
            }
            if let Some(sentinel) = &self.sentinel {
                if sentinel.check(&mut self.shutdown).await == sentinel::Verdict::Stop {
                    return Ok(ended(finished_a_run));
                }
            }
            let action = self.journal.state().next_action();
            if finished_a_run && matches!(action, Action::StartRun { .. }) {
                return Ok(RunEnd::Done);
            }
            match self.step(action).await {
                Ok(()) => {
                    failures = 0;
                    self.show_progress();
                }
                Err(Halt::Stop) => return Ok(ended(finished_a_run)),
                Err(halt) if Self::retryable(&halt) && failures < STEP_FAILURES_MAX => {
                    if let Halt::Fail(error) = &halt {
                        tracing::warn!("{error}; retrying");
                    }
                    self.servers.drop_all();
                    failures += 1;
                    if self.shutdown.sleep(Backoff::RETRY.delay(failures)).await {
                        return Ok(ended(finished_a_run));
                    }
                }
                Err(Halt::Fail(error)) => return Err(error),
            }
            let state = self.journal.state();
            if state.open_run().is_none() && state.last_run().is_some() {
                finished_a_run = true;
            }
        }
    }
}

/// How a loop stopped by request ended: done if it finished the run it had.
fn ended(finished_a_run: bool) -> RunEnd {
    if finished_a_run {
        RunEnd::Done
    } else {
        RunEnd::Stopped
    }
}

/// Reads an existing log read-only and refuses it if it belongs to another job: opening it
/// for write may cut a torn tail, and another job's log must not be touched at all. Costs one
/// extra replay (about 0.1 s per million records).
fn check_existing_log(config: &JobConfig) -> Result<(), Error> {
    if journal::has_log(&config.wal_dir) {
        let state = Journal::read(&config.wal_dir)?;
        journal::check_identity(&state, &config.identity(), &config.wal_dir)?;
    }
    Ok(())
}

/// `Ok(None)` for a wait a stop request cut short.
fn unless_stopped<T>(result: Result<T, Halt>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Halt::Stop) => Ok(None),
        Err(Halt::Fail(error)) => Err(error),
    }
}

/// What `run` needs besides the job.
pub struct RunOptions {
    /// Stop requests (signals, the time window).
    pub shutdown: Shutdown,
    /// Whether the run may compact the log before it starts, when it holds more than
    /// `compact_above_records` records (`--no-compact` says no).
    pub compact: bool,
    /// The stop and pause flag files, if the caller has a job file to put them beside.
    pub sentinel: Option<Sentinel>,
    /// Where progress goes.
    pub display: progress::Display,
    /// Called once when the job is about to move rows: see [`OnReady`].
    pub on_ready: Option<OnReady>,
}

/// What a run calls once it is about to move rows, given the state as replayed: after the
/// pre-flight, with the log open (its lock held) and the connections idle, no transaction
/// open; the run waits for the returned future. The CLI's `on_start` hook.
pub type OnReady = Box<
    dyn FnOnce(&State) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send,
>;

/// Compacts the log if it holds more records than the job's threshold (and `allowed`).
fn compact_if_large(journal: Journal, config: &JobConfig, allowed: bool) -> Result<Journal, Error> {
    let threshold = u64::from(config.history.compact_above_records);
    if !allowed || threshold == 0 || journal.records() <= threshold {
        return Ok(journal);
    }
    let (journal, report) = journal.compact(config.history.keep_runs, now_unix_us())?;
    tracing::warn!(
        "compacted the log before the run ({} records, above compact_above_records = {threshold}): {}",
        report.records_before,
        report.lines().join("; ")
    );
    Ok(journal)
}

/// Connects to the servers (patiently), runs the pre-flight, and only then opens the journal
/// (compacting it first if it grew past the job's threshold). `None` if a stop was requested
/// while connecting.
async fn prepare(config: &JobConfig, options: RunOptions) -> Result<Option<Engine<'_>>, Error> {
    let RunOptions {
        mut shutdown,
        compact,
        sentinel,
        display,
        on_ready: _,
    } = options;
    check_existing_log(config)?;
    let window = std::time::Duration::from_secs(config.sessions.reconnect_timeout_s.into());
    let lock_wait = config.sessions.lock_wait_timeout_s;
    let connecting =
        servers::connect_patiently(&config.source.endpoint, lock_wait, window, &mut shutdown);
    let Some(mut source) = unless_stopped(connecting.await)? else {
        return Ok(None);
    };
    let mut archive = None;
    if let Some(endpoint) = &config.archive.endpoint {
        let connecting = servers::connect_patiently(endpoint, lock_wait, window, &mut shutdown);
        let Some(conn) = unless_stopped(connecting.await)? else {
            return Ok(None);
        };
        archive = Some(conn);
    }
    let queries = db::preflight::check(&mut source, archive.as_mut(), config).await?;
    // Pre-flight passed: only now may anything be written.
    #[allow(unused_mut)] // without the crash hook, nothing is added
    let mut journal = Journal::open(&config.wal_dir)?;
    journal::check_identity(journal.state(), &config.identity(), &config.wal_dir)?;
    #[cfg(feature = "crash-hook")]
    if let Some(hook) = crash_hook::CrashHook::from_env() {
        journal.observe(Box::new(hook));
    }
    let journal = compact_if_large(journal, config, compact)?;
    Ok(Some(Engine {
        config,
        queries,
        journal,
        servers: Servers::new(config, source, archive, shutdown.clone()),
        shutdown,
        sentinel,
        progress: Progress::new(display),
    }))
}

/// Runs the job until its run is finished, or a stop is requested. See the module doc.
/// Returns how it ended and the state it left, for the caller's report.
pub async fn run(config: &JobConfig, mut options: RunOptions) -> Result<RunReport, Error> {
    let started = std::time::Instant::now();
    let on_ready = options.on_ready.take();
    let Some(mut engine) = prepare(config, options).await? else {
        return Ok(RunReport {
            end: RunEnd::Stopped,
            state: State::new(),
            moved: Counts::default(),
            elapsed: started.elapsed(),
        });
    };
    if let Some(on_ready) = on_ready {
        on_ready(engine.journal.state()).await;
    }
    let before = *engine.journal.state().totals();
    let end = engine.run_loop().await;
    engine.progress.finish();
    let end = end?;
    let state = engine.journal.close()?;
    let end = match end {
        RunEnd::Stopped => RunEnd::Stopped,
        _ if needs_attention(&state) => RunEnd::Attention,
        _ => RunEnd::Done,
    };
    Ok(RunReport {
        end,
        moved: state.totals().since(&before),
        state,
        elapsed: started.elapsed(),
    })
}

/// How a run invocation ended and what it did, for the caller's report.
#[derive(Debug)]
pub struct RunReport {
    /// How it ended.
    pub end: RunEnd,
    /// The state it left.
    pub state: State,
    /// What this invocation added to the log's totals (rows moved, batches done, conflicts).
    pub moved: Counts,
    /// Wall time of this invocation.
    pub elapsed: std::time::Duration,
}

impl RunReport {
    /// One line saying what this invocation did.
    pub fn line(&self) -> String {
        let m = &self.moved;
        let seconds = self.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            format!(", {:.0} rows/s", m.rows_deleted as f64 / seconds)
        } else {
            String::new()
        };
        let run = self
            .state
            .last_run()
            .map_or(String::new(), |run| format!(" (run {})", run.run_id));
        format!(
            "moved {} rows in {} batches{run}, {} already archived, {} kept for conflicts, in {seconds:.1} s{rate}",
            m.rows_deleted, m.batches_done, m.rows_already, m.rows_conflicting
        )
    }
}

/// Whether the log holds something an operator must look at: parked batches, or conflicts
/// found by the latest run (conflict rows stay in the source, so every run finds them again).
pub fn needs_attention(state: &State) -> bool {
    let parked = state.parked_batches().next().is_some();
    let conflicts = state
        .last_run()
        .is_some_and(|run| run.counts.rows_conflicting > 0);
    parked || conflicts
}
