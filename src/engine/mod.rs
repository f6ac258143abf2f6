//! The archive job: replays the WAL into the state machine, then loops "ask the state machine
//! what next, do it against the server, append the event, apply it" until the run is done or
//! asked to stop.
//!
//! **Every event that precedes an irreversible step is durable before that step**: a batch's
//! `BatchPlanned` is synced before its transaction starts. Events that follow a step
//! (`BatchDeleted`, `ConflictFound`) are appended unsynced and made durable by the next sync; if
//! a crash loses them, replay sees the batch as planned and runs its transaction again, which is
//! idempotent (it copies only what the archive lacks and deletes only rows with an identical
//! archive copy).

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use mysql_async::Conn;

use crate::config::JobConfig;
use crate::db;
use crate::db::sql::Queries;
use crate::event::*;
use crate::state::{Action, State, Step};
use crate::wal::{self, WalOptions, WalWriter};

/// Shortest delay before retrying a failed batch, in milliseconds; doubles per attempt.
const RETRY_DELAY_MS_MIN: u64 = 200;
/// Longest delay before retrying a failed batch, in milliseconds.
const RETRY_DELAY_MS_MAX: u64 = 10_000;

/// Environment variable of the test-only crash hook: `EVENT[:N]` makes the process kill itself
/// with SIGKILL right after the N-th (default first) event of that type this process appended
/// has been made durable. Used by the resume-after-each-step tests; never set it in production.
pub const CRASH_HOOK_ENV: &str = "ARCHIVER_TEST_CRASH_AFTER";

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

/// Why the loop should stop early; set by signal handlers and checked between steps.
#[derive(Debug, Default)]
pub struct StopFlag(AtomicU8);

impl StopFlag {
    /// Asks the loop to stop after the current batch.
    pub fn request(&self) {
        self.0.store(1, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst) != 0
    }
}

/// What `run` needs besides the configuration.
pub struct RunOptions {
    /// When to stop starting new batches (from `--max-runtime` / `--until`).
    pub deadline: Option<Instant>,
    /// Set by signal handlers.
    pub stop: Arc<StopFlag>,
}

/// Wall clock, microseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Whether `dir` already holds a log: any segment file, named as the WAL names them.
fn has_log(dir: &Path) -> bool {
    wal::scan::list_segments(dir).is_ok_and(|segments| !segments.is_empty())
}

/// Opens the job's log for writing and replays it into a fresh state machine.
pub fn open_log(dir: &Path) -> anyhow::Result<(WalWriter, State)> {
    let mut state = State::new();
    let (writer, report) = WalWriter::open(dir, WalOptions::default(), &mut |record| {
        let event = Event::decode(record.record_type, record.payload)?;
        state.apply(record.lsn, &event)?;
        Ok(())
    })?;
    if let Some(cut) = &report.cut {
        tracing::warn!("recovered the WAL: {cut:?}");
    }
    Ok((writer, state))
}

/// Reads the job's log without locking or changing it, into a state machine.
pub fn read_log(dir: &Path) -> anyhow::Result<State> {
    let mut state = State::new();
    wal::read_dir(dir, &mut |record| {
        let event = Event::decode(record.record_type, record.payload)?;
        state.apply(record.lsn, &event)?;
        Ok(())
    })?;
    Ok(state)
}

/// Refuses a log that belongs to another job.
pub fn check_identity(state: &State, config: &JobConfig) -> anyhow::Result<()> {
    if let Some(recorded) = state.job() {
        let differences = recorded.differences(&config.identity());
        if !differences.is_empty() {
            return Err(db::Refusal(format!(
                "the WAL directory {} belongs to another job ({}); point [job] wal_dir at this job's own directory",
                config.wal_dir.display(),
                differences.join("; ")
            ))
            .into());
        }
    }
    Ok(())
}

/// The crash hook's target, parsed once.
struct CrashHook {
    name: String,
    nth: u64,
    seen: u64,
}

impl CrashHook {
    fn from_env() -> Option<CrashHook> {
        let value = std::env::var(CRASH_HOOK_ENV).ok()?;
        let (name, nth) = match value.split_once(':') {
            Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
            None => (value, 1),
        };
        Some(CrashHook { name, nth, seen: 0 })
    }
}

