//! The batch with the archive on its own server, in steps the WAL records between: lock and
//! fetch the source rows, copy them into the archive and commit there, then keep deleted
//! exactly the locked rows whose committed archive copy is identical and commit the source.
//!
//! Two servers work at once where the invariant allows it, unless the job is paced: while the
//! archive inserts and commits the copies, the source already deletes the locked rows in its
//! open transaction, behind a savepoint ([`copy_and_delete`]); the source commits only after
//! [`settle`] has compared every locked row with its committed archive copy, and undoes that
//! delete to the savepoint when one is not identical. Deleting in an open transaction is not
//! deleting: the invariant is about what the source commits.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Row, Value};

use super::batch::{earlier_committed, timed};
use super::load::{self, Loaded};
use super::sql::{self, Queries};
use super::times::BatchTimes;
use super::{from_value, params, BatchResult, DbError, DbResult, NotCopied};
use crate::event::{ErrorClass, Key};

/// Most placeholders one prepared statement may carry (the protocol counts them in 16 bits).
const PLACEHOLDERS_MAX: usize = 65_535;

/// Most keys one statement lists (`Queries::select_archived`, `Queries::delete_keys`). The
/// optimizer turns each listed key into a range of the primary key, within
/// `range_optimizer_max_mem_size` (8 MiB by default); past that it gives up and scans the whole
/// table. Measured on MariaDB 10.11 with a two-column key: 20,000 keys still a range, 32,000 a
/// scan of all 200,000 rows. A thousand keys per statement stay far below it.
const KEYS_PER_STATEMENT_MAX: usize = 1_000;

/// Keys of `width` columns one statement may list: within the placeholder limit and
/// [`KEYS_PER_STATEMENT_MAX`].
fn keys_per_statement(width: usize) -> usize {
    (PLACEHOLDERS_MAX / width.max(1)).clamp(1, KEYS_PER_STATEMENT_MAX)
}

/// A row as the server sent it (binary protocol), in [`Queries::select_batch`] column order:
/// the copied columns, then the key as the statements compare it.
pub type RowValues = Vec<Value>;

/// The archive's rows under the batch's locked keys, by key.
pub type Archived = HashMap<Key, RowValues>;

/// What the servers take of the statements the two-server batch prefers, learned during the
/// invocation: each starts true and turns false, for the rest of the invocation, the first
/// time its server refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    /// The archive server takes `LOAD DATA LOCAL INFILE` (its `local_infile` is on); else the
    /// copy is sent as prepared multi-row `INSERT`s. Used only where the table's columns
    /// allow it (`TableShape::load_data`).
    pub load_data: bool,
    /// The source server takes `DELETE ... RETURNING` (MariaDB; MySQL refuses the syntax);
    /// else the early delete is by the locked keys.
    pub delete_returning: bool,
}

impl Default for Accepts {
    fn default() -> Accepts {
        Accepts {
            load_data: true,
            delete_returning: true,
        }
    }
}

/// What the source's early delete ([`copy_and_delete`]) deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EarlyDelete {
    /// Deleted with the locking read's filter: the keys it deleted (`RETURNING`), which may
    /// include rows that entered the range after the locking read, and may lack a locked row
    /// whose predicate reads another table that changed meanwhile.
    Range(Vec<Key>),
    /// Deleted by the locked keys (where `RETURNING` is refused): the rows deleted.
    Locked(u64),
}

fn key_of(row: &[Value], positions: std::ops::Range<usize>) -> DbResult<Key> {
    row[positions].iter().cloned().map(from_value).collect()
}

fn keys_of(queries: &Queries, rows: &[RowValues]) -> DbResult<Vec<Key>> {
    let positions = queries.key_positions();
    rows.iter()
        .map(|row| key_of(row, positions.clone()))
        .collect()
}

/// Archive on another server, step 1: starts the source transaction and locks the batch's
/// matching rows, returning them. The locks hold until [`settle`]'s caller commits. Its time
/// is added to `times.lock`.
pub async fn lock_batch_rows(
    source: &mut Conn,
    queries: &Queries,
    lower: Option<&Key>,
    upper: &Key,
    times: &mut BatchTimes,
) -> DbResult<Vec<RowValues>> {
    timed(&mut times.lock, Instant::now(), async {
        source.query_drop("START TRANSACTION").await?;
        let statement = queries.select_batch(lower, upper, true);
        let rows: Vec<Row> = source
            .exec(statement.sql.as_str(), params(&statement))
            .await?;
        Ok(rows.into_iter().map(Row::unwrap).collect())
    })
    .await
}

