//! The optimizer's estimate of the rows a run has left, for the progress display's ETA. An
//! `EXPLAIN` reads no rows and takes no locks: it costs a few index dives, so a run can ask
//! again every few seconds as its position moves. A bounded exact count comes first.

use mysql_async::prelude::*;
use mysql_async::Conn;

use super::sql::Queries;
use super::{params, DbResult};
use crate::event::Key;

/// Estimated matching rows after `after` up to `bound`; `None` when the server's plan does not
/// say (a shape of `EXPLAIN FORMAT=JSON` this parser does not know).
pub async fn estimate_rows(
    conn: &mut Conn,
    queries: &Queries,
    after: Option<&Key>,
    bound: &Key,
) -> DbResult<Option<u64>> {
    let statement = queries.estimate_rows(after, bound);
    let plan: Option<String> = conn
        .exec_first(statement.sql.as_str(), params(&statement))
        .await?;
    Ok(plan.as_deref().and_then(rows_from_plan))
}

/// Longest the exact count of the rows left may take on the server, in seconds: a read of the
/// matching rows (through the predicate's index when it has one) once per invocation. Beyond it
/// the ETA uses the optimizer's estimate instead.
pub const COUNT_TIME_S_MAX: u32 = 5;

/// The exact number of matching rows after `after` up to `bound`, counted within
/// [`COUNT_TIME_S_MAX`]; an error when the server ends the count (too slow, or a server
/// without `SET STATEMENT`).
pub async fn count_rows(
    conn: &mut Conn,
    queries: &Queries,
    after: Option<&Key>,
    bound: &Key,
) -> DbResult<u64> {
    let statement = queries.count_rows(after, bound, COUNT_TIME_S_MAX);
    let count: Option<u64> = conn
        .exec_first(statement.sql.as_str(), params(&statement))
        .await?;
    Ok(count.unwrap_or(0))
}

/// Rows × filtered% of the plan's one table. MariaDB writes `"rows": 30794, "filtered": 50`
/// under `query_block.nested_loop[0].table` (or `query_block.table`); MySQL 8 writes
/// `"rows_examined_per_scan"` and `"filtered": "50.00"` (a string). An impossible range
/// ("Impossible WHERE") has no table: zero rows.
pub fn rows_from_plan(json: &str) -> Option<u64> {
    let plan: serde_json::Value = serde_json::from_str(json).ok()?;
    let block = plan.get("query_block")?;
    let table = block
        .get("table")
        .or_else(|| block.get("nested_loop")?.get(0)?.get("table"))?;
    if table.get("impossible_where").is_some() || table.get("message").is_some() {
        return Some(0);
    }
    let rows = number(
        table
            .get("rows")
            .or_else(|| table.get("rows_examined_per_scan"))?,
    )?;
    let filtered = table.get("filtered").and_then(number).unwrap_or(100.0);
    let estimate = (rows * filtered.clamp(0.0, 100.0) / 100.0).round();
    // A plan's row count is far below 2^53; the conversion is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(estimate.max(0.0) as u64)
}

/// A JSON number, or a number written as a string (MySQL's `"filtered": "50.00"`).
fn number(value: &serde_json::Value) -> Option<f64> {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::rows_from_plan;

    #[test]
    fn reads_mariadb_and_mysql_plans() {
        let mariadb = r#"{"query_block": {"select_id": 1, "nested_loop": [{"table": {
            "table_name": "t", "access_type": "range", "rows": 30794, "filtered": 50}}]}}"#;
        assert_eq!(rows_from_plan(mariadb), Some(15397));
        let mariadb_flat = r#"{"query_block": {"select_id": 1, "table": {
            "table_name": "t", "access_type": "range", "rows": 1000, "filtered": 100}}}"#;
        assert_eq!(rows_from_plan(mariadb_flat), Some(1000));
        let mysql = r#"{"query_block": {"select_id": 1, "table": {"table_name": "t",
            "rows_examined_per_scan": 2000, "filtered": "25.00"}}}"#;
        assert_eq!(rows_from_plan(mysql), Some(500));
    }

    #[test]
    fn an_impossible_range_is_zero_and_an_unknown_shape_is_none() {
        let impossible = r#"{"query_block": {"select_id": 1, "table": {
            "message": "Impossible WHERE noticed after reading const tables"}}}"#;
        assert_eq!(rows_from_plan(impossible), Some(0));
        assert_eq!(rows_from_plan(r#"{"query_block": {"select_id": 1}}"#), None);
        assert_eq!(rows_from_plan("not json"), None);
    }
}
