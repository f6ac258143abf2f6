//! [`Throttle`]: what holds the job between batches to protect the primary and its replicas
//! (`[throttle]`, issue 9). Before each batch is planned, with no transaction open:
//!
//! 1. pacing: `sleep_ms`, plus `sleep_coef` times the previous batch's execution time;
//! 2. checks, repeated every `check_interval_ms` until none holds the job: a `critical_load`
//!    status variable of the source above its bound **stops** the run; a `max_load` one above
//!    its bound, or a replica lagging more than `max_lag_s`, not replicating, or unreachable,
//!    **pauses** it. Replicas holding the job for more than `max_lag_wait_s` in one stretch
//!    stop it too, and so does the load holding it for more than `max_load_wait_s`.
//!
//! A stop here ends the run "stopped early" (exit 2) with nothing half-done, and the next run
//! resumes. Every decision is logged with its reason: once when a wait starts, again every
//! [`LOG_INTERVAL_S`] while it lasts, and once when it ends, with how long it took.
//! [`ThrottleHandle`] shows the current state and the time waited by kind (for status,
//! metrics and the control socket) and lets the control socket change `max_lag_s`. Every wait
//! listens to [`Shutdown`]. Replica connections only read (`db::throttle`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::Conn;

use super::shutdown::Shutdown;
use super::{now_unix_us, Halt};
use crate::config::{ConfigError, Endpoint, JobConfig, LagSource, ThrottleConfig, MAX_LAG_S};
use crate::db::throttle::{self as reads, LagReading, REPLICA_READ_TIMEOUT_MS};
use crate::db::DbError;
use crate::event::ErrorClass;

/// How often a long wait is logged again, in seconds: a pause of an hour logs about 60 lines,
/// not one per check.
pub const LOG_INTERVAL_S: u64 = 60;

/// What a wait was for: the label of the time totals (and of metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThrottleKind {
    /// Pacing: `sleep_ms` and `sleep_coef`.
    Sleep,
    /// Replicas lagging, not replicating or unreachable.
    ReplicaLag,
    /// A `max_load` status variable above its bound.
    Load,
}

impl ThrottleKind {
    /// Every kind, in label order.
    pub const ALL: [ThrottleKind; 3] = [
        ThrottleKind::Sleep,
        ThrottleKind::ReplicaLag,
        ThrottleKind::Load,
    ];

    /// A short name for logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            ThrottleKind::Sleep => "sleep",
            ThrottleKind::ReplicaLag => "replica_lag",
            ThrottleKind::Load => "load",
        }
    }
}

/// What the last check saw of one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSeen {
    /// `host:port`.
    pub server: String,
    /// Seconds behind its primary; `None` when not replicating or unreachable.
    pub lag_s: Option<f64>,
    /// Why there is no lag: "not replicating (...)" or "unreachable: <error>".
    pub problem: Option<String>,
    /// When it was read, microseconds since the Unix epoch.
    pub checked_unix_us: i64,
}

/// Whether the job is held now, why, since when, and what the replicas showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThrottleState {
    /// What holds the job now; `None` while it runs.
    pub kind: Option<ThrottleKind>,
    /// Why, for people: which replica and its lag, or which variable and its value.
    pub reason: Option<String>,
    /// When this wait began, microseconds since the Unix epoch.
    pub since_unix_us: Option<i64>,
    /// Every replica as the last check saw it, in the job file's order.
    pub replicas: Vec<ReplicaSeen>,
    /// The lag bound in force, in seconds.
    pub max_lag_s: u32,
}

/// Time spent waiting in this invocation, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThrottleTotals {
    /// Pacing.
    pub sleep: Duration,
    /// Waiting for replicas.
    pub replica_lag: Duration,
    /// Waiting for the source's load to drop.
    pub load: Duration,
}

impl ThrottleTotals {
    /// The total of one kind.
    pub fn of(&self, kind: ThrottleKind) -> Duration {
        match kind {
            ThrottleKind::Sleep => self.sleep,
            ThrottleKind::ReplicaLag => self.replica_lag,
            ThrottleKind::Load => self.load,
        }
    }

    fn add(&mut self, kind: ThrottleKind, waited: Duration) {
        let total = match kind {
            ThrottleKind::Sleep => &mut self.sleep,
            ThrottleKind::ReplicaLag => &mut self.replica_lag,
            ThrottleKind::Load => &mut self.load,
        };
        *total += waited;
    }
}

