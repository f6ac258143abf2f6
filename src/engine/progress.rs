//! What a running job tells the person or the scheduler watching it: on a terminal, a live bar
//! (rows moved, rows/s, batch size, ETA); without one (cron, systemd), one concise log line per
//! interval. The numbers come from the journal's state (what the WAL says) and from this
//! invocation's clock; the display decides nothing.
//!
//! **The ETA is honest about what it knows.** Rows left are the optimizer's estimate of the
//! matching rows between the run's cursor and its key bound (`db::estimate_rows`, an `EXPLAIN`
//! of the batch filter, asked again every [`ESTIMATE_REFRESH_S`]), corrected by how well the
//! previous estimates predicted the rows actually moved since (an unindexed predicate's estimate
//! counts every row of the key range; the correction learns the matching share). Unlike a
//! fraction of the key range, this holds for the usual "old rows first" predicate, whose matching
//! rows are all at the start of the key range. The rate is this invocation's: rows moved since
//! it started over the time it has run, never the gaps between nightly invocations.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How often the running job asks the server again for the rows it has left, in seconds.
pub const ESTIMATE_REFRESH_S: u64 = 10;

/// The default interval between progress log lines without a terminal, in seconds.
pub const LINE_INTERVAL_S_DEFAULT: u64 = 30;

/// Bounds of the correction factor applied to the optimizer's estimate: the estimate may be
/// off by a factor of 20 either way before the correction stops following it.
const CORRECTION_MIN: f64 = 0.05;
const CORRECTION_MAX: f64 = 20.0;

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A live bar on stderr (stderr is a terminal).
    Bar,
    /// One log line per interval.
    Lines(Duration),
    /// Nothing.
    Off,
}

impl Display {
    /// A bar when stderr is a terminal, else lines every `every` (none when `every` is zero).
    pub fn auto(every: Duration) -> Display {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Display::Bar
        } else if every.is_zero() {
            Display::Off
        } else {
            Display::Lines(every)
        }
    }
}

/// Where the open run stands, as the display and the control socket report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// The open run.
    pub run_id: u64,
    /// Rows the run has moved (all its invocations), from the log.
    pub rows_moved: u64,
    /// Batches the run has finished.
    pub batches_done: u64,
    /// Rows per batch in force.
    pub batch_rows: u32,
    /// Rows this invocation has moved.
    pub rows_moved_now: u64,
    /// Seconds this invocation has run.
    pub elapsed_s: f64,
    /// This invocation's rate, rows per second.
    pub rows_per_s: Option<f64>,
    /// Corrected estimate of the matching rows left.
    pub rows_left: Option<u64>,
    /// Seconds left at this invocation's rate.
    pub eta_s: Option<f64>,
    /// Why the job is waiting, when it is (throttle, pause).
    pub waiting: Option<String>,
}

/// What the server said about the rows a run has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsLeft {
    /// Counted (`db::count_rows`): exact when counted; later only the rows moved change it.
    Counted(u64),
    /// The optimizer's estimate (`db::estimate_rows`); asked again every
    /// [`ESTIMATE_REFRESH_S`] and corrected.
    Estimated(u64),
    /// Nothing (the estimate failed); the ETA waits for the next try.
    Unknown,
}

/// The rows left, from a count or from the optimizer's estimates and how far to trust them.
#[derive(Debug, Clone, Default)]
pub struct Estimator {
    /// The last estimate and the run's rows moved when it was taken.
    last: Option<(u64, u64)>,
    /// Rows actually moved per estimated row, learned from successive estimates.
    correction: Option<f64>,
    /// Whether `last` is a count: no estimate replaces it.
    counted: bool,
}

impl Estimator {
    /// Takes an exact count of the rows left, made when the run had moved `rows_moved`.
    pub fn counted(&mut self, rows_left: u64, rows_moved: u64) {
        self.last = Some((rows_left, rows_moved));
        self.correction = None;
        self.counted = true;
    }

    /// Whether the rows left were counted (no estimate is needed any more).
    pub fn is_counted(&self) -> bool {
        self.counted
    }

    /// Takes a new estimate of the rows left, made when the run had moved `rows_moved`.
    pub fn update(&mut self, rows_left: u64, rows_moved: u64) {
        if self.counted {
            return;
        }
        if let Some((previous, moved_then)) = self.last {
            let moved = rows_moved.saturating_sub(moved_then);
            let drop = previous.saturating_sub(rows_left);
            // Learn only from a span long enough to mean something: a few hundred rows.
            if moved >= 200 && drop > 0 {
                let ratio = (moved as f64 / drop as f64).clamp(CORRECTION_MIN, CORRECTION_MAX);
                self.correction = Some(match self.correction {
                    Some(c) => 0.5 * c + 0.5 * ratio,
                    None => ratio,
                });
            }
        }
        self.last = Some((rows_left, rows_moved));
    }

