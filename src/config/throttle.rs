//! `[throttle]`: what pauses the job between batches to protect the primary and its replicas
//! (issue 9): the lag of the replicas listed as `[[throttle.replica]]` (from their replication
//! status or from a heartbeat table), the primary's status variables (`max_load` pauses,
//! `critical_load` stops), and the pacing sleep proportional to each batch's time
//! (`sleep_coef`). The file's table as written ([`RawThrottle`]) and validated
//! ([`ThrottleConfig`]); the engine's `throttle` module acts on it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::endpoint::endpoint;
use super::limits::{
    CHECK_INTERVAL_MS, LOAD_BOUND_MAX, MAX_LAG_S, MAX_LAG_WAIT_S, MAX_LOAD_WAIT_S, SLEEP_COEF_MAX,
    SLEEP_COEF_MIN,
};
use super::names::table_name;
use super::{err, ConfigError, Endpoint, Env, SourceConfig, TableName};

/// `[throttle]` as written. Absent: no throttling beyond `[job] sleep_ms`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThrottle {
    /// Replicas whose lag pauses the job (`[[throttle.replica]]`).
    #[serde(default)]
    pub replica: Vec<RawReplica>,
    /// Lag above which the job pauses, in seconds.
    pub max_lag_s: Option<u32>,
    /// Longest continuous wait for the replicas before the run stops, in seconds.
    pub max_lag_wait_s: Option<u32>,
    /// `database.table` of a pt-heartbeat style table, read on each replica; absent: the lag
    /// comes from the replication status.
    pub heartbeat_table: Option<String>,
    /// `VARIABLE=N[,VARIABLE=N...]`: pause while a status variable of the source exceeds N.
    pub max_load: Option<String>,
    /// Longest continuous wait for `max_load` before the run stops, in seconds.
    pub max_load_wait_s: Option<u32>,
    /// `VARIABLE=N[,VARIABLE=N...]`: stop the run when a status variable exceeds N.
    pub critical_load: Option<String>,
    /// After each batch, sleep this multiple of its execution time.
    pub sleep_coef: Option<f64>,
    /// How often a throttled job checks again, in milliseconds.
    pub check_interval_ms: Option<u32>,
}

/// One `[[throttle.replica]]`: a server to read lag from, connected to as [source] is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplica {
    /// `mysql://user@host:port[/database]`, without a password.
    pub url: String,
    /// Name of the environment variable holding the password.
    pub password_env: Option<String>,
    /// Path of a file whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// TLS, as for `[source]` (`tls_mode`, default `preferred`).
    pub tls_mode: Option<String>,
    /// As for `[source]`.
    pub tls_ca_file: Option<PathBuf>,
    /// As for `[source]`.
    pub tls_cert_file: Option<PathBuf>,
    /// As for `[source]`.
    pub tls_key_file: Option<PathBuf>,
}

impl RawReplica {
    /// `tls_mode`, `tls_ca_file`, `tls_cert_file`, `tls_key_file`.
    fn tls_keys(&self) -> super::TlsKeys<'_> {
        super::TlsKeys {
            mode: self.tls_mode.as_deref(),
            ca_file: self.tls_ca_file.as_deref(),
            cert_file: self.tls_cert_file.as_deref(),
            key_file: self.tls_key_file.as_deref(),
        }
    }
}

/// Where a replica's lag is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LagSource {
    /// The replication status: `SHOW ALL SLAVES STATUS` (MariaDB, every source of a
    /// multi-source replica), else `SHOW REPLICA STATUS` (MySQL 8): `Seconds_Behind_Master`,
    /// and whether the IO and SQL threads run.
    ReplicaStatus,
    /// A pt-heartbeat style table whose `ts` column the primary keeps updating (UTC): the lag
    /// is the replica's UTC clock minus the newest `ts` it holds.
    Heartbeat(TableName),
}

/// A status variable and the value above which it throttles (`Threads_running=25`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBound {
    /// The variable as written (letters, digits, underscores; the server matches it without
    /// regard to case).
    pub variable: String,
    /// The largest value that does not throttle.
    pub bound: u64,
}

