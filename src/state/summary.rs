//! What `status` and `replay --inspect` show of a [`State`]: a [`Summary`] that serializes to JSON
//! and renders as lines for a person, and [`key_text`], the one way keys are written for people.

use serde::Serialize;

use super::{Batch, BatchStatus, Counts, Run, State};
pub use crate::event::key_text;
use crate::event::{ErrorClass, JobIdentity, Key, KeyValue, RunOutcome};

/// Most conflicts listed by a summary (the most recent stored ones); the count covers all.
pub const CONFLICTS_LISTED_MAX: usize = 20;
/// Most failed or parked batches listed by a summary, lowest ids first; the count covers all.
pub const PROBLEM_BATCHES_LISTED_MAX: usize = 50;
/// Most runs listed by a summary (the most recent ones); the count covers all.
pub const RUNS_LISTED_MAX: usize = 20;

/// A snapshot of the state for people and scripts. Keys are rendered with [`key_text`]; times
/// are microseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The job, once the log is created.
    pub job: Option<JobIdentity>,
    /// Wall clock of `LogCreated`.
    pub created_unix_us: Option<i64>,
    /// LSN of the last event applied.
    pub last_lsn: u64,
    /// Runs in the log.
    pub runs_total: u64,
    /// The most recent [`RUNS_LISTED_MAX`] runs, oldest first.
    pub runs: Vec<RunSummary>,
    /// Progress of the open run, else of the last run.
    pub current_run: Option<RunProgress>,
    /// Sums over every batch of every run.
    pub totals: Counts,
    /// Batches of every run by status.
    pub batches: BatchTally,
    /// Conflicts over the whole log.
    pub conflicts: ConflictSummary,
    /// Failed or parked batches (lowest ids first, at most [`PROBLEM_BATCHES_LISTED_MAX`]).
    pub problem_batches: Vec<ProblemBatch>,
    /// Failed plus parked batches in all.
    pub problem_batches_total: u64,
    /// The next action as a sentence ([`super::Action`]'s `Display`).
    pub next_action: String,
}

/// One run, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Run number.
    pub run_id: u64,
    /// True until `RunFinished`.
    pub open: bool,
    /// Wall clock at start.
    pub started_unix_us: i64,
    /// Wall clock at the end, if finished.
    pub finished_unix_us: Option<i64>,
    /// The moment `NOW()` stands for.
    pub now_unix_us: i64,
    /// The key bound; `None` = the source was empty.
    pub key_bound: Option<String>,
    /// Rows per batch.
    pub batch_rows: u32,
    /// Attempts per batch.
    pub attempts_max: u32,
    /// Sums over the run's batches.
    pub counts: Counts,
    /// Settings changed while the run ran (`archiver ctl set`).
    pub live: super::LiveSettings,
}

/// Batches by status. `failed` batches are pending ones that failed since planned or reset, so
/// they are also counted in `pending`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchTally {
    /// Batches planned.
    pub total: u64,
    /// Batches done.
    pub done: u64,
    /// Batches waiting to be executed.
    pub pending: u64,
    /// Pending batches with a failed attempt since planned or reset.
    pub failed: u64,
    /// Parked batches, waiting for `archiver reset`.
    pub parked: u64,
}

impl BatchTally {
    /// The tally of the batches with ids in `ids`: planned and done from `counts` (a snapshot
    /// may have dropped done batches, never their counts), the rest from the batches not done,
    /// which every state holds.
    fn of(state: &State, counts: &Counts, ids: std::ops::RangeInclusive<u64>) -> BatchTally {
        let pending = state.pending.range(ids.clone());
        let failed = pending
            .clone()
            .filter(|&&id| state.batch(id).is_some_and(Batch::is_failed))
            .count();
        BatchTally {
            total: counts.batches_planned,
            done: counts.batches_done,
            pending: pending.count() as u64,
            failed: failed as u64,
            parked: state.parked.range(ids).count() as u64,
        }
    }
}

/// How far a run is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunProgress {
    /// Run number.
    pub run_id: u64,
    /// True until `RunFinished`.
    pub open: bool,
    /// The run's batches by status.
    pub batches: BatchTally,
    /// Rows deleted from the source by the run's batches ("moved").
    pub rows_moved: u64,
    /// Rows whose identical copy the archive already held.
    pub rows_already: u64,
    /// Rows kept in the source because of conflicts.
    pub rows_conflicting: u64,
    /// Seconds from the run's start to its end, or to `now` if open: wall time, the gaps
    /// between invocations included.
    pub elapsed_s: f64,
    /// Seconds the run actually ran: its invocations whose start and end the log holds (one
    /// under way, or killed, is not counted yet).
    pub active_s: f64,
    /// Rows those invocations moved.
    pub active_rows: u64,
    /// `active_rows / active_s`, when time has been recorded: the run's own rate, not
    /// diluted by the hours between nightly invocations.
    pub rate_rows_per_s: Option<f64>,
    /// Upper bound of the last planned batch.
    pub cursor: Option<String>,
    /// The run's key bound.
    pub key_bound: Option<String>,
    /// Fraction of the run's key range planned, 0..=1, when the key's first column is an
    /// integer and the run has planned a batch. Not a measure of the rows left: the matching
    /// rows of an "old rows first" predicate all sit at the start of the range (the running
    /// job's ETA counts them instead).
    pub fraction_planned: Option<f64>,
}

