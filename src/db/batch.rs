//! Planning and the batch with the archive on the source server: one transaction that locks,
//! copies, deletes and sorts what is left.

use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

use std::collections::HashSet;
use std::time::Instant;

use super::sql::Queries;
use super::times::{BatchTimes, Tally};
use super::{from_value, is_true, params, row_to_key, DbResult, NotCopied};
use crate::event::Key;

/// The largest primary key in the source, or `None` when it is empty.
pub async fn key_bound(conn: &mut Conn, queries: &Queries) -> DbResult<Option<Key>> {
    let statement = queries.key_bound();
    let row: Option<Row> = conn
        .exec_first(statement.sql.as_str(), params(&statement))
        .await?;
    row.map(row_to_key).transpose()
}

/// The next batch after `after`: its inclusive upper key and the matching rows seen, or `None`
/// when no matching row is left up to `bound`.
pub async fn plan(
    conn: &mut Conn,
    queries: &Queries,
    after: Option<&Key>,
    bound: &Key,
    rows: u32,
) -> DbResult<Option<(Key, u64)>> {
    let statement = queries.plan(after, bound, rows);
    let keys: Vec<Row> = conn
        .exec(statement.sql.as_str(), params(&statement))
        .await?;
    let count = keys.len() as u64;
    match keys.into_iter().last() {
        None => Ok(None),
        Some(row) => Ok(Some((row_to_key(row)?, count))),
    }
}

/// What one batch transaction did, its source transaction still open (the caller records
/// `BatchCommitting`, then [`commit`]s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    /// Rows inserted into the archive.
    pub rows_copied: u64,
    /// Rows whose identical copy the archive already held.
    pub rows_already: u64,
    /// Rows deleted from the source.
    pub rows_deleted: u64,
    /// Keys kept in the source because the archive holds a different row under them.
    pub conflicts: Vec<Key>,
    /// A key this transaction deleted (the last one in key order), whose presence in the
    /// archive and absence from the source will tell whether the commit happened; `None` when
    /// it deleted nothing.
    pub witness: Option<Key>,
    /// Whether the earlier attempt's unconfirmed commit happened, when the order named its
    /// witness ([`earlier_committed`]); `None` when it named none.
    pub earlier_committed: Option<bool>,
}

/// Whether an earlier, unconfirmed commit happened, told by its witness key: the source lacks
/// it and the archive holds it. Asked after this attempt's locks, inside its transaction; the
/// source read locks the key, so an earlier transaction still ending on the server is waited
/// for. `source` and `archive` are the same connection when the archive is on the source server.
pub(crate) async fn earlier_committed(
    source: &mut Conn,
    archive: Option<&mut Conn>,
    queries: &Queries,
    witness: &Key,
) -> DbResult<bool> {
    let in_source = count(source, &queries.source_has_key(witness)).await?;
    let statement = queries.archive_has_key(witness);
    let in_archive = match archive {
        Some(archive) => count(archive, &statement).await?,
        None => count(source, &statement).await?,
    };
    Ok(in_source == 0 && in_archive > 0)
}

async fn count(conn: &mut Conn, statement: &super::sql::Statement) -> DbResult<u64> {
    let count: Option<u64> = conn
        .exec_first(statement.sql.as_str(), params(statement))
        .await?;
    Ok(count.unwrap_or(0))
}

/// Commits the batch's source transaction (after its `BatchCommitting` is durable).
pub async fn commit(conn: &mut Conn, times: &mut BatchTimes) -> DbResult<()> {
    timed(&mut times.commit, Instant::now(), async {
        Ok(conn.query_drop("COMMIT").await?)
    })
    .await
}

/// Rolls the batch's source transaction back (its `BatchCommitting` could not be recorded);
/// an error is ignored: a connection that cannot roll back is dropped, and the server rolls
/// back the transaction of a connection that closes.
pub async fn rollback(conn: &mut Conn) {
    let _ = conn.query_drop("ROLLBACK").await;
}