/// The state and totals, shared with whoever watches the run.
#[derive(Debug, Default)]
struct Shared {
    /// The current state.
    state: ThrottleState,
    /// The time waited so far.
    totals: ThrottleTotals,
}

/// A view of a running job's throttle that other tasks may hold (status, metrics, the
/// control socket). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ThrottleHandle(Arc<Mutex<Shared>>);

impl ThrottleHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // The data is plain values; a panic elsewhere cannot leave it half-written.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current state.
    pub fn state(&self) -> ThrottleState {
        self.lock().state.clone()
    }

    /// The time waited so far in this invocation, by kind.
    pub fn totals(&self) -> ThrottleTotals {
        self.lock().totals
    }

    /// Changes the lag bound from the next check on; refused outside `max_lag_s`'s range.
    pub fn set_max_lag_s(&self, max_lag_s: u32) -> Result<(), ConfigError> {
        let value = MAX_LAG_S.value_in("throttle", Some(max_lag_s))?;
        self.lock().state.max_lag_s = value;
        tracing::warn!("max_lag_s set to {value} s");
        Ok(())
    }

    fn max_lag_s(&self) -> u32 {
        self.lock().state.max_lag_s
    }
}

/// One replica and its connection, made on first use and dropped after any error.
struct Replica {
    /// How to reach it.
    endpoint: Endpoint,
    /// `host:port`, for messages.
    server: String,
    /// The open connection, if any.
    conn: Option<Conn>,
}

/// A replica's lag read, or why it could not be.
enum Reading {
    /// What it said.
    Lag(LagReading),
    /// It could not be reached or did not answer in time; the error.
    Unreachable(String),
}

/// What one round of checks decided.
enum Verdict {
    /// Nothing holds the job.
    Go,
    /// Wait and check again: what holds it, and why.
    Pause(ThrottleKind, String),
    /// Stop the run: why.
    Stop(String),
}

/// A wait in progress.
struct Hold {
    /// When it began.
    started: Instant,
    /// When it was last logged.
    logged: Instant,
    /// What holds the job now, and since when it has held it without a break: another kind
    /// holding it in between starts a new stretch.
    stretch: (ThrottleKind, Instant),
}

/// The throttle of one run invocation; see the module doc.
pub struct Throttle {
    /// `[throttle]`.
    config: ThrottleConfig,
    /// For replica sessions, as for the job's others.
    lock_wait_timeout_s: u32,
    /// The replicas, in the job file's order.
    replicas: Vec<Replica>,
    /// The state and totals others may watch.
    handle: ThrottleHandle,
    /// Execution time of the last batch, for `sleep_coef`.
    last_batch: Option<Duration>,
    /// The wait in progress, if any.
    hold: Option<Hold>,
    /// When the last check let the job go on.
    last_go: Option<Instant>,
}

impl Throttle {
    /// The throttle `config` asks for; connects to nothing yet.
    pub fn new(config: &JobConfig) -> Throttle {
        let throttle = config.throttle.clone();
        let replicas = throttle
            .replicas
            .iter()
            .map(|endpoint| Replica {
                endpoint: endpoint.clone(),
                server: endpoint.server(),
                conn: None,
            })
            .collect();
        let shared = Shared {
            state: ThrottleState {
                max_lag_s: throttle.max_lag_s,
                ..ThrottleState::default()
            },
            totals: ThrottleTotals::default(),
        };
        Throttle {
            config: throttle,
            lock_wait_timeout_s: config.sessions.lock_wait_timeout_s,
            replicas,
            handle: ThrottleHandle(Arc::new(Mutex::new(shared))),
            last_batch: None,
            hold: None,
            last_go: None,
        }
    }

    /// A view other tasks may hold.
    pub fn handle(&self) -> ThrottleHandle {
        self.handle.clone()
    }

    /// The current state.
    pub fn state(&self) -> ThrottleState {
        self.handle.state()
    }

    /// The time waited so far, by kind.
    pub fn totals(&self) -> ThrottleTotals {
        self.handle.totals()
    }

    /// Changes the lag bound from the next check on (the control socket's `set max_lag_s`).
    pub fn set_max_lag_s(&mut self, max_lag_s: u32) -> Result<(), ConfigError> {
        self.handle.set_max_lag_s(max_lag_s)
    }