/// Conflicts over the whole log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConflictSummary {
    /// `ConflictFound` records in all.
    pub total: u64,
    /// The most recent stored ones, at most [`CONFLICTS_LISTED_MAX`], in log order.
    pub listed: Vec<ConflictEntry>,
}

/// One conflict, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConflictEntry {
    /// The batch whose range holds the key.
    pub batch_id: u64,
    /// The run that planned the batch.
    pub run_id: u64,
    /// The key.
    pub key: String,
    /// LSN of the record.
    pub lsn: u64,
}

/// A failed or parked batch, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProblemBatch {
    /// The batch.
    pub batch_id: u64,
    /// The run that planned it.
    pub run_id: u64,
    /// Its status in words, e.g. "parked at the delete step".
    pub status: String,
    /// Failed attempts since planned or reset.
    pub attempts: u32,
    /// Failed attempts in all.
    pub failures: u64,
    /// The last failure.
    pub last_error: Option<ErrorEntry>,
}

/// A batch's last failure, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorEntry {
    /// Which attempt failed.
    pub attempt: u32,
    /// How it was treated.
    pub class: ErrorClass,
    /// The error text.
    pub message: String,
    /// LSN of the record.
    pub lsn: u64,
}

/// The first key column as an integer, if it is one.
fn first_int(key: &Key) -> Option<i128> {
    match key.first()? {
        KeyValue::Int(v) => Some(i128::from(*v)),
        KeyValue::UInt(v) => Some(i128::from(*v)),
        _ => None,
    }
}

/// Fraction of the run's key range planned: from the first batch's upper bound (its lower bound
/// is the start of the table, whose smallest key is unknown) to the key bound, by the first key
/// column.
fn fraction_planned(run: &Run) -> Option<f64> {
    // A completed run planned every matching row up to its bound, wherever its last batch ended
    // (rows past the cursor did not match): all of its range is done, not the cursor's share.
    if run
        .finished
        .as_ref()
        .is_some_and(|end| end.outcome == RunOutcome::Completed)
    {
        return Some(1.0);
    }
    let origin = first_int(run.first_upper.as_ref()?)?;
    let cursor = first_int(run.cursor.as_ref()?)?;
    let bound = first_int(run.key_bound.as_ref()?)?;
    if run.cursor == run.key_bound {
        return Some(1.0);
    }
    if bound <= origin {
        return None;
    }
    Some(((cursor - origin) as f64 / (bound - origin) as f64).clamp(0.0, 1.0))
}

fn progress(state: &State, run: &Run, now_unix_us: i64) -> RunProgress {
    let ids = run.batch_ids();
    let batches = BatchTally::of(state, &run.counts, ids.start..=ids.end.saturating_sub(1));
    let end_us = run
        .finished
        .as_ref()
        .map_or(now_unix_us, |end| end.finished_unix_us);
    let elapsed_s = (end_us.saturating_sub(run.started_unix_us)).max(0) as f64 / 1e6;
    let rows_moved = run.counts.rows_deleted;
    let active_s = run.activity.active_us as f64 / 1e6;
    let active_rows = run.activity.active_rows;
    let rate_rows_per_s = (active_s > 0.0).then(|| active_rows as f64 / active_s);
    let fraction = fraction_planned(run);
    RunProgress {
        run_id: run.run_id,
        open: run.is_open(),
        batches,
        rows_moved,
        rows_already: run.counts.rows_already,
        rows_conflicting: run.counts.rows_conflicting,
        elapsed_s,
        active_s,
        active_rows,
        rate_rows_per_s,
        cursor: run.cursor.as_ref().map(key_text),
        key_bound: run.key_bound.as_ref().map(key_text),
        fraction_planned: fraction,
    }
}

fn run_summary(run: &Run) -> RunSummary {
    RunSummary {
        run_id: run.run_id,
        open: run.is_open(),
        started_unix_us: run.started_unix_us,
        finished_unix_us: run.finished.as_ref().map(|end| end.finished_unix_us),
        now_unix_us: run.now_unix_us,
        key_bound: run.key_bound.as_ref().map(key_text),
        batch_rows: run.batch_rows,
        attempts_max: run.attempts_max,
        counts: run.counts,
        live: run.live,
    }
}