    /// Rows left now that the run has moved `rows_moved`.
    pub fn rows_left(&self, rows_moved: u64) -> Option<u64> {
        let (estimate, moved_then) = self.last?;
        let corrected = estimate as f64 * self.correction.unwrap_or(1.0);
        let left = corrected - rows_moved.saturating_sub(moved_then) as f64;
        // Rounded, non-negative, far below 2^53.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(left.max(0.0).round() as u64)
    }
}

/// The progress of one invocation.
pub struct Progress {
    display: Display,
    bar: Option<ProgressBar>,
    started: Instant,
    /// The run's rows moved when this invocation first saw it.
    rows_at_start: Option<(u64, u64)>,
    estimator: Estimator,
    next_estimate: Instant,
    next_line: Instant,
    latest: Snapshot,
    /// The latest figures for readers elsewhere (the control socket's status).
    shared: std::sync::Arc<std::sync::Mutex<Snapshot>>,
    /// The task showing what the job waits for while it waits ([`Progress::watch_waits`]).
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// Whether the exact count of the rows left was tried ([`Progress::count_turn`]).
    count_tried: bool,
}

/// How often the display looks at what the job waits for, in milliseconds.
const WAITS_POLL_MS: u64 = 500;

impl Progress {
    /// Progress shown on `display`, from now.
    pub fn new(display: Display) -> Progress {
        let now = Instant::now();
        let bar = (display == Display::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{bar:30}] {human_pos}/{human_len} rows  {msg}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar
        });
        Progress {
            display,
            bar,
            started: now,
            rows_at_start: None,
            estimator: Estimator::default(),
            next_estimate: now,
            next_line: now + Self::line_interval(display),
            latest: Snapshot::default(),
            shared: std::sync::Arc::default(),
            watcher: None,
            count_tried: false,
        }
    }

    /// Shows, while the job waits between batches (the throttle holding it), why: `waiting`
    /// is asked every [`WAITS_POLL_MS`] from a task of its own, since the loop that would
    /// redraw is the one waiting. The bar's message and the shared figures say it.
    pub fn watch_waits(&mut self, waiting: impl Fn() -> Option<String> + Send + 'static) {
        let (bar, shared) = (self.bar.clone(), self.shared.clone());
        self.watcher = Some(tokio::spawn(async move {
            let mut shown = false;
            loop {
                tokio::time::sleep(Duration::from_millis(WAITS_POLL_MS)).await;
                let reason = waiting();
                if reason.is_none() && !shown {
                    continue;
                }
                shown = reason.is_some();
                let snapshot = match shared.lock() {
                    Ok(mut s) => {
                        s.waiting = reason;
                        s.clone()
                    }
                    Err(_) => continue,
                };
                if let Some(bar) = &bar {
                    bar.set_message(short_line(&snapshot));
                }
            }
        }));
    }

    fn line_interval(display: Display) -> Duration {
        match display {
            Display::Lines(every) => every,
            _ => Duration::from_secs(LINE_INTERVAL_S_DEFAULT),
        }
    }

    /// Whether the rows left should be asked for again (never once they were counted).
    pub fn estimate_due(&self) -> bool {
        !self.estimator.is_counted() && Instant::now() >= self.next_estimate
    }

    /// Whether this ask may try the exact count: only the first of the invocation does. A count
    /// that was refused or ran out of its time is not tried again (every retry would cost the
    /// server up to `db::COUNT_TIME_S_MAX` again); the optimizer's estimate serves from then on.
    pub fn count_turn(&mut self) -> bool {
        !std::mem::replace(&mut self.count_tried, true)
    }

    /// What the server said about the rows left when the run had moved `rows_moved`.
    pub fn estimated(&mut self, rows_left: RowsLeft, rows_moved: u64) {
        self.next_estimate = Instant::now() + Duration::from_secs(ESTIMATE_REFRESH_S);
        match rows_left {
            RowsLeft::Counted(rows) => self.estimator.counted(rows, rows_moved),
            RowsLeft::Estimated(rows) => self.estimator.update(rows, rows_moved),
            RowsLeft::Unknown => {}
        }
    }

    /// The latest figures.
    pub fn snapshot(&self) -> &Snapshot {
        &self.latest
    }

    /// The latest figures as other tasks read them, updated with every redraw.
    pub fn shared(&self) -> std::sync::Arc<std::sync::Mutex<Snapshot>> {
        self.shared.clone()
    }

    /// Says why the job waits (`None` when it goes on), and redraws.
    pub fn waiting(&mut self, reason: Option<String>) {
        self.latest.waiting = reason;
        self.draw();
    }

    /// The open run as the log now says: its id, rows moved, batches done, rows per batch.
    pub fn update(&mut self, run_id: u64, rows_moved: u64, batches_done: u64, batch_rows: u32) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let start = match self.rows_at_start {
            Some((run, rows)) if run == run_id => rows,
            _ => {
                self.rows_at_start = Some((run_id, rows_moved));
                rows_moved
            }
        };
        let now_moved = rows_moved.saturating_sub(start);
        let rate = (elapsed > 0.0 && now_moved > 0).then(|| now_moved as f64 / elapsed);
        let rows_left = self.estimator.rows_left(rows_moved);
        let eta_s = match (rows_left, rate) {
            (Some(left), Some(rate)) => Some(left as f64 / rate),
            _ => None,
        };
        self.latest = Snapshot {
            run_id,
            rows_moved,
            batches_done,
            batch_rows,
            rows_moved_now: now_moved,
            elapsed_s: elapsed,
            rows_per_s: rate,
            rows_left,
            eta_s,
            waiting: self.latest.waiting.take(),
        };
        self.draw();
    }

    fn draw(&mut self) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.clone_from(&self.latest);
        }
        let s = &self.latest;
        match self.display {
            Display::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_length(s.rows_moved + s.rows_left.unwrap_or(0));
                    bar.set_position(s.rows_moved);
                    bar.set_message(short_line(s));
                    bar.tick();
                }
            }
            Display::Lines(every) => {
                let now = Instant::now();
                if now >= self.next_line {
                    self.next_line = now + every;
                    log_line(s);
                }
            }
            Display::Off => {}
        }
    }

    /// Clears the bar (the end-of-run summary line follows).
    pub fn finish(&self) {
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The bar's message: rate, batch size, ETA or what the job waits for.
fn short_line(s: &Snapshot) -> String {
    let rate = s
        .rows_per_s
        .map_or("- rows/s".to_string(), |r| format!("{r:.0} rows/s"));
    let tail = match (&s.waiting, s.eta_s) {
        (Some(reason), _) => format!("waiting: {reason}"),
        (None, Some(eta)) => format!("ETA {}", eta_text(eta)),
        (None, None) => "ETA unknown".to_string(),
    };
    format!("{rate}  batch {} rows  {tail}", s.batch_rows)
}

/// Seconds as `1h02m`, `3m05s` or `42s`.
pub fn eta_text(seconds: f64) -> String {
    // Whole seconds of a duration far below 2^53 s.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The interval line without a terminal, with every figure as a field for `--log-format json`.
fn log_line(s: &Snapshot) {
    tracing::info!(
        target: "archiver::progress",
        run_id = s.run_id,
        rows_moved = s.rows_moved,
        rows_moved_now = s.rows_moved_now,
        rows_per_s = s.rows_per_s.map(|r| r.round()),
        rows_left = s.rows_left,
        eta_s = s.eta_s.map(|e| e.round()),
        batch_rows = s.batch_rows,
        waiting = s.waiting.as_deref(),
        "progress: run {}: {} rows moved ({} in this invocation), {}",
        s.run_id,
        s.rows_moved,
        s.rows_moved_now,
        short_line(s)
    );
}

#[cfg(test)]
mod tests {
    use super::{eta_text, Estimator};

    #[test]
    fn an_accurate_estimate_counts_down_with_the_rows_moved() {
        let mut e = Estimator::default();
        assert_eq!(e.rows_left(0), None);
        e.update(10_000, 0);
        assert_eq!(e.rows_left(2_500), Some(7_500));
        e.update(7_400, 2_600);
        assert_eq!(e.rows_left(2_600), Some(7_400));
        assert_eq!(e.rows_left(20_000), Some(0), "never negative");
    }

    #[test]
    fn an_estimate_counting_every_row_of_the_range_is_corrected_to_the_matching_share() {
        // An unindexed predicate matching a third of the rows: the optimizer counts them all.
        let mut e = Estimator::default();
        e.update(90_000, 0);
        assert_eq!(e.rows_left(0), Some(90_000), "nothing learned yet");
        e.update(60_000, 10_000);
        assert_eq!(e.rows_left(10_000), Some(20_000));
        e.update(30_000, 20_000);
        assert_eq!(e.rows_left(25_000), Some(5_000));
    }

    #[test]
    fn a_count_is_kept_and_only_the_rows_moved_change_it() {
        let mut e = Estimator::default();
        e.update(90_000, 0);
        e.counted(30_000, 1_000);
        e.update(5, 2_000);
        assert_eq!(e.rows_left(11_000), Some(20_000));
        assert!(e.is_counted());
    }

    #[test]
    fn eta_reads_as_a_person_would_say_it() {
        assert_eq!(eta_text(42.4), "42s");
        assert_eq!(eta_text(185.0), "3m05s");
        assert_eq!(eta_text(3720.0), "1h02m");
        assert_eq!(eta_text(-3.0), "0s");
    }
}
