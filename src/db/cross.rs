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
use std::sync::Arc;
use std::time::Instant;

use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Row, Value};

use super::batch::{earlier_committed, timed};
use super::load::{self, Loaded};
use super::sql::{self, Queries, Statement};
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

/// What the archive holds under a locked row's key once the copy committed
/// ([`compare_archived`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No row under the key.
    Missing,
    /// A row identical to the locked row.
    Identical,
    /// A row that differs from the locked row: a conflict.
    Different,
}

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
#[derive(Debug, Clone, PartialEq)]
pub enum EarlyDelete {
    /// Deleted with the locking read's filter: the keys it deleted (`RETURNING`), their values
    /// one key after the other as the server sent them, which may include rows that entered
    /// the range after the locking read, and may lack a locked row whose predicate reads
    /// another table that changed meanwhile.
    Range(Vec<Value>),
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
    // Shared with the archive connection's LOAD DATA handler, which encodes them as it sends.
    let locked = Arc::new(locked);
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
    let verdicts = compare_archived(archive, queries, range, &locked).await;
    times.delete.total += reading.elapsed();
    let verdicts = match verdicts {
        Ok(verdicts) => verdicts,
        Err(error) => return failed(copied, error),
    };
    let settled = settle(
        source,
        archive,
        queries,
        &locked,
        &verdicts,
        early,
        order.witness,
        times,
    );
    CrossAttempt {
        copied,
        result: settled.await,
    }
}

/// Compares every row of `rows` (the batch's locked rows, in `range`, in key order) with the
/// archive's committed row under its key, and returns a [`Verdict`] for each, in their order:
/// the archive's rows in the range when it holds no more of them than the batch locked (one
/// range scan, [`Queries::select_archived_range`]), else read by key list, in chunks that fit
/// the placeholder limit. Either way bounded by the batch's rows. Each archive row is compared
/// as it arrives and then dropped: the client holds a verdict per locked row, not a second
/// copy of the batch.
pub async fn compare_archived(
    archive: &mut Conn,
    queries: &Queries,
    range: Range<'_>,
    rows: &[RowValues],
) -> DbResult<Vec<Verdict>> {
    let mut matcher = Matcher::new(queries.key_positions(), rows);
    if rows.is_empty() {
        return Ok(matcher.verdicts);
    }
    let limit = rows.len() as u64 + 1;
    let statement = queries.select_archived_range(range.0, range.1, limit);
    if matcher.compare(archive, statement, true).await? <= rows.len() {
        return Ok(matcher.verdicts);
    }
    // The range holds more archive rows than the batch locked: the limit may have cut off
    // some of the locked keys.
    let mut matcher = Matcher::new(queries.key_positions(), rows);
    let keys = keys_of(queries, rows)?;
    let keys_per_statement = keys_per_statement(matcher.key.len());
    for chunk in keys.chunks(keys_per_statement) {
        let full = chunk.len() == keys_per_statement;
        matcher
            .compare(archive, queries.select_archived(chunk), full)
            .await?;
    }
    Ok(matcher.verdicts)
}

/// [`compare_archived`]'s bookkeeping: which locked row an archive row is the copy of, and the
/// verdicts so far.
struct Matcher<'a> {
    locked: &'a [RowValues],
    /// Where a row holds its key.
    key: std::ops::Range<usize>,
    verdicts: Vec<Verdict>,
    /// The locked row the next archive row most likely copies: both come in key order.
    next: usize,
    /// The locked rows' positions by key, made the first time an archive row is not the
    /// copy of the `next` locked row.
    by_key: Option<HashMap<Key, usize>>,
}