    /// Records how long the batch just executed took, for `sleep_coef`.
    pub fn batch_finished(&mut self, took: Duration) {
        self.last_batch = Some(took);
    }

    /// Before anything is written: reads the load variables and every replica once, so that a
    /// variable the source lacks, a replica refusing the job's user or its lag read (grants, a
    /// missing heartbeat table) is refused now. An unreachable replica is not refused: it
    /// holds the run like a lagging one.
    pub async fn preflight(
        &mut self,
        source: &mut Conn,
        shutdown: &mut Shutdown,
    ) -> Result<(), Halt> {
        self.check_load(source).await?;
        self.check_replicas(shutdown).await?;
        Ok(())
    }

    /// Waits while anything holds the job (the pacing pause came before, from the engine); see
    /// the module doc. `Err(Halt::Stop)`
    /// when the run must stop (critical load, replicas held it too long, a stop request),
    /// already logged.
    pub async fn before_batch(
        &mut self,
        source: &mut Conn,
        shutdown: &mut Shutdown,
    ) -> Result<(), Halt> {
        if !self.watches() {
            return Ok(());
        }
        let interval = Duration::from_millis(self.config.check_interval_ms.into());
        loop {
            let verdict = match self.check_load(source).await? {
                Some(verdict) => verdict,
                None => self.check_replicas(shutdown).await?,
            };
            let (kind, reason) = match verdict {
                Verdict::Go => {
                    self.end_hold();
                    self.last_go = Some(Instant::now());
                    return Ok(());
                }
                Verdict::Stop(why) => return Err(self.stop(&why)),
                Verdict::Pause(kind, reason) => (kind, reason),
            };
            if let Some(why) = self.hold(kind, &reason) {
                return Err(self.stop(&why));
            }
            let waiting = Instant::now();
            let stopped = shutdown.sleep(interval).await;
            self.handle.lock().totals.add(kind, waiting.elapsed());
            if stopped {
                self.end_hold();
                return Err(Halt::Stop);
            }
        }
    }

    /// Whether the throttle watches anything (replicas, the source's load).
    fn watches(&self) -> bool {
        !(self.config.replicas.is_empty()
            && self.config.max_load.is_empty()
            && self.config.critical_load.is_empty())
    }

    /// Whether [`Throttle::before_batch`] should check again before the next batch: it
    /// watches something, and its last check that let the job go is `check_interval_ms` old.
    /// Batches in flight (`parallel`) are started without a check until then; the check
    /// itself, which may wait, runs with none in flight.
    pub fn due(&self) -> bool {
        let interval = Duration::from_millis(self.config.check_interval_ms.into());
        self.watches() && self.last_go.is_none_or(|at| at.elapsed() >= interval)
    }

    /// The pause before the next batch: `sleep_ms` (the job file's, or the one set live) plus
    /// `sleep_coef` times the last batch's execution time. The engine waits it out (a control
    /// command or a stop request cuts it short) and reports it with [`Throttle::paced`].
    pub fn pause_before(&self, sleep_ms: u32) -> Duration {
        pacing(sleep_ms, self.config.sleep_coef, self.last_batch)
    }

    /// Whether the job is paced: it sleeps between batches (`sleep_ms`, the job file's or the
    /// one set live, or `sleep_coef`), so it has time to spare and spends it on the primary.
    pub fn paces(&self, sleep_ms: u32) -> bool {
        sleep_ms > 0 || self.config.sleep_coef > 0.0
    }

    /// Counts a pause the engine waited between batches as pacing.
    pub fn paced(&mut self, slept: Duration) {
        self.handle.lock().totals.add(ThrottleKind::Sleep, slept);
    }

    /// The source's load against `critical_load` (first) and `max_load`; `None` when neither
    /// holds the job (or neither is configured).
    async fn check_load(&mut self, source: &mut Conn) -> Result<Option<Verdict>, Halt> {
        let (critical, max) = (&self.config.critical_load, &self.config.max_load);
        if critical.is_empty() && max.is_empty() {
            return Ok(None);
        }
        let bounds: Vec<_> = critical.iter().chain(max.iter()).collect();
        let values = reads::status_values(source, &bounds).await?;
        for (i, (bound, value)) in bounds.iter().zip(values).enumerate() {
            if value <= bound.bound {
                continue;
            }
            let variable = &bound.variable;
            let verdict = if i < critical.len() {
                Verdict::Stop(format!(
                    "critical_load {bound} exceeded: {variable} is {value} on the source"
                ))
            } else {
                Verdict::Pause(
                    ThrottleKind::Load,
                    format!("max_load {bound} exceeded: {variable} is {value} on the source"),
                )
            };
            return Ok(Some(verdict));
        }
        Ok(None)
    }

