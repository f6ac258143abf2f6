//! Job configuration: the TOML file an operator writes, parsed and validated before any I/O
//! other than reading the file itself and the password source.
//!
//! Two layers, as in ripgrep: [`RawConfig`] mirrors the file exactly (unknown keys are errors),
//! and [`JobConfig`] is the validated form the rest of the program uses, grouped by what each
//! part configures.
//!
//! - `raw.rs`: the serde structs mirroring the file;
//! - `endpoint.rs`: server urls and passwords ([`Endpoint`]);
//! - `tls.rs`: each endpoint's TLS settings ([`Tls`]);
//! - `names.rs`: table names ([`TableName`]);
//! - `hooks.rs`: `[hooks]`, the commands run at a run's start and end ([`Hooks`]);
//! - `limits.rs`: the range and default of every number the file sets;
//! - `throttle.rs`: `[throttle]`, replicas and load bounds ([`ThrottleConfig`]);
//! - this file: [`JobConfig`], reading and validating the file step by step, and the job's
//!   identity.

mod endpoint;
mod hooks;
mod limits;
mod names;
mod raw;
#[cfg(test)]
mod tests;
mod throttle;
#[cfg(test)]
mod throttle_tests;

mod refusal;

pub use refusal::Refusal;

mod tls;
pub use tls::{Tls, TlsAttempt, TlsKeys, TlsMode};

use std::path::{Path, PathBuf};

use crate::event::JobIdentity;

use endpoint::endpoint;
pub use endpoint::{masked_url, Endpoint};
pub use hooks::{HookCommand, Hooks, RawHooks};
pub use limits::HOOK_TIMEOUT_S;
pub use limits::TEXTFILE_INTERVAL_S;
pub use limits::{
    Limit, ATTEMPTS_MAX, ATTEMPTS_MAX_DEFAULT, ATTEMPTS_MAX_LIMIT, BATCH_ROWS, BATCH_ROWS_DEFAULT,
    BATCH_ROWS_MAX, COMPACT_ABOVE_RECORDS, KEEP_RUNS, LOCK_WAIT_TIMEOUT_S,
    LOCK_WAIT_TIMEOUT_S_DEFAULT, LOCK_WAIT_TIMEOUT_S_MAX, PARALLEL, RECONNECT_TIMEOUT_S,
    RECONNECT_TIMEOUT_S_DEFAULT, RECONNECT_TIMEOUT_S_MAX, SLEEP_MS, SLEEP_MS_MAX,
};
pub use limits::{ADAPTIVE_ROWS_MAX, ADAPTIVE_ROWS_MIN, BATCH_TIME_MS};
pub use limits::{CHECK_INTERVAL_MS, MAX_LAG_S, MAX_LAG_WAIT_S, MAX_LOAD_WAIT_S, SLEEP_COEF_MAX};
use names::table_name;
pub use names::TableName;
pub use raw::RawMetrics;
pub use raw::{RawArchive, RawConfig, RawJob, RawSource, Safety};
pub use throttle::{LagSource, LoadBound, RawReplica, RawThrottle, ThrottleConfig};

/// The validated job.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Where rows come from: the source server and table (`[source]`).
    pub source: SourceConfig,
    /// Where rows go: the archive table, and its server when it has its own (`[archive]`).
    pub archive: ArchiveConfig,
    /// The predicate selecting the rows to archive, verbatim but for surrounding whitespace.
    pub predicate: String,
    /// How the work is cut into batches and paced.
    pub batching: Batching,
    /// How the job's database sessions wait for locks and for an unreachable server.
    pub sessions: Sessions,
    /// WAL directory (relative paths are relative to the config file's directory).
    pub wal_dir: PathBuf,
    /// What the log keeps when compacted, and when a run compacts it.
    pub history: History,
    /// Opt-ins for triggers and foreign keys.
    pub safety: Safety,
    /// The Prometheus metrics file, if any (`[metrics]`).
    pub metrics: MetricsConfig,
    /// What pauses or stops the job between batches (`[throttle]`).
    pub throttle: ThrottleConfig,
    /// Commands run when a run starts and ends (`[hooks]`).
    pub hooks: Hooks,
}

/// `[metrics]`, validated.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// The node_exporter textfile (`textfile`, relative to the job file's directory), named
    /// `*.prom`; `None` writes no file.
    pub textfile: Option<PathBuf>,
    /// Seconds between rewrites of the file during a run.
    pub textfile_interval_s: u32,
    /// Where a running job serves `GET /metrics` over TCP (`listen`); `None`: only on the
    /// control socket.
    pub listen: Option<std::net::SocketAddr>,
}