fn problem_batch(batch: &Batch) -> ProblemBatch {
    let status = match batch.status {
        BatchStatus::Parked { .. } => batch.status.to_string(),
        _ => format!("failed, pending at the {} step", step_word(batch)),
    };
    ProblemBatch {
        batch_id: batch.batch_id,
        run_id: batch.run_id,
        status,
        attempts: batch.attempts,
        failures: batch.failures,
        last_error: batch.last_error.as_ref().map(|e| ErrorEntry {
            attempt: e.attempt,
            class: e.class,
            message: e.message.clone(),
            lsn: e.lsn,
        }),
    }
}

fn step_word(batch: &Batch) -> &'static str {
    match batch.step() {
        Some(super::Step::Copy) => "copy",
        Some(super::Step::Delete) => "delete",
        None => "no",
    }
}

impl State {
    /// A snapshot for `status` and `inspect`. `now_unix_us` (the caller's clock) measures the
    /// open run's elapsed time, rate and ETA.
    pub fn summary(&self, now_unix_us: i64) -> Summary {
        let runs = self.runs();
        let listed_from = runs.len().saturating_sub(RUNS_LISTED_MAX);
        let current = self.open_run().or(self.last_run());
        let batches = BatchTally::of(self, self.totals(), 0..=u64::MAX);
        let mut problems: Vec<&Batch> =
            self.failed_batches().chain(self.parked_batches()).collect();
        problems.sort_by_key(|b| b.batch_id);
        let conflicts = self.conflicts();
        let conflicts_from = conflicts.len().saturating_sub(CONFLICTS_LISTED_MAX);
        Summary {
            job: self.job().cloned(),
            created_unix_us: self.created_unix_us(),
            last_lsn: self.last_lsn(),
            runs_total: runs.len() as u64,
            runs: runs[listed_from..].iter().map(run_summary).collect(),
            current_run: current.map(|run| progress(self, run, now_unix_us)),
            totals: *self.totals(),
            batches,
            conflicts: ConflictSummary {
                total: self.totals().conflicts,
                listed: conflicts[conflicts_from..]
                    .iter()
                    .map(|c| ConflictEntry {
                        batch_id: c.batch_id,
                        run_id: self.run_of(c.batch_id).map_or(0, |r| r.run_id),
                        key: key_text(&c.key),
                        lsn: c.lsn,
                    })
                    .collect(),
            },
            problem_batches_total: problems.len() as u64,
            problem_batches: problems
                .into_iter()
                .take(PROBLEM_BATCHES_LISTED_MAX)
                .map(problem_batch)
                .collect(),
            next_action: self.next_action().to_string(),
        }
    }
}

fn time_text(unix_us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(unix_us) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => format!("{unix_us} us since the epoch"),
    }
}

fn duration_text(seconds: f64) -> String {
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// Whole rows/s, or one decimal below 10 rows/s so that a slow start does not read as 0 or 1.
fn rate_text(rate: f64) -> String {
    if rate < 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.0}")
    }
}

fn counts_text(c: &Counts) -> String {
    format!(
        "{} of {} batches done, {} rows moved ({} copied, {} already archived), \
         {} rows kept for conflicts ({} conflict records), {} failed attempts",
        c.batches_done,
        c.batches_planned,
        c.rows_deleted,
        c.rows_copied,
        c.rows_already,
        c.rows_conflicting,
        c.conflicts,
        c.failures
    )
}

impl Summary {
    /// The summary for a person, one line per item (no trailing newlines).
    pub fn lines(&self) -> Vec<String> {
        let Some(job) = &self.job else {
            return vec![
                "the log is empty: no job recorded yet".to_string(),
                format!("next: {}", self.next_action),
            ];
        };
        let mut out = vec![job_line(job)];
        if let Some(created) = self.created_unix_us {
            out.push(format!(
                "log created {}, last lsn {}",
                time_text(created),
                self.last_lsn
            ));
        }
        out.extend(self.run_lines());
        if let Some(p) = &self.current_run {
            out.extend(progress_lines(p));
        }
        let b = &self.batches;
        out.push(format!(
            "all batches: {} planned, {} done, {} pending ({} failed), {} parked",
            b.total, b.done, b.pending, b.failed, b.parked
        ));
        out.push(format!("totals: {}", counts_text(&self.totals)));
        out.extend(self.conflict_lines());
        out.extend(self.problem_batch_lines());
        out.push(format!("next: {}", self.next_action));
        out
    }

