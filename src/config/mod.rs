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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[source]
url = "mysql://archiver@127.0.0.1:3407/shop"
password_env = "PW"
table = "rewards"

[archive]
table = "rewards_archive"

[job]
where = "created_at < '2025-06-01'"
batch_rows = 500
wal_dir = "wal"
"#;

    fn parse(text: &str) -> Result<JobConfig, ConfigError> {
        JobConfig::parse(text, Path::new("/etc/archiver"), &|name| {
            (name == "PW").then(|| "secret".to_string())
        })
    }

    #[test]
    fn good_config_resolves_everything() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.source_table.to_string(), "shop.rewards");
        assert_eq!(config.archive_table.to_string(), "shop.rewards_archive");
        assert_eq!(config.batch_rows, 500);
        assert_eq!(config.attempts_max, ATTEMPTS_MAX_DEFAULT);
        assert_eq!(config.wal_dir, Path::new("/etc/archiver/wal"));
        let opts = config.source.connect_opts().unwrap();
        assert_eq!(opts.pass(), Some("secret"));
        assert_eq!(config.source.server(), "127.0.0.1:3407");
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn archive_on_another_server_has_its_own_endpoint() {
        let text = GOOD.replace(
            "[archive]\n",
            "[archive]\nurl = \"mysql://arch@10.0.0.2:3306/cold\"\npassword_env = \"PW\"\n",
        );
        let config = parse(&text).unwrap();
        let archive = config.archive.as_ref().expect("own endpoint");
        assert_eq!(archive.server(), "10.0.0.2:3306");
        assert_eq!(config.archive_table.to_string(), "cold.rewards_archive");
        assert_eq!(config.identity().archive_server, "10.0.0.2:3306");
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "batch_rows = 500",
                "batch_rows = 500\nbatchrows = 3",
                "unknown field `batchrows`",
            ),
            (
                "batch_rows = 500",
                "batch_rows = 0",
                "batch_rows = 0 is out of range",
            ),
            ("archiver@127", "archiver:pw@127", "url contains a password"),
            (
                "table = \"rewards\"",
                "table = \"a.b.c\"",
                "is not `table` or `database.table`",
            ),
            (
                "where = \"created_at < '2025-06-01'\"",
                "where = \"  \"",
                "where is empty",
            ),
            (
                "table = \"rewards_archive\"",
                "table = \"rewards\"",
                "is the source table",
            ),
            (
                "mysql://archiver@",
                "postgres://archiver@",
                "must start with mysql://",
            ),
            (
                "3407/shop",
                "3407/shop?require_ssl=true",
                "TLS is not supported by this build yet",
            ),
            (
                "3407/shop",
                "3407/shop?verify_ca=false&pool_max=3&sslmode=on",
                "\"pool_max\" is refused: it sets the driver's connection pool",
            ),
            (
                "3407/shop",
                "3407/shop?sslmode=on",
                "\"sslmode\" is refused: it is not a parameter archiver knows",
            ),
            (
                "3407/shop",
                "3407/shop?client_found_rows=true",
                "affected-row counts",
            ),
            (
                "3407/shop",
                "3407/shop?compression=",
                "not a valid MySQL URL",
            ),
            (
                "3407/shop",
                "3407/shop?tcp_nodelay=maybe",
                "not a valid MySQL URL",
            ),
            ("127.0.0.1:3407", "127.0.0.1:port", "not a valid MySQL URL"),
            (
                "batch_rows = 500",
                "batch_rows = 100001",
                "[job] batch_rows = 100001 is out of range; use 1 to 100000",
            ),
            (
                "batch_rows = 500",
                "attempts_max = 0",
                "[job] attempts_max = 0 is out of range; use 1 to 100",
            ),
            (
                "batch_rows = 500",
                "attempts_max = 101",
                "[job] attempts_max = 101 is out of range; use 1 to 100",
            ),
            (
                "batch_rows = 500",
                "sleep_ms = 60001",
                "[job] sleep_ms = 60001 is out of range; use 0 to 60000",
            ),
            (
                "batch_rows = 500",
                "lock_wait_timeout_s = 0",
                "[job] lock_wait_timeout_s = 0 is out of range; use 1 to 3600",
            ),
            (
                "batch_rows = 500",
                "lock_wait_timeout_s = 3601",
                "[job] lock_wait_timeout_s = 3601 is out of range; use 1 to 3600",
            ),
            (
                "batch_rows = 500",
                "reconnect_timeout_s = 0",
                "[job] reconnect_timeout_s = 0 is out of range; use 1 to 86400",
            ),
            (
                "batch_rows = 500",
                "reconnect_timeout_s = 86401",
                "[job] reconnect_timeout_s = 86401 is out of range; use 1 to 86400",
            ),
        ];
        for (from, to, expected) in cases {
            let text = GOOD.replacen(from, to, 1);
            let message = match parse(&text) {
                Ok(_) => panic!("{to}: accepted"),
                Err(e) => e.0,
            };
            assert!(
                message.contains(expected),
                "{to}: expected {expected:?} in {message:?}"
            );
        }
    }

    #[test]
    fn limits_accept_their_bounds_and_default_when_absent() {
        /// Reads the value a case checks.
        type Field = fn(&JobConfig) -> u32;
        let cases: &[(&str, Field, u32)] = &[
            ("", |c| c.batch_rows, 1_000),
            ("batch_rows = 1", |c| c.batch_rows, 1),
            ("batch_rows = 100000", |c| c.batch_rows, 100_000),
            ("", |c| c.attempts_max, 5),
            ("attempts_max = 1", |c| c.attempts_max, 1),
            ("attempts_max = 100", |c| c.attempts_max, 100),
            ("", |c| c.sleep_ms, 0),
            ("sleep_ms = 60000", |c| c.sleep_ms, 60_000),
            ("", |c| c.lock_wait_timeout_s, 10),
            ("lock_wait_timeout_s = 1", |c| c.lock_wait_timeout_s, 1),
            (
                "lock_wait_timeout_s = 3600",
                |c| c.lock_wait_timeout_s,
                3_600,
            ),
            ("", |c| c.reconnect_timeout_s, 120),
            ("reconnect_timeout_s = 1", |c| c.reconnect_timeout_s, 1),
            (
                "reconnect_timeout_s = 86400",
                |c| c.reconnect_timeout_s,
                86_400,
            ),
        ];
        for (line, field, expected) in cases {
            let text = GOOD.replacen("batch_rows = 500", line, 1);
            let config = parse(&text).unwrap_or_else(|e| panic!("{line}: {}", e.0));
            assert_eq!(field(&config), *expected, "{line:?}");
        }
    }

    #[test]
    fn a_missing_password_is_an_error_only_when_connecting() {
        let text = GOOD.replacen("password_env = \"PW\"", "password_env = \"NOPE\"", 1);
        let config = parse(&text).expect("status, replay and reset need no password");
        let message = config.source.connect_opts().unwrap_err().0;
        assert!(message.contains("NOPE, which is not set"), "{message}");
        let text = GOOD.replacen(
            "password_env = \"PW\"",
            "password_file = \"/nonexistent/pw\"",
            1,
        );
        let config = parse(&text).expect("parsed without reading the file's absence as fatal");
        let message = config.source.connect_opts().unwrap_err().0;
        assert!(
            message.contains("cannot read password_file /nonexistent/pw"),
            "{message}"
        );
    }

    #[test]
    fn urls_are_never_echoed_with_their_password() {
        for (url, shown) in [
            ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
            ("u:secret@h:3306/db", "u:***@h:3306/db"),
            ("mysql2://u:s3/cr@t@h/db", "mysql2://u:***@h/db"),
            ("postgres://u@h:5432/db", "postgres://u@h:5432/db"),
            ("h:3306", "h:3306"),
        ] {
            assert_eq!(masked_url(url), shown, "{url}");
        }
        for url in [
            "postgres://u:secret@h/db",
            "mysql://u:secret@h/db?require_ssl=true",
            "mysql://u:secret@h/db?compression=",
            "mysql://u:secret@h:notaport/db",
            "MYSQL://u:secret@h/db",
        ] {
            let text = GOOD.replacen("mysql://archiver@127.0.0.1:3407/shop", url, 1);
            let message = parse(&text).unwrap_err().0;
            assert!(!message.contains("secret"), "{url}: {message}");
        }
    }
}
