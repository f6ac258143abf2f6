//! Where a run invocation's wall time went, by action, like pt-archiver's `--statistics`:
//! printed at the end of `archiver run --statistics`. The times are taken where the work
//! happens (the engine around planning and waits, `db::times` around each statement group,
//! the journal around appends and syncs), one `Instant` per step; what no step measured is
//! "other" (connecting, the pre-flight, reading the log, waiting after a failure).

use std::time::Duration;

use super::sizing::SizingSummary;
use crate::db::{BatchTimes, Tally};
use crate::journal::WalTimes;

/// A run invocation's time by action, and what it moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statistics {
    /// The run's key bound and each batch's planning read.
    pub plan: Tally,
    /// The server's share of the batches, by step.
    pub batch: BatchTimes,
    /// WAL appends and syncs.
    pub wal: WalTimes,
    /// Waiting on purpose between batches (`sleep_ms`, throttles).
    pub throttle: Tally,
    /// Wall time of the invocation.
    pub wall: Duration,
    /// Rows moved (deleted from the source after an identical copy).
    pub rows: u64,
    /// Batches done.
    pub batches: u64,
    /// The batch sizes planned, and how they were chosen; `None` when the run never got as
    /// far as its loop.
    pub sizing: Option<SizingSummary>,
}

impl Statistics {
    /// The measured actions, as (name, count, time).
    pub fn actions(&self) -> [(&'static str, u64, Duration); 8] {
        let b = &self.batch;
        [
            ("plan", self.plan.count, self.plan.total),
            ("lock", b.lock.count, b.lock.total),
            ("copy", b.copy.count, b.copy.total),
            ("delete", b.delete.count, b.delete.total),
            ("commit", b.commit.count, b.commit.total),
            ("wal_append", self.wal.appends, self.wal.append),
            ("wal_sync", self.wal.syncs, self.wal.sync),
            ("throttle", self.throttle.count, self.throttle.total),
        ]
    }

    /// The wall time no action accounts for.
    pub fn other(&self) -> Duration {
        let measured: Duration = self.actions().iter().map(|(_, _, time)| *time).sum();
        self.wall.saturating_sub(measured)
    }

    /// The table for people: one line per action with its count, seconds and share of the
    /// wall time, then "other", the wall time, and rows with their rate.
    pub fn lines(&self) -> Vec<String> {
        let wall = self.wall.as_secs_f64();
        let share = |time: Duration| {
            if wall > 0.0 {
                100.0 * time.as_secs_f64() / wall
            } else {
                0.0
            }
        };
        let mut lines = vec![format!(
            "{:<12} {:>10} {:>12} {:>7}",
            "action", "count", "seconds", "%wall"
        )];
        for (name, count, time) in self.actions() {
            lines.push(format!(
                "{name:<12} {count:>10} {:>12.3} {:>6.1}%",
                time.as_secs_f64(),
                share(time)
            ));
        }
        let other = self.other();
        lines.push(format!(
            "{:<12} {:>10} {:>12.3} {:>6.1}%",
            "other",
            "-",
            other.as_secs_f64(),
            share(other)
        ));
        lines.push(format!(
            "{:<12} {:>10} {wall:>12.3} {:>6.1}%",
            "wall", "-", 100.0
        ));
        // Batches in flight side by side (`parallel`), and the sync beside them, are timed
        // each on its own: their times then add up to more than the wall time.
        let measured: Duration = self.actions().iter().map(|(_, _, time)| *time).sum();
        if measured > self.wall {
            lines.push(format!(
                "overlap: the actions' times add up to {:.1}% of the wall time (batches in flight side by side, and the sync beside them, are each timed in full)",
                share(measured)
            ));
        }
        let rate = if wall > 0.0 {
            self.rows as f64 / wall
        } else {
            0.0
        };
        lines.push(format!(
            "rows {} in {} batches, {rate:.0} rows/s over the wall time",
            self.rows, self.batches
        ));
        if let Some(sizing) = &self.sizing {
            lines.push(sizing.line());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "other" is the wall time no action accounts for, and every line names its action.
    #[test]
    fn other_is_what_the_actions_leave_of_the_wall_time() {
        let ms = Duration::from_millis;
        let mut stats = Statistics {
            wall: ms(1_000),
            rows: 500,
            batches: 5,
            ..Statistics::default()
        };
        stats.plan = Tally {
            count: 6,
            total: ms(100),
        };
        stats.batch.copy = Tally {
            count: 5,
            total: ms(300),
        };
        stats.wal.syncs = 7;
        stats.wal.sync = ms(50);
        assert_eq!(stats.other(), ms(550));
        let text = stats.lines().join("\n");
        for name in [
            "plan",
            "lock",
            "copy",
            "delete",
            "commit",
            "wal_append",
            "wal_sync",
            "throttle",
            "other",
            "wall",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
        assert!(text.contains("rows 500 in 5 batches, 500 rows/s"), "{text}");
        assert!(!text.contains("batch rows"), "no sizes without a run loop");
        let mut sizing = crate::engine::sizing::Sizing::new(crate::engine::sizing::SizingConfig {
            target: Some(ms(500)),
            rows_min: 1,
            rows_max: 100_000,
        });
        sizing.rows(100, false);
        stats.sizing = Some(sizing.summary());
        assert_eq!(
            stats.lines().last().unwrap(),
            "batch rows: adaptive (batch_time_ms 500, 1 to 100000): first 100, last 100, smallest 100, largest 100, over 1 plan"
        );
        assert!(!text.contains("overlap"), "{text}");
        stats.wall = ms(10);
        assert_eq!(stats.other(), Duration::ZERO, "never negative");
        let text = stats.lines().join("\n");
        assert!(
            text.contains("overlap: the actions' times add up to 4500.0% of the wall time"),
            "{text}"
        );
    }
}
