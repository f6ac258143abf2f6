//! Every SQL statement the engine sends, built in one place from table metadata.
//!
//! Identifiers are quoted with backticks (doubled inside); values are never spliced in: key
//! bounds travel as `?` parameters of prepared statements, in the order [`Statement::params`]
//! gives. The job's `where` predicate is operator-written SQL and is inserted verbatim, in
//! parentheses; `EXPLAIN` validates it before the first row moves, and prepared statements
//! refuse a second statement smuggled into it.

use crate::event::{Key, KeyValue};

/// Quotes an identifier for MySQL/MariaDB.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `schema`.`table`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// The columns of a table, in table order: name, full type, nullability, EXTRA (to spot
/// generated columns) and DATA_TYPE (to spot text). Parameters: schema, table.
pub const TABLE_COLUMNS: &str = "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, EXTRA, DATA_TYPE \
     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
     ORDER BY ORDINAL_POSITION";

/// The primary key columns of a table, in key order. Parameters: schema, table.
pub const TABLE_PRIMARY_KEY: &str = "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX";

/// Whether a table exists, and its kind and engine. Parameters: schema, table.
pub const TABLE_KIND: &str =
    "SELECT TABLE_TYPE, COALESCE(ENGINE, '') FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";

/// Session settings for every connection of a job. READ COMMITTED: a batch's locking reads
/// lock only the rows that match (no gap locks), so concurrent inserts elsewhere in the range
/// are not blocked and two sessions do not deadlock on next-key locks at range boundaries; the
/// `FOR UPDATE` in [`Queries::lock_batch`] keeps the batch's own rows stable until commit.
/// Strict mode, so that a value the archive cannot hold is an error and never a silently
/// changed copy.
pub fn session_setup(lock_wait_timeout_s: u32) -> Vec<String> {
    vec![
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_string(),
        "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')"
            .to_string(),
        format!("SET SESSION innodb_lock_wait_timeout = {lock_wait_timeout_s}"),
    ]
}

/// Pins `NOW()` (and `CURRENT_TIMESTAMP`, `CURDATE()` ...) for the session to the run's moment,
/// so a resumed run selects exactly the rows its first invocation would have.
pub fn set_timestamp(now_unix_us: i64) -> String {
    format!(
        "SET TIMESTAMP = {}.{:06}",
        now_unix_us.div_euclid(1_000_000),
        now_unix_us.rem_euclid(1_000_000)
    )
}

/// What the engine knows of a table: its columns to copy and its primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Columns to copy, in table order (generated columns excluded).
    pub columns: Vec<String>,
    /// Primary key columns, in key order.
    pub key: Vec<String>,
    /// Columns holding text (CHAR, VARCHAR, TEXT, ENUM, SET, JSON): compared byte for byte,
    /// because their collation may call `'a'` and `'A '` equal while the rows differ.
    pub text_columns: Vec<String>,
}

impl TableShape {
    fn name(&self) -> String {
        qualified(&self.schema, &self.table)
    }

    /// A column of this table, fully qualified (needed where another table is in scope).
    fn col(&self, column: &str) -> String {
        format!("{}.{}", self.name(), ident(column))
    }

    fn key_list(&self) -> String {
        self.key
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A statement with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The SQL text with `?` placeholders.
    pub sql: String,
    /// The parameters, in placeholder order.
    pub params: Vec<KeyValue>,
}

/// Which side of a key range a comparison expresses.
#[derive(Clone, Copy)]
enum Side {
    /// `key > bound`.
    After,
    /// `key <= bound`.
    UpTo,
}

/// A row-comparison of `columns` against `key`, expanded into ORs and ANDs because MariaDB's
/// range optimizer handles that form, and not always the row-constructor form `(a, b) > (?, ?)`.
/// For (a, b): `(a > ? OR (a = ? AND b > ?))`.
fn compare(columns: &[String], key: &Key, side: Side, params: &mut Vec<KeyValue>) -> String {
    assert_eq!(
        columns.len(),
        key.len(),
        "key arity matches the primary key"
    );
    let last = columns.len() - 1;
    let mut sql = String::new();
    let mut closing = String::new();
    for (i, column) in columns.iter().enumerate() {
        let op = match (side, i == last) {
            (Side::After, _) => ">",
            (Side::UpTo, false) => "<",
            (Side::UpTo, true) => "<=",
        };
        if i == last {
            sql.push_str(&format!("{column} {op} ?"));
            params.push(key[i].clone());
        } else {
            sql.push_str(&format!("({column} {op} ? OR ({column} = ? AND "));
            params.push(key[i].clone());
            params.push(key[i].clone());
            closing.push_str("))");
        }
    }
    sql.push_str(&closing);
    sql
}

/// The WHERE clause selecting a batch: `lower < key <= upper AND (predicate)`.
fn range_where(
    columns: &[String],
    lower: Option<&Key>,
    upper: &Key,
    predicate: &str,
    params: &mut Vec<KeyValue>,
) -> String {
    let mut parts = Vec::new();
    if let Some(lower) = lower {
        parts.push(compare(columns, lower, Side::After, params));
    }
    parts.push(compare(columns, upper, Side::UpTo, params));
    parts.push(format!("({predicate})"));
    parts.join(" AND ")
}

/// The statements of the job, for one source/archive pair.
#[derive(Debug, Clone)]
pub struct Queries {
    /// The source table.
    pub source: TableShape,
    /// The archive table.
    pub archive: TableShape,
    /// The job's predicate, verbatim.
    pub predicate: String,
}

impl Queries {
    /// The WHERE clause selecting a batch's matching source rows, and its parameters.
    fn batch_filter(&self, lower: Option<&Key>, upper: &Key) -> (String, Vec<KeyValue>) {
        let columns: Vec<String> = self.source.key.iter().map(|c| self.source.col(c)).collect();
        let mut params = Vec::new();
        let filter = range_where(&columns, lower, upper, &self.predicate, &mut params);
        (filter, params)
    }