impl MetricsConfig {
    /// `textfile` (a `.prom` file name, relative to `base` unless absolute) and
    /// `textfile_interval_s` within its [`Limit`].
    fn from_raw(raw: &RawMetrics, base: &Path) -> Result<MetricsConfig, ConfigError> {
        let textfile_interval_s = TEXTFILE_INTERVAL_S
            .value(raw.textfile_interval_s)
            .map_err(|e| ConfigError(e.0.replace("[job]", "[metrics]")))?;
        let textfile = match &raw.textfile {
            None => None,
            Some(path) => Some(textfile(path, base)?),
        };
        let listen = match &raw.listen {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| {
                ConfigError(format!(
                    "[metrics] listen = {text:?} is not an address and port; write e.g. \"127.0.0.1:9187\" (an IP address, not a host name)"
                ))
            })?),
        };
        Ok(MetricsConfig {
            textfile,
            textfile_interval_s,
            listen,
        })
    }
}

/// `[metrics] textfile`: node_exporter's textfile collector reads only files named `*.prom`,
/// so any other name would be written and never seen.
fn textfile(raw: &Path, base: &Path) -> Result<PathBuf, ConfigError> {
    let is_prom = raw.extension().is_some_and(|ext| ext == "prom")
        && raw.file_stem().is_some_and(|stem| !stem.is_empty());
    if !is_prom {
        return err(format!(
            "[metrics] textfile = {:?} does not end in .prom; node_exporter's textfile collector reads only *.prom files, so name it e.g. \"/var/lib/node_exporter/textfile_collector/archiver_rewards.prom\"",
            raw.display().to_string()
        ));
    }
    Ok(if raw.is_relative() {
        base.join(raw)
    } else {
        raw.to_path_buf()
    })
}

/// `[source]`, validated.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Source server.
    pub endpoint: Endpoint,
    /// Source table; its schema is the url's database when the file names none.
    pub table: TableName,
}

/// `[archive]`, validated.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// Archive server, reached by its own connection; `None` when the archive table is reached
    /// through the source connection (one transaction per batch).
    pub endpoint: Option<Endpoint>,
    /// Archive table; when the file names no schema, the database of the archive url, or of
    /// the source url when the archive has none.
    pub table: TableName,
}

/// Batch size and pacing, from `[job]`.
#[derive(Debug, Clone)]
pub struct Batching {
    /// Rows per batch (`batch_rows`): the first batch's when `time_ms` is not 0, else every
    /// batch's.
    pub rows: u32,
    /// Target execution time of one batch, in milliseconds (`batch_time_ms`); 0: every batch
    /// plans `rows`.
    pub time_ms: u32,
    /// Smallest rows per batch the adaptive size may choose (`batch_rows_min`).
    pub rows_min: u32,
    /// Largest rows per batch the adaptive size may choose (`batch_rows_max`).
    pub rows_max: u32,
    /// Attempts per batch before it is parked.
    pub attempts_max: u32,
    /// Pause between batches, in milliseconds.
    pub sleep_ms: u32,
    /// Batches in flight at once (`parallel`).
    pub parallel: u32,
}

/// Session settings, from `[job]`.
#[derive(Debug, Clone)]
pub struct Sessions {
    /// `innodb_lock_wait_timeout` for the job's sessions, in seconds.
    pub lock_wait_timeout_s: u32,
    /// How long to keep reconnecting to an unreachable server before stopping, in seconds.
    pub reconnect_timeout_s: u32,
}

/// What the log keeps and when a run compacts it, from `[job]`.
#[derive(Debug, Clone)]
pub struct History {
    /// Runs a compacted log keeps in full detail (`keep_runs`); older runs keep their totals.
    pub keep_runs: u32,
    /// Records above which `archiver run` compacts the log before it starts; 0 never does.
    pub compact_above_records: u32,
}

impl History {
    /// `keep_runs` and `compact_above_records`, each within its [`Limit`].
    fn from_raw(raw: &RawJob) -> Result<History, ConfigError> {
        Ok(History {
            keep_runs: KEEP_RUNS.value(raw.keep_runs)?,
            compact_above_records: COMPACT_ABOVE_RECORDS.value(raw.compact_above_records)?,
        })
    }
}