    /// Reads every replica's lag; pauses while any lags more than `max_lag_s`, is not
    /// replicating or cannot be reached, naming each.
    async fn check_replicas(&mut self, shutdown: &mut Shutdown) -> Result<Verdict, Halt> {
        if self.replicas.is_empty() {
            return Ok(Verdict::Go);
        }
        let max_lag_s = self.handle.max_lag_s();
        let (mut holding, mut seen) = (Vec::new(), Vec::new());
        for index in 0..self.replicas.len() {
            let reading = self.read_replica(index, shutdown).await?;
            let server = self.replicas[index].server.clone();
            let (lag_s, problem) = match reading {
                Reading::Lag(LagReading::Behind(lag)) => {
                    if lag > f64::from(max_lag_s) {
                        holding.push(format!(
                            "replica {server} lags {lag:.1} s (max_lag_s = {max_lag_s})"
                        ));
                    }
                    (Some(lag), None)
                }
                Reading::Lag(LagReading::NotReplicating(why)) => (None, Some(why)),
                Reading::Unreachable(error) => (None, Some(format!("unreachable: {error}"))),
            };
            if let Some(problem) = &problem {
                holding.push(format!("replica {server} {problem}"));
            }
            let checked_unix_us = now_unix_us();
            seen.push(ReplicaSeen {
                server,
                lag_s,
                problem,
                checked_unix_us,
            });
        }
        self.handle.lock().state.replicas = seen;
        Ok(if holding.is_empty() {
            Verdict::Go
        } else {
            Verdict::Pause(ThrottleKind::ReplicaLag, holding.join("; "))
        })
    }

    /// One lag read of replica `index`, connecting first if needed, within
    /// [`REPLICA_READ_TIMEOUT_MS`]. A replica that cannot be reached is a reading; one that
    /// refuses the read (grants, no heartbeat table) stops the run.
    async fn read_replica(
        &mut self,
        index: usize,
        shutdown: &mut Shutdown,
    ) -> Result<Reading, Halt> {
        let (lag_source, lock_wait) = (&self.config.lag_source, self.lock_wait_timeout_s);
        let replica = &mut self.replicas[index];
        let limit = Duration::from_millis(REPLICA_READ_TIMEOUT_MS);
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(limit, read_lag(replica, lag_source, lock_wait)) => Some(outcome),
            () = shutdown.recv() => None,
        };
        let Some(outcome) = outcome else {
            // The read was cut short: the connection may be mid-statement.
            replica.conn = None;
            return Err(Halt::Stop);
        };
        let error = match outcome {
            Ok(Ok(reading)) => return Ok(Reading::Lag(reading)),
            Ok(Err(error)) => error,
            Err(_) => {
                replica.conn = None;
                return Ok(Reading::Unreachable(format!(
                    "no answer within {} s",
                    REPLICA_READ_TIMEOUT_MS / 1_000
                )));
            }
        };
        replica.conn = None;
        if error.class() == ErrorClass::Transient {
            return Ok(Reading::Unreachable(error.to_string()));
        }
        Err(Halt::Fail(
            reads::refused_read(&replica.server, error).into(),
        ))
    }

    /// Notes that `kind` holds the job for `reason`: logs the start of a wait, or every
    /// [`LOG_INTERVAL_S`] of one. Returns why the run must stop if the replicas have now held
    /// it longer than `max_lag_wait_s` in one stretch, or the load longer than
    /// `max_load_wait_s`.
    fn hold(&mut self, kind: ThrottleKind, reason: &str) -> Option<String> {
        let now = Instant::now();
        let hold = self.hold.get_or_insert_with(|| {
            tracing::warn!("throttling: {reason}; waiting between batches, no transaction open");
            Hold {
                started: now,
                logged: now,
                stretch: (kind, now),
            }
        });
        if hold.stretch.0 != kind {
            hold.stretch = (kind, now);
        }
        if now.duration_since(hold.logged) >= Duration::from_secs(LOG_INTERVAL_S) {
            let waited = now.duration_since(hold.started).as_secs();
            tracing::warn!("still throttling after {waited} s: {reason}");
            hold.logged = now;
        }
        let (what, key, limit_s) = match kind {
            ThrottleKind::Load => (
                "the source's load",
                "max_load_wait_s",
                self.config.max_load_wait_s,
            ),
            _ => ("the replicas", "max_lag_wait_s", self.config.max_lag_wait_s),
        };
        let held = now.duration_since(hold.stretch.1);
        let stop = (held >= Duration::from_secs(limit_s.into())).then(|| {
            let held_s = held.as_secs();
            format!("{what} held the job for {held_s} s in a row ({key} = {limit_s}): {reason}")
        });
        let mut shared = self.handle.lock();
        shared.state.kind = Some(kind);
        shared.state.reason = Some(reason.to_string());
        shared.state.since_unix_us.get_or_insert_with(now_unix_us);
        stop
    }

    /// Ends the wait in progress, if any, logging how long it took.
    fn end_hold(&mut self) {
        if let Some(hold) = self.hold.take() {
            let waited = hold.started.elapsed().as_secs_f64();
            tracing::warn!("throttling ended after {waited:.1} s; going on");
        }
        self.set_state(None, None);
    }

    /// Logs why the run stops here and ends the wait: the caller returns [`Halt::Stop`].
    fn stop(&mut self, why: &str) -> Halt {
        tracing::warn!(
            "stopping between batches, no transaction open: {why}; the next run resumes"
        );
        self.hold = None;
        self.set_state(None, None);
        Halt::Stop
    }

    fn set_state(&self, kind: Option<ThrottleKind>, reason: Option<String>) {
        let mut shared = self.handle.lock();
        shared.state.since_unix_us = kind.map(|_| now_unix_us());
        shared.state.kind = kind;
        shared.state.reason = reason;
    }
}