/// Archive on another server: plans the next batch and locks its rows in one read
/// ([`Queries::plan_rows_locked`]): starts the source transaction and leaves it open, the rows
/// locked, for the batch to run in without [`lock_batch_rows`]. Returns the batch's upper key
/// (its last row's) and its rows, or `None` when no matching row is left up to `bound` (the
/// transaction then rolled back). On error the transaction is rolled back; on a lock conflict
/// the caller plans without locks (`super::batch::plan_unlocked_after`).
pub async fn plan_rows_locked(
    source: &mut Conn,
    queries: &Queries,
    after: Option<&Key>,
    bound: &Key,
    rows: u32,
) -> DbResult<Option<(Key, Vec<RowValues>)>> {
    let statement = queries.plan_rows_locked(after, bound, rows);
    super::batch::locking_read(source, &statement, |rows| {
        let rows: Vec<RowValues> = rows.into_iter().map(Row::unwrap).collect();
        match rows.last() {
            None => Ok(None),
            Some(last) => Ok(Some((key_of(last, queries.key_positions())?, rows))),
        }
    })
    .await
}

/// The batch's key range, `(lower, upper]`.
pub type Range<'a> = (Option<&'a Key>, &'a Key);

/// What an attempt at a two-server batch did ([`execute_cross_batch`]).
#[derive(Debug)]
pub struct CrossAttempt {
    /// The copy the archive committed in this attempt (step Copy), once it committed,
    /// whatever happened after: the rows inserted and the locked rows whose key the archive
    /// already held (`BatchCopied`'s counts). `None` when nothing was committed there.
    pub copied: Option<(u64, u64)>,
    /// The batch's outcome: on success the source transaction is open, its delete done, for
    /// the caller to record `BatchCommitting` and commit; on failure the caller drops both
    /// connections (each server rolls back what is open).
    pub result: DbResult<BatchResult>,
}

/// What a two-server batch is to do: its range, the rows its planning read locked (its source
/// transaction open) or `None` to lock them now, whether its step is Copy (else Delete: the
/// copy is committed already), the witness of an earlier attempt's unconfirmed commit, and
/// whether the copy and the source's early delete run at once (`at_once`) or one after the
/// other ([`copy_and_delete`]).
pub struct CrossOrder<'a> {
    pub range: Range<'a>,
    pub planned: Option<Vec<RowValues>>,
    pub copy: bool,
    pub witness: Option<&'a Key>,
    pub at_once: bool,
}

/// A two-server batch up to its source commit, on its two connections and with no I/O of the
/// log's: lock the source rows (unless planned), copy them into the archive and commit there
/// (step Copy; while the source deletes them early behind a savepoint when no earlier commit
/// is in question, [`copy_and_delete`]), read the archive's committed rows back, and
/// [`settle`] the delete. The caller records `BatchCopied` when [`CrossAttempt::copied`] says
/// the archive committed (before `BatchFailed` or `BatchCommitting`), then `BatchCommitting`
/// durably, then commits the source: nothing is committed on the source before the claim that
/// follows the copy's record is durable.
pub async fn execute_cross_batch(
    source: &mut Conn,
    archive: &mut Conn,
    queries: &Queries,
    order: CrossOrder<'_>,
    accepts: &mut Accepts,
    times: &mut BatchTimes,
) -> CrossAttempt {
    let range = order.range;
    let failed = |copied, error| CrossAttempt {
        copied,
        result: Err(error),
    };
    let locked = match order.planned {
        Some(rows) => rows,
        None => match lock_batch_rows(source, queries, range.0, range.1, times).await {
            Ok(locked) => locked,
            Err(error) => return failed(None, error),
        },
    };
    let (copied, early) = if order.copy {
        let (rows_copied, deleted) = match order.witness {
            None => {
                let both = (&mut *source, &mut *archive);
                match copy_and_delete(both, queries, range, &locked, order.at_once, accepts, times)
                    .await
                {
                    Ok((copied, deleted)) => (Ok(copied), Some(deleted)),
                    Err(error) => (Err(error), None),
                }
            }
            Some(_) => (
                copy_rows(archive, queries, &locked, accepts, times).await,
                None,
            ),
        };
        let rows_copied = match rows_copied {
            Ok(rows_copied) => rows_copied,
            Err(error) => return failed(None, error),
        };
        let rows_locked = u64::try_from(locked.len()).expect("a batch's rows fit in u64");
        let copied = Some((rows_copied, rows_locked.saturating_sub(rows_copied)));
        match deleted.transpose() {
            Ok(early) => (copied, early),
            Err(error) => return failed(copied, error),
        }
    } else {
        (None, None)
    };
    let reading = Instant::now();
    let archived = read_archived(archive, queries, range, &locked).await;
    times.delete.total += reading.elapsed();
    let archived = match archived {
        Ok(archived) => archived,
        Err(error) => return failed(copied, error),
    };
    let settled = settle(
        source,
        archive,
        queries,
        &locked,
        &archived,
        early,
        order.witness,
        times,
    );
    CrossAttempt {
        copied,
        result: settled.await,
    }
}

