//! What the throttle reads from servers, and nothing else: a replica's lag (its replication
//! status, or a pt-heartbeat style table) and the source's status variables. Every statement
//! here reads; replica sessions are also made read-only, so a mistake cannot change a replica.

use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

use super::{DbError, DbResult};
use crate::config::{Endpoint, LagSource, LoadBound, Refusal, TableName};
use crate::event::ErrorClass;

/// The statements that show a replica's replication status, tried in order: MariaDB's, which
/// lists every source of a multi-source replica; MySQL 8.0.22+'s; older MySQL's. The next is
/// tried only when the server does not know the statement's syntax (error 1064).
const REPLICA_STATUS: [&str; 3] = [
    "SHOW ALL SLAVES STATUS",
    "SHOW REPLICA STATUS",
    "SHOW SLAVE STATUS",
];

/// The server's error for a statement it cannot parse.
const ER_PARSE_ERROR: u16 = 1064;

/// What a replica says about its lag.
#[derive(Debug, Clone, PartialEq)]
pub enum LagReading {
    /// Replicating, this many seconds behind its primary (the most of any of its sources).
    Behind(f64),
    /// Not replicating, or its lag cannot be known; the text says why.
    NotReplicating(String),
}

/// Longest a replica may take to connect and answer one lag read, in milliseconds; past it
/// the replica counts as unreachable for that read.
pub const REPLICA_READ_TIMEOUT_MS: u64 = 10_000;

/// One lag read of the replica at `endpoint` on a connection of its own, within
/// [`REPLICA_READ_TIMEOUT_MS`] (past it: [`DbError::Unreachable`]). For the dry run; a run
/// keeps its replica connections.
pub async fn lag_once(
    endpoint: &Endpoint,
    lag_source: &LagSource,
    lock_wait_timeout_s: u32,
) -> DbResult<LagReading> {
    let read = async {
        let mut conn = connect_replica(endpoint, lock_wait_timeout_s).await?;
        let reading = match lag_source {
            LagSource::ReplicaStatus => replica_status_lag(&mut conn).await,
            LagSource::Heartbeat(table) => heartbeat_lag(&mut conn, table).await,
        };
        let _ = conn.disconnect().await;
        reading
    };
    let limit = std::time::Duration::from_millis(REPLICA_READ_TIMEOUT_MS);
    match tokio::time::timeout(limit, read).await {
        Ok(reading) => reading.map_err(|error| refused_read(&endpoint.server(), error)),
        Err(_) => Err(DbError::Unreachable(format!(
            "{} gave no answer within {} s",
            endpoint.server(),
            REPLICA_READ_TIMEOUT_MS / 1_000
        ))),
    }
}

/// A replica's refusal of a lag read (a grant it lacks, no heartbeat table) as a refusal
/// naming the replica and what to grant; other errors as they are.
pub fn refused_read(server: &str, error: DbError) -> DbError {
    if error.class() == ErrorClass::Transient {
        return error;
    }
    match error {
        DbError::Server(error) => {
            DbError::Refused(Refusal(format!(
                "cannot read the lag of replica {server}: {error}; the url's user needs SLAVE MONITOR (MariaDB) or REPLICATION CLIENT (MySQL) to read the replication status, or, with heartbeat_table, the table must exist there and be readable by it"
            )))
        }
        other => other,
    }
}

/// Connects to a replica for lag reads: the job's session settings (UTC among them, for a
/// heartbeat `TIMESTAMP`), and a read-only session.
pub async fn connect_replica(endpoint: &Endpoint, lock_wait_timeout_s: u32) -> DbResult<Conn> {
    let mut conn = super::connect(endpoint, lock_wait_timeout_s).await?;
    conn.query_drop("SET SESSION TRANSACTION READ ONLY").await?;
    Ok(conn)
}

