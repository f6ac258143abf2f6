//! Job configuration: the TOML file an operator writes, parsed and validated before any I/O
//! other than reading the file itself and the password source.
//!
//! Two layers, as in ripgrep: [`RawConfig`] mirrors the file exactly (unknown keys are errors),
//! and [`JobConfig`] is the validated form the rest of the program uses.

mod refusal;

pub use refusal::Refusal;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::event::JobIdentity;

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
}

/// `[job]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    /// The SQL predicate selecting the rows to archive.
    #[serde(rename = "where")]
    pub predicate: String,
    /// Rows per batch.
    pub batch_rows: Option<u32>,
    /// Directory of the job's write-ahead log.
    pub wal_dir: PathBuf,
    /// Attempts per batch before it is parked.
    pub attempts_max: Option<u32>,
    /// Pause between batches, in milliseconds (throttling).
    pub sleep_ms: Option<u32>,
    /// `innodb_lock_wait_timeout` for the job's sessions, in seconds.
    pub lock_wait_timeout_s: Option<u32>,
    /// How long to keep reconnecting to an unreachable server before stopping, in seconds.
    pub reconnect_timeout_s: Option<u32>,
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

/// A table named in the configuration, with its schema resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// Schema (database).
    pub schema: String,
    /// Table.
    pub table: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// A server connection. `Debug` never shows the password.
///
/// The password is looked up when the job file is read but a missing one is only an error when
/// a connection is opened ([`Endpoint::connect_opts`]): `status`, `replay` and `reset` never
/// connect, so they work where the password is not available (an operator's shell, not cron's).
#[derive(Clone)]
pub struct Endpoint {
    /// The URL as configured (holds no password: one in the url is refused).
    pub url: String,
    /// Host, port and database, parsed from the URL.
    pub opts: mysql_async::Opts,
    /// The password, or why it could not be read.
    password: Password,
}

/// Where an endpoint's password stands after the job file was read.
#[derive(Clone)]
enum Password {
    /// Neither `password_env` nor `password_file`: connect without one.
    None,
    /// Read from the environment or the password file.
    Given(String),
    /// Configured but unavailable; the message says which source and why.
    Unavailable(String),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = match &self.password {
            Password::None => "none",
            Password::Given(_) => "<hidden>",
            Password::Unavailable(_) => "<unavailable>",
        };
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("password", &password)
            .finish()
    }
}

impl Endpoint {
    /// `host:port`, or the socket path, for identity and messages.
    pub fn server(&self) -> String {
        match self.opts.socket() {
            Some(socket) => socket.to_string(),
            None => format!("{}:{}", self.opts.ip_or_hostname(), self.opts.tcp_port()),
        }
    }

    /// Connection options with the password filled in; an error if the configured password
    /// could not be read.
    pub fn connect_opts(&self) -> Result<mysql_async::Opts, ConfigError> {
        let password = match &self.password {
            Password::None => None,
            Password::Given(password) => Some(password.clone()),
            Password::Unavailable(why) => return err(why.clone()),
        };
        Ok(mysql_async::OptsBuilder::from_opts(self.opts.clone())
            .pass(password)
            .into())
    }
}

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
        let batch_rows = raw.job.batch_rows.unwrap_or(BATCH_ROWS_DEFAULT);
        if !(1..=BATCH_ROWS_MAX).contains(&batch_rows) {
            return err(format!(
                "[job] batch_rows = {batch_rows} is out of range; use 1 to {BATCH_ROWS_MAX}"
            ));
        }
        let attempts_max = raw.job.attempts_max.unwrap_or(ATTEMPTS_MAX_DEFAULT);
        if !(1..=ATTEMPTS_MAX_LIMIT).contains(&attempts_max) {
            return err(format!(
                "[job] attempts_max = {attempts_max} is out of range; use 1 to {ATTEMPTS_MAX_LIMIT}"
            ));
        }
        let sleep_ms = raw.job.sleep_ms.unwrap_or(0);
        if sleep_ms > SLEEP_MS_MAX {
            return err(format!(
                "[job] sleep_ms = {sleep_ms} is out of range; use 0 to {SLEEP_MS_MAX}"
            ));
        }
        let lock_wait_timeout_s = raw
            .job
            .lock_wait_timeout_s
            .unwrap_or(LOCK_WAIT_TIMEOUT_S_DEFAULT);
        if !(1..=LOCK_WAIT_TIMEOUT_S_MAX).contains(&lock_wait_timeout_s) {
            return err(format!("[job] lock_wait_timeout_s = {lock_wait_timeout_s} is out of range; use 1 to {LOCK_WAIT_TIMEOUT_S_MAX}"));
        }
        let reconnect_timeout_s = raw
            .job
            .reconnect_timeout_s
            .unwrap_or(RECONNECT_TIMEOUT_S_DEFAULT);
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