impl std::fmt::Display for LoadBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.variable, self.bound)
    }
}

/// `[throttle]`, validated.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Replicas whose lag is checked before every batch, in the file's order.
    pub replicas: Vec<Endpoint>,
    /// How their lag is read.
    pub lag_source: LagSource,
    /// Lag above which the job pauses, in seconds (may be changed while running).
    pub max_lag_s: u32,
    /// Longest continuous wait for the replicas, in seconds; then the run stops.
    pub max_lag_wait_s: u32,
    /// Pause while any of these status variables of the source exceeds its bound.
    pub max_load: Vec<LoadBound>,
    /// Longest continuous wait for `max_load`, in seconds; then the run stops.
    pub max_load_wait_s: u32,
    /// Stop the run ("stopped early") when any of these exceeds its bound.
    pub critical_load: Vec<LoadBound>,
    /// After each batch, sleep this multiple of its execution time (0: none).
    pub sleep_coef: f64,
    /// How often a throttled job checks again, in milliseconds.
    pub check_interval_ms: u32,
}

impl Default for ThrottleConfig {
    /// No throttling: what a job file without `[throttle]` gets.
    fn default() -> Self {
        ThrottleConfig {
            replicas: Vec::new(),
            lag_source: LagSource::ReplicaStatus,
            max_lag_s: MAX_LAG_S.default,
            max_lag_wait_s: MAX_LAG_WAIT_S.default,
            max_load: Vec::new(),
            max_load_wait_s: MAX_LOAD_WAIT_S.default,
            critical_load: Vec::new(),
            sleep_coef: 0.0,
            check_interval_ms: CHECK_INTERVAL_MS.default,
        }
    }
}

impl ThrottleConfig {
    /// Validates `[throttle]`: every replica's url and password source as for `[source]`, no
    /// replica that is the source server or listed twice, the numbers within their limits,
    /// the load lists well formed, and no lag key without a replica to apply it to.
    pub(super) fn from_raw(
        raw: &RawThrottle,
        source: &SourceConfig,
        base: &Path,
        env: Env,
    ) -> Result<ThrottleConfig, ConfigError> {
        let replicas = replicas(&raw.replica, source, base, env)?;
        if replicas.is_empty() {
            for (key, set) in [
                ("max_lag_s", raw.max_lag_s.is_some()),
                ("max_lag_wait_s", raw.max_lag_wait_s.is_some()),
                ("heartbeat_table", raw.heartbeat_table.is_some()),
            ] {
                if set {
                    return err(format!("[throttle] {key} is set but no replica is listed; add a [[throttle.replica]] with its url, or remove {key}"));
                }
            }
        }
        let lag_source = match &raw.heartbeat_table {
            None => LagSource::ReplicaStatus,
            Some(text) => LagSource::Heartbeat(heartbeat_table(text)?),
        };
        let max_load = load_bounds("max_load", raw.max_load.as_deref())?;
        if max_load.is_empty() && raw.max_load_wait_s.is_some() {
            return err("[throttle] max_load_wait_s is set but no max_load is given; add max_load = \"VARIABLE=N\", or remove max_load_wait_s");
        }
        let critical_load = load_bounds("critical_load", raw.critical_load.as_deref())?;
        check_critical_above_max(&max_load, &critical_load)?;
        Ok(ThrottleConfig {
            replicas,
            lag_source,
            max_lag_s: MAX_LAG_S.value_in("throttle", raw.max_lag_s)?,
            max_lag_wait_s: MAX_LAG_WAIT_S.value_in("throttle", raw.max_lag_wait_s)?,
            max_load,
            max_load_wait_s: MAX_LOAD_WAIT_S.value_in("throttle", raw.max_load_wait_s)?,
            critical_load,
            sleep_coef: sleep_coef(raw.sleep_coef)?,
            check_interval_ms: CHECK_INTERVAL_MS.value_in("throttle", raw.check_interval_ms)?,
        })
    }
}