/// The live job: the log, the state machine, the server connection.
struct Runner<'a> {
    config: &'a JobConfig,
    queries: Queries,
    wal: WalWriter,
    state: State,
    conn: Option<Conn>,
    /// The `NOW()` the connection's session is pinned to, if any.
    conn_now_unix_us: Option<i64>,
    /// The archive server's own connection, when the job has one (`[archive] url`).
    archive_conn: Option<Conn>,
    crash_hook: Option<CrashHook>,
}

impl Runner<'_> {
    /// Appends `event`, applies it, and makes it durable when `sync` (or the crash hook) asks.
    fn append(&mut self, event: Event, sync: bool) -> anyhow::Result<()> {
        // A contradiction is a bug here; checked before the append so it never reaches the log,
        // where it would make every later replay fail.
        self.state
            .check(self.wal.next_lsn(), &event)
            .with_context(|| format!("refusing to append {}", event.name()))?;
        let lsn = self
            .wal
            .append(event.record_type(), &event.encode_payload())?;
        self.state
            .apply(lsn, &event)
            .with_context(|| format!("applying the {} just appended", event.name()))?;
        let crash = self.crash_hook.as_mut().is_some_and(|hook| {
            if hook.name == event.name() {
                hook.seen += 1;
            }
            hook.name == event.name() && hook.seen == hook.nth
        });
        if sync || crash {
            self.wal.sync()?;
        }
        if crash {
            tracing::warn!(
                "{CRASH_HOOK_ENV}: killing this process after {}",
                event.name()
            );
            // SAFETY: raising a signal in our own process has no memory-safety preconditions.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        }
        Ok(())
    }

    /// The connection, reconnecting patiently when there is none.
    async fn conn(&mut self, now_unix_us: i64) -> anyhow::Result<&mut Conn> {
        if self.conn.is_none() {
            let timeout = Duration::from_secs(self.config.reconnect_timeout_s.into());
            self.conn = Some(
                db::connect_patiently(
                    &self.config.source,
                    self.config.lock_wait_timeout_s,
                    timeout,
                )
                .await?,
            );
            self.conn_now_unix_us = None;
        }
        let conn = self.conn.as_mut().expect("connected above");
        if self.conn_now_unix_us != Some(now_unix_us) {
            db::set_timestamp(conn, now_unix_us).await?;
            self.conn_now_unix_us = Some(now_unix_us);
        }
        Ok(conn)
    }

    /// Connects to the archive server, if the job has one and is not connected.
    async fn ensure_archive_conn(&mut self) -> anyhow::Result<()> {
        if let (Some(endpoint), None) = (&self.config.archive, &self.archive_conn) {
            let timeout = Duration::from_secs(self.config.reconnect_timeout_s.into());
            self.archive_conn = Some(
                db::connect_patiently(endpoint, self.config.lock_wait_timeout_s, timeout).await?,
            );
        }
        Ok(())
    }

    fn drop_conn(&mut self) {
        self.conn = None;
        self.conn_now_unix_us = None;
        self.archive_conn = None;
    }

    /// A batch with the archive on another server: lock the source rows (source transaction),
    /// copy them into the archive and commit there (step Copy only), record `BatchCopied`
    /// durably, then delete the locked rows whose committed archive copy is identical and
    /// commit the source transaction. After a crash between the two commits, replay resumes
    /// at step Delete, which copies nothing again.
    async fn execute_cross(
        &mut self,
        batch_id: u64,
        step: Step,
        lower: Option<&Key>,
        upper: &Key,
    ) -> anyhow::Result<db::BatchResult> {
        let queries = self.queries.clone();
        // Taken out so both can be used at once; on error they are simply dropped, which
        // closes them and makes the server roll back the open transactions.
        let mut source = self.conn.take().expect("connected before execute");
        let mut archive = self.archive_conn.take().expect("connected before execute");
        let locked = db::lock_batch_rows(&mut source, &queries, lower, upper).await?;
        if step == Step::Copy {
            let rows_copied = db::copy_rows(&mut archive, &queries, &locked).await?;
            self.append(
                Event::BatchCopied(BatchCopied {
                    batch_id,
                    rows_copied,
                    rows_already: (locked.len() as u64).saturating_sub(rows_copied),
                }),
                true,
            )?;
        }
        // The copy counts went into BatchCopied; BatchDeleted carries none, so that nothing
        // is counted twice (wal-format.md, BatchDeleted).
        let result = db::delete_archived(&mut source, &mut archive, &queries, locked).await?;
        self.conn = Some(source);
        self.archive_conn = Some(archive);
        Ok(result)
    }

    async fn start_run(&mut self) -> anyhow::Result<()> {
        let now = now_unix_us();
        let queries = self.queries.clone();
        let bound = db::key_bound(self.conn(now).await?, &queries).await?;
        let run_id = self.state.next_run_id();
        self.append(
            Event::RunStarted(RunStarted {
                run_id,
                now_unix_us: now,
                key_bound: bound,
                batch_rows: self.config.batch_rows,
                attempts_max: self.config.attempts_max,
                started_unix_us: now,
            }),
            true,
        )?;
        tracing::info!("started run {run_id}");
        Ok(())
    }

    fn run_now(&self, run_id: u64) -> i64 {
        self.state
            .run(run_id)
            .map(|run| run.now_unix_us)
            .expect("batches and actions name runs the state knows")
    }

    async fn plan_next(
        &mut self,
        run_id: u64,
        after: Option<Key>,
        bound: Key,
    ) -> anyhow::Result<()> {
        let now = self.run_now(run_id);
        let rows = self
            .state
            .run(run_id)
            .map_or(self.config.batch_rows, |r| r.batch_rows);
        let queries = self.queries.clone();
        let planned = db::plan(
            self.conn(now).await?,
            &queries,
            after.as_ref(),
            &bound,
            rows,
        )
        .await?;
        match planned {
            None => self.finish_run(run_id),
            Some((upper, rows_planned)) => {
                let batch_id = self.state.next_batch_id();
                self.append(
                    Event::BatchPlanned(BatchPlanned {
                        batch_id,
                        run_id,
                        lower: after,
                        upper,
                        rows_planned,
                    }),
                    true,
                )
            }
        }
    }

    fn finish_run(&mut self, run_id: u64) -> anyhow::Result<()> {
        self.append(
            Event::RunFinished(RunFinished {
                run_id,
                outcome: RunOutcome::Completed,
                finished_unix_us: now_unix_us(),
            }),
            true,
        )?;
        tracing::info!("finished run {run_id}");
        Ok(())
    }

    /// Runs a batch's transaction once and records the outcome. Returns `Err` only for a
    /// failure that stops the run (fatal errors, WAL errors).
    async fn execute(&mut self, batch_id: u64, step: Step, stop: &StopFlag) -> anyhow::Result<()> {
        let batch = self
            .state
            .batch(batch_id)
            .expect("the state names known batches");
        let (lower, upper, run_id, attempts) = (
            batch.lower.clone(),
            batch.upper.clone(),
            batch.run_id,
            batch.attempts,
        );
        let now = self.run_now(run_id);
        let queries = self.queries.clone();
        // Failing to reach a server is not an attempt at the batch: the main loop retries it.
        self.conn(now).await?;
        self.ensure_archive_conn().await?;
        let result = match self.config.archive {
            None => {
                let conn = self.conn.as_mut().expect("connected above");
                db::execute_batch(conn, &queries, lower.as_ref(), &upper).await
            }
            Some(_) => {
                self.execute_cross(batch_id, step, lower.as_ref(), &upper)
                    .await
            }
        };
        match result {
            Ok(result) => {
                for key in &result.conflicts {
                    tracing::warn!(
                        "conflict: the archive holds a different row under key {} (batch {batch_id}); the source row was kept",
                        crate::state::key_text(key)
                    );
                    self.append(
                        Event::ConflictFound(ConflictFound {
                            batch_id,
                            key: key.clone(),
                        }),
                        false,
                    )?;
                }
                self.append(
                    Event::BatchDeleted(BatchDeleted {
                        batch_id,
                        rows_copied: result.rows_copied,
                        rows_already: result.rows_already,
                        rows_deleted: result.rows_deleted,
                        rows_conflicting: result.conflicts.len() as u64,
                    }),
                    false,
                )?;
                Ok(())
            }
            Err(error) => {
                let class = db::classify(&error);
                let message = crate::event::cut_message(&format!("{error:#}"));
                let attempt = attempts + 1;
                tracing::warn!("batch {batch_id} attempt {attempt} failed ({class:?}): {message}");
                self.drop_conn();
                self.append(
                    Event::BatchFailed(BatchFailed {
                        batch_id,
                        attempt,
                        class,
                        message,
                    }),
                    true,
                )?;
                if class == ErrorClass::Fatal {
                    return Err(error.context(format!(
                        "batch {batch_id} failed with an error that stops the run; fix the cause and run again (the batch is retried)"
                    )));
                }
                if class == ErrorClass::Transient && !stop.requested() {
                    let shift = attempt.saturating_sub(1).min(16);
                    let delay = (RETRY_DELAY_MS_MIN << shift).min(RETRY_DELAY_MS_MAX);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                Ok(())
            }
        }
    }
}

/// Runs the job until its run is finished, or a stop is requested. See the module doc.
/// Returns how it ended and the state it left, for the caller's report.
pub async fn run(config: &JobConfig, options: RunOptions) -> anyhow::Result<(RunEnd, State)> {
    // A log that exists is checked against this job before anything else, read-only: opening
    // it for write may cut a torn tail, and another job's log must not be touched at all. This
    // costs one extra replay (about 0.1 s per million records).
    let fresh = !has_log(&config.wal_dir);
    if !fresh {
        check_identity(&read_log(&config.wal_dir)?, config)?;
    }
    let timeout = Duration::from_secs(config.reconnect_timeout_s.into());
    let mut conn =
        db::connect_patiently(&config.source, config.lock_wait_timeout_s, timeout).await?;
    let mut archive_conn = match &config.archive {
        Some(endpoint) => {
            Some(db::connect_patiently(endpoint, config.lock_wait_timeout_s, timeout).await?)
        }
        None => None,
    };
    let queries = crate::db::preflight::check(&mut conn, archive_conn.as_mut(), config).await?;
    // Pre-flight passed: only now may anything be written.
    let (wal, state) = open_log(&config.wal_dir)?;
    check_identity(&state, config)?;
    let mut runner = Runner {
        config,
        queries,
        wal,
        state,
        conn: Some(conn),
        conn_now_unix_us: None,
        archive_conn,
        crash_hook: CrashHook::from_env(),
    };
    // One invocation resumes an unfinished run, or starts one; it never starts a second.
    let mut finished_a_run = false;
    let end = loop {
        if options.stop.requested() || options.deadline.is_some_and(|d| Instant::now() >= d) {
            break if finished_a_run {
                RunEnd::Done
            } else {
                RunEnd::Stopped
            };
        }
        let step: anyhow::Result<()> = match runner.state.next_action() {
            Action::CreateLog => runner.append(
                Event::LogCreated(LogCreated {
                    job: config.identity(),
                    created_unix_us: now_unix_us(),
                }),
                true,
            ),
            Action::StartRun if finished_a_run => break RunEnd::Done,
            Action::StartRun => runner.start_run().await,
            Action::PlanNext {
                run_id,
                after,
                bound,
            } => {
                if config.sleep_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(config.sleep_ms.into())).await;
                }
                runner.plan_next(run_id, after, bound).await
            }
            Action::FinishRun { run_id } => runner.finish_run(run_id),
            // With the archive on the source server, copy and delete are one transaction, so
            // both steps redo the whole (idempotent) batch; with its own server, Delete skips
            // the copy.
            Action::ExecuteBatch { batch_id, step } => {
                runner.execute(batch_id, step, &options.stop).await
            }
        };
        if let Err(error) = step {
            // A lost connection while planning or reconnecting: nothing was changed, so try
            // again after a pause. Anything else (WAL errors, fatal SQL errors) stops the run.
            if db::classify(&error) != ErrorClass::Transient {
                return Err(error);
            }
            tracing::warn!("{error:#}; retrying");
            runner.drop_conn();
            tokio::time::sleep(Duration::from_millis(RETRY_DELAY_MS_MIN)).await;
        }
        if runner.state.open_run().is_none() && runner.state.last_run().is_some() {
            finished_a_run = true;
        }
    };
    runner.wal.sync()?;
    let end = match end {
        RunEnd::Stopped => RunEnd::Stopped,
        _ if needs_attention(&runner.state) => RunEnd::Attention,
        _ => RunEnd::Done,
    };
    Ok((end, runner.state))
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