    /// The count of runs, then one line per listed run.
    fn run_lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "runs: {} (the last {} listed)",
            self.runs_total,
            self.runs.len()
        )];
        out.extend(self.runs.iter().map(run_line));
        out
    }

    /// The count of conflicts, then one line per listed conflict; nothing without conflicts.
    fn conflict_lines(&self) -> Vec<String> {
        if self.conflicts.total == 0 {
            return Vec::new();
        }
        let mut out = vec![format!(
            "conflicts: {} (the last {} listed); the source rows under these keys stay \
             until the archive rows are reconciled",
            self.conflicts.total,
            self.conflicts.listed.len()
        )];
        out.extend(self.conflicts.listed.iter().map(|c| {
            format!(
                "  key {} in batch {} (run {}), lsn {}",
                c.key, c.batch_id, c.run_id, c.lsn
            )
        }));
        out
    }

    /// The count of failed or parked batches, then one line per listed batch; nothing when
    /// there are none.
    fn problem_batch_lines(&self) -> Vec<String> {
        if self.problem_batches_total == 0 {
            return Vec::new();
        }
        let mut out = vec![format!(
            "failed or parked batches: {} ({} listed); `archiver reset` retries them",
            self.problem_batches_total,
            self.problem_batches.len()
        )];
        out.extend(self.problem_batches.iter().map(problem_batch_line));
        out
    }
}

fn job_line(job: &JobIdentity) -> String {
    format!(
        "job: `{}`.`{}` on {} -> `{}`.`{}` on {}, where {}",
        job.source_schema,
        job.source_table,
        job.source_server,
        job.archive_schema,
        job.archive_table,
        job.archive_server,
        job.predicate
    )
}

fn run_line(run: &RunSummary) -> String {
    let end = match run.finished_unix_us {
        Some(t) => format!("finished {}", time_text(t)),
        None => "open".to_string(),
    };
    let bound = run.key_bound.as_deref().unwrap_or("none (empty source)");
    let line = format!(
        "  run {}: started {}, {end}, NOW() = {}, key bound {bound}: {}",
        run.run_id,
        time_text(run.started_unix_us),
        time_text(run.now_unix_us),
        counts_text(&run.counts)
    );
    match live_text(&run.live) {
        Some(live) => format!("{line}; {live}"),
        None => line,
    }
}

/// "settings changed live at TIME: batch_rows 200, sleep_ms 50", for a run that has some.
fn live_text(live: &super::LiveSettings) -> Option<String> {
    if !live.any() {
        return None;
    }
    let changed: Vec<String> = [
        ("batch_rows", live.batch_rows),
        ("sleep_ms", live.sleep_ms),
        ("max_lag_s", live.max_lag_s),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| format!("{name} {v}")))
    .collect();
    Some(format!(
        "settings changed live at {}: {}",
        time_text(live.changed_unix_us),
        changed.join(", ")
    ))
}

fn problem_batch_line(pb: &ProblemBatch) -> String {
    let error = match &pb.last_error {
        Some(e) => format!(
            "attempt {} failed ({:?}): {}",
            e.attempt, e.class, e.message
        ),
        None => "no error recorded".to_string(),
    };
    format!(
        "  batch {} (run {}), {} after {} attempts: {error}",
        pb.batch_id, pb.run_id, pb.status, pb.attempts
    )
}

fn progress_lines(p: &RunProgress) -> Vec<String> {
    let state = if p.open { "open" } else { "finished" };
    let mut line = format!(
        "current run {} ({state}): {} of {} batches done, {} pending ({} failed), {} parked; \
         {} rows moved",
        p.run_id,
        p.batches.done,
        p.batches.total,
        p.batches.pending,
        p.batches.failed,
        p.batches.parked,
        p.rows_moved,
    );
    if let Some(rate) = p.rate_rows_per_s {
        let of_them = if p.active_rows == p.rows_moved {
            String::new()
        } else {
            format!(", {} of them", p.active_rows)
        };
        line.push_str(&format!(
            "{of_them} in {} of running ({} rows/s; {} since it started)",
            duration_text(p.active_s),
            rate_text(rate),
            duration_text(p.elapsed_s)
        ));
    } else {
        line.push_str(&format!(
            " since it started {} ago (no invocation of it has recorded its end yet: it runs, \
             and `archiver ctl status` shows its rate, or it was killed)",
            duration_text(p.elapsed_s)
        ));
    }
    let mut lines = vec![line];
    let mut position = format!(
        "  cursor {} of key bound {}",
        p.cursor.as_deref().unwrap_or("(nothing planned yet)"),
        p.key_bound.as_deref().unwrap_or("none")
    );
    if let Some(f) = p.fraction_planned {
        position.push_str(&format!(", {:.1}% of the key range planned", f * 100.0));
    }
    lines.push(position);
    lines
}