/// The archive's rows under the keys of `rows` (the batch's locked rows, in `range`), by key:
/// the archive's rows in the range when it holds no more of them than the batch locked (one
/// range scan, [`Queries::select_archived_range`]), else read by key list, in chunks that fit
/// the placeholder limit. Either way bounded by the batch's rows.
pub async fn read_archived(
    archive: &mut Conn,
    queries: &Queries,
    range: Range<'_>,
    rows: &[RowValues],
) -> DbResult<Archived> {
    let positions = queries.key_positions();
    let mut by_key = HashMap::with_capacity(rows.len());
    if rows.is_empty() {
        return Ok(by_key);
    }
    let limit = rows.len() as u64 + 1;
    let statement = queries.select_archived_range(range.0, range.1, limit);
    let in_range: Vec<Row> = archive
        .exec(statement.sql.as_str(), params(&statement))
        .await?;
    if in_range.len() < rows.len() + 1 {
        for row in in_range {
            let row = row.unwrap();
            by_key.insert(key_of(&row, positions.clone())?, row);
        }
        return Ok(by_key);
    }
    let keys = keys_of(queries, rows)?;
    for chunk in keys.chunks(keys_per_statement(positions.len())) {
        let statement = queries.select_archived(chunk);
        let archived: Vec<Row> = archive
            .exec(statement.sql.as_str(), params(&statement))
            .await?;
        for row in archived {
            let row = row.unwrap();
            by_key.insert(key_of(&row, positions.clone())?, row);
        }
    }
    Ok(by_key)
}

/// Archive on another server, step 2: inserts the locked rows whose key the archive lacks, in
/// one archive transaction, and commits it. Returns the rows inserted. Its time is added to
/// `times.copy`, the archive's commit to `times.commit`.
///
/// First the fast way: every row at once (`LOAD DATA`, or one `INSERT` when the method or the
/// table's columns rule that out), accepted only if every row went in as it is. Anything else
/// (a key the archive already holds, a value it refuses) rolls that back and copies the careful
/// way, [`insert_missing`], whose outcome is the rule: a plain `INSERT` of the rows whose key the
/// archive lacks, so that a row colliding with an archive row on another unique key, or holding
/// a value the archive refuses, fails the batch.
pub async fn copy_rows(
    archive: &mut Conn,
    queries: &Queries,
    rows: &[RowValues],
    accepts: &mut Accepts,
    times: &mut BatchTimes,
) -> DbResult<u64> {
    let copied = timed(&mut times.copy, Instant::now(), async {
        archive.query_drop("START TRANSACTION").await?;
        if copy_all(archive, queries, rows, accepts).await? {
            return Ok(rows.len() as u64);
        }
        archive.query_drop("ROLLBACK").await?;
        archive.query_drop("START TRANSACTION").await?;
        insert_missing(archive, queries, rows).await
    })
    .await;
    let committing = Instant::now();
    let copied = super::end_transaction(archive, copied).await;
    times.commit.add_since(committing);
    copied
}