/// Query parameters of a url the job accepts: connection transport and timeouts that cannot
/// change what the statements do. The driver knows more; see [`url_param_finding`].
const URL_PARAMS_ALLOWED: [&str; 10] = [
    "socket",
    "prefer_socket",
    "compression",
    "tcp_keepalive",
    "tcp_nodelay",
    "max_allowed_packet",
    "wait_timeout",
    "stmt_cache_size",
    "secure_auth",
    "enable_cleartext_plugin",
];

/// Why a url query parameter is refused, or `None` if it is allowed.
fn url_param_finding(section: &str, key: &str) -> Option<String> {
    if URL_PARAMS_ALLOWED.contains(&key) {
        return None;
    }
    let why = match key {
        "require_ssl" | "verify_ca" | "verify_identity" | "built_in_roots" => {
            "TLS is not supported by this build yet; reach the server over a network you trust or its Unix socket (?socket=PATH), and remove the parameter".to_string()
        }
        "client_found_rows" => {
            "it changes the affected-row counts the server reports to the engine; remove it".to_string()
        }
        "pool_min" | "pool_max" | "inactive_connection_ttl" | "ttl_check_interval" | "conn_ttl"
        | "abs_conn_ttl" | "abs_conn_ttl_jitter" | "reset_connection" => {
            "it sets the driver's connection pool, which archiver does not use; remove it".to_string()
        }
        _ => format!(
            "it is not a parameter archiver knows; the ones accepted are {}",
            URL_PARAMS_ALLOWED.join(", ")
        ),
    };
    Some(format!(
        "[{section}] url parameter {key:?} is refused: {why}"
    ))
}

/// `url` with any password in it replaced by `***`, for messages. Masks from the first `:`
/// after the scheme up to the last `@`, so an unencoded `@` or `/` in a password is masked too.
pub fn masked_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    match (rest.find(':'), rest.rfind('@')) {
        (Some(colon), Some(at)) if colon < at => {
            format!("{scheme}{}:***{}", &rest[..colon], &rest[at..])
        }
        _ => url.to_string(),
    }
}

