//! Limits on the numbers a job file sets: each key's range and default.

/// Largest allowed `batch_rows`: bigger batches hold locks longer than any nightly job should.
pub const BATCH_ROWS_MAX: u32 = 100_000;
/// Default rows per batch.
pub const BATCH_ROWS_DEFAULT: u32 = 1_000;
/// Largest allowed `attempts_max`.
pub const ATTEMPTS_MAX_LIMIT: u32 = 100;
/// Default attempts a batch gets before it is parked.
pub const ATTEMPTS_MAX_DEFAULT: u32 = 5;
/// Default and largest `lock_wait_timeout_s` (InnoDB's own range tops out far higher; an
/// archiving batch should never wait that long).
pub const LOCK_WAIT_TIMEOUT_S_DEFAULT: u32 = 10;
/// Largest allowed `lock_wait_timeout_s`.
pub const LOCK_WAIT_TIMEOUT_S_MAX: u32 = 3_600;
/// Default time the engine keeps trying to reach an unreachable server before it stops.
pub const RECONNECT_TIMEOUT_S_DEFAULT: u32 = 120;
/// Largest allowed `sleep_ms` between batches.
pub const SLEEP_MS_MAX: u32 = 60_000;