/// The replica's lag from its replication status: the largest `Seconds_Behind_Master` of its
/// sources, or why it is not replicating (an IO or SQL thread not running, with its last
/// error; a NULL lag; no replication configured at all).
pub async fn replica_status_lag(conn: &mut Conn) -> DbResult<LagReading> {
    let mut last_error = None;
    for statement in REPLICA_STATUS {
        match conn.query::<Row, _>(statement).await {
            Ok(rows) => return Ok(lag_of_sources(statement, &rows)),
            Err(mysql_async::Error::Server(e)) if e.code == ER_PARSE_ERROR => {
                last_error = Some(mysql_async::Error::Server(e));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last_error.expect("at least one statement was tried").into())
}

/// The lag of a replica's sources, one row each, as [`replica_status_lag`] describes.
fn lag_of_sources(statement: &str, rows: &[Row]) -> LagReading {
    if rows.is_empty() {
        return LagReading::NotReplicating(format!(
            "not a replica ({statement} shows no replication)"
        ));
    }
    let mut worst = 0.0_f64;
    for row in rows {
        let name = field(row, &["Connection_name"]).unwrap_or_default();
        let source = if name.is_empty() {
            String::new()
        } else {
            format!("source '{name}': ")
        };
        let io = field(row, &["Slave_IO_Running", "Replica_IO_Running"]).unwrap_or_default();
        let sql = field(row, &["Slave_SQL_Running", "Replica_SQL_Running"]).unwrap_or_default();
        if io != "Yes" || sql != "Yes" {
            let errors: Vec<String> = ["Last_IO_Error", "Last_SQL_Error"]
                .iter()
                .filter_map(|column| field(row, &[column]))
                .filter(|error| !error.is_empty())
                .collect();
            let errors = if errors.is_empty() {
                String::new()
            } else {
                format!(": {}", errors.join("; "))
            };
            return LagReading::NotReplicating(format!(
                "{source}not replicating (IO thread {}, SQL thread {}){errors}",
                or_none(&io),
                or_none(&sql)
            ));
        }
        let behind = field(row, &["Seconds_Behind_Master", "Seconds_Behind_Source"]);
        match behind.and_then(|seconds| seconds.parse::<f64>().ok()) {
            Some(seconds) => worst = worst.max(seconds),
            None => {
                return LagReading::NotReplicating(format!(
                    "{source}not replicating (Seconds_Behind_Master is NULL)"
                ))
            }
        }
    }
    LagReading::Behind(worst)
}

fn or_none(text: &str) -> &str {
    if text.is_empty() {
        "none"
    } else {
        text
    }
}

/// A column of a status row by any of its names (MariaDB and MySQL name some differently), as
/// text; `None` if the row has no such column or it is NULL.
fn field(row: &Row, names: &[&str]) -> Option<String> {
    let index = row
        .columns_ref()
        .iter()
        .position(|c| names.iter().any(|n| c.name_str().eq_ignore_ascii_case(n)))?;
    match row.as_ref(index)? {
        Value::NULL => None,
        Value::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Int(v) => Some(v.to_string()),
        Value::UInt(v) => Some(v.to_string()),
        other => Some(other.as_sql(true)),
    }
}

/// The replica's lag from a pt-heartbeat style table: its UTC clock minus the newest `ts`
/// (a UTC time, as pt-heartbeat `--utc` writes it, or a `TIMESTAMP`, read in UTC). No row:
/// not replicating, as far as anyone can tell.
pub async fn heartbeat_lag(conn: &mut Conn, table: &TableName) -> DbResult<LagReading> {
    let statement = format!(
        "SELECT TIMESTAMPDIFF(MICROSECOND, MAX(`ts`), UTC_TIMESTAMP(6)) FROM {}",
        super::sql::qualified(&table.schema, &table.table)
    );
    let lag: Option<Option<i64>> = conn.query_first(statement).await?;
    Ok(match lag.flatten() {
        // A clock a little behind the primary's shows a negative lag: none.
        Some(us) => LagReading::Behind(us.max(0) as f64 / 1e6),
        None => LagReading::NotReplicating(format!(
            "the heartbeat table {table} holds no row with a ts"
        )),
    })
}

/// The current values of `bounds`' status variables on the source (`SHOW GLOBAL STATUS`), in
/// the same order. A variable the server does not have, or whose value is not a whole number,
/// is a refusal naming it.
pub async fn status_values(conn: &mut Conn, bounds: &[&LoadBound]) -> DbResult<Vec<u64>> {
    // The names are letters, digits and underscores (checked when the job file was read), so
    // quoting them as literals is safe; SHOW takes no placeholders.
    let names: Vec<String> = bounds
        .iter()
        .map(|b| {
            debug_assert!(b
                .variable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'));
            format!("'{}'", b.variable)
        })
        .collect();
    let statement = format!(
        "SHOW GLOBAL STATUS WHERE Variable_name IN ({})",
        names.join(", ")
    );
    let rows: Vec<(String, String)> = conn.query(statement).await?;
    bounds
        .iter()
        .map(|bound| {
            let found = rows
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&bound.variable));
            let Some((_, value)) = found else {
                return Err(DbError::Refused(Refusal(format!(
                    "[throttle] names the status variable {}, which the source server does not have (SHOW GLOBAL STATUS); fix max_load or critical_load",
                    bound.variable
                ))));
            };
            value.trim().parse::<u64>().map_err(|_| {
                DbError::Refused(Refusal(format!(
                    "[throttle] status variable {} is {value:?} on the source server, not a whole number to compare with {}; name a counter or gauge such as Threads_running",
                    bound.variable, bound.bound
                )))
            })
        })
        .collect()
}
