//! Limits on the numbers a job file sets: each `[job]` key's range and default, in one table,
//! checked by one function, so a range and the message refusing a value outside it are written
//! once.

use super::{err, ConfigError};

/// The accepted range and the default of one number in `[job]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The key in `[job]`, as the operator writes it and as messages name it.
    pub key: &'static str,
    /// Smallest accepted value.
    pub min: u32,
    /// Largest accepted value.
    pub max: u32,
    /// The value when the key is absent.
    pub default: u32,
}

impl Limit {
    /// Whether the default lies within the range: asserted for every limit at compile time.
    const fn default_in_range(&self) -> bool {
        self.min <= self.default && self.default <= self.max
    }

    /// The configured value, or the default when absent; an error naming the key and the range
    /// when the value is out of range.
    pub fn value(&self, configured: Option<u32>) -> Result<u32, ConfigError> {
        self.value_in("job", configured)
    }

    /// [`Limit::value`] for a key of table `[section]`, which the message names.
    pub fn value_in(&self, section: &str, configured: Option<u32>) -> Result<u32, ConfigError> {
        let value = configured.unwrap_or(self.default);
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            err(format!(
                "[{section}] {} = {value} is out of range; use {} to {}",
                self.key, self.min, self.max
            ))
        }
    }
}

/// Rows per batch. Each batch is one transaction: bigger batches hold locks longer than any
/// nightly job should.
pub const BATCH_ROWS: Limit = Limit {
    key: "batch_rows",
    min: 1,
    max: 100_000,
    default: 1_000,
};

/// Target execution time of one batch, in milliseconds: the run sizes its batches so that each
/// takes about this long (`engine::sizing`; pt-online-schema-change's `--chunk-time`, whose
/// default is also half a second). 0 fixes every batch at `batch_rows`. At most 10 s: a batch
/// holds its rows' locks until it commits, and other sessions waiting on them time out after
/// their `innodb_lock_wait_timeout` (the job's own default is 10 s).
pub const BATCH_TIME_MS: Limit = Limit {
    key: "batch_time_ms",
    min: 0,
    max: 10_000,
    default: 500,
};

/// Smallest rows per batch the adaptive size may choose. 1 by default: no floor, the target
/// time decides (a batch of one row costs a round trip and a sync, about a millisecond here).
pub const ADAPTIVE_ROWS_MIN: Limit = Limit {
    key: "batch_rows_min",
    min: 1,
    max: BATCH_ROWS.max,
    default: 1,
};

/// Largest rows per batch the adaptive size may choose; when absent, 10,000, or `batch_rows`
/// if that is larger (a job file that asked for bigger batches keeps them within reach).
/// Measured on the reference workload (2-core machine, MariaDB 10.11, 2026-12-01): a 500 ms
/// target alone grew batches to 20,000-38,000 rows, where the copy's `INSERT ... SELECT`
/// (which buffers the rows it selects, since it reads its own target) outgrows
/// `tmp_table_size` (16 MiB) and spills to an on-disk temporary table: the copy cost 12 us a
/// row instead of 7, and the run was no faster than batches of 1,000 (42,000-47,000 rows/s
/// against 44,000-59,000), while 10,000-row batches ran at 64,000-70,000. With the archive on
/// its own server the client holds a batch's rows: peak RSS 54 MiB at 10,000 rows, 95 MiB at
/// 20,000, 186 MiB at 100,000 (issue 10 wants under 64 MiB). Measured again on 2026-12-07
/// (lower since, by changes not measured one by one): 22 MiB at 10,000 rows; with `parallel = 2`
/// and the maximum at 40,000 or 100,000 (the target stopped batches at 25,000-33,000 rows),
/// 48-64 MiB, and 2.4-2.5x pt-archiver bulk between two servers instead of 2.0x. Since the
/// client compares the archive's rows as they arrive and encodes `LOAD DATA` text as it sends
/// it (no second copy of a batch): 16 MiB at the defaults, 29-36 MiB with `parallel = 2` and
/// the maximum at 40,000. The default stays: larger batches hold the source's row locks
/// longer, and between two servers they bought no speed beyond this machine's noise.
pub const ADAPTIVE_ROWS_MAX: Limit = Limit {
    key: "batch_rows_max",
    min: 1,
    max: BATCH_ROWS.max,
    default: 10_000,
};

