//! [`Sizing`]: how many rows the next batch plans, so that one batch's execution takes about
//! the job's target time (`[job] batch_time_ms`), like pt-online-schema-change's
//! `--chunk-time`. Execution policy, as the throttle is: the state machine's `PlanOrder.rows`
//! stays the configured (or live-set) size, and the engine asks this for the rows it actually
//! plans, which `BatchPlanned.rows_planned` records. Pure: fed the measured time and rows of
//! each batch attempt, it answers sizes; no clock, no I/O, no async.
//!
//! The rule, and why:
//!
//! - **It learns a cost per row** (seconds per row locked, copied and deleted), averaged over
//!   batches, and sizes the next batch as `target / cost`, within `batch_rows_min` ..
//!   `batch_rows_max`. A batch's fixed cost (round trips, the WAL sync, the commit) makes small
//!   batches look dear per row, so from a small start the size approaches the target from
//!   below.
//! - **A slow batch shrinks the size at once**: one that took more than [`SLOW_FACTOR`] times
//!   the target replaces the learned cost with its own, whatever made it slow (more rows per
//!   page, a cold cache, another session's locks): while the server is that slow, smaller
//!   batches hold fewer locks for less time. One merely over the target is averaged in, and
//!   shrinks the size once the average says so.
//! - **A batch within the target never shrinks it**: finishing in time is no evidence that the
//!   size is too big (a short last batch of a run costs more per row, and must not collapse
//!   the size).
//! - **It grows gradually**: at most [`GROWTH_PER_BATCH_MAX`] times per batch, from a cost that
//!   is averaged ([`SMOOTHING`]), so one fast batch cannot make the next one huge.
//! - **It does not oscillate**: a new size within [`TOLERANCE`] of the current one is not
//!   taken, so batches that land near the target keep their size.
//! - **A failed attempt teaches no cost per row** (its rows are unknown, and a deadlock fails
//!   fast whatever the size), but one that failed after more than the target (a lock wait
//!   timeout) shrinks the size by the same ratio a slow batch would: contention is when
//!   smaller batches help.
//!
//! Off (`batch_time_ms = 0`), every batch plans the order's rows. A size set live (`archiver
//! ctl set batch_rows=N`) is the operator's decision and fixes the size for the rest of that
//! run: the controller stands aside and plans exactly the order's rows.

use std::time::Duration;

use crate::config::Batching;

/// How far a new size must differ from the current one to be taken (as a factor: 0.25 =
/// 25%). This
/// machine's batch times vary by about 10% from one batch to the next, and more when other
/// processes share its cores.
pub const TOLERANCE: f64 = 0.25;

/// A batch that took more than this times the target is slow: its own cost per row replaces
/// the average at once. Above the no-change band, so that a size near the target whose batch
/// was merely unlucky (a noisy 20% over) is not cut.
pub const SLOW_FACTOR: f64 = 1.5;

/// Largest factor by which one batch may grow the size: from 1,000 rows to 25,000 takes 8
/// batches.
pub const GROWTH_PER_BATCH_MAX: f64 = 1.5;

/// Weight of a new batch's cost per row in the average (exponential moving average); the rest
/// is the history's. pt-online-schema-change weighs its rate the same way. With 0.5, batch times
/// varying by 20% either way moved a settled size every 60 batches or so (the unit test's
/// noisy server); with 0.25, never in 500, and a server that stays 40% slower is still followed
/// within 5 batches.
pub const SMOOTHING: f64 = 0.25;

const _: () = assert!(TOLERANCE > 0.0 && TOLERANCE < 1.0);
// Growth must be able to leave the no-change band, or the size could never grow.
const _: () = assert!(GROWTH_PER_BATCH_MAX > 1.0 + TOLERANCE);
const _: () = assert!(SMOOTHING > 0.0 && SMOOTHING <= 1.0);
const _: () = assert!(SLOW_FACTOR > 1.0 + TOLERANCE);

/// What the job file says about batch sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizingConfig {
    /// Target execution time of one batch; `None`: the size is fixed at the order's rows.
    pub target: Option<Duration>,
    /// Smallest adaptive size (`batch_rows_min`).
    pub rows_min: u32,
    /// Largest adaptive size (`batch_rows_max`).
    pub rows_max: u32,
}

impl SizingConfig {
    /// The job file's `batch_time_ms`, `batch_rows_min` and `batch_rows_max`.
    pub fn of(batching: &Batching) -> SizingConfig {
        SizingConfig {
            target: (batching.time_ms > 0)
                .then(|| Duration::from_millis(u64::from(batching.time_ms))),
            rows_min: batching.rows_min,
            rows_max: batching.rows_max,
        }
    }
}

