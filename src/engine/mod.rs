//! The archive job: replays the journal, then loops "ask the state machine what next, do it
//! against the server, append the event" until the run is done or asked to stop. The engine
//! executes [`Action`]s and decides nothing the state machine should: each action carries its
//! key range, the run's pinned `NOW()`, its rows and attempt number.
//!
//! **Every event that precedes an irreversible step is durable before that step**: a batch's
//! `BatchCommitting` (with the `BatchPlanned` appended before it) is synced before its source
//! `COMMIT` is sent, `BatchCopied` before the two-server batch deletes. Events that follow a
//! commit (`BatchDeleted`, `ConflictFound`) are appended unsynced and made durable by the next
//! sync; if a crash loses them, replay sees the batch as planned and runs its transaction again,
//! which is idempotent (it copies only what the archive lacks and deletes only rows with an
//! identical archive copy) and finds out from the `BatchCommitting`'s witness whether the lost
//! commit happened, so its counts are not lost either. One sync per batch on one server.
//!
//! - `servers`: the connections, reconnection, the pinned `NOW()`.
//! - `batch`: one batch, on one server or two.
//! - [`backoff`]: the one waiting rule; [`shutdown`]: the stop request every wait listens to.
//! - [`control`]: the control socket (`archiver ctl`, `curl --unix-socket`), obeyed between
//!   steps.
//! - [`metrics`]: the Prometheus metrics, moved by the journal's observer; [`textfile`]: them
//!   as a node_exporter textfile; [`stats`]: where the time went (`run --statistics`).
//! - [`throttle`]: what holds the job between batches (pacing, replica lag, the source's load).

pub mod backoff;
mod batch;
pub mod control;
#[cfg(feature = "crash-hook")]
pub mod crash_hook;
pub mod metrics;
mod parallel;
pub mod progress;
pub mod sentinel;
mod servers;
pub mod shutdown;
pub mod sizing;
pub mod stats;
pub mod textfile;
pub mod throttle;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::{JobConfig, Refusal};
use crate::db::{self, sql::Queries, BatchTimes, DbError, Tally};
use crate::error::Error;
use crate::event::{ErrorClass, Event, LogCreated, RunFinished, RunOutcome, RunStarted};
use crate::journal::{self, Durability, Journal, JournalError};
use crate::state::{Action, BatchOrder, Counts, PlanOrder, State};

