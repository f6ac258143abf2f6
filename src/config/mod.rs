//! Job configuration: the TOML file an operator writes, parsed and validated before any I/O
//! other than reading the file itself and the password source.
//!
//! Two layers, as in ripgrep: [`RawConfig`] mirrors the file exactly (unknown keys are errors),
//! and [`JobConfig`] is the validated form the rest of the program uses.
//!
//! - `raw.rs`: the serde structs mirroring the file;
//! - `endpoint.rs`: server urls and passwords ([`Endpoint`]);
//! - `names.rs`: table names ([`TableName`]);
//! - `limits.rs`: the range and default of every number the file sets;
//! - this file: [`JobConfig`], reading and validating the file, and the job's identity.

mod endpoint;
mod limits;
mod names;
mod raw;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::event::JobIdentity;

use endpoint::endpoint;
pub use endpoint::{masked_url, Endpoint};
pub use limits::{
    Limit, ATTEMPTS_MAX, ATTEMPTS_MAX_DEFAULT, ATTEMPTS_MAX_LIMIT, BATCH_ROWS, BATCH_ROWS_DEFAULT,
    BATCH_ROWS_MAX, LOCK_WAIT_TIMEOUT_S, LOCK_WAIT_TIMEOUT_S_DEFAULT, LOCK_WAIT_TIMEOUT_S_MAX,
    RECONNECT_TIMEOUT_S, RECONNECT_TIMEOUT_S_DEFAULT, RECONNECT_TIMEOUT_S_MAX, SLEEP_MS,
    SLEEP_MS_MAX,
};
use names::table_name;
pub use names::TableName;
pub use raw::{RawArchive, RawConfig, RawJob, RawSource, Safety};

/// The validated job.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Source server.
    pub source: Endpoint,
    /// Source table.
    pub source_table: TableName,
    /// Archive server, reached by its own connection; `None` when the archive table is reached
    /// through the source connection (one transaction per batch).
    pub archive: Option<Endpoint>,
    /// Archive table.
    pub archive_table: TableName,
    /// The predicate, verbatim.
    pub predicate: String,
    /// Rows per batch.
    pub batch_rows: u32,
    /// WAL directory (relative paths are relative to the config file's directory).
    pub wal_dir: PathBuf,
    /// Attempts per batch before it is parked.
    pub attempts_max: u32,
    /// Pause between batches, in milliseconds.
    pub sleep_ms: u32,
    /// `innodb_lock_wait_timeout` for the job's sessions, in seconds.
    pub lock_wait_timeout_s: u32,
    /// How long to keep reconnecting before stopping, in seconds.
    pub reconnect_timeout_s: u32,
    /// Opt-ins for triggers and foreign keys.
    pub safety: Safety,
}

/// A configuration problem; the CLI exits with the configuration-error code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(message.into()))
}

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
    pub fn parse(
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<JobConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            ConfigError(format!(
                "invalid job file: {}",
                e.to_string().trim_end().replace('\n', " ")
            ))
        })?;
        let source = endpoint(
            "source",
            &raw.source.url,
            &raw.source.password_env,
            &raw.source.password_file,
            base,
            env,
        )?;
        let source_schema = source.opts.db_name().map(str::to_string);
        let source_table = table_name("source", &raw.source.table, source_schema.as_deref())?;
        let archive = match &raw.archive.url {
            None => {
                if raw.archive.password_env.is_some() || raw.archive.password_file.is_some() {
                    return err("[archive] sets a password but no url; without a url the archive is reached through the source connection, so remove the password key or add url");
                }
                None
            }
            Some(url) => Some(endpoint(
                "archive",
                url,
                &raw.archive.password_env,
                &raw.archive.password_file,
                base,
                env,
            )?),
        };
        let archive_schema = archive.as_ref().map_or(source_schema.clone(), |a| {
            a.opts.db_name().map(str::to_string)
        });
        let archive_table = table_name("archive", &raw.archive.table, archive_schema.as_deref())?;
        let same_server = archive
            .as_ref()
            .is_none_or(|a| a.server() == source.server());
        if same_server && archive_table == source_table {
            return err(format!(
                "[archive] table is the source table {source_table}; name a different table"
            ));
        }

        let predicate = raw.job.predicate.trim().to_string();
        if predicate.is_empty() {
            return err("[job] where is empty; give the predicate that selects the rows to archive, e.g. where = \"created_at < NOW() - INTERVAL 90 DAY\"");
        }
        let batch_rows = BATCH_ROWS.value(raw.job.batch_rows)?;
        let attempts_max = ATTEMPTS_MAX.value(raw.job.attempts_max)?;
        let sleep_ms = SLEEP_MS.value(raw.job.sleep_ms)?;
        let lock_wait_timeout_s = LOCK_WAIT_TIMEOUT_S.value(raw.job.lock_wait_timeout_s)?;
        let reconnect_timeout_s = RECONNECT_TIMEOUT_S.value(raw.job.reconnect_timeout_s)?;
        let wal_dir = if raw.job.wal_dir.as_os_str().is_empty() {
            return err("[job] wal_dir is empty; name the directory that holds this job's log");
        } else if raw.job.wal_dir.is_relative() {
            base.join(&raw.job.wal_dir)
        } else {
            raw.job.wal_dir.clone()
        };
        Ok(JobConfig {
            source,
            source_table,
            archive,
            archive_table,
            predicate,
            batch_rows,
            wal_dir,
            attempts_max,
            sleep_ms,
            lock_wait_timeout_s,
            reconnect_timeout_s,
            safety: raw.safety,
        })
    }

    /// What this job moves where, as recorded in the first record of its log.
    pub fn identity(&self) -> JobIdentity {
        let archive_server = self
            .archive
            .as_ref()
            .map_or_else(|| self.source.server(), Endpoint::server);
        JobIdentity {
            source_server: self.source.server(),
            source_schema: self.source_table.schema.clone(),
            source_table: self.source_table.table.clone(),
            archive_server,
            archive_schema: self.archive_table.schema.clone(),
            archive_table: self.archive_table.table.clone(),
            predicate: self.predicate.clone(),
        }
    }
}
