//! [`DbError`]: what went wrong talking to a server, typed so that its caller decides by kind
//! ([`DbError::class`]: retry, park the batch, or stop) and the CLI's exit code follows from the
//! type, never from searching messages. Access refused by the server becomes a typed
//! [`Refusal`] here, where the server's error codes are known.

use crate::config::{ConfigError, Endpoint, Refusal, TlsMode};
use crate::event::ErrorClass;

/// A failure on a server connection.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server refused a statement, or the connection broke.
    #[error("{0}")]
    Server(#[from] mysql_async::Error),
    /// A connection could not be opened; classified by the driver's error.
    #[error("cannot connect to {server}: {source}")]
    Connect {
        /// `host:port` or the socket path, and the endpoint's section and masked url.
        server: String,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The server stayed unreachable for the whole reconnection window.
    #[error("{0}")]
    Unreachable(String),
    /// The job cannot run as configured against this server (no such database, access denied,
    /// a pre-flight finding). Nothing was changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The job file's password source could not be read when connecting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Some locked rows of a batch did not land in the archive; the batch was rolled back.
    #[error(transparent)]
    NotCopied(#[from] NotCopied),
    /// The server answered what the protocol rules out (a NULL key, a delete count that does
    /// not match the rows locked); the transaction was rolled back.
    #[error("{0}")]
    Unexpected(String),
}

/// A batch whose locked rows did not all end up either deleted or reported as conflicts: some
/// have no row under their key in the archive after the copy (an archive trigger changed the
/// key, or a row was refused without an error). The batch's transaction is rolled back and the
/// batch fails with [`ErrorClass::Batch`]: it is parked and reported, never passed as done.
#[derive(Debug, thiserror::Error)]
#[error("{count} locked row(s) of the batch have no row under their key in the archive after the copy (first: key {first}); a trigger on the archive or a key the archive rewrites kept them from landing; the batch was rolled back and the rows stay in the source")]
pub struct NotCopied {
    /// How many locked rows are missing from the archive.
    pub count: usize,
    /// The first missing key, as text.
    pub first: String,
}

/// Result of a server operation.
pub type DbResult<T> = Result<T, DbError>;

impl DbError {
    /// How the error affects a batch: retried, the batch parked, or the run stopped.
    pub fn class(&self) -> ErrorClass {
        match self {
            DbError::Server(error) | DbError::Connect { source: error, .. } => driver_class(error),
            DbError::NotCopied(_) => ErrorClass::Batch,
            DbError::Unreachable(_)
            | DbError::Refused(_)
            | DbError::Config(_)
            | DbError::Unexpected(_) => ErrorClass::Fatal,
        }
    }

    /// Whether another session's row lock stopped the statement: a lock wait timeout (1205)
    /// or a deadlock (1213). The statement (and, for a deadlock, the transaction) was rolled
    /// back; the connection is fine.
    pub fn is_lock_conflict(&self) -> bool {
        matches!(
            self,
            DbError::Server(mysql_async::Error::Server(server)) if matches!(server.code, 1205 | 1213)
        )
    }

    /// Whether the statement failed on a duplicate key (1062). The statement was rolled back
    /// (InnoDB rolls back a failed statement, not its transaction).
    pub fn is_duplicate_key(&self) -> bool {
        matches!(
            self,
            DbError::Server(mysql_async::Error::Server(server)) if server.code == 1062
        )
    }

    /// A failed connect as the operator should read it: the server's refusals that only the
    /// job file or the server's grants can fix (no such database, access denied, TLS
    /// required) are refusals naming what to do; anything else keeps the driver's error for
    /// [`Self::class`]. TLS failures are sorted before this, by `db::tls`.
    pub fn connect(endpoint: &Endpoint, error: mysql_async::Error) -> DbError {
        let server = connect_target(endpoint);
        if let mysql_async::Error::Server(e) = &error {
            let advice = match e.code {
                1049 => Some("the url names a database the server does not have; fix the url or create the database".to_string()),
                1044 | 1045 => Some(format!("check the url's user, the password source, and the user's grants (README: minimal grants){}", tls_hint(endpoint))),
                // MySQL's require_secure_transport (MariaDB answers 1045).
                3159 => Some(format!("the server accepts only encrypted connections, and tls_mode = {:?} made none: set tls_mode = \"required\" or a verify mode (README: TLS)", endpoint.tls.mode.name())),
                _ => None,
            };
            if let Some(advice) = advice {
                return DbError::Refused(Refusal(format!(
                    "cannot connect to {server}: {} (error {}); {advice}",
                    e.message, e.code
                )));
            }
        }
        DbError::Connect {
            server,
            source: error,
        }
    }
}

/// How connect errors name the server: `host:port` (or the socket), then the job file's
/// section and its url, masked.
pub(crate) fn connect_target(endpoint: &Endpoint) -> String {
    format!("{} ({})", endpoint.server(), endpoint.label())
}

/// What an access denied may also mean when the connection had no TLS or no client
/// certificate: MariaDB refuses an account that requires them with the same error.
fn tls_hint(endpoint: &Endpoint) -> &'static str {
    match (endpoint.tls.mode, &endpoint.tls.client_files) {
        (TlsMode::Disabled, _) => "; an account that requires TLS (REQUIRE SSL or X509) is refused the same way: set tls_mode (README: TLS)",
        (_, None) => "; an account that requires a client certificate (REQUIRE X509) is refused the same way: set tls_cert_file and tls_key_file (README: TLS)",
        _ => "",
    }
}

/// How a driver or server error affects a batch.
fn driver_class(error: &mysql_async::Error) -> ErrorClass {
    match error {
        mysql_async::Error::Server(server) => match server.code {
            // Deadlock, lock wait timeout, query interrupted/killed, server shutting down,
            // read-only while failing over, too many connections, WSREP not ready.
            1213 | 1205 | 1317 | 1927 | 1053 | 1290 | 1040 | 1047 | 1180 | 1181 => {
                ErrorClass::Transient
            }
            // Values the archive rejects: out of range, too long, bad value, an ENUM/SET value
            // it lacks (1265), duplicate on a secondary unique key, constraint failures, an
            // error SIGNALled by a trigger; a source row a RESTRICT foreign key keeps (1451,
            // only with allow_foreign_keys). Only this batch is affected: it is parked.
            1264 | 1406 | 1366 | 1292 | 1265 | 1062 | 1048 | 1451 | 1452 | 1690 | 3819 | 4025
            | 1644 => ErrorClass::Batch,
            // Everything else (missing table or column, permissions, syntax) stops the run.
            _ => ErrorClass::Fatal,
        },
        // Lost connection, refused connection, broken pipe: the server may be restarting.
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}