/// Sorts the rows a batch locked but did not delete: under a key the archive holds, a
/// conflict; under a key the archive lacks, a failed copy ([`NotCopied`]). Rows that were not
/// locked (they entered the range after the lock) are none of this batch's business.
fn sort_leftovers(
    locked: &HashSet<Key>,
    leftovers: Vec<(Key, bool)>,
) -> Result<Vec<Key>, NotCopied> {
    let mut conflicts = Vec::new();
    let mut missing = Vec::new();
    for (key, archived) in leftovers {
        if !locked.contains(&key) {
            continue;
        }
        if archived {
            conflicts.push(key);
        } else {
            missing.push(key);
        }
    }
    match missing.first() {
        None => Ok(conflicts),
        Some(first) => Err(NotCopied {
            count: missing.len(),
            first: crate::event::key_text(first),
        }),
    }
}

/// Plans the next batch and locks its rows in one read (`Queries::plan_locked`): starts the
/// batch's transaction and leaves it open, the rows locked, for [`execute_batch`]. Returns the
/// batch's upper key and the keys locked, in key order, or `None` when no matching row is left
/// up to `bound` (the transaction then rolled back). On error the transaction is rolled back;
/// on a lock conflict the caller plans without locks ([`plan_unlocked_after`]).
pub async fn plan_locked(
    conn: &mut Conn,
    queries: &Queries,
    after: Option<&Key>,
    bound: &Key,
    rows: u32,
) -> DbResult<Option<(Key, Vec<Key>)>> {
    let statement = queries.plan_locked(after, bound, rows);
    locking_read(conn, &statement, |rows| {
        let keys: Vec<Key> = rows.into_iter().map(row_to_key).collect::<DbResult<_>>()?;
        Ok(keys.last().cloned().map(|upper| (upper, keys)))
    })
    .await
}

/// A batch's locking planning read (`statement`) in a transaction it starts: `read` turns the
/// rows into the plan, `None` when there is none. The transaction is left open, the rows
/// locked, only with a plan; without one, or on any error, it is rolled back.
pub(crate) async fn locking_read<T>(
    conn: &mut Conn,
    statement: &super::sql::Statement,
    read: impl FnOnce(Vec<Row>) -> DbResult<Option<T>>,
) -> DbResult<Option<T>> {
    conn.query_drop("START TRANSACTION").await?;
    let planned = match conn.exec(statement.sql.as_str(), params(statement)).await {
        Ok(rows) => read(rows),
        Err(error) => Err(error.into()),
    };
    if !matches!(planned, Ok(Some(_))) {
        rollback(conn).await;
    }
    planned
}

/// The plan of batch `batch_id` after its locking planning read failed with `error`: when a
/// row another session holds made it wait past `lock_wait_timeout_s` (or deadlock), the same
/// plan without locks ([`plan`]), so that the batch, not planning, fails on that row (and is
/// retried, then parked); any other error is returned as it is.
pub async fn plan_unlocked_after(
    conn: &mut Conn,
    queries: &Queries,
    (after, bound, rows): (Option<&Key>, &Key, u32),
    batch_id: u64,
    error: super::DbError,
) -> DbResult<Option<(Key, u64)>> {
    if !error.is_lock_conflict() {
        return Err(error);
    }
    tracing::info!("planning batch {batch_id} met a row lock ({error}); planning it without locks");
    plan(conn, queries, after, bound, rows).await
}