impl<'a> Matcher<'a> {
    fn new(key: std::ops::Range<usize>, locked: &'a [RowValues]) -> Matcher<'a> {
        Matcher {
            locked,
            key,
            verdicts: vec![Verdict::Missing; locked.len()],
            next: 0,
            by_key: None,
        }
    }

    /// Runs `statement` on the archive and compares each row it returns; returns their number.
    /// `full`: whether the statement's text comes again and again ([`super::read_chunk`]).
    async fn compare(
        &mut self,
        archive: &mut Conn,
        statement: Statement,
        full: bool,
    ) -> DbResult<usize> {
        let mut rows = 0;
        let mut compared = Ok(());
        let params = params(&statement);
        super::read_chunk(archive, statement.sql, params, full, |row| {
            rows += 1;
            if compared.is_ok() {
                compared = self.add(&row.unwrap());
            }
        })
        .await?;
        compared.map(|()| rows)
    }

    fn add(&mut self, row: &[Value]) -> DbResult<()> {
        let key = self.key.clone();
        let at = match self.locked.get(self.next) {
            Some(locked) if locked[key.clone()] == row[key.clone()] => Some(self.next),
            _ => self.position(key_of(row, key)?)?,
        };
        // An archive row under no locked key (read by range) is not the batch's.
        if let Some(at) = at {
            self.verdicts[at] = if self.locked[at].as_slice() == row {
                Verdict::Identical
            } else {
                Verdict::Different
            };
            self.next = at + 1;
        }
        Ok(())
    }

    fn position(&mut self, key: Key) -> DbResult<Option<usize>> {
        if self.by_key.is_none() {
            let mut by_key = HashMap::with_capacity(self.locked.len());
            for (at, row) in self.locked.iter().enumerate() {
                by_key.insert(key_of(row, self.key.clone())?, at);
            }
            self.by_key = Some(by_key);
        }
        Ok(self
            .by_key
            .as_ref()
            .and_then(|by_key| by_key.get(&key).copied()))
    }
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
    rows: &Arc<Vec<RowValues>>,
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
    rows: &Arc<Vec<RowValues>>,
    accepts: &mut Accepts,
) -> DbResult<bool> {
    if rows.is_empty() {
        return Ok(true);
    }
    let columns = queries.source.columns.len();
    if accepts.load_data && queries.archive.load_data {
        match load::load_rows(archive, queries, Arc::clone(rows), columns).await {
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
    let keys_per_statement = keys_per_statement(positions.len());
    for chunk in keys.chunks(keys_per_statement) {
        let statement = queries.archived_keys(chunk);
        let (params, full) = (params(&statement), chunk.len() == keys_per_statement);
        let mut held = Ok(());
        super::read_chunk(archive, statement.sql, params, full, |row| {
            if held.is_ok() {
                held = super::row_to_key(row).map(|key| {
                    present.insert(key);
                });
            }
        })
        .await?;
        held?;
    }
    let missing = rows
        .iter()
        .zip(&keys)
        .filter(|(_, key)| !present.contains(*key));
    insert_rows(archive, queries, missing.map(|(row, _)| row)).await
}

/// Most rows one prepared multi-row `INSERT` of [`insert_rows`] carries (fewer where the
/// placeholder limit says so): the copy where the archive server refuses `LOAD DATA LOCAL
/// INFILE`.
///
/// Measured (`tools/bench --only archiver-2s-insert --runs 2`, the reference workload, defaults):
/// the archiver's peak RSS grows with the statement, about 8 MiB more for each 1,000 rows of 6
/// columns (20 MiB at 250 rows, 24 at 500, 32 at 1,000, 47 at 2,000, 68 at 4,000, 90 at the
/// placeholder limit's 10,922), and the archive server's CPU with it past 2,000 rows (5.0-5.6 s
/// at 250-2,000 rows, 5.9-6.1 at 4,000, 8.4 at 10,922); the wall time was the same from 250 to
/// 2,000 rows (7.9-8.9 s), 12.3-12.5 s at 10,922. Before the short last chunk was closed after
/// use ([`super::exec_chunk`]), statements of the placeholder limit's size, one per
/// batch size in the connection's cache, took 128-131 MiB and 10.4-11.1 s.
const INSERT_ROWS_PER_STATEMENT_MAX: usize = 500;

/// Plain multi-row `INSERT`s of `rows` (their copied columns), [`INSERT_ROWS_PER_STATEMENT_MAX`]
/// rows a statement (fewer where the placeholder limit says so). Returns the rows inserted.
async fn insert_rows<'a>(
    archive: &mut Conn,
    queries: &Queries,
    rows: impl Iterator<Item = &'a RowValues>,
) -> DbResult<u64> {
    // The copied columns only; the key read after them is not the archive's to store.
    let copied_columns = queries.source.columns.len();
    let rows_per_statement =
        (PLACEHOLDERS_MAX / copied_columns).clamp(1, INSERT_ROWS_PER_STATEMENT_MAX);
    let rows: Vec<&RowValues> = rows.collect();
    let mut copied = 0;
    for chunk in rows.chunks(rows_per_statement) {
        let values: Vec<Value> = chunk
            .iter()
            .flat_map(|row| row[..copied_columns].iter().cloned())
            .collect();
        let sql = queries.insert_rows(chunk.len());
        let full = chunk.len() == rows_per_statement;
        copied += super::exec_chunk(archive, sql, Params::Positional(values), full).await?;
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
    locked: &Arc<Vec<RowValues>>,
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
        let mut keys = Vec::with_capacity(locked.len() * queries.source.key.len());
        let mut refused = false;
        for statement in queries.delete_range(range.0, range.1, true) {
            match source
                .exec_iter(statement.sql.as_str(), params(&statement))
                .await
            {
                Ok(mut deleted) => {
                    deleted.for_each(|row| keys.extend(row.unwrap())).await?;
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
    let keys_per_statement = keys_per_statement(queries.source.key.len());
    for chunk in keys.chunks(keys_per_statement) {
        let statement = queries.delete_keys(chunk);
        let (params, full) = (params(&statement), chunk.len() == keys_per_statement);
        deleted += super::exec_chunk(source, statement.sql, params, full).await?;
    }
    Ok(deleted)
}

/// The last step, in the source transaction of [`lock_batch_rows`]: tells whether an earlier
/// unconfirmed commit happened (`earlier_witness`), takes the comparison of every locked row
/// with the archive's committed row under its key (`verdicts`, from [`compare_archived`] after
/// the archive's commit: values compared byte for byte as the servers sent them, both sessions
/// pinned to the same time zone and character set, text columns also by their stored bytes),
/// and leaves deleted exactly the locked rows whose copy is identical: the early delete of
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
    verdicts: &[Verdict],
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
        Ok(earlier_committed) => keep_identical(source, queries, locked, verdicts, early)
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

/// [`settle`]'s delete: the rows deleted, the conflicts and the last key deleted.
async fn keep_identical(
    source: &mut Conn,
    queries: &Queries,
    locked: &[RowValues],
    verdicts: &[Verdict],
    early: Option<EarlyDelete>,
) -> DbResult<(u64, Vec<Key>, Option<Key>)> {
    let positions = queries.key_positions();
    let key = |at: usize| key_of(&locked[at], positions.clone());
    let having = |verdict: Verdict| {
        let verdicts = verdicts.iter().enumerate();
        verdicts.filter_map(move |(at, v)| (*v == verdict).then_some(at))
    };
    let mut missing = having(Verdict::Missing);
    if let Some(first) = missing.next() {
        return Err(NotCopied {
            count: 1 + missing.count(),
            first: crate::event::key_text(&key(first)?),
        }
        .into());
    }
    let conflicts: Vec<Key> = having(Verdict::Different)
        .map(key)
        .collect::<DbResult<_>>()?;
    let identical = || {
        having(Verdict::Identical)
            .map(key)
            .collect::<DbResult<Vec<Key>>>()
    };
    let all = (locked.len() - conflicts.len()) as u64;
    let deleted = match early {
        Some(early)
            if conflicts.is_empty() && deleted_exactly(&early, locked, positions.clone())? =>
        {
            all
        }
        Some(_) => {
            source.query_drop(sql::ROLLBACK_TO_DELETE_SAVEPOINT).await?;
            delete_keys(source, queries, &identical()?).await?
        }
        None => delete_keys(source, queries, &identical()?).await?,
    };
    if deleted != all {
        return Err(DbError::Unexpected(format!(
            "deleting {all} locked rows with identical archive copies deleted {deleted}; rolled back"
        )));
    }
    let witness = having(Verdict::Identical)
        .next_back()
        .map(key)
        .transpose()?;
    Ok((deleted, conflicts, witness))
}

/// Whether the early delete deleted exactly the `locked` rows (their keys, at `key` in each
/// row, distinct): by range, the keys it returned are those keys (in the same order, as a
/// range scan returns them, or else as sets); by key, as many rows as keys (it deleted by
/// those keys, so no other).
fn deleted_exactly(
    early: &EarlyDelete,
    locked: &[RowValues],
    key: std::ops::Range<usize>,
) -> DbResult<bool> {
    let width = key.len().max(1);
    match early {
        EarlyDelete::Locked(deleted) => Ok(*deleted == locked.len() as u64),
        EarlyDelete::Range(deleted) if deleted.len() != locked.len() * width => Ok(false),
        EarlyDelete::Range(deleted) => {
            let mut pairs = deleted.chunks(width).zip(locked);
            if pairs.all(|(deleted, row)| deleted == &row[key.clone()]) {
                return Ok(true);
            }
            let as_key = |values: &[Value]| values.iter().cloned().map(from_value).collect();
            let deleted: HashSet<Key> =
                deleted.chunks(width).map(as_key).collect::<DbResult<_>>()?;
            let locked: HashSet<Key> = locked
                .iter()
                .map(|row| as_key(&row[key.clone()]))
                .collect::<DbResult<_>>()?;
            Ok(deleted == locked)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of a copied column and the key (at 1..2), as the locking read returns them.
    fn rows(ids: &[u64]) -> Vec<RowValues> {
        let row = |id: &u64| vec![Value::Bytes(b"copied".to_vec()), Value::UInt(*id)];
        ids.iter().map(row).collect()
    }

    fn keys(ids: &[u64]) -> Vec<Value> {
        ids.iter().map(|id| Value::UInt(*id)).collect()
    }

    /// The early delete stands only for exactly the locked rows: not for one more (a row that
    /// entered the range), one fewer (a locked row the predicate no longer matched), or the
    /// same count of other rows (both at once); in the locked rows' order or another.
    #[test]
    fn the_early_delete_stands_for_exactly_the_locked_rows() {
        let locked = rows(&[1, 2, 3]);
        let cases = [
            (EarlyDelete::Range(keys(&[1, 2, 3])), true),
            (EarlyDelete::Range(keys(&[3, 1, 2])), true),
            (EarlyDelete::Range(keys(&[1, 2, 3, 4])), false),
            (EarlyDelete::Range(keys(&[1, 2])), false),
            (EarlyDelete::Range(keys(&[1, 2, 4])), false),
            (EarlyDelete::Range(keys(&[1, 1, 2])), false),
            (EarlyDelete::Range(keys(&[1, 2, 2])), false),
            (EarlyDelete::Locked(3), true),
            (EarlyDelete::Locked(2), false),
        ];
        for (early, stands) in cases {
            let exactly = deleted_exactly(&early, &locked, 1..2).unwrap();
            assert_eq!(exactly, stands, "{early:?}");
        }
    }

    /// Each archive row is matched with the locked row under its key, whether it comes in the
    /// locked rows' order or not, and whatever archive rows under other keys come between.
    #[test]
    fn archive_rows_are_matched_by_key_in_any_order() {
        let locked = rows(&[1, 2, 4, 5, 6]);
        let mut changed = rows(&[2]).remove(0);
        changed[0] = Value::Bytes(b"changed".to_vec());
        let arriving = [rows(&[1]), vec![changed], rows(&[3, 6, 5])].concat();
        let mut matcher = Matcher::new(1..2, &locked);
        for row in &arriving {
            matcher.add(row).unwrap();
        }
        use Verdict::{Different, Identical, Missing};
        let expected = [Identical, Different, Missing, Identical, Identical];
        assert_eq!(matcher.verdicts, expected);
    }
}