/// Inserts every row in the open archive transaction; `false` when the archive did not take
/// them all as they are (the caller rolls back). Errors that are not about the rows (a lost
/// connection, a lock wait) are returned.
async fn copy_all(
    archive: &mut Conn,
    queries: &Queries,
    rows: &[RowValues],
    accepts: &mut Accepts,
) -> DbResult<bool> {
    if rows.is_empty() {
        return Ok(true);
    }
    let columns = queries.source.columns.len();
    if accepts.load_data && queries.archive.load_data {
        match load::load_rows(archive, queries, rows, columns).await {
            Ok(Loaded::All) => return Ok(true),
            Ok(Loaded::Partly) => return Ok(false),
            Ok(Loaded::Refused) => {
                tracing::info!(
                    "the archive server refuses LOAD DATA LOCAL INFILE (local_infile is off): copying with INSERT statements from now on (set local_infile = ON there for the faster copy)"
                );
                accepts.load_data = false;
            }
            Err(error) if error.class() == ErrorClass::Batch => return Ok(false),
            Err(error) => return Err(error),
        }
    }
    match insert_rows(archive, queries, rows.iter()).await {
        Ok(inserted) => Ok(inserted == rows.len() as u64),
        Err(error) if error.class() == ErrorClass::Batch => Ok(false),
        Err(error) => Err(error),
    }
}

/// The careful copy: reads which keys the archive holds, inserts the other rows.
async fn insert_missing(
    archive: &mut Conn,
    queries: &Queries,
    rows: &[RowValues],
) -> DbResult<u64> {
    let positions = queries.key_positions();
    let keys = keys_of(queries, rows)?;
    let mut present = HashSet::with_capacity(keys.len());
    for chunk in keys.chunks(keys_per_statement(positions.len())) {
        let statement = queries.archived_keys(chunk);
        let held: Vec<Row> = archive
            .exec(statement.sql.as_str(), params(&statement))
            .await?;
        for row in held {
            present.insert(super::row_to_key(row)?);
        }
    }
    let missing = rows
        .iter()
        .zip(&keys)
        .filter(|(_, key)| !present.contains(*key));
    insert_rows(archive, queries, missing.map(|(row, _)| row)).await
}

/// Plain multi-row `INSERT`s of `rows` (their copied columns), as many rows a statement as the
/// placeholder limit allows. Returns the rows inserted.
async fn insert_rows<'a>(
    archive: &mut Conn,
    queries: &Queries,
    rows: impl Iterator<Item = &'a RowValues>,
) -> DbResult<u64> {
    // The copied columns only; the key read after them is not the archive's to store.
    let copied_columns = queries.source.columns.len();
    let rows_per_statement = (PLACEHOLDERS_MAX / copied_columns).max(1);
    let rows: Vec<&RowValues> = rows.collect();
    let mut copied = 0;
    for chunk in rows.chunks(rows_per_statement) {
        let values: Vec<Value> = chunk
            .iter()
            .flat_map(|row| row[..copied_columns].iter().cloned())
            .collect();
        archive
            .exec_drop(queries.insert_rows(chunk.len()), Params::Positional(values))
            .await?;
        copied += archive.affected_rows();
    }
    Ok(copied)
}

/// Step 2 when no earlier commit of the batch is in question: [`copy_rows`] on the archive,
/// and the source's delete of the batch's matching rows in its open transaction, after
/// [`sql::DELETE_SAVEPOINT`], with the locking read's filter and returning the keys it deleted
/// ([`Queries::delete_range`]; by the locked keys where the server refuses `RETURNING`):
/// [`settle`] keeps that delete only if it deleted exactly the locked rows and every copy is
/// identical. Returns the copy's result (rows inserted) and, once the copy succeeded, the
/// delete's; `Err` is the copy's error (the caller then drops both transactions).
///
/// `at_once`: the two servers work at the same time (the delete's statement is sent first),
/// which is what makes a two-server batch fast; else the delete starts once the archive has
/// committed the copy, so that only one of the two servers works for the batch at a time.
/// A paced job runs them one after the other: measured with both servers on one 2-core
/// machine (ARCHITECTURE, "Speed, measured"), an application's single-row updates on the
/// source were nearly three times as often slow (over 1 ms, most in their commit) while the
/// delete ran beside the archive's load as while it ran alone; unpaced, one after the other
/// took the whole table about 1.25 times as long.
///
/// Times: the copy's as [`copy_rows`] counts them; the delete's only where it outlasts the
/// archive's commit (all of it when it runs after), so that the statistics count the wall
/// time once.
pub async fn copy_and_delete(
    (source, archive): (&mut Conn, &mut Conn),
    queries: &Queries,
    range: Range<'_>,
    locked: &[RowValues],
    at_once: bool,
    accepts: &mut Accepts,
    times: &mut BatchTimes,
) -> DbResult<(u64, DbResult<EarlyDelete>)> {
    let mut copy_times = BatchTimes::default();
    let mut copy_accepts = *accepts;
    let returning = &mut accepts.delete_returning;
    let deleting = async {
        let deleted = delete_early(source, queries, range, locked, returning);
        (deleted.await, Instant::now())
    };
    let copying = async {
        let copied = copy_rows(archive, queries, locked, &mut copy_accepts, &mut copy_times);
        (copied.await, Instant::now())
    };
    if at_once {
        // The delete is polled first: its statement is on its way before the copy's.
        let ((deleted, delete_done), (copied, copy_done)) = tokio::join!(biased; deleting, copying);
        accepts.load_data = copy_accepts.load_data;
        times.add(&copy_times);
        times.delete.total += delete_done.saturating_duration_since(copy_done);
        return Ok((copied?, deleted));
    }
    let (copied, _) = copying.await;
    accepts.load_data = copy_accepts.load_data;
    times.add(&copy_times);
    let copied = copied?;
    let started = Instant::now();
    let (deleted, _) = deleting.await;
    times.delete.total += started.elapsed();
    Ok((copied, deleted))
}