/// Runs one batch as one transaction on the source server: lock the batch's matching rows
/// (unless `locked` holds the keys [`plan_locked`] locked in the transaction it left open),
/// tell whether an earlier unconfirmed commit happened (`earlier_witness`), copy the rows
/// whose key the archive lacks, delete those with an identical archive copy, sort the locked
/// rows left (conflicts, or a failed copy that fails the batch). On success the transaction is
/// left open for the caller to record `BatchCommitting` and [`commit`]; on failure it is rolled
/// back. Idempotent: running it again after any crash moves nothing twice and loses nothing.
/// The time of each step is added to `times`, whether the batch succeeds or not.
pub async fn execute_batch(
    conn: &mut Conn,
    queries: &Queries,
    (lower, upper): (Option<&Key>, &Key),
    locked: Option<Vec<Key>>,
    earlier_witness: Option<&Key>,
    times: &mut BatchTimes,
) -> DbResult<BatchResult> {
    // A batch just planned (its rows locked by planning) copies without the guard first.
    let fresh = locked.is_some();
    let locked = match locked {
        Some(keys) => Ok(keys),
        None => lock_rows(conn, queries, (lower, upper), times).await,
    };
    let result = match locked {
        Ok(locked) => {
            let range = (lower, upper);
            let (witness, fresh) = (earlier_witness, fresh);
            batch_statements(conn, queries, range, locked, (witness, fresh), times).await
        }
        Err(error) => Err(error),
    };
    if result.is_err() {
        let rolling_back = Instant::now();
        rollback(conn).await;
        times.commit.add_since(rolling_back);
    }
    result
}

/// Starts the batch's transaction and locks its matching rows: their keys, in key order.
async fn lock_rows(
    conn: &mut Conn,
    queries: &Queries,
    (lower, upper): (Option<&Key>, &Key),
    times: &mut BatchTimes,
) -> DbResult<Vec<Key>> {
    let lock = queries.lock_batch(lower, upper);
    let locked: DbResult<Vec<Row>> = timed(&mut times.lock, Instant::now(), async {
        conn.query_drop("START TRANSACTION").await?;
        Ok(conn.exec(lock.sql.as_str(), params(&lock)).await?)
    })
    .await;
    locked?.into_iter().map(row_to_key).collect()
}

/// The batch's statements after its rows are locked (`locked_in_order`, in key order).
async fn batch_statements(
    conn: &mut Conn,
    queries: &Queries,
    (lower, upper): (Option<&Key>, &Key),
    locked_in_order: Vec<Key>,
    (earlier_witness, fresh): (Option<&Key>, bool),
    times: &mut BatchTimes,
) -> DbResult<BatchResult> {
    let earlier_committed = match earlier_witness {
        None => None,
        Some(witness) => {
            let asking = Instant::now();
            let answer = earlier_committed(conn, None, queries, witness).await;
            times.lock.add_since(asking);
            Some(answer?)
        }
    };
    let rows_copied = copy(conn, queries, (lower, upper), fresh, times).await?;
    let deleting = Instant::now();
    let deleted: DbResult<HashSet<Key>> = async {
        let mut deleted = HashSet::new();
        for delete in queries.delete_batch(lower, upper) {
            let rows: Vec<Row> = conn.exec(delete.sql.as_str(), params(&delete)).await?;
            for row in rows {
                deleted.insert(row_to_key(row)?);
            }
        }
        Ok(deleted)
    }
    .await;
    let deleted = match deleted {
        Ok(deleted) => deleted,
        Err(error) => {
            times.delete.add_since(deleting);
            return Err(error);
        }
    };
    let rows_deleted = deleted.len() as u64;
    // The rows locked and not deleted are asked about (conflicts, or a failed copy); when the
    // delete took every locked row, which is the usual case, there is nothing to ask.
    let conflicts = if locked_in_order.iter().all(|key| deleted.contains(key)) {
        Ok(Vec::new())
    } else {
        let locked: HashSet<Key> = locked_in_order.iter().cloned().collect();
        check_leftovers(conn, queries, lower, upper, &locked).await
    };
    times.delete.add_since(deleting);
    let conflicts = conflicts?;
    let rows_already = rows_deleted.saturating_sub(rows_copied);
    let witness = locked_in_order
        .into_iter()
        .rev()
        .find(|key| deleted.contains(key));
    Ok(BatchResult {
        rows_copied,
        rows_already,
        rows_deleted,
        conflicts,
        witness,
        earlier_committed,
    })
}