    /// Checks the predicate without touching rows.
    pub fn explain_predicate(&self) -> Statement {
        Statement {
            sql: format!(
                "EXPLAIN SELECT 1 FROM {} WHERE ({})",
                self.source.name(),
                self.predicate
            ),
            params: vec![],
        }
    }

    /// The largest primary key in the source: the run's key bound.
    pub fn key_bound(&self) -> Statement {
        let desc = self
            .source
            .key
            .iter()
            .map(|c| format!("{} DESC", ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        Statement {
            sql: format!(
                "SELECT {} FROM {} ORDER BY {desc} LIMIT 1",
                self.source.key_list(),
                self.source.name()
            ),
            params: vec![],
        }
    }

    /// The keys of the next `rows` matching rows after `after`, up to `bound`, in key order.
    /// The last one is the next batch's upper bound. `FORCE INDEX (PRIMARY)` keeps the scan in
    /// key order even when the predicate's column has an index the optimizer would prefer.
    pub fn plan(&self, after: Option<&Key>, bound: &Key, rows: u32) -> Statement {
        let (filter, params) = self.batch_filter(after, bound);
        Statement {
            sql: format!(
                "SELECT {} FROM {} FORCE INDEX (PRIMARY) WHERE {filter} ORDER BY {} LIMIT {rows}",
                self.source.key_list(),
                self.source.name(),
                self.source.key_list()
            ),
            params,
        }
    }

    /// Locks the batch's matching source rows and counts them. Under READ COMMITTED, InnoDB
    /// keeps the locks only on rows that match, so no other client can change or delete a row
    /// between our copy and our delete.
    pub fn lock_batch(&self, lower: Option<&Key>, upper: &Key) -> Statement {
        let (filter, params) = self.batch_filter(lower, upper);
        Statement {
            sql: format!(
                "SELECT COUNT(*) FROM {} FORCE INDEX (PRIMARY) WHERE {filter} FOR UPDATE",
                self.source.name()
            ),
            params,
        }
    }

    /// Copies the batch's matching rows into the archive. A key the archive already holds is
    /// left as it is (`ON DUPLICATE KEY UPDATE k = k` changes nothing and reports 0 affected
    /// rows), so the affected-row count is the number of rows copied; whether an existing
    /// archive row is identical is decided by [`Queries::delete_batch`], not here. Unlike
    /// `INSERT IGNORE`, this does not turn data errors into warnings.
    pub fn copy_batch(&self, lower: Option<&Key>, upper: &Key) -> Statement {
        let (filter, params) = self.batch_filter(lower, upper);
        let columns = self.column_list();
        let select_columns = self
            .source
            .columns
            .iter()
            .map(|c| self.source.col(c))
            .collect::<Vec<_>>()
            .join(", ");
        let noop = self
            .archive
            .key
            .iter()
            .map(|c| format!("{} = {}", self.archive.col(c), self.archive.col(c)))
            .collect::<Vec<_>>()
            .join(", ");
        Statement {
            sql: format!(
                "INSERT INTO {} ({columns}) SELECT {select_columns} FROM {} FORCE INDEX (PRIMARY) WHERE {filter} ON DUPLICATE KEY UPDATE {noop}",
                self.archive.name(),
                self.source.name()
            ),
            params,
        }
    }

    /// The condition "the archive holds a row under this source row's key", optionally "and it
    /// is identical in every column" (NULL-safe `<=>`).
    fn archive_match(&self, identical: bool) -> String {
        let mut conditions: Vec<String> = self
            .source
            .key
            .iter()
            .map(|c| format!("a.{} = {}", ident(c), self.source.col(c)))
            .collect();
        if identical {
            for c in &self.source.columns {
                let (archived, source) = (format!("a.{}", ident(c)), self.source.col(c));
                if self.source.text_columns.contains(c) {
                    conditions.push(format!(
                        "CAST({archived} AS BINARY) <=> CAST({source} AS BINARY)"
                    ));
                } else if !self.source.key.contains(c) {
                    conditions.push(format!("{archived} <=> {source}"));
                }
            }
        }
        format!(
            "EXISTS (SELECT 1 FROM {} AS a WHERE {})",
            self.archive.name(),
            conditions.join(" AND ")
        )
    }

    /// Deletes the batch's matching source rows that have an identical copy in the archive:
    /// **the statement that keeps the invariant**. Whatever happened before it in the
    /// transaction, it deletes nothing whose identical copy is not in the archive, and the copy
    /// commits with the delete.
    pub fn delete_batch(&self, lower: Option<&Key>, upper: &Key) -> Statement {
        let (filter, params) = self.batch_filter(lower, upper);
        Statement {
            sql: format!(
                "DELETE FROM {} WHERE {filter} AND {}",
                self.source.name(),
                self.archive_match(true)
            ),
            params,
        }
    }

    /// The keys of the batch's matching source rows that are still there and whose key the
    /// archive holds with a different row: conflicts. Run after [`Queries::delete_batch`].
    pub fn conflicts(&self, lower: Option<&Key>, upper: &Key) -> Statement {
        let (filter, params) = self.batch_filter(lower, upper);
        Statement {
            sql: format!(
                "SELECT {} FROM {} FORCE INDEX (PRIMARY) WHERE {filter} AND {} ORDER BY {}",
                self.source.key_list(),
                self.source.name(),
                self.archive_match(false),
                self.source.key_list()
            ),
            params,
        }
    }
}

/// Statements for an archive on another server, where copy and delete are separate
/// transactions on separate connections and rows travel through the client.
impl Queries {
    fn column_list(&self) -> String {
        self.source
            .columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Positions of the key columns within [`TableShape::columns`], in key order.
    pub fn key_positions(&self) -> Vec<usize> {
        self.source
            .key
            .iter()
            .map(|k| {
                self.source
                    .columns
                    .iter()
                    .position(|c| c == k)
                    .expect("key columns are copied columns")
            })
            .collect()
    }

    /// The batch's matching source rows, every copied column, in key order; `FOR UPDATE` when
    /// `lock` (the rows then stay unchanged until the source transaction ends).
    pub fn select_batch(&self, lower: Option<&Key>, upper: &Key, lock: bool) -> Statement {
        let (filter, params) = self.batch_filter(lower, upper);
        Statement {
            sql: format!(
                "SELECT {} FROM {} FORCE INDEX (PRIMARY) WHERE {filter} ORDER BY {}{}",
                self.column_list(),
                self.source.name(),
                self.source.key_list(),
                if lock { " FOR UPDATE" } else { "" }
            ),
            params,
        }
    }

    /// The archive's rows in the batch's key range (no predicate: the archive row under a key
    /// is what matters, whatever it holds), the same columns in the same order as
    /// [`Queries::select_batch`].
    pub fn select_archived(&self, lower: Option<&Key>, upper: &Key) -> Statement {
        let mut params = Vec::new();
        let cols: Vec<String> = self
            .archive
            .key
            .iter()
            .map(|c| self.archive.col(c))
            .collect();
        let mut parts = Vec::new();
        if let Some(lower) = lower {
            parts.push(compare(&cols, lower, Side::After, &mut params));
        }
        parts.push(compare(&cols, upper, Side::UpTo, &mut params));
        Statement {
            sql: format!(
                "SELECT {} FROM {} FORCE INDEX (PRIMARY) WHERE {} ORDER BY {}",
                self.column_list(),
                self.archive.name(),
                parts.join(" AND "),
                self.archive.key_list()
            ),
            params,
        }
    }

    /// Inserts `rows` rows (values bound by the caller, row after row); an existing key is
    /// left as it is, as in [`Queries::copy_batch`].
    pub fn insert_rows(&self, rows: usize) -> String {
        let one = format!("({})", vec!["?"; self.source.columns.len()].join(", "));
        let noop = self
            .archive
            .key
            .iter()
            .map(|c| format!("{} = {}", ident(c), ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {} ({}) VALUES {} ON DUPLICATE KEY UPDATE {noop}",
            self.archive.name(),
            self.column_list(),
            vec![one; rows].join(", ")
        )
    }

    /// Deletes source rows by key. Used only for rows locked `FOR UPDATE` in the same
    /// transaction and compared byte for byte with their committed archive copy.
    pub fn delete_keys(&self, keys: &[Key]) -> Statement {
        let width = self.source.key.len();
        let tuple = if width == 1 {
            "?".to_string()
        } else {
            format!("({})", vec!["?"; width].join(", "))
        };
        let target = if width == 1 {
            ident(&self.source.key[0])
        } else {
            format!("({})", self.source.key_list())
        };
        Statement {
            sql: format!(
                "DELETE FROM {} WHERE {target} IN ({})",
                self.source.name(),
                vec![tuple; keys.len()].join(", ")
            ),
            params: keys.iter().flatten().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(table: &str, key: &[&str]) -> TableShape {
        TableShape {
            schema: "db".into(),
            table: table.into(),
            columns: vec!["a".into(), "b".into(), "note".into()],
            key: key.iter().map(|s| s.to_string()).collect(),
            text_columns: vec!["note".into()],
        }
    }

    #[test]
    fn identifiers_are_quoted_and_escaped() {
        assert_eq!(ident("plain"), "`plain`");
        assert_eq!(ident("we`ird"), "`we``ird`");
        assert_eq!(qualified("d b", "t"), "`d b`.`t`");
    }

    #[test]
    fn composite_key_ranges_expand_with_parameters_in_order() {
        let q = Queries {
            source: shape("s", &["a", "b"]),
            archive: shape("t", &["a", "b"]),
            predicate: "note IS NULL".into(),
        };
        let lower = vec![KeyValue::Int(1), KeyValue::Bytes(b"x".to_vec())];
        let upper = vec![KeyValue::Int(9), KeyValue::Bytes(b"y".to_vec())];
        let st = q.lock_batch(Some(&lower), &upper);
        assert_eq!(
            st.sql,
            "SELECT COUNT(*) FROM `db`.`s` FORCE INDEX (PRIMARY) WHERE \
             (`db`.`s`.`a` > ? OR (`db`.`s`.`a` = ? AND `db`.`s`.`b` > ?)) AND \
             (`db`.`s`.`a` < ? OR (`db`.`s`.`a` = ? AND `db`.`s`.`b` <= ?)) AND (note IS NULL) FOR UPDATE"
        );
        assert_eq!(
            st.params,
            vec![
                KeyValue::Int(1),
                KeyValue::Int(1),
                KeyValue::Bytes(b"x".to_vec()),
                KeyValue::Int(9),
                KeyValue::Int(9),
                KeyValue::Bytes(b"y".to_vec()),
            ]
        );
    }

    #[test]
    fn cross_server_statements() {
        let q = Queries {
            source: shape("s", &["a", "b"]),
            archive: shape("t", &["a", "b"]),
            predicate: "note IS NULL".into(),
        };
        assert_eq!(q.key_positions(), vec![0, 1]);
        assert_eq!(
            q.insert_rows(2),
            "INSERT INTO `db`.`t` (`a`, `b`, `note`) VALUES (?, ?, ?), (?, ?, ?) \
             ON DUPLICATE KEY UPDATE `a` = `a`, `b` = `b`"
        );
        let keys = vec![
            vec![KeyValue::Int(1), KeyValue::Int(2)],
            vec![KeyValue::Int(3), KeyValue::Int(4)],
        ];
        let st = q.delete_keys(&keys);
        assert_eq!(
            st.sql,
            "DELETE FROM `db`.`s` WHERE (`a`, `b`) IN ((?, ?), (?, ?))"
        );
        assert_eq!(st.params.len(), 4);
        let st = q.select_archived(None, &vec![KeyValue::Int(9), KeyValue::Int(9)]);
        assert_eq!(
            st.sql,
            "SELECT `a`, `b`, `note` FROM `db`.`t` FORCE INDEX (PRIMARY) WHERE \
             (`db`.`t`.`a` < ? OR (`db`.`t`.`a` = ? AND `db`.`t`.`b` <= ?)) ORDER BY `a`, `b`"
        );
    }

    #[test]
    fn delete_requires_an_identical_archive_row() {
        let q = Queries {
            source: shape("s", &["a"]),
            archive: shape("t", &["a"]),
            predicate: "b < 3".into(),
        };
        let st = q.delete_batch(None, &vec![KeyValue::UInt(5)]);
        assert_eq!(
            st.sql,
            "DELETE FROM `db`.`s` WHERE `db`.`s`.`a` <= ? AND (b < 3) AND EXISTS (SELECT 1 FROM \
             `db`.`t` AS a WHERE a.`a` = `db`.`s`.`a` AND a.`b` <=> `db`.`s`.`b` AND CAST(a.`note` AS BINARY) <=> CAST(`db`.`s`.`note` AS BINARY))"
        );
        assert_eq!(st.params, vec![KeyValue::UInt(5)]);
    }
}
