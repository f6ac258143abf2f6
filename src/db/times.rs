//! Where a batch's time goes on the servers, step by step, for the run's statistics
//! (`archiver run --statistics`) and the batch duration histogram: one `Instant` per statement
//! group, no allocation, nothing per row.

use std::time::{Duration, Instant};

/// How often one step ran and how long it took in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Times the step ran (a failed try counts: its time was spent).
    pub count: u64,
    /// Time spent in it.
    pub total: Duration,
}

impl Tally {
    /// Counts one run of the step, begun at `started`.
    pub fn add_since(&mut self, started: Instant) {
        self.count += 1;
        self.total += started.elapsed();
    }

    /// Adds the runs and time of another tally of the same step.
    pub fn add(&mut self, other: Tally) {
        self.count += other.count;
        self.total += other.total;
    }
}

/// The server's share of the batches, by step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchTimes {
    /// Starting the batch's transaction and its locking read (`SELECT … FOR UPDATE`).
    pub lock: Tally,
    /// Copying into the archive (`INSERT … SELECT`, or with the archive on its own server:
    /// reading what it holds under the locked keys and inserting the rest).
    pub copy: Tally,
    /// Deleting the archived rows from the source and checking what the delete left (with the
    /// archive on its own server: reading its committed copies back first).
    pub delete: Tally,
    /// `COMMIT` (or `ROLLBACK` after a failure) of the batch's transactions.
    pub commit: Tally,
}

impl BatchTimes {
    /// Adds another batch's times (batches in flight side by side keep their own). Their
    /// sum can exceed the wall time they ran in.
    pub fn add(&mut self, other: &BatchTimes) {
        self.lock.add(other.lock);
        self.copy.add(other.copy);
        self.delete.add(other.delete);
        self.commit.add(other.commit);
    }
}
