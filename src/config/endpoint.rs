//! Server connections: the url checks (no password, only known query parameters), the
//! password looked up from the environment or a file, the TLS settings (`tls.rs`), and urls
//! masked for messages.

use std::path::Path;

use super::tls::{tls, Tls, TlsAttempt, TlsKeys};
use super::{err, ConfigError, Env};

/// A server connection. `Debug` never shows the password.
///
/// The password is looked up when the job file is read but a missing one is only an error when
/// a connection is opened ([`Endpoint::connect_opts`]): `status`, `replay` and `reset` never
/// connect, so they work where the password is not available (an operator's shell, not cron's).
#[derive(Clone)]
pub struct Endpoint {
    /// The job file's section that configures it: `source` or `archive`.
    pub section: &'static str,
    /// The URL as configured (holds no password: one in the url is refused).
    pub url: String,
    /// Host, port and database, parsed from the URL.
    pub opts: mysql_async::Opts,
    /// The password, or why it could not be read.
    password: Password,
    /// How the connection uses TLS.
    pub tls: Tls,
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
            .field("section", &self.section)
            .field("url", &self.url)
            .field("password", &password)
            .field("tls", &self.tls)
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

    /// The endpoint as messages name it: its section and its url, masked (the url holds no
    /// password, but a message must not depend on that).
    pub fn label(&self) -> String {
        format!("[{}] {}", self.section, masked_url(&self.url))
    }

    /// Connection options as configured, with the password filled in; an error if the
    /// configured password or a TLS file could not be read.
    pub fn connect_opts(&self) -> Result<mysql_async::Opts, ConfigError> {
        self.connect_opts_for(TlsAttempt::AsConfigured)
    }

    /// Connection options for one way of connecting (see [`TlsAttempt`]).
    pub fn connect_opts_for(
        &self,
        attempt: TlsAttempt<'_>,
    ) -> Result<mysql_async::Opts, ConfigError> {
        let password = match &self.password {
            Password::None => None,
            Password::Given(password) => Some(password.clone()),
            Password::Unavailable(why) => return err(why.clone()),
        };
        let ssl = self.tls.ssl_opts(attempt, self.opts.socket().is_some())?;
        // A TLS session stays on TCP: the driver otherwise moves to the server's Unix socket
        // when one by the name the server reports exists on this machine, which would leave
        // the session (and the server it verified) behind; without TLS, as the url says.
        let keep_tcp = ssl.is_some();
        let mut builder = mysql_async::OptsBuilder::from_opts(self.opts.clone())
            .pass(password)
            .ssl_opts(ssl);
        if keep_tcp {
            builder = builder.prefer_socket(false);
        }
        Ok(builder.into())
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
            "TLS is set by the section's keys tls_mode, tls_ca_file, tls_cert_file and tls_key_file (README: TLS), not in the url; remove the parameter".to_string()
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

/// The endpoint `[section]` configures: `url` checked and parsed, the password looked up, the
/// TLS keys checked.
pub(super) fn endpoint(
    section: &'static str,
    url: &str,
    password_env: Option<&str>,
    password_file: Option<&Path>,
    tls_keys: TlsKeys<'_>,
    base: &Path,
    env: Env,
) -> Result<Endpoint, ConfigError> {
    let opts = url_opts(section, url)?;
    let password = password(section, password_env, password_file, base, env)?;
    let tls = tls(section, tls_keys, url, opts.socket().is_some(), base)?;
    Ok(Endpoint {
        section,
        url: url.to_string(),
        opts,
        password,
        tls,
    })
}

/// Checks `url` and parses it into connection options: a `mysql://` url with a user, no
/// password and only the query parameters archiver accepts. No message echoes a password.
fn url_opts(section: &str, url: &str) -> Result<mysql_async::Opts, ConfigError> {
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
    Ok(opts)
}

/// Looks the password up in the environment or the password file (relative to `base`). Setting
/// both is an error; one that cannot be read is not, until a connection needs it.
fn password(
    section: &str,
    password_env: Option<&str>,
    password_file: Option<&Path>,
    base: &Path,
    env: Env,
) -> Result<Password, ConfigError> {
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
                file.to_path_buf()
            };
            password_from_file(section, &path)
        }
        (None, None) => Password::None,
    };
    Ok(password)
}

/// Permission bits of a password file that let other users (not the owner, not its group)
/// read or change it.
const PASSWORD_FILE_OTHERS_MODE: u32 = 0o007;

/// The first line of a password file, or why it cannot be used: unreadable, or readable by
/// every user of the machine (as `ssh` refuses such a private key: the password is exposed
/// already, and the operator should know before the job uses it). A file its group may read
/// (0640, a service group) is accepted.
fn password_from_file(section: &str, path: &Path) -> Password {
    use std::os::unix::fs::PermissionsExt;
    let mode = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode(),
        Err(e) => {
            return Password::Unavailable(format!(
                "[{section}] cannot read password_file {}: {e}",
                path.display()
            ))
        }
    };
    if mode & PASSWORD_FILE_OTHERS_MODE != 0 {
        return Password::Unavailable(format!(
            "[{section}] password_file {} can be read or changed by every user of this machine (mode {:04o}); make it the owner's only: chmod 600 {}",
            path.display(),
            mode & 0o7777,
            path.display()
        ));
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Password::Given(text.lines().next().unwrap_or("").to_string()),
        Err(e) => Password::Unavailable(format!(
            "[{section}] cannot read password_file {}: {e}",
            path.display()
        )),
    }
}