/// The `[[throttle.replica]]` endpoints, each checked as `[source]`'s is.
fn replicas(
    raw: &[RawReplica],
    source: &SourceConfig,
    base: &Path,
    env: Env,
) -> Result<Vec<Endpoint>, ConfigError> {
    let mut replicas: Vec<Endpoint> = Vec::with_capacity(raw.len());
    for replica in raw {
        let section = "throttle.replica";
        let endpoint = endpoint(
            section,
            &replica.url,
            replica.password_env.as_deref(),
            replica.password_file.as_deref(),
            replica.tls_keys(),
            base,
            env,
        )?;
        let server = endpoint.server();
        if server == source.endpoint.server() {
            return err(format!("[[throttle.replica]] url names the source server {server}; list the source's replicas, not the source itself"));
        }
        if replicas.iter().any(|other| other.server() == server) {
            return err(format!(
                "[[throttle.replica]] {server} is listed twice; keep one"
            ));
        }
        replicas.push(endpoint);
    }
    Ok(replicas)
}

/// `heartbeat_table`, which must name its database: replicas' urls need not name one.
fn heartbeat_table(text: &str) -> Result<TableName, ConfigError> {
    table_name("throttle", text, None).map_err(|_| {
        ConfigError(format!(
            "[throttle] heartbeat_table {text:?} is not `database.table`; name the pt-heartbeat table with its database, e.g. heartbeat_table = \"percona.heartbeat\""
        ))
    })
}

/// `sleep_coef` within its range; absent: 0.
fn sleep_coef(raw: Option<f64>) -> Result<f64, ConfigError> {
    let value = raw.unwrap_or(0.0);
    if (SLEEP_COEF_MIN..=SLEEP_COEF_MAX).contains(&value) {
        Ok(value)
    } else {
        err(format!(
            "[throttle] sleep_coef = {value} is out of range; use {SLEEP_COEF_MIN} to {SLEEP_COEF_MAX} (a multiple of each batch's time to sleep after it)"
        ))
    }
}

/// Parses `VARIABLE=N[,VARIABLE=N...]` (gh-ost's `--max-load` form). A variable name is
/// letters, digits and underscores (it is matched on the server as a string literal, and
/// nothing else can appear in one), N a whole number from 1 to [`LOAD_BOUND_MAX`].
fn load_bounds(key: &str, text: Option<&str>) -> Result<Vec<LoadBound>, ConfigError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let example = format!("e.g. {key} = \"Threads_running=25\"");
    let mut bounds: Vec<LoadBound> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let Some((variable, value)) = entry.split_once('=') else {
            return err(format!(
                "[throttle] {key} entry {entry:?} is not VARIABLE=N; {example}"
            ));
        };
        let (variable, value) = (variable.trim(), value.trim());
        let well_named = !variable.is_empty()
            && variable.len() <= 64
            && variable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_named {
            return err(format!("[throttle] {key}: {variable:?} is not a status variable name (letters, digits and underscores, as SHOW GLOBAL STATUS lists them); {example}"));
        }
        let bound = match value.parse::<u64>() {
            Ok(bound) if (1..=LOAD_BOUND_MAX).contains(&bound) => bound,
            _ => {
                return err(format!("[throttle] {key}: {variable}={value} needs a whole number from 1 to {LOAD_BOUND_MAX}; {example}"))
            }
        };
        if bounds
            .iter()
            .any(|b| b.variable.eq_ignore_ascii_case(variable))
        {
            return err(format!(
                "[throttle] {key} names {variable} twice; keep one bound"
            ));
        }
        bounds.push(LoadBound {
            variable: variable.to_string(),
            bound,
        });
    }
    Ok(bounds)
}

/// A `critical_load` bound at or below the `max_load` bound of the same variable would stop
/// the run where it was meant to pause: refused.
fn check_critical_above_max(max: &[LoadBound], critical: &[LoadBound]) -> Result<(), ConfigError> {
    for stop in critical {
        let pause = max
            .iter()
            .find(|p| p.variable.eq_ignore_ascii_case(&stop.variable));
        if let Some(pause) = pause {
            if stop.bound <= pause.bound {
                return err(format!("[throttle] critical_load {stop} is not above max_load {pause}: the run would stop where it should pause; raise critical_load or lower max_load"));
            }
        }
    }
    Ok(())
}