use self::backoff::Backoff;
use self::metrics::{Metrics, MetricsObserver, Outcome};
use self::progress::Progress;
pub use self::sentinel::Sentinel;
use self::servers::Servers;
pub use self::shutdown::{Shutdown, ShutdownTrigger};
use self::sizing::{Sizing, SizingConfig};
use self::stats::Statistics;
use self::textfile::Textfile;
pub use self::throttle::{Throttle, ThrottleHandle, ThrottleKind, ThrottleState, ThrottleTotals};

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
    /// The `[metrics] listen` port's server, stopped with the engine.
    _metrics_port: Option<AbortOnDrop>,
    /// The control socket, if served. First, so that it is dropped (its socket removed) before
    /// the journal releases the WAL lock.
    control: Option<control::Control>,
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
    /// The job's metrics (the journal's observer moves the counts).
    metrics: Arc<Metrics>,
    /// Time spent planning (the run's key bound and each batch's planning read).
    plan_times: Tally,
    /// The server's share of the batches, by step.
    batch_times: BatchTimes,
    /// What holds the job between batches: pacing, replica lag, the source's load.
    throttle: Throttle,
    /// How many rows the next batch plans (`batch_time_ms`), fed each batch's time.
    sizing: Sizing,
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
                // The pause the run's order carries when it was changed live, else the job's,
                // plus `sleep_coef` times the last batch; a control command cuts it short.
                let sleep_ms = order.sleep_ms.unwrap_or(self.config.batching.sleep_ms);
                if let Some(max_lag_s) = order.max_lag_s {
                    (self.throttle.set_max_lag_s(max_lag_s)).map_err(|e| Halt::Fail(e.into()))?;
                }
                match self
                    .wait_between_batches(self.throttle.pause_before(sleep_ms))
                    .await
                {
                    Waited::Stop => return Err(Halt::Stop),
                    // A control command came: the loop obeys it and asks for the next action
                    // again (its settings may have changed).
                    Waited::Interrupted => return Ok(()),
                    Waited::Elapsed => {
                        self.hold_while_throttled(&order).await?;
                        // Batches are planned and run in the pipeline of `engine::parallel`
                        // (one at a time by default, the next starting while the previous one
                        // waits for its sync and commit).
                        return self.run_parallel(order).await;
                    }
                }
            }
            Action::FinishRun { run_id } => self.finish_run(run_id)?,
            Action::ExecuteBatch(order) => self.execute_timed(order).await?,
        }
        Ok(())
    }

    /// Runs a batch and tells the throttle how long it took (for `sleep_coef`).
    async fn execute_timed(&mut self, order: BatchOrder) -> Result<(), Halt> {
        let started = std::time::Instant::now();
        self.execute(order).await?;
        self.throttle.batch_finished(started.elapsed());
        Ok(())
    }

    /// The job's pause between batches in milliseconds: the one set live for this run, else
    /// the job file's `sleep_ms`.
    fn sleep_ms(&self) -> u32 {
        (self.journal.state().open_run())
            .and_then(|run| run.live.sleep_ms)
            .unwrap_or(self.config.batching.sleep_ms)
    }

    /// Whether a two-server batch's copy into the archive and its source delete run at the
    /// same time (`db::copy_and_delete`): yes unless the job is paced (`sleep_ms`,
    /// `sleep_coef`). A paced job has chosen the application over its own speed, and the
    /// two servers at once cost an application writing to the source more than one after the
    /// other (measured with both servers on one 2-core machine: ARCHITECTURE, "Speed,
    /// measured"). The load-based throttles (`max_lag_s`, `max_load`) pause, they do not pace:
    /// between their pauses the job runs at full speed.
    fn servers_at_once(&self) -> bool {
        !self.throttle.paces(self.sleep_ms())
    }

    /// The pause before planning a batch: cut short by a stop request, or by a control command
    /// (which the loop obeys before planning).
    async fn wait_between_batches(&mut self, pause: std::time::Duration) -> Waited {
        if pause.is_zero() {
            return Waited::Elapsed;
        }
        let started = Instant::now();
        let sleeping = self.shutdown.sleep(pause);
        let waited = match &mut self.control {
            None => Some(sleeping.await),
            Some(control) => tokio::select! {
                stopped = sleeping => Some(stopped),
                () = control.command_arrives() => None,
            },
        };
        let slept = started.elapsed();
        self.metrics.add_throttle("sleep", slept.as_secs_f64());
        self.throttle.paced(slept);
        let Some(stopped) = waited else {
            return Waited::Interrupted;
        };
        if stopped {
            Waited::Stop
        } else {
            Waited::Elapsed
        }
    }

    async fn start_run(&mut self, run_id: u64) -> Result<(), Halt> {
        let now = now_unix_us();
        let conn = self.servers.source(now).await?;
        let started = Instant::now();
        let bound = db::key_bound(conn, &self.queries).await;
        self.plan_times.add_since(started);
        let bound = bound?;
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

    /// Asks the server how many matching rows the run has left, for the ETA: first a bounded
    /// exact count, then (if the count was refused or too slow) the optimizer's estimate. A
    /// failure costs only the ETA: it is logged and the run goes on.
    async fn estimate_rows_left(&mut self, order: &PlanOrder) {
        let moved = self
            .journal
            .state()
            .open_run()
            .map_or(0, |run| run.counts.rows_deleted);
        let count_first = self.progress.count_turn();
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

    /// Records that this invocation continues (`starting`) or leaves (`!starting`) a run that
    /// is open, so the log knows the time the run actually ran. A run this invocation starts
    /// or finishes is marked by `RunStarted` and `RunFinished` themselves. Buffered: the next
    /// sync, or closing the journal, makes it durable; losing it loses only a span of time.
    fn mark_invocation(&mut self, starting: bool) -> Result<(), Error> {
        let Some(run) = self.journal.state().open_run() else {
            return Ok(());
        };
        let (run_id, at) = (run.run_id, now_unix_us());
        let event = if starting {
            Event::RunResumed(crate::event::RunResumed {
                run_id,
                resumed_unix_us: at,
            })
        } else {
            Event::RunPaused(crate::event::RunPaused {
                run_id,
                paused_unix_us: at,
            })
        };
        self.journal.append(event, Durability::Buffered)?;
        Ok(())
    }

    /// Waits while the throttle holds the job (replica lag, the source's load), and reports
    /// the waits and the replicas' lag to the metrics and the progress display.
    async fn hold_while_throttled(&mut self, order: &PlanOrder) -> Result<(), Halt> {
        let before = self.throttle.totals();
        let source = self.servers.source(order.now_unix_us).await?;
        let held = self.throttle.before_batch(source, &mut self.shutdown).await;
        let after = self.throttle.totals();
        for kind in [ThrottleKind::ReplicaLag, ThrottleKind::Load] {
            let waited = after.of(kind).saturating_sub(before.of(kind));
            self.metrics
                .add_throttle(kind.label(), waited.as_secs_f64());
        }
        for replica in self.throttle.state().replicas {
            if let Some(lag) = replica.lag_s {
                self.metrics.set_replica_lag_seconds(&replica.server, lag);
            }
        }
        held
    }

    /// Shows where the open run stands.
    fn show_progress(&mut self) {
        if let Some(run) = self.journal.state().open_run() {
            let rows = self.sizing.current().unwrap_or(run.batch_rows_now());
            let (id, counts) = (run.run_id, run.counts);
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
                if let Some(control) = &self.control {
                    control.note_pause_file(self.journal.state(), sentinel);
                }
                if sentinel.check(&mut self.shutdown).await == sentinel::Verdict::Stop {
                    return Ok(ended(finished_a_run));
                }
            }
            if let Some(control) = &mut self.control {
                let verdict = control.obey(&mut self.journal, &mut self.shutdown).await?;
                if verdict == sentinel::Verdict::Stop {
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

/// How the pause between batches ended.
enum Waited {
    /// It ran its course.
    Elapsed,
    /// A stop was requested.
    Stop,
    /// A control command arrived.
    Interrupted,
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
/// extra replay (about 0.1 s per million records). Returns the state it replays to (empty
/// without a log): the history the metrics start from.
fn check_existing_log(config: &JobConfig) -> Result<State, Error> {
    if !journal::has_log(&config.wal_dir) {
        return Ok(State::new());
    }
    let state = Journal::read(&config.wal_dir)?;
    journal::check_identity(&state, &config.identity(), &config.wal_dir)?;
    Ok(state)
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
    /// Serve the control socket in the WAL directory (`archiver ctl`), its stop requests going
    /// through this trigger (the one the signals use); `None`: no socket.
    pub control: Option<ShutdownTrigger>,
    /// Called once when the job is about to move rows: see [`OnReady`].
    pub on_ready: Option<OnReady>,
}

/// What a run calls once it is about to move rows, given the state as replayed: after the
/// pre-flight, with the log open (its lock held) and the connections idle, no transaction
/// open; the run waits for the returned future. The CLI's `on_start` hook.
pub type OnReady = Box<
    dyn FnOnce(&State) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send,
>;

/// The TCP port of `[metrics] listen`, bound before anything is written: a port that cannot be
/// bound refuses the run (exit 64) with nothing done.
fn bind_metrics_port(config: &JobConfig) -> Result<Option<tokio::net::TcpListener>, Error> {
    let Some(address) = config.metrics.listen else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(address)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| {
            Refusal(format!(
                "cannot serve metrics on [metrics] listen = \"{address}\": {e}; choose a free port, or remove the key"
            ))
        })?;
    tracing::info!("metrics: http://{address}/metrics");
    Ok(Some(listener))
}

/// What shows the run to people: the progress display (told what the throttle holds it for)
/// and, with a trigger, the control socket (bound now that the log's lock is held).
fn watchers(
    config: &JobConfig,
    journal: &Journal,
    throttle: &Throttle,
    metrics: &Arc<Metrics>,
    display: progress::Display,
    control: Option<ShutdownTrigger>,
) -> Result<(Progress, Option<control::Control>), Error> {
    let mut progress = Progress::new(display);
    let holding = throttle.handle();
    progress.watch_waits(move || holding.state().reason);
    let control = match control {
        Some(trigger) => {
            let views = control::Views {
                metrics: metrics.clone(),
                throttle: throttle.handle(),
                progress: progress.shared(),
            };
            Some(control::start(config, journal.state(), trigger, views)?)
        }
        None => None,
    };
    Ok((progress, control))
}

/// A task stopped when its owner goes (the metrics port's server).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

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
async fn prepare(
    config: &JobConfig,
    options: RunOptions,
    metrics: Arc<Metrics>,
) -> Result<Option<Engine<'_>>, Error> {
    let RunOptions {
        mut shutdown,
        compact,
        sentinel,
        display,
        control,
        on_ready: _,
    } = options;
    if control.is_some() {
        control::check_socket_path(config)?;
    }
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
    let mut throttle = Throttle::new(config);
    if unless_stopped(throttle.preflight(&mut source, &mut shutdown).await)?.is_none() {
        return Ok(None);
    }
    let metrics_port = bind_metrics_port(config)?;
    // Pre-flight passed: only now may anything be written.
    #[allow(unused_mut)] // without the crash hook, nothing is added
    let mut journal = Journal::open(&config.wal_dir)?;
    journal::check_identity(journal.state(), &config.identity(), &config.wal_dir)?;
    journal.observe(Box::new(MetricsObserver(metrics.clone())));
    #[cfg(feature = "crash-hook")]
    if let Some(hook) = crash_hook::CrashHook::from_env() {
        journal.observe(Box::new(hook));
    }
    let journal = compact_if_large(journal, config, compact)?;
    // The lock is held: only now may the socket be (re)bound.
    let (progress, control) = watchers(config, &journal, &throttle, &metrics, display, control)?;
    let metrics_port = metrics_port.map(|listener| {
        AbortOnDrop(tokio::spawn(control::serve_metrics(
            listener,
            metrics.clone(),
        )))
    });
    Ok(Some(Engine {
        _metrics_port: metrics_port,
        control,
        config,
        queries,
        journal,
        servers: Servers::new(config, source, archive, shutdown.clone()),
        shutdown,
        sentinel,
        progress,
        metrics,
        plan_times: Tally::default(),
        batch_times: BatchTimes::default(),
        throttle,
        sizing: Sizing::new(SizingConfig::of(&config.batching)),
    }))
}

/// Runs the job until its run is finished, or a stop is requested. See the module doc.
/// Returns how it ended and the state it left, for the caller's report. The metrics start
/// from the log's history, and their textfile (`[metrics] textfile`) is written before
/// anything else is done (a path that cannot be written refuses the run), during the run,
/// and at its end whatever the outcome.
pub async fn run(config: &JobConfig, options: RunOptions) -> Result<RunReport, Error> {
    let started = Instant::now();
    let history = check_existing_log(config)?;
    let metrics = Arc::new(Metrics::new(config));
    metrics.seed(&history);
    drop(history);
    let textfile = start_textfile(config, &metrics)?;
    let result = run_engine(config, options, metrics.clone(), started).await;
    metrics.set_outcome(match &result {
        Ok(report) => match report.end {
            RunEnd::Done => Outcome::Done,
            RunEnd::Attention => Outcome::Attention,
            RunEnd::Stopped => Outcome::Stopped,
        },
        Err(_) => Outcome::Failed,
    });
    if let Some(textfile) = textfile {
        textfile.finish();
    }
    result
}

/// Writes the metrics textfile for the first time and starts rewriting it every interval;
/// `None` when the job has none.
fn start_textfile(config: &JobConfig, metrics: &Arc<Metrics>) -> Result<Option<Textfile>, Error> {
    let Some(path) = &config.metrics.textfile else {
        return Ok(None);
    };
    let interval = std::time::Duration::from_secs(config.metrics.textfile_interval_s.into());
    let textfile = Textfile::start(path.clone(), metrics.clone(), interval).map_err(|e| {
        Refusal(format!(
            "cannot write the metrics file {}: {e}; [metrics] textfile must name a file in an existing directory this user may write (node_exporter's textfile collector directory)",
            path.display()
        ))
    })?;
    Ok(Some(textfile))
}

/// [`run`] past the metrics: prepare, loop, close, and the report with its statistics.
async fn run_engine(
    config: &JobConfig,
    options: RunOptions,
    metrics: Arc<Metrics>,
    started: Instant,
) -> Result<RunReport, Error> {
    let mut options = options;
    let on_ready = options.on_ready.take();
    let Some(mut engine) = prepare(config, options, metrics).await? else {
        return Ok(RunReport {
            end: RunEnd::Stopped,
            state: State::new(),
            moved: Counts::default(),
            elapsed: started.elapsed(),
            statistics: Statistics {
                wall: started.elapsed(),
                ..Statistics::default()
            },
        });
    };
    if let Some(on_ready) = on_ready {
        on_ready(engine.journal.state()).await;
    }
    let before = *engine.journal.state().totals();
    engine.mark_invocation(true)?;
    let end = engine.run_loop().await;
    engine.progress.finish();
    let marked = engine.mark_invocation(false);
    // The socket goes before the lock: a run started next must find none of ours.
    drop(engine.control.take());
    let end = match end {
        Ok(end) => end,
        Err(error) => {
            // What the loop appended unsynced before the error stopped it is true and must
            // not be dropped with the writer's buffer: a batch that committed while the
            // failing one ran (its `BatchDeleted`, `ConflictFound`s), the `RunPaused` above.
            // The end hooks and `status` read the log back (a test saw `on_failure` told one
            // batch fewer than the source lost). A log that cannot take it (the error may be
            // the log's own) changes nothing: the run's error is the one reported.
            if let Err(close) = engine.journal.close() {
                tracing::warn!("the log was not synced after the run's error: {close}");
            }
            return Err(error);
        }
    };
    marked?;
    let wal = engine.journal.times();
    let state = engine.journal.close()?;
    let end = match end {
        RunEnd::Stopped => RunEnd::Stopped,
        _ if needs_attention(&state) => RunEnd::Attention,
        _ => RunEnd::Done,
    };
    let moved = state.totals().since(&before);
    let statistics = Statistics {
        plan: engine.plan_times,
        batch: engine.batch_times,
        wal,
        throttle: engine.metrics.throttle_tally(),
        wall: started.elapsed(),
        rows: moved.rows_deleted,
        batches: moved.batches_done,
        sizing: Some(engine.sizing.summary()),
    };
    Ok(RunReport {
        end,
        moved,
        state,
        elapsed: statistics.wall,
        statistics,
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
    /// Where the time went, by action (`archiver run --statistics`).
    pub statistics: Statistics,
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