/// File name of the control socket in the WAL directory: `archiver run` listens on it,
/// `archiver ctl` connects to it (issue 9).
pub const CONTROL_SOCKET_FILE: &str = "control.sock";

impl JobConfig {
    /// The control socket of the job's running process: `WAL_DIR/control.sock`.
    pub fn control_socket(&self) -> PathBuf {
        self.wal_dir.join(CONTROL_SOCKET_FILE)
    }
}

/// A configuration problem; the CLI exits with the configuration-error code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(message.into()))
}

/// Looks up an environment variable: the seam [`JobConfig::parse`] passes down to the steps.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl JobConfig {
    /// Reads, parses and validates the job file at `path`.
    pub fn load(path: &Path) -> Result<JobConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, &|name| std::env::var(name).ok())
            .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses and validates `text`; `env` looks up environment variables (a seam for tests).
    /// Relative paths in the file are taken relative to `base`. Sections are checked in the
    /// file's order, and the first problem found is the one reported.
    pub fn parse(
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<JobConfig, ConfigError> {
        let raw = RawConfig::from_toml(text)?;
        let source = SourceConfig::from_raw(&raw.source, base, env)?;
        let archive = ArchiveConfig::from_raw(&raw.archive, &source, base, env)?;
        let predicate = predicate(&raw.job.predicate)?;
        let batching = Batching::from_raw(&raw.job)?;
        let sessions = Sessions::from_raw(&raw.job)?;
        let wal_dir = wal_dir(&raw.job.wal_dir, base)?;
        let history = History::from_raw(&raw.job)?;
        let metrics = MetricsConfig::from_raw(&raw.metrics, base)?;
        let throttle = ThrottleConfig::from_raw(&raw.throttle, &source, base, env)?;
        let hooks = Hooks::from_raw(&raw.hooks, text)?;
        let config = JobConfig {
            source,
            archive,
            predicate,
            batching,
            sessions,
            wal_dir,
            history,
            safety: raw.safety,
            metrics,
            throttle,
            hooks,
        };
        Ok(config)
    }

    /// Sets the batches in flight (`archiver run --jobs N`), within the limits of `parallel`.
    pub fn set_parallel(&mut self, jobs: u32) -> Result<(), ConfigError> {
        let jobs = PARALLEL.value(Some(jobs)).map_err(|_| {
            ConfigError(format!(
                "--jobs {jobs} is out of range; use {} to {}",
                PARALLEL.min, PARALLEL.max
            ))
        })?;
        self.batching.parallel = jobs;
        Ok(())
    }

    /// The archive's server, as the identity and messages name it: its own when it has a url,
    /// else the source's.
    pub fn archive_server(&self) -> String {
        self.archive
            .endpoint
            .as_ref()
            .unwrap_or(&self.source.endpoint)
            .server()
    }

    /// What this job moves where, as recorded in the first record of its log.
    pub fn identity(&self) -> JobIdentity {
        JobIdentity {
            source_server: self.source.endpoint.server(),
            source_schema: self.source.table.schema.clone(),
            source_table: self.source.table.table.clone(),
            archive_server: self.archive_server(),
            archive_schema: self.archive.table.schema.clone(),
            archive_table: self.archive.table.table.clone(),
            predicate: self.predicate.clone(),
        }
    }
}

impl SourceConfig {
    /// The source server and table; a table without a schema takes the url's database.
    fn from_raw(raw: &RawSource, base: &Path, env: Env) -> Result<SourceConfig, ConfigError> {
        let endpoint = endpoint(
            "source",
            &raw.url,
            raw.password_env.as_deref(),
            raw.password_file.as_deref(),
            raw.tls_keys(),
            base,
            env,
        )?;
        let table = table_name("source", &raw.table, endpoint.opts.db_name())?;
        Ok(SourceConfig { endpoint, table })
    }
}