/// Copies the batch's rows the archive lacks; returns how many. `fresh`: the batch was just
/// planned, so the copy first goes without the `NOT EXISTS` guard and falls back to it on a
/// duplicate key ([`Queries::copy_batch_unguarded`]).
async fn copy(
    conn: &mut Conn,
    queries: &Queries,
    (lower, upper): (Option<&Key>, &Key),
    fresh: bool,
    times: &mut BatchTimes,
) -> DbResult<u64> {
    let started = Instant::now();
    if fresh {
        let plain = queries.copy_batch_unguarded(lower, upper);
        match conn.exec_drop(plain.sql.as_str(), params(&plain)).await {
            Ok(()) => {
                times.copy.add_since(started);
                return Ok(conn.affected_rows());
            }
            Err(error) => {
                let error = super::DbError::from(error);
                if !error.is_duplicate_key() {
                    times.copy.add_since(started);
                    return Err(error);
                }
            }
        }
    }
    let guarded = queries.copy_batch(lower, upper);
    let copied = conn.exec_drop(guarded.sql.as_str(), params(&guarded)).await;
    times.copy.add_since(started);
    copied?;
    Ok(conn.affected_rows())
}

/// Awaits `step`, adding the time since `started` to `tally`, whatever its outcome.
pub(crate) async fn timed<T>(
    tally: &mut Tally,
    started: Instant,
    step: impl std::future::Future<Output = DbResult<T>>,
) -> DbResult<T> {
    let result = step.await;
    tally.add_since(started);
    result
}

/// The locked rows the delete left, sorted: the conflicts, or a failed copy ([`NotCopied`]).
/// Always asked, never inferred from counts: a row that entered the range during the batch
/// can make the counts agree while a locked row was kept.
async fn check_leftovers(
    conn: &mut Conn,
    queries: &Queries,
    lower: Option<&Key>,
    upper: &Key,
    locked: &HashSet<Key>,
) -> DbResult<Vec<Key>> {
    let statement = queries.leftovers(lower, upper);
    let rows: Vec<Row> = conn
        .exec(statement.sql.as_str(), params(&statement))
        .await?;
    let leftovers = rows
        .into_iter()
        .map(|row| {
            let mut values = row.unwrap();
            let archived = values.pop().is_some_and(|flag| is_true(&flag));
            let key = values
                .into_iter()
                .map(from_value)
                .collect::<DbResult<Key>>()?;
            Ok((key, archived))
        })
        .collect::<DbResult<Vec<_>>>()?;
    Ok(sort_leftovers(locked, leftovers)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbError;
    use crate::event::{ErrorClass, KeyValue};

    fn key(id: i64) -> Key {
        vec![KeyValue::Int(id)]
    }

    /// The rows a batch left are judged by what the archive holds under their keys, never by
    /// counts: a locked row under an archived key is a conflict, a locked row under a key the
    /// archive lacks fails the batch, and a row that entered the range after the lock is none
    /// of the batch's business.
    #[test]
    fn leftovers_are_sorted_by_what_the_archive_holds() {
        let locked: std::collections::HashSet<Key> = [1, 2, 3].map(key).into_iter().collect();
        let conflicts = sort_leftovers(&locked, vec![(key(2), true), (key(9), false)]).unwrap();
        assert_eq!(conflicts, vec![key(2)]);
        assert_eq!(sort_leftovers(&locked, vec![]).unwrap(), Vec::<Key>::new());
        let error = sort_leftovers(
            &locked,
            vec![(key(1), true), (key(3), false), (key(2), false)],
        )
        .unwrap_err();
        assert_eq!(error.count, 2);
        assert!(error.to_string().contains("first: key (3)"), "{error}");
        let classified = DbError::from(error).class();
        assert_eq!(
            classified,
            ErrorClass::Batch,
            "a failed copy parks the batch"
        );
    }
}
