//! The MySQL/MariaDB side: connections with their pinned session settings, values as the
//! server sends them, and the rooms below. Nothing above this module speaks SQL or knows a
//! server error code.
//!
//! - [`sql`]: every statement, built from table metadata.
//! - [`preflight`]: the schema-safety checks that run before anything moves.
//! - [`batch`]: planning and the one-transaction batch (archive on the source server).
//! - [`cross`]: the two-step batch for an archive on its own server, and `load`, its copy as
//!   `LOAD DATA LOCAL INFILE` fed from memory.
//! - `error`: [`DbError`] and its classification.
//! - [`times`]: where a batch's time goes, step by step (the run's statistics).
//! - [`throttle`]: what the throttle reads: replica lag, the source's status variables.
//! - `tls`: TLS at connect: the modes' second attempts, TLS failures as refusals.

pub mod batch;
pub mod cross;
mod error;
mod estimate;
mod load;
pub mod preflight;
pub mod sql;
pub mod throttle;
pub mod times;
mod tls;

pub use batch::{
    commit, execute_batch, key_bound, plan, plan_locked, plan_unlocked_after, rollback, BatchResult,
};
pub use cross::{
    execute_cross_batch, plan_rows_locked, Accepts, CrossAttempt, CrossOrder, EarlyDelete,
    RowValues,
};
pub use error::{DbError, DbResult, NotCopied};
pub use estimate::{count_rows, estimate_rows, COUNT_TIME_S_MAX};
pub use times::{BatchTimes, Tally};

use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Row, Value};

use self::sql::Statement;
use crate::config::Endpoint;
use crate::event::{Key, KeyValue};

fn to_value(key: &KeyValue) -> Value {
    match key {
        KeyValue::Int(v) => Value::Int(*v),
        KeyValue::UInt(v) => Value::UInt(*v),
        KeyValue::Bytes(v) => Value::Bytes(v.clone()),
        KeyValue::Date(y, m, d, h, i, s, us) => Value::Date(*y, *m, *d, *h, *i, *s, *us),
        KeyValue::Time(neg, d, h, i, s, us) => Value::Time(*neg, *d, *h, *i, *s, *us),
    }
}

pub(crate) fn from_value(value: Value) -> DbResult<KeyValue> {
    Ok(match value {
        Value::Int(v) => KeyValue::Int(v),
        Value::UInt(v) => KeyValue::UInt(v),
        Value::Bytes(v) => KeyValue::Bytes(v),
        Value::Date(y, m, d, h, i, s, us) => KeyValue::Date(y, m, d, h, i, s, us),
        Value::Time(neg, d, h, i, s, us) => KeyValue::Time(neg, d, h, i, s, us),
        Value::NULL => {
            return Err(DbError::Unexpected(
                "the server returned NULL for a primary key column".into(),
            ))
        }
        Value::Float(_) | Value::Double(_) => {
            // The pre-flight refuses such keys; reaching this is a bug, not bad input.
            return Err(DbError::Unexpected("floating-point primary key columns are not supported (the pre-flight should have refused this table)".into()));
        }
    })
}

pub(crate) fn row_to_key(row: Row) -> DbResult<Key> {
    row.unwrap().into_iter().map(from_value).collect()
}

/// Whether a boolean the server computed (`EXISTS`, a comparison) is true, in either protocol.
pub(crate) fn is_true(value: &Value) -> bool {
    match value {
        Value::Int(v) => *v != 0,
        Value::UInt(v) => *v != 0,
        Value::Bytes(v) => v.as_slice() != b"0",
        _ => false,
    }
}

pub(crate) fn params(statement: &Statement) -> Params {
    if statement.params.is_empty() {
        Params::Empty
    } else {
        Params::Positional(statement.params.iter().map(to_value).collect())
    }
}

/// Runs one chunk of a statement sent in chunks (a multi-row `INSERT`, a key list), which
/// returns no rows; returns the rows it affected. [`read_chunk`] is the form for reads, and
/// this one is that with no rows to take.
pub(crate) async fn exec_chunk(
    conn: &mut Conn,
    sql: String,
    params: Params,
    full: bool,
) -> DbResult<u64> {
    read_chunk(conn, sql, params, full, |_| ()).await?;
    // COM_STMT_CLOSE has no reply: the count is still the statement's.
    Ok(conn.affected_rows())
}

/// Runs one chunk of a read sent in chunks (a key list), streaming the rows it returns to
/// `each` as they arrive. A `full` chunk's statement comes again and again: prepared once, it
/// stays in the connection's statement cache. A short one (the last of a batch, its shape set
/// by the batch's row count) may not come again: prepared, run and closed. mysql_async caches
/// every statement it prepares, 32 a connection by default, each with a column definition per
/// placeholder: a statement of one size per batch would hold up to 32 of them
/// (`db::cross`'s `INSERT_ROWS_PER_STATEMENT_MAX` has what that cost).
pub(crate) async fn read_chunk(
    conn: &mut Conn,
    sql: String,
    params: Params,
    full: bool,
    each: impl FnMut(Row),
) -> DbResult<()> {
    if full {
        conn.exec_iter(sql, params).await?.for_each(each).await?;
        return Ok(());
    }
    let statement = conn.prep(sql).await?;
    let ran = match conn.exec_iter(&statement, params).await {
        Ok(mut result) => result.for_each(each).await,
        Err(error) => Err(error),
    };
    let closed = conn.close(statement).await;
    ran?;
    closed?;
    Ok(())
}

/// Opens a connection (TLS as the endpoint's mode says) and sets the job's session options.
pub async fn connect(endpoint: &Endpoint, lock_wait_timeout_s: u32) -> DbResult<Conn> {
    let mut conn = tls::open(endpoint).await?;
    tls::check_session(&mut conn, endpoint).await?;
    for statement in sql::session_setup(lock_wait_timeout_s) {
        conn.query_drop(statement).await?;
    }
    Ok(conn)
}

/// Ends the transaction open on `conn` as `result` says: `COMMIT` after success (a failed
/// commit is the result then), `ROLLBACK` after an error. The rollback is best effort: if the
/// connection is gone, the server rolls back on its own.
pub(crate) async fn end_transaction<T>(conn: &mut Conn, result: DbResult<T>) -> DbResult<T> {
    match result {
        Ok(value) => {
            conn.query_drop("COMMIT").await?;
            Ok(value)
        }
        Err(error) => {
            let _ = conn.query_drop("ROLLBACK").await;
            Err(error)
        }
    }
}

/// Pins the session's `NOW()` to a run's moment.
pub async fn set_timestamp(conn: &mut Conn, now_unix_us: i64) -> DbResult<()> {
    conn.query_drop(sql::set_timestamp(now_unix_us)).await?;
    Ok(())
}