/// How the size of the next batch is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `batch_time_ms = 0`: every batch plans `batch_rows`.
    Fixed,
    /// Aiming at the target time.
    Adaptive,
    /// The run's size was set live (`ctl set batch_rows`): fixed for the rest of the run.
    SetLive,
}

/// The sizes this invocation planned, for `run --statistics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizingSummary {
    /// The job's sizing.
    pub config: SizingConfig,
    /// How the last size was decided.
    pub mode: Mode,
    /// Rows asked of the first plan, the last, the fewest and the most; `None` before any.
    pub planned: Option<Planned>,
}

/// Rows asked of this invocation's plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// The first plan's.
    pub first: u32,
    /// The last plan's.
    pub last: u32,
    /// The fewest.
    pub smallest: u32,
    /// The most.
    pub largest: u32,
    /// How many plans asked.
    pub plans: u64,
}

impl SizingSummary {
    /// One line for `run --statistics`, e.g. "batch rows: adaptive (batch_time_ms 500, 1 to
    /// 10000): first 1000, last 10000, smallest 1000, largest 10000, over 80 plans".
    pub fn line(&self) -> String {
        let how = match (self.mode, self.config.target) {
            (Mode::Adaptive, Some(target)) => format!(
                "adaptive (batch_time_ms {}, {} to {})",
                target.as_millis(),
                self.config.rows_min,
                self.config.rows_max
            ),
            (Mode::SetLive, _) => "set live (ctl set batch_rows), fixed".to_string(),
            _ => "fixed (batch_time_ms 0)".to_string(),
        };
        match self.planned {
            None => format!("batch rows: {how}: no batch planned"),
            Some(p) => format!(
                "batch rows: {how}: first {}, last {}, smallest {}, largest {}, over {} plan{}",
                p.first,
                p.last,
                p.smallest,
                p.largest,
                p.plans,
                if p.plans == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The batch-size controller: see the module doc.
#[derive(Debug, Clone)]
pub struct Sizing {
    /// The job's sizing.
    config: SizingConfig,
    /// How the next size is decided.
    mode: Mode,
    /// Rows the next plan asks for; `None` until the first order gives the starting size.
    next: Option<u32>,
    /// Learned execution time per row, in seconds; `None` until a batch succeeded.
    per_row_s: Option<f64>,
    /// What this invocation planned.
    planned: Option<Planned>,
}

impl Sizing {
    /// A controller for the job's sizing, which starts from the first order's rows.
    pub fn new(config: SizingConfig) -> Sizing {
        assert!(
            1 <= config.rows_min && config.rows_min <= config.rows_max,
            "the job file's batch_rows_min and batch_rows_max were validated: {config:?}"
        );
        let mode = if config.target.is_some_and(|t| !t.is_zero()) {
            Mode::Adaptive
        } else {
            Mode::Fixed
        };
        Sizing {
            config,
            mode,
            next: None,
            per_row_s: None,
            planned: None,
        }
    }

    /// The rows the next batch plans, given the order's (`PlanOrder.rows`) and whether the run's
    /// size was set live. The first adaptive answer is the order's rows (the job's
    /// `batch_rows`, within the bounds); later ones follow the measured batches.
    pub fn rows(&mut self, order_rows: u32, set_live: bool) -> u32 {
        assert!(order_rows >= 1, "a plan order asks for at least one row");
        let rows = match self.mode {
            Mode::Fixed => order_rows,
            _ if set_live => {
                self.mode = Mode::SetLive;
                order_rows
            }
            Mode::SetLive => {
                // A new run, with no live size: adapt again from its order.
                self.mode = Mode::Adaptive;
                self.per_row_s = None;
                self.start(order_rows)
            }
            Mode::Adaptive => match self.next {
                Some(next) => next,
                None => self.start(order_rows),
            },
        };
        self.next = Some(rows);
        self.note_planned(rows);
        rows
    }

    /// The size the next plan asks for (the last one asked, until a batch changes it); `None`
    /// before the first plan.
    pub fn current(&self) -> Option<u32> {
        self.next
    }

    /// What this invocation planned, for `run --statistics`.
    pub fn summary(&self) -> SizingSummary {
        SizingSummary {
            config: self.config,
            mode: self.mode,
            planned: self.planned,
        }
    }

    /// Learns from a batch attempt that committed: `rows` it locked (deleted, or kept for
    /// conflicts) in `elapsed`, from reaching its server(s) to its outcome recorded.
    pub fn batch_done(&mut self, rows: u64, elapsed: Duration) {
        let (Mode::Adaptive, Some(target), Some(current)) =
            (self.mode, self.config.target, self.next)
        else {
            return;
        };
        if rows == 0 {
            return; // a batch whose rows had gone: nothing to learn of their cost
        }
        let target_s = target.as_secs_f64();
        let elapsed_s = elapsed.as_secs_f64();
        let sample = elapsed_s / rows as f64;
        let slow = elapsed_s > target_s * SLOW_FACTOR;
        let per_row_s = match self.per_row_s {
            Some(average) if !slow => average + SMOOTHING * (sample - average),
            _ => sample,
        };
        self.per_row_s = Some(per_row_s);
        let ideal = target_s / per_row_s; // +inf for a batch timed at zero
        let current = f64::from(current);
        let next = if slow {
            ideal.min(current)
        } else if elapsed_s > target_s && ideal < current / (1.0 + TOLERANCE) {
            ideal
        } else if elapsed_s <= target_s && ideal > current * (1.0 + TOLERANCE) {
            ideal.min(current * GROWTH_PER_BATCH_MAX)
        } else {
            current
        };
        self.next = Some(self.bounded(next));
    }

    /// Learns from a batch attempt that failed after `elapsed`: see the module doc.
    pub fn batch_failed(&mut self, elapsed: Duration) {
        let (Mode::Adaptive, Some(target), Some(current)) =
            (self.mode, self.config.target, self.next)
        else {
            return;
        };
        let ratio = target.as_secs_f64() / elapsed.as_secs_f64();
        if ratio < 1.0 / SLOW_FACTOR {
            self.next = Some(self.bounded(f64::from(current) * ratio));
        }
    }

    /// The starting size: the order's rows within the bounds (the job file refuses a
    /// `batch_rows` outside them, but a `PlanOrder` may come from a run started before the
    /// bounds changed).
    fn start(&self, order_rows: u32) -> u32 {
        order_rows.clamp(self.config.rows_min, self.config.rows_max)
    }

    /// A size in rows, rounded, within the bounds.
    fn bounded(&self, rows: f64) -> u32 {
        let (min, max) = (self.config.rows_min, self.config.rows_max);
        let rows = rows.round().clamp(f64::from(min), f64::from(max));
        // Within u32's range by the clamp; NaN cannot reach here (rows > 0, times finite).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rows = rows as u32;
        rows.clamp(min, max)
    }

    fn note_planned(&mut self, rows: u32) {
        self.planned = Some(match self.planned {
            None => Planned {
                first: rows,
                last: rows,
                smallest: rows,
                largest: rows,
                plans: 1,
            },
            Some(p) => Planned {
                first: p.first,
                last: rows,
                smallest: p.smallest.min(rows),
                largest: p.largest.max(rows),
                plans: p.plans + 1,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn adaptive(target_ms: u64, rows_min: u32, rows_max: u32) -> Sizing {
        Sizing::new(SizingConfig {
            target: Some(MS(target_ms)),
            rows_min,
            rows_max,
        })
    }

    /// A server on which a batch of `rows` takes 3 ms plus 20 us a row (round trips, sync and
    /// commit, then the rows), times `noise`.
    fn batch_time(rows: u32, noise: f64) -> Duration {
        Duration::from_secs_f64((0.003 + 0.000_020 * f64::from(rows)) * noise)
    }

    /// Plans and executes `batches` batches on that server, each taking `noise(i)` times the
    /// model's time; returns the sizes planned.
    fn drive(
        sizing: &mut Sizing,
        order_rows: u32,
        batches: usize,
        noise: &dyn Fn(usize) -> f64,
    ) -> Vec<u32> {
        (0..batches)
            .map(|i| {
                let rows = sizing.rows(order_rows, false);
                sizing.batch_done(u64::from(rows), batch_time(rows, noise(i)));
                rows
            })
            .collect()
    }

    /// The size where a batch takes the target: 200 ms = 3 ms + 20 us x 9,850 rows.
    const FIXED_POINT_ROWS: f64 = 9_850.0;

    #[test]
    fn from_a_small_start_it_grows_gradually_to_the_target_and_stays_there() {
        let mut sizing = adaptive(200, 1, 100_000);
        let sizes = drive(&mut sizing, 10, 60, &|_| 1.0);
        assert_eq!(sizes[0], 10, "starts from batch_rows");
        for pair in sizes.windows(2) {
            assert!(
                pair[1] >= pair[0],
                "never shrinks on a steady server: {sizes:?}"
            );
            assert!(
                f64::from(pair[1]) <= f64::from(pair[0]) * GROWTH_PER_BATCH_MAX + 0.5,
                "grows at most 1.5x a batch: {sizes:?}"
            );
        }
        let last = f64::from(*sizes.last().unwrap());
        assert!(
            (FIXED_POINT_ROWS / (1.0 + TOLERANCE)..=FIXED_POINT_ROWS).contains(&last),
            "converged near the target from below: {last} ({sizes:?})"
        );
        let settled = sizes.iter().position(|&s| f64::from(s) == last).unwrap();
        assert!(settled < 25, "converged within 25 batches: {sizes:?}");
        assert!(batch_time(*sizes.last().unwrap(), 1.0) <= MS(200));
    }

    #[test]
    fn noisy_batch_times_do_not_make_the_size_oscillate() {
        let mut sizing = adaptive(200, 1, 100_000);
        // Each batch 0.8 to 1.2 times the model's time, pseudo-random (a fixed LCG).
        let noise = |i: usize| {
            let x = (i as u64)
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1)
                >> 33;
            0.8 + 0.4 * (x % 1_000) as f64 / 1_000.0
        };
        let sizes = drive(&mut sizing, 1_000, 500, &noise);
        let tail = &sizes[40..];
        let changes = tail.windows(2).filter(|p| p[0] != p[1]).count();
        assert_eq!(changes, 0, "a settled size stays settled: {tail:?}");
        let last = f64::from(*sizes.last().unwrap());
        assert!(last >= FIXED_POINT_ROWS * 0.6, "{last}");
    }

    #[test]
    fn sizes_stay_within_the_bounds() {
        // (bounds, start, noise): slow server, fast server, start outside the bounds.
        let cases: &[(u32, u32, u32, f64)] = &[
            (1, 5_000, 1_000, 1.0),
            (100, 100_000, 1_000, 100.0),
            (100, 100_000, 1_000, 0.001),
            (500, 2_000, 10, 1.0),
            (500, 2_000, 50_000, 1.0),
            (1, 1, 1, 1.0),
        ];
        for &(min, max, start, noise) in cases {
            let mut sizing = adaptive(200, min, max);
            let sizes = drive(&mut sizing, start, 50, &|_| noise);
            assert!(
                sizes.iter().all(|s| (min..=max).contains(s)),
                "{min}..={max} from {start} x{noise}: {sizes:?}"
            );
            let end = *sizes.last().unwrap();
            if noise > 10.0 {
                assert_eq!(end, min, "a slow server pins the smallest size");
            } else if noise < 0.01 || max <= 5_000 {
                assert_eq!(end, max, "a fast server pins the largest size");
            }
        }
    }

    #[test]
    fn a_slow_batch_shrinks_the_size_at_once_and_it_grows_back_gradually() {
        let mut sizing = adaptive(200, 1, 100_000);
        drive(&mut sizing, 1_000, 40, &|_| 1.0);
        let settled = sizing.current().unwrap();
        // Another session held the rows' locks: the batch took 5 s instead of 200 ms.
        let rows = sizing.rows(1_000, false);
        assert_eq!(rows, settled);
        sizing.batch_done(u64::from(rows), Duration::from_secs(5));
        let shrunk = sizing.current().unwrap();
        assert_eq!(
            shrunk,
            self::shrunk(settled, 0.2 / 5.0),
            "target / measured cost per row"
        );
        let after = drive(&mut sizing, 1_000, 20, &|_| 1.0);
        assert_eq!(after[0], shrunk);
        for pair in after.windows(2) {
            assert!(f64::from(pair[1]) <= f64::from(pair[0]) * GROWTH_PER_BATCH_MAX + 0.5);
        }
        assert!(
            f64::from(*after.last().unwrap()) >= f64::from(settled) / (1.0 + TOLERANCE),
            "back near the settled size: {after:?}"
        );
        // A batch a little over the target changes nothing.
        let before = sizing.current().unwrap();
        sizing.batch_done(u64::from(before), MS(240));
        assert_eq!(sizing.current(), Some(before));
    }

    #[test]
    fn a_server_that_stays_slower_shrinks_the_size_within_a_few_batches() {
        let mut sizing = adaptive(200, 1, 100_000);
        drive(&mut sizing, 1_000, 40, &|_| 1.0);
        let settled = sizing.current().unwrap();
        // Every batch now 1.4 times as long: over the target, never "slow".
        let sizes = drive(&mut sizing, 1_000, 10, &|_| 1.4);
        let shrunk_at = sizes.iter().position(|&s| s < settled).expect("shrinks");
        assert!(shrunk_at <= 6, "{sizes:?}");
        let last = *sizes.last().unwrap();
        assert!(
            batch_time(last, 1.4) <= MS(200) + MS(200) / 4,
            "back near the target: {last} ({sizes:?})"
        );
    }

    #[test]
    fn a_fast_batch_never_shrinks_the_size() {
        let mut sizing = adaptive(200, 1, 100_000);
        drive(&mut sizing, 1_000, 40, &|_| 1.0);
        let settled = sizing.current().unwrap();
        // The run's last batch: 3 rows in 5 ms, dear per row but well within the target.
        sizing.rows(1_000, false);
        sizing.batch_done(3, MS(5));
        assert_eq!(sizing.current(), Some(settled));
        // A batch whose rows had all gone teaches nothing.
        sizing.batch_done(0, Duration::from_secs(30));
        assert_eq!(sizing.current(), Some(settled));
    }

    /// `rows` times `ratio`, rounded, as the controller computes it.
    fn shrunk(rows: u32, ratio: f64) -> u32 {
        let rows = (f64::from(rows) * ratio).round();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rows = rows as u32;
        rows
    }

    #[test]
    fn failed_attempts_shrink_only_when_they_took_longer_than_the_target() {
        let mut sizing = adaptive(200, 10, 100_000);
        drive(&mut sizing, 1_000, 40, &|_| 1.0);
        let settled = sizing.current().unwrap();
        // (failed after, size after): a deadlock fails fast; a lock wait timeout after 10 s
        // shrinks by 200 ms / 10 s; a second one would go below the bound.
        let cases = [
            (MS(5), settled),
            (MS(290), settled),
            (Duration::from_secs(10), shrunk(settled, 0.2 / 10.0)),
            (Duration::from_secs(10), 10),
        ];
        for (elapsed, expected) in cases {
            sizing.batch_failed(elapsed);
            assert_eq!(
                sizing.current(),
                Some(expected),
                "after a failure in {elapsed:?}"
            );
        }
        // The learned cost per row is untouched: the next batches grow again at once.
        let after = drive(&mut sizing, 1_000, 3, &|_| 1.0);
        assert_eq!(after, vec![10, 15, 23]);
    }

    #[test]
    fn fixed_and_live_sizes_are_planned_as_ordered() {
        let mut fixed = Sizing::new(SizingConfig {
            target: None,
            rows_min: 1,
            rows_max: 100_000,
        });
        let sizes = drive(&mut fixed, 1_000, 10, &|_| 1.0);
        assert!(sizes.iter().all(|&s| s == 1_000), "{sizes:?}");
        fixed.batch_failed(Duration::from_secs(10));
        assert_eq!(fixed.rows(1_000, false), 1_000);
        assert_eq!(fixed.summary().mode, Mode::Fixed);

        let mut sizing = adaptive(200, 1, 100_000);
        drive(&mut sizing, 1_000, 5, &|_| 1.0);
        assert!(sizing.current().unwrap() > 1_000);
        // `ctl set batch_rows=200`: exactly 200 from now on, whatever the batches take.
        for _ in 0..5 {
            let rows = sizing.rows(200, true);
            assert_eq!(rows, 200);
            sizing.batch_done(200, MS(1));
            sizing.batch_failed(Duration::from_secs(10));
        }
        assert_eq!(sizing.summary().mode, Mode::SetLive);
        assert_eq!(sizing.current(), Some(200));
        // A run without a live size adapts again, from its order.
        assert_eq!(sizing.rows(1_000, false), 1_000);
        assert_eq!(sizing.summary().mode, Mode::Adaptive);
    }

    #[test]
    fn the_summary_says_what_was_planned() {
        let mut sizing = adaptive(500, 1, 100_000);
        assert_eq!(
            sizing.summary().line(),
            "batch rows: adaptive (batch_time_ms 500, 1 to 100000): no batch planned"
        );
        for (rows, elapsed) in [(100, MS(10)), (150, MS(10)), (225, MS(4_500))] {
            assert_eq!(sizing.rows(100, false), rows);
            sizing.batch_done(u64::from(rows), elapsed);
        }
        sizing.rows(100, false);
        assert_eq!(
            sizing.summary().line(),
            "batch rows: adaptive (batch_time_ms 500, 1 to 100000): first 100, last 25, smallest 25, largest 225, over 4 plans"
        );
        sizing.rows(7, true);
        assert!(sizing.summary().line().starts_with("batch rows: set live"));
    }
}