/// Server errors that mean "this server does not know `DELETE ... RETURNING`": a syntax error
/// (MySQL). The predicate itself passed the pre-flight's `EXPLAIN`s in the same statements.
const RETURNING_REFUSED_CODES: [u16; 1] = [1064];

async fn delete_early(
    source: &mut Conn,
    queries: &Queries,
    range: Range<'_>,
    locked: &[RowValues],
    returning: &mut bool,
) -> DbResult<EarlyDelete> {
    source.query_drop(sql::DELETE_SAVEPOINT).await?;
    if *returning {
        let mut keys = Vec::with_capacity(locked.len());
        let mut refused = false;
        for statement in queries.delete_range(range.0, range.1, true) {
            match source
                .exec(statement.sql.as_str(), params(&statement))
                .await
            {
                Ok(deleted) => {
                    let deleted: Vec<Row> = deleted;
                    for row in deleted {
                        keys.push(super::row_to_key(row)?);
                    }
                }
                // The first statement is refused before it deletes anything.
                Err(mysql_async::Error::Server(error))
                    if RETURNING_REFUSED_CODES.contains(&error.code) =>
                {
                    tracing::info!(
                        "the source server refuses DELETE ... RETURNING: deleting by the locked keys from now on"
                    );
                    *returning = false;
                    refused = true;
                    break;
                }
                Err(error) => return Err(error.into()),
            }
        }
        if !refused {
            return Ok(EarlyDelete::Range(keys));
        }
    }
    let deleted = delete_keys(source, queries, &keys_of(queries, locked)?).await?;
    Ok(EarlyDelete::Locked(deleted))
}

/// Deletes source rows by key, in chunks; returns the rows deleted.
async fn delete_keys(source: &mut Conn, queries: &Queries, keys: &[Key]) -> DbResult<u64> {
    let mut deleted = 0;
    for chunk in keys.chunks(keys_per_statement(queries.source.key.len())) {
        let statement = queries.delete_keys(chunk);
        source
            .exec_drop(statement.sql.as_str(), params(&statement))
            .await?;
        deleted += source.affected_rows();
    }
    Ok(deleted)
}

/// The last step, in the source transaction of [`lock_batch_rows`]: tells whether an earlier
/// unconfirmed commit happened (`earlier_witness`), compares every locked row with the
/// archive's committed row under its key (`archived`, read after the archive's commit:
/// values compared byte for byte as the servers sent them, both sessions pinned to the same
/// time zone and character set, text columns also by the digest of their stored bytes), and
/// leaves deleted exactly the locked rows whose copy is identical: the early delete of
/// [`copy_and_delete`] (`early`) stands when every locked row is identical and it deleted
/// exactly the locked rows (the keys it returned are the locked keys; by key, as many rows as
/// were locked); otherwise it is undone to the savepoint and the identical rows are deleted by
/// key. A locked row with no archive row under its key fails the
/// batch ([`NotCopied`]) and nothing is deleted. The source transaction is left open for the
/// caller to record `BatchCommitting` and commit ([`super::commit`]); on failure it is rolled
/// back. Its time, and one count, are added to `times.delete`.
#[allow(clippy::too_many_arguments)]
pub async fn settle(
    source: &mut Conn,
    archive: &mut Conn,
    queries: &Queries,
    locked: &[RowValues],
    archived: &Archived,
    early: Option<EarlyDelete>,
    earlier_witness: Option<&Key>,
    times: &mut BatchTimes,
) -> DbResult<BatchResult> {
    let settling = Instant::now();
    let earlier_committed = match earlier_witness {
        None => Ok(None),
        Some(witness) => earlier_committed(source, Some(archive), queries, witness)
            .await
            .map(Some),
    };
    let result = match earlier_committed {
        Ok(earlier_committed) => keep_identical(source, queries, locked, archived, early)
            .await
            .map(|done| (done, earlier_committed)),
        Err(error) => Err(error),
    };
    times.delete.add_since(settling);
    let ((deleted, conflicts, witness), earlier_committed) = match result {
        Ok(done) => done,
        Err(error) => {
            super::batch::rollback(source).await;
            return Err(error);
        }
    };
    Ok(BatchResult {
        rows_copied: 0,
        rows_already: 0,
        rows_deleted: deleted,
        conflicts,
        witness,
        earlier_committed,
    })
}