/// Attempts a batch gets before it is parked.
pub const ATTEMPTS_MAX: Limit = Limit {
    key: "attempts_max",
    min: 1,
    max: 100,
    default: 5,
};

/// Batches in flight at once (`parallel`, or `archiver run --jobs N`), each on its own
/// connection (with the archive on its own server, one to each server) with its own
/// transaction, on disjoint key ranges. 1 by default: measured on the reference workload on 2
/// cores (ARCHITECTURE.md, "Parallel batches"), two in flight were 1.09-1.16 times faster on
/// one server but cost an application beside it 30% of its throughput (7% with one); with the
/// archive on its own server two were 1.18-1.21 times faster (their cost to an application is
/// not measured). At most 16: each holds a connection and its rows' locks.
pub const PARALLEL: Limit = Limit {
    key: "parallel",
    min: 1,
    max: 16,
    default: 1,
};

/// Pause between batches, in milliseconds (throttling). A minute is already a crawl.
pub const SLEEP_MS: Limit = Limit {
    key: "sleep_ms",
    min: 0,
    max: 60_000,
    default: 0,
};

/// `innodb_lock_wait_timeout` for the job's sessions, in seconds. InnoDB's own range tops out
/// far higher; an archiving batch should never wait that long.
pub const LOCK_WAIT_TIMEOUT_S: Limit = Limit {
    key: "lock_wait_timeout_s",
    min: 1,
    max: 3_600,
    default: 10,
};

/// How long the engine keeps trying to reach an unreachable server before it stops, in
/// seconds. A day at most: a job meant to run nightly that cannot reach its server for longer
/// should stop and be seen, not wait into the next night's run.
pub const RECONNECT_TIMEOUT_S: Limit = Limit {
    key: "reconnect_timeout_s",
    min: 1,
    max: 86_400,
    default: 120,
};

/// Runs whose every batch a compacted log keeps; older runs keep their per-run totals (rows,
/// batches, conflicts, times, outcome). A month of nightly runs at most in full detail: each
/// holds a record of every batch in memory while the log is replayed.
pub const KEEP_RUNS: Limit = Limit {
    key: "keep_runs",
    min: 0,
    max: 1_000,
    default: 10,
};

/// Records in the log above which `archiver run` compacts it before it starts; 0 never does.
/// A nightly run of 1,000 batches appends about 3,000 records, so the default compacts about
/// once a month; replaying 100,000 records takes about 10 ms.
pub const COMPACT_ABOVE_RECORDS: Limit = Limit {
    key: "compact_above_records",
    min: 0,
    max: 1_000_000_000,
    default: 100_000,
};

/// Seconds between rewrites of the `[metrics] textfile` during a run (it is also written at
/// the start and the end). node_exporter reads the file when scraped, typically every 15 to 60
/// s; an hour is the longest a dashboard should wait to see a run move.
pub const TEXTFILE_INTERVAL_S: Limit = Limit {
    key: "textfile_interval_s",
    min: 1,
    max: 3_600,
    default: 10,
};

const _: () = assert!(TEXTFILE_INTERVAL_S.default_in_range());
const _: () = assert!(BATCH_ROWS.default_in_range());
const _: () = assert!(BATCH_TIME_MS.default_in_range());
const _: () = assert!(ADAPTIVE_ROWS_MIN.default_in_range());
const _: () = assert!(ADAPTIVE_ROWS_MAX.default_in_range());
// A job file that sets none of the three is valid: the default start lies within the
// default bounds (and an absent batch_rows_max is raised to batch_rows).
const _: () = assert!(
    ADAPTIVE_ROWS_MIN.default <= BATCH_ROWS.default
        && BATCH_ROWS.default <= ADAPTIVE_ROWS_MAX.default
);
const _: () = assert!(KEEP_RUNS.default_in_range());
const _: () = assert!(COMPACT_ABOVE_RECORDS.default_in_range());
const _: () = assert!(ATTEMPTS_MAX.default_in_range());
const _: () = assert!(SLEEP_MS.default_in_range());
const _: () = assert!(PARALLEL.default_in_range());
const _: () = assert!(LOCK_WAIT_TIMEOUT_S.default_in_range());
const _: () = assert!(RECONNECT_TIMEOUT_S.default_in_range());

