//! The job file as written: serde structs mirroring the TOML tables key for key. Every table
//! rejects keys it does not know, so a misspelt key is an error, never a silent default.

use std::path::PathBuf;

use serde::Deserialize;

use super::tls::TlsKeys;
use super::ConfigError;

/// The file as written. Every table rejects keys it does not know.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where rows come from.
    pub source: RawSource,
    /// Where rows go.
    pub archive: RawArchive,
    /// How the job runs.
    pub job: RawJob,
    /// Opt-ins for schema objects the pre-flight refuses by default.
    #[serde(default)]
    pub safety: Safety,
    /// Prometheus metrics written for node_exporter's textfile collector.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// Throttling that protects the primary and its replicas (absent: only `sleep_ms`).
    #[serde(default)]
    pub throttle: super::throttle::RawThrottle,
    /// Commands run when a run starts and ends.
    #[serde(default)]
    pub hooks: super::hooks::RawHooks,
}

impl RawConfig {
    /// Parses the file's text; a TOML error becomes one line naming what is wrong and where.
    pub fn from_toml(text: &str) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            ConfigError(format!(
                "invalid job file: {}",
                e.to_string().trim_end().replace('\n', " ")
            ))
        })
    }
}

/// `[source]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// `mysql://user@host:port/database`, without a password.
    pub url: String,
    /// Name of the environment variable holding the password.
    pub password_env: Option<String>,
    /// Path of a file whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// `table` or `database.table`.
    pub table: String,
    // TLS (issue 9): see config/tls.rs.
    /// `disabled`, `preferred` (default), `required`, `verify_ca` or `verify_identity`.
    pub tls_mode: Option<String>,
    /// CA certificate(s), PEM, the server's certificate must be signed by (verify modes).
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate, PEM, for a server that asks for one (`REQUIRE X509`).
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key, PEM, PKCS#1 RSA.
    pub tls_key_file: Option<PathBuf>,
}

/// `[archive]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArchive {
    /// Absent: the archive table is on the source server, reached by the source connection.
    pub url: Option<String>,
    /// As for the source.
    pub password_env: Option<String>,
    /// As for the source.
    pub password_file: Option<PathBuf>,
    /// `table` or `database.table`.
    pub table: String,
    // TLS (issue 9): as for the source; only with `url`.
    /// As for the source.
    pub tls_mode: Option<String>,
    /// As for the source.
    pub tls_ca_file: Option<PathBuf>,
    /// As for the source.
    pub tls_cert_file: Option<PathBuf>,
    /// As for the source.
    pub tls_key_file: Option<PathBuf>,
}

// TLS (issue 9): the TLS keys of each section, as config/tls.rs takes them.
impl RawSource {
    /// `tls_mode`, `tls_ca_file`, `tls_cert_file`, `tls_key_file`.
    pub fn tls_keys(&self) -> TlsKeys<'_> {
        TlsKeys {
            mode: self.tls_mode.as_deref(),
            ca_file: self.tls_ca_file.as_deref(),
            cert_file: self.tls_cert_file.as_deref(),
            key_file: self.tls_key_file.as_deref(),
        }
    }
}

impl RawArchive {
    /// `tls_mode`, `tls_ca_file`, `tls_cert_file`, `tls_key_file`.
    pub fn tls_keys(&self) -> TlsKeys<'_> {
        TlsKeys {
            mode: self.tls_mode.as_deref(),
            ca_file: self.tls_ca_file.as_deref(),
            cert_file: self.tls_cert_file.as_deref(),
            key_file: self.tls_key_file.as_deref(),
        }
    }
}

/// `[job]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    /// The SQL predicate selecting the rows to archive.
    #[serde(rename = "where")]
    pub predicate: String,
    /// Rows per batch: the first batch's with a target time, every batch's without.
    pub batch_rows: Option<u32>,
    /// Target execution time of one batch, in milliseconds; 0 fixes the size at `batch_rows`.
    pub batch_time_ms: Option<u32>,
    /// Smallest adaptive batch size.
    pub batch_rows_min: Option<u32>,
    /// Largest adaptive batch size.
    pub batch_rows_max: Option<u32>,
    /// Directory of the job's write-ahead log.
    pub wal_dir: PathBuf,
    /// Attempts per batch before it is parked.
    pub attempts_max: Option<u32>,
    /// Pause between batches, in milliseconds (throttling).
    pub sleep_ms: Option<u32>,
    /// Batches in flight at once.
    pub parallel: Option<u32>,
    /// `innodb_lock_wait_timeout` for the job's sessions, in seconds.
    pub lock_wait_timeout_s: Option<u32>,
    /// How long to keep reconnecting to an unreachable server before stopping, in seconds.
    pub reconnect_timeout_s: Option<u32>,
    /// Runs kept in full detail (every batch) when the log is compacted.
    pub keep_runs: Option<u32>,
    /// Records in the log above which a run compacts it before it starts; 0 never does.
    pub compact_above_records: Option<u32>,
}

/// `[safety]`: schema objects the pre-flight refuses by default, allowed by name where the
/// operator knows them to be harmless. Cascading foreign keys can never be allowed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Safety {
    /// Triggers the batch statements may fire (DELETE on the source, INSERT/UPDATE on the
    /// archive), by name.
    #[serde(default)]
    pub allow_triggers: Vec<String>,
    /// Foreign keys the job may meet, by constraint name: those of the source table, and those
    /// referencing it with ON DELETE RESTRICT/NO ACTION (a row with children parks its batch).
    #[serde(default)]
    pub allow_foreign_keys: Vec<String>,
}

/// `[metrics]`: the Prometheus metrics file for node_exporter's textfile collector.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Path of the `.prom` file, replaced atomically during and at the end of every run.
    pub textfile: Option<PathBuf>,
    /// Seconds between rewrites of the file during a run.
    pub textfile_interval_s: Option<u32>,
    /// `address:port` to serve `GET /metrics` on over TCP while a run is active.
    pub listen: Option<String>,
}