/// [`settle`]'s comparison and delete: the rows deleted, the conflicts and the last key
/// deleted.
async fn keep_identical(
    source: &mut Conn,
    queries: &Queries,
    locked: &[RowValues],
    archived: &Archived,
    early: Option<EarlyDelete>,
) -> DbResult<(u64, Vec<Key>, Option<Key>)> {
    let positions = queries.key_positions();
    let mut identical = Vec::new();
    let mut conflicts = Vec::new();
    let mut missing = Vec::new();
    for row in locked {
        let key = key_of(row, positions.clone())?;
        match archived.get(&key) {
            Some(copy) if copy == row => identical.push(key),
            Some(_) => conflicts.push(key),
            None => missing.push(key),
        }
    }
    if let Some(first) = missing.first() {
        return Err(NotCopied {
            count: missing.len(),
            first: crate::event::key_text(first),
        }
        .into());
    }
    let all = identical.len() as u64;
    let every_locked_row_identical = identical.len() == locked.len();
    let deleted = match early {
        Some(early) if every_locked_row_identical && deleted_exactly(&early, &identical) => all,
        Some(_) => {
            source.query_drop(sql::ROLLBACK_TO_DELETE_SAVEPOINT).await?;
            delete_keys(source, queries, &identical).await?
        }
        None => delete_keys(source, queries, &identical).await?,
    };
    if deleted != all {
        return Err(DbError::Unexpected(format!(
            "deleting {all} locked rows with identical archive copies deleted {deleted}; rolled back"
        )));
    }
    let witness = identical.last().cloned();
    Ok((deleted, conflicts, witness))
}

/// Whether the early delete deleted exactly the rows under `keys` (the locked keys, distinct):
/// by range, the keys it returned are those keys; by key, as many rows as keys (it deleted by
/// those keys, so no other).
fn deleted_exactly(early: &EarlyDelete, keys: &[Key]) -> bool {
    match early {
        EarlyDelete::Locked(deleted) => *deleted == keys.len() as u64,
        EarlyDelete::Range(deleted) => {
            let keys: HashSet<&Key> = keys.iter().collect();
            let deleted: HashSet<&Key> = deleted.iter().collect();
            deleted == keys
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::KeyValue;

    fn keys(ids: &[u64]) -> Vec<Key> {
        ids.iter().map(|id| vec![KeyValue::UInt(*id)]).collect()
    }

    /// The early delete stands only for exactly the locked rows: not for one more (a row that
    /// entered the range), one fewer (a locked row the predicate no longer matched), or the
    /// same count of other rows (both at once).
    #[test]
    fn the_early_delete_stands_for_exactly_the_locked_rows() {
        let locked = keys(&[1, 2, 3]);
        let cases = [
            (EarlyDelete::Range(keys(&[3, 1, 2])), true),
            (EarlyDelete::Range(keys(&[1, 2, 3, 4])), false),
            (EarlyDelete::Range(keys(&[1, 2])), false),
            (EarlyDelete::Range(keys(&[1, 2, 4])), false),
            (EarlyDelete::Range(keys(&[1, 1, 2])), false),
            (EarlyDelete::Locked(3), true),
            (EarlyDelete::Locked(2), false),
        ];
        for (early, stands) in cases {
            assert_eq!(deleted_exactly(&early, &locked), stands, "{early:?}");
        }
    }
}