/// Largest allowed `batch_rows`.
pub const BATCH_ROWS_MAX: u32 = BATCH_ROWS.max;
/// Default rows per batch.
pub const BATCH_ROWS_DEFAULT: u32 = BATCH_ROWS.default;
/// Largest allowed `attempts_max`.
pub const ATTEMPTS_MAX_LIMIT: u32 = ATTEMPTS_MAX.max;
/// Default attempts a batch gets before it is parked.
pub const ATTEMPTS_MAX_DEFAULT: u32 = ATTEMPTS_MAX.default;
/// Default `lock_wait_timeout_s`.
pub const LOCK_WAIT_TIMEOUT_S_DEFAULT: u32 = LOCK_WAIT_TIMEOUT_S.default;
/// Largest allowed `lock_wait_timeout_s`.
pub const LOCK_WAIT_TIMEOUT_S_MAX: u32 = LOCK_WAIT_TIMEOUT_S.max;
/// Default time the engine keeps trying to reach an unreachable server before it stops.
pub const RECONNECT_TIMEOUT_S_DEFAULT: u32 = RECONNECT_TIMEOUT_S.default;
/// Largest allowed `reconnect_timeout_s`.
pub const RECONNECT_TIMEOUT_S_MAX: u32 = RECONNECT_TIMEOUT_S.max;
/// Largest allowed `sleep_ms` between batches.
pub const SLEEP_MS_MAX: u32 = SLEEP_MS.max;

// ---- [throttle]: throttling that protects the primary (issue 9) ----

/// Replica lag above which the job pauses between batches, in seconds (`[throttle] max_lag_s`).
/// Seconds_Behind_Master counts whole seconds, so 1 is the tightest bound that can be met.
pub const MAX_LAG_S: Limit = Limit {
    key: "max_lag_s",
    min: 1,
    max: 86_400,
    default: 10,
};

/// Longest continuous wait for lagging, stopped or unreachable replicas, in seconds; then the
/// run stops "stopped early" and the next run resumes. A day at most, like the reconnection
/// window: a nightly job must not wait into the next night.
pub const MAX_LAG_WAIT_S: Limit = Limit {
    key: "max_lag_wait_s",
    min: 1,
    max: 86_400,
    default: 3_600,
};

/// Longest continuous wait for the source's load (`max_load`) to drop, in seconds; then the run
/// stops "stopped early" and the next run resumes. Bounded for the same reason as
/// [`MAX_LAG_WAIT_S`]: a source busy all night must not keep a nightly job waiting into the next
/// night with nothing said but a log line an hour.
pub const MAX_LOAD_WAIT_S: Limit = Limit {
    key: "max_load_wait_s",
    min: 1,
    max: 86_400,
    default: 3_600,
};

/// How often a throttled job checks again whether it may go on, in milliseconds
/// (`[throttle] check_interval_ms`). Each check is one query per replica and one on the source.
pub const CHECK_INTERVAL_MS: Limit = Limit {
    key: "check_interval_ms",
    min: 100,
    max: 60_000,
    default: 1_000,
};

/// Largest bound a `max_load`/`critical_load` entry may give a status variable.
pub const LOAD_BOUND_MAX: u64 = 1_000_000_000;

/// `[throttle] sleep_coef`: after each batch, sleep this multiple of its execution time
/// (pt-archiver's `--sleep-coef`). 0 (the default) adds nothing; 100 makes the job run about
/// 1% of the time, slower than any job should.
pub const SLEEP_COEF_MIN: f64 = 0.0;
/// Largest `sleep_coef`.
pub const SLEEP_COEF_MAX: f64 = 100.0;

const _: () = assert!(MAX_LAG_S.default_in_range());
const _: () = assert!(MAX_LAG_WAIT_S.default_in_range());
const _: () = assert!(MAX_LOAD_WAIT_S.default_in_range());
const _: () = assert!(CHECK_INTERVAL_MS.default_in_range());
const _: () = assert!(SLEEP_COEF_MIN < SLEEP_COEF_MAX);
/// `[hooks] timeout_s`: how long one hook may run, in seconds, before its process group is
/// killed (SIGTERM, then SIGKILL after `hooks::KILL_GRACE_MS`). An hour at most: a hook holds
/// up the end of the run (and `on_start` its start) while it runs.
pub const HOOK_TIMEOUT_S: Limit = Limit {
    key: "timeout_s",
    min: 1,
    max: 3_600,
    default: 60,
};

const _: () = assert!(HOOK_TIMEOUT_S.default_in_range());