/// The pause before a batch: `sleep_ms`, plus `sleep_coef` times the previous batch's
/// execution time (none before the first batch of an invocation).
fn pacing(sleep_ms: u32, sleep_coef: f64, last_batch: Option<Duration>) -> Duration {
    let fixed = Duration::from_millis(sleep_ms.into());
    fixed + last_batch.map_or(Duration::ZERO, |took| took.mul_f64(sleep_coef))
}

/// Connects to `replica` if it has no connection, and reads its lag as `lag_source` says.
async fn read_lag(
    replica: &mut Replica,
    lag_source: &LagSource,
    lock_wait_timeout_s: u32,
) -> Result<LagReading, DbError> {
    if replica.conn.is_none() {
        let conn = reads::connect_replica(&replica.endpoint, lock_wait_timeout_s).await?;
        replica.conn = Some(conn);
    }
    let conn = replica.conn.as_mut().expect("connected above");
    match lag_source {
        LagSource::ReplicaStatus => reads::replica_status_lag(conn).await,
        LagSource::Heartbeat(table) => reads::heartbeat_lag(conn, table).await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{pacing, ThrottleKind, ThrottleTotals};

    #[test]
    fn pacing_adds_the_fixed_sleep_and_a_multiple_of_the_last_batch() {
        let ms = Duration::from_millis;
        for (sleep_ms, coef, last, expected) in [
            (0, 0.0, None, ms(0)),
            (250, 0.0, Some(ms(400)), ms(250)),
            (0, 0.5, None, ms(0)),
            (0, 0.5, Some(ms(400)), ms(200)),
            (100, 2.0, Some(ms(400)), ms(900)),
            (0, 100.0, Some(ms(30)), ms(3_000)),
        ] {
            assert_eq!(
                pacing(sleep_ms, coef, last),
                expected,
                "{sleep_ms} {coef} {last:?}"
            );
        }
    }

    #[test]
    fn totals_add_up_by_kind() {
        let mut totals = ThrottleTotals::default();
        totals.add(ThrottleKind::ReplicaLag, Duration::from_secs(2));
        totals.add(ThrottleKind::ReplicaLag, Duration::from_secs(3));
        totals.add(ThrottleKind::Load, Duration::from_secs(1));
        let by_kind: Vec<(&str, u64)> = ThrottleKind::ALL
            .iter()
            .map(|kind| (kind.label(), totals.of(*kind).as_secs()))
            .collect();
        assert_eq!(by_kind, [("sleep", 0), ("replica_lag", 5), ("load", 1)]);
    }
}