fn endpoint(
    section: &str,
    url: &str,
    password_env: &Option<String>,
    password_file: &Option<PathBuf>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Endpoint, ConfigError> {
    if !url.starts_with("mysql://") {
        return err(format!(
            "[{section}] url {:?} must start with mysql:// (e.g. mysql://archiver@db1:3306/shop)",
            masked_url(url)
        ));
    }
    // Refuse a password before anything else looks at (and might echo) the url.
    let authority = url["mysql://".len()..]
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    if authority.contains('@') && authority[..authority.rfind('@').unwrap_or(0)].contains(':') {
        return err(format!("[{section}] url contains a password; passwords never go in the job file: remove it from the url and set password_env or password_file"));
    }
    if let Some((_, query)) = url.split_once('?') {
        let findings: Vec<String> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| url_param_finding(section, pair.split('=').next().unwrap_or("")))
            .collect();
        if !findings.is_empty() {
            return err(findings.join("; "));
        }
    }
    // A url is operator input and the parser is the driver's: should it panic on some input,
    // that is the same configuration error as any other bad url, never exit 101. (The panic
    // seen in practice, `require_ssl=true` in a build without TLS, comes at connect time and is
    // refused above.)
    let parsed = std::panic::catch_unwind(|| mysql_async::Opts::from_url(url));
    let opts = match parsed {
        Ok(Ok(opts)) => opts,
        Ok(Err(e)) => return err(format!("[{section}] url is not a valid MySQL URL: {e}")),
        Err(_) => {
            return err(format!(
                "[{section}] url {:?} is not a valid MySQL URL; write it as mysql://USER@HOST:PORT/DATABASE",
                masked_url(url)
            ))
        }
    };
    if opts.pass().is_some() {
        return err(format!("[{section}] url contains a password; passwords never go in the job file: remove it from the url and set password_env or password_file"));
    }
    if opts.user().is_none() {
        return err(format!(
            "[{section}] url names no user; write it as mysql://USER@HOST:PORT/DATABASE"
        ));
    }
    let password = match (password_env, password_file) {
        (Some(_), Some(_)) => {
            return err(format!(
                "[{section}] sets both password_env and password_file; keep one"
            ))
        }
        (Some(var), None) => match env(var) {
            Some(password) => Password::Given(password),
            None => Password::Unavailable(format!(
                "[{section}] password_env names {var}, which is not set in the environment; export it, or use password_file"
            )),
        },
        (None, Some(file)) => {
            let path = if file.is_relative() {
                base.join(file)
            } else {
                file.clone()
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => Password::Given(text.lines().next().unwrap_or("").to_string()),
                Err(e) => Password::Unavailable(format!(
                    "[{section}] cannot read password_file {}: {e}",
                    path.display()
                )),
            }
        }
        (None, None) => Password::None,
    };
    Ok(Endpoint {
        url: url.to_string(),
        opts,
        password,
    })
}

/// Splits `table` or `database.table` into its parts. A part may be quoted in backticks, as in
/// SQL (a doubled backtick inside stands for one), so that names holding a dot can be written:
/// "`sales.2024`.`orders`"; an unquoted part is taken as it is, backticks inside included.
/// `None` if the text is not one or two such parts.
fn name_parts(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'`') {
            chars.next();
            loop {
                match chars.next()? {
                    '`' if chars.peek() == Some(&'`') => {
                        chars.next();
                        part.push('`');
                    }
                    '`' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c);
                chars.next();
            }
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(_) => return None,
        }
    }
    (parts.len() <= 2).then_some(parts)
}

fn table_name(
    section: &str,
    text: &str,
    default_schema: Option<&str>,
) -> Result<TableName, ConfigError> {
    let Some(parts) = name_parts(text) else {
        return err(format!(
            "[{section}] table {text:?} is not `table` or `database.table` (quote a name that holds a dot in backticks: \"`db`.`my.table`\")"
        ));
    };
    let (schema, table) = match parts.as_slice() {
        [table] => match default_schema {
            Some(schema) => (schema.to_string(), table.clone()),
            None => {
                return err(format!(
                "[{section}] table {text:?} names no database and the url has none; write database.table"
            ))
            }
        },
        [schema, table] => (schema.clone(), table.clone()),
        _ => unreachable!("name_parts returns one or two parts"),
    };
    if schema.is_empty() || table.is_empty() {
        return err(format!("[{section}] table {text:?} has an empty name part"));
    }
    Ok(TableName { schema, table })
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

    #[test]
    fn table_names_may_quote_parts_holding_dots_or_backticks() {
        for (text, schema, table) in [
            ("orders", "shop", "orders"),
            ("sales.orders", "sales", "orders"),
            ("`my.table`", "shop", "my.table"),
            ("`sales.2024`.`or.ders`", "sales.2024", "or.ders"),
            ("`we``ird`", "shop", "we`ird"),
            ("sales.`x.y`", "sales", "x.y"),
            ("tâble 😀", "shop", "tâble 😀"),
            ("we`ird name", "shop", "we`ird name"),
        ] {
            let name = table_name("source", text, Some("shop")).unwrap();
            assert_eq!(
                (name.schema.as_str(), name.table.as_str()),
                (schema, table),
                "{text}"
            );
        }
        for text in ["a.b.c", "`unclosed", "`a`b", "", ".t", "`a`.", "``"] {
            assert!(
                table_name("source", text, Some("shop")).is_err(),
                "{text:?} accepted"
            );
        }
    }
}