impl ArchiveConfig {
    /// The archive server, if it has its own url, and table; a table without a schema takes
    /// the database of its url, or of the source url when it has none. Refuses the source
    /// table itself on the source's server.
    fn from_raw(
        raw: &RawArchive,
        source: &SourceConfig,
        base: &Path,
        env: Env,
    ) -> Result<ArchiveConfig, ConfigError> {
        let endpoint = match &raw.url {
            None => {
                if raw.password_env.is_some() || raw.password_file.is_some() {
                    return err("[archive] sets a password but no url; without a url the archive is reached through the source connection, so remove the password key or add url");
                }
                if raw.tls_keys().any() {
                    return err("[archive] sets tls_* keys but no url; without a url the archive is reached through the source connection, whose TLS [source] sets: remove them or add url");
                }
                None
            }
            Some(url) => Some(endpoint(
                "archive",
                url,
                raw.password_env.as_deref(),
                raw.password_file.as_deref(),
                raw.tls_keys(),
                base,
                env,
            )?),
        };
        let schema = endpoint.as_ref().unwrap_or(&source.endpoint).opts.db_name();
        let table = table_name("archive", &raw.table, schema)?;
        let same_server = endpoint
            .as_ref()
            .is_none_or(|a| a.server() == source.endpoint.server());
        if same_server && table == source.table {
            return err(format!(
                "[archive] table is the source table {}; name a different table",
                source.table
            ));
        }
        Ok(ArchiveConfig { endpoint, table })
    }
}

impl Batching {
    /// `batch_rows`, `batch_time_ms` and its bounds, `attempts_max` and `sleep_ms`, each within
    /// its [`Limit`]; the bounds must hold `batch_rows` (where the adaptive size starts; an
    /// absent `batch_rows_max` is raised to it), and are refused rather than ignored when
    /// `batch_time_ms = 0` fixes the size.
    fn from_raw(raw: &RawJob) -> Result<Batching, ConfigError> {
        let rows = BATCH_ROWS.value(raw.batch_rows)?;
        let batching = Batching {
            rows,
            time_ms: BATCH_TIME_MS.value(raw.batch_time_ms)?,
            rows_min: ADAPTIVE_ROWS_MIN.value(raw.batch_rows_min)?,
            // Absent, the default bound, or batch_rows where the job file asked for more.
            rows_max: match raw.batch_rows_max {
                Some(max) => ADAPTIVE_ROWS_MAX.value(Some(max))?,
                None => ADAPTIVE_ROWS_MAX.default.max(rows),
            },
            attempts_max: ATTEMPTS_MAX.value(raw.attempts_max)?,
            sleep_ms: SLEEP_MS.value(raw.sleep_ms)?,
            parallel: PARALLEL.value(raw.parallel)?,
        };
        let (min, max) = (batching.rows_min, batching.rows_max);
        if batching.time_ms == 0 {
            if raw.batch_rows_min.is_some() || raw.batch_rows_max.is_some() {
                return err("[job] batch_rows_min and batch_rows_max bound the adaptive batch size, which batch_time_ms = 0 turns off (every batch has batch_rows rows); remove them, or set batch_time_ms");
            }
        } else if min > max {
            return err(format!(
                "[job] batch_rows_min = {min} is above batch_rows_max = {max}; make the smallest adaptive size at most the largest"
            ));
        } else if !(min..=max).contains(&rows) {
            let (key, bound) = if rows < min {
                ("batch_rows_min", min)
            } else {
                ("batch_rows_max", max)
            };
            return err(format!(
                "[job] batch_rows = {rows} (the first batch's size, adapted from there to batch_time_ms = {}) is outside {key} = {bound}; change either, or set batch_time_ms = 0 to give every batch batch_rows rows",
                batching.time_ms
            ));
        }
        Ok(batching)
    }
}

impl Sessions {
    /// `lock_wait_timeout_s` and `reconnect_timeout_s`, each within its [`Limit`].
    fn from_raw(raw: &RawJob) -> Result<Sessions, ConfigError> {
        Ok(Sessions {
            lock_wait_timeout_s: LOCK_WAIT_TIMEOUT_S.value(raw.lock_wait_timeout_s)?,
            reconnect_timeout_s: RECONNECT_TIMEOUT_S.value(raw.reconnect_timeout_s)?,
        })
    }
}

/// `[job] where`, trimmed; an empty predicate is refused rather than read as "every row".
fn predicate(raw: &str) -> Result<String, ConfigError> {
    let predicate = raw.trim();
    if predicate.is_empty() {
        return err("[job] where is empty; give the predicate that selects the rows to archive, e.g. where = \"created_at < NOW() - INTERVAL 90 DAY\"");
    }
    Ok(predicate.to_string())
}

/// `[job] wal_dir`, relative to `base` unless absolute.
fn wal_dir(raw: &Path, base: &Path) -> Result<PathBuf, ConfigError> {
    if raw.as_os_str().is_empty() {
        err("[job] wal_dir is empty; name the directory that holds this job's log")
    } else if raw.is_relative() {
        Ok(base.join(raw))
    } else {
        Ok(raw.to_path_buf())
    }
}
