//! The batch with the archive on its own server, in steps the WAL records between: lock and
//! fetch the source rows, copy what the archive lacks and commit there, then delete the locked
//! rows whose committed archive copy is identical and commit the source.

use std::collections::HashMap;
use std::time::Instant;

use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Row, Value};

use super::batch::{earlier_committed, timed};
use super::sql::Queries;
use super::times::BatchTimes;
use super::{from_value, params, BatchResult, DbError, DbResult, NotCopied};
use crate::event::Key;

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

fn key_of(row: &[Value], positions: std::ops::Range<usize>) -> DbResult<Key> {
    row[positions].iter().cloned().map(from_value).collect()
}

/// Archive on another server, step 1: starts the source transaction and locks the batch's
/// matching rows, returning them. The locks hold until [`delete_archived`] commits. Its time
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

/// The archive's rows under the keys of `rows` (the batch's locked rows), by key, read in
/// chunks that fit the placeholder limit.
async fn archived_rows(
    archive: &mut Conn,
    queries: &Queries,
    rows: &[RowValues],
) -> DbResult<HashMap<Key, RowValues>> {
    let positions = queries.key_positions();
    let keys = rows
        .iter()
        .map(|row| key_of(row, positions.clone()))
        .collect::<DbResult<Vec<Key>>>()?;
    let per_statement = keys_per_statement(positions.len());
    let mut by_key = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(per_statement) {
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
/// one archive transaction, and commits it. Returns the rows inserted. A plain `INSERT`: a row
/// colliding with an archive row on another unique key fails the batch. Its time is added to
/// `times.copy`, the archive's commit to `times.commit`.
pub async fn copy_rows(
    archive: &mut Conn,
    queries: &Queries,
    rows: &[RowValues],
    times: &mut BatchTimes,
) -> DbResult<u64> {
    let copied = timed(&mut times.copy, Instant::now(), async {
        archive.query_drop("START TRANSACTION").await?;
        Ok(insert_missing(archive, queries, rows).await)
    })
    .await?;
    let committing = Instant::now();
    let copied = super::end_transaction(archive, copied).await;
    times.commit.add_since(committing);
    copied
}

async fn insert_missing(
    archive: &mut Conn,
    queries: &Queries,
    rows: &[RowValues],
) -> DbResult<u64> {
    let positions = queries.key_positions();
    let present = archived_rows(archive, queries, rows).await?;
    let mut missing = Vec::new();
    for row in rows {
        if !present.contains_key(&key_of(row, positions.clone())?) {
            missing.push(row);
        }
    }
    let rows_per_statement = (PLACEHOLDERS_MAX / queries.source.columns.len()).max(1);
    let mut copied = 0;
    for chunk in missing.chunks(rows_per_statement) {
        // The copied columns only; the key read after them is not the archive's to store.
        let copied_columns = queries.source.columns.len();
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

/// Archive on another server, step 3, in the source transaction of [`lock_batch_rows`]:
/// tells whether an earlier unconfirmed commit happened (`earlier_witness`), reads the
/// archive's committed rows under the locked keys, deletes the locked source rows whose archive
/// row is identical in every column (compared byte for byte, as the server sent them, both
/// sessions pinned to the same time zone and character set) and lists the conflicts. The
/// source transaction is left open for the caller to record `BatchCommitting` and commit
/// ([`super::commit`]); on failure it is rolled back. A locked row with no archive row under
/// its key fails the batch ([`NotCopied`]) and nothing is deleted. Its time is added to
/// `times.delete`.
pub async fn delete_archived(
    source: &mut Conn,
    archive: &mut Conn,
    queries: &Queries,
    locked: Vec<RowValues>,
    earlier_witness: Option<&Key>,
    times: &mut BatchTimes,
) -> DbResult<BatchResult> {
    let deleting = Instant::now();
    let earlier_committed = match earlier_witness {
        None => Ok(None),
        Some(witness) => earlier_committed(source, Some(archive), queries, witness)
            .await
            .map(Some),
    };
    let result = match earlier_committed {
        Ok(earlier_committed) => delete_identical(source, archive, queries, locked)
            .await
            .map(|done| (done, earlier_committed)),
        Err(error) => Err(error),
    };
    times.delete.add_since(deleting);
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

/// [`delete_archived`]'s delete: the rows deleted, the conflicts and the last key deleted.
async fn delete_identical(
    source: &mut Conn,
    archive: &mut Conn,
    queries: &Queries,
    locked: Vec<RowValues>,
) -> DbResult<(u64, Vec<Key>, Option<Key>)> {
    let positions = queries.key_positions();
    let by_key = archived_rows(archive, queries, &locked).await?;
    let mut identical = Vec::new();
    let mut conflicts = Vec::new();
    let mut missing = Vec::new();
    for row in &locked {
        let key = key_of(row, positions.clone())?;
        match by_key.get(&key) {
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
    let per_statement = keys_per_statement(positions.len());
    let mut deleted = 0;
    for chunk in identical.chunks(per_statement) {
        let statement = queries.delete_keys(chunk);
        source
            .exec_drop(statement.sql.as_str(), params(&statement))
            .await?;
        deleted += source.affected_rows();
    }
    if deleted != identical.len() as u64 {
        return Err(DbError::Unexpected(format!(
            "deleting {} locked rows with identical archive copies deleted {deleted}; rolled back",
            identical.len()
        )));
    }
    let witness = identical.last().cloned();
    Ok((deleted, conflicts, witness))
}
