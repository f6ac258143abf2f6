//! The pure comparisons of the two tables, over what pre-flight learned of each
//! ([`TableInfo`]): the column definitions a copy depends on, columns the job's user cannot see,
//! primary keys, archive unique keys a copy could collide with, triggers the batch statements
//! would fire and foreign keys their deletes would break. No I/O; unit-tested in `tests.rs`.

use crate::config::{JobConfig, TableName};
use crate::db::sql;

use super::tables::{ColumnInfo, TableInfo};

/// One column attribute that must be equal in both tables, for [`table_differences`]: its name
/// in messages (empty: "is X") and how to read it.
type Attribute = (&'static str, fn(&ColumnInfo) -> String);

/// The column attributes a copy depends on. Defaults, AUTO_INCREMENT and ON UPDATE do not
/// matter: every copied value is given explicitly and archiver never updates a row.
const ATTRIBUTES: &[Attribute] = &[
    ("", |c| c.column_type.clone()),
    ("", |c| {
        if c.nullable { "NULL" } else { "NOT NULL" }.to_string()
    }),
    ("character set", |c| c.charset.clone()),
    ("collation", |c| c.collation.clone()),
    ("generated kind", |c| {
        if c.generated.is_empty() {
            "stored (not generated)".to_string()
        } else {
            format!("{} GENERATED", c.generated)
        }
    }),
    ("generation expression", |c| c.expression.clone()),
    ("visibility", |c| {
        if c.invisible { "INVISIBLE" } else { "visible" }.to_string()
    }),
];

/// Every difference between the source and archive tables that would make a copy
/// non-identical or impossible. Empty: compatible.
pub fn table_differences(source: &TableInfo, archive: &TableInfo) -> Vec<String> {
    let mut differences = Vec::new();
    for column in &source.columns {
        let Some(other) = archive.columns.iter().find(|c| c.name == column.name) else {
            differences.push(format!(
                "column `{}` is missing in the archive",
                column.name
            ));
            continue;
        };
        for (what, get) in ATTRIBUTES {
            let (mine, theirs) = (get(column), get(other));
            if mine != theirs {
                let show = |v: &str| {
                    if v.is_empty() {
                        "none".to_string()
                    } else {
                        v.to_string()
                    }
                };
                let verb = if what.is_empty() {
                    "is".to_string()
                } else {
                    format!("has {what}")
                };
                differences.push(format!(
                    "column `{}` {verb} {} in the source but {} in the archive",
                    column.name,
                    show(&mine),
                    show(&theirs)
                ));
            }
        }
    }
    for column in &archive.columns {
        if !source.columns.iter().any(|c| c.name == column.name) {
            differences.push(format!(
                "column `{}` exists in the archive but not in the source",
                column.name
            ));
        }
    }
    if source.key() != archive.key() {
        differences.push(format!(
            "the primary key is ({}) in the source but ({}) in the archive",
            source.key().join(", "),
            archive.key().join(", ")
        ));
    }
    differences
        .into_iter()
        .map(|d| format!("{d}; make the archive match the source column for column, e.g. CREATE TABLE archive LIKE source"))
        .collect()
}

/// Columns of the definition the job's user cannot see (column-level grants): they would not
/// be copied, and their archive values would not be compared.
pub(super) fn hidden_columns(info: &TableInfo, name: &TableName, role: &str) -> Option<String> {
    let hidden: Vec<String> = info
        .defined_columns
        .iter()
        .filter(|d| !info.columns.iter().any(|c| &c.name == *d))
        .map(|d| format!("`{d}`"))
        .collect();
    if !hidden.is_empty() && info.columns.is_empty() {
        return Some(format!(
            "the job's user may not read the {role} table {name} (no SELECT privilege: information_schema shows it none of its columns); grant SELECT on the whole table (GRANT SELECT ON {} TO ...; README, \"Minimal grants\")",
            sql::qualified(&name.schema, &name.table)
        ));
    }
    (!hidden.is_empty()).then(|| {
        format!(
            "the job's user cannot see column(s) {} of the {role} table {name} (column-level privileges): they would not be copied or compared; grant SELECT on the whole table (GRANT SELECT ON {} TO ...)",
            hidden.join(", "),
            sql::qualified(&name.schema, &name.table)
        )
    })
}

/// The primary key must exist and cover whole columns, in both tables.
pub(super) fn key_findings(info: &TableInfo, name: &TableName, role: &str) -> Vec<String> {
    match info.primary() {
        None => vec![format!(
            "{role} table {name} has no primary key; archiver walks tables in primary-key order and refuses a table without one (add a PRIMARY KEY first)"
        )],
        Some(primary) if primary.columns.iter().any(|(_, prefix)| *prefix > 0) => vec![format!(
            "the primary key of {role} table {name} is on a column prefix ({}): two different rows can share a key, so a copy could collide with a different row; use a primary key on whole columns",
            primary.describe()
        )],
        Some(primary) => primary
            .columns
            .iter()
            .filter_map(|(column, _)| info.columns.iter().find(|c| &c.name == column))
            .filter(|c| c.column_type.starts_with("float") || c.column_type.starts_with("double"))
            .map(|c| format!(
                "the primary key of {role} table {name} includes the floating-point column `{}` ({}): a batch ends at a key read back from the server, and approximate values cannot be carried and compared exactly, so archiver refuses floating-point keys; key the table on exact types (INT, DECIMAL, ...)",
                c.name, c.column_type
            ))
            .collect(),
    }
}

/// Unique keys of the archive that the source does not have exactly: a copied row could
/// collide with an archived row that is not its own.
pub(super) fn unique_key_findings(source: &TableInfo, archive: &TableInfo) -> Vec<String> {
    archive
        .indexes
        .iter()
        .filter(|i| i.unique && i.name != "PRIMARY")
        .filter(|i| {
            !source
                .indexes
                .iter()
                .any(|s| s.unique && s.columns == i.columns)
        })
        .map(|i| {
            format!(
                "the archive has UNIQUE key `{}` ({}) that the source lacks: rows that are distinct in the source could collide in the archive; drop it from the archive or add it to the source",
                i.name,
                i.describe()
            )
        })
        .collect()
}

/// Triggers the batch statements would fire: DELETE on the source, INSERT/UPDATE on the
/// archive. Refused unless listed in `[safety] allow_triggers`.
pub(super) fn trigger_findings(
    source: &TableInfo,
    source_name: &TableName,
    archive: &TableInfo,
    archive_name: &TableName,
    allowed: &[String],
) -> Vec<String> {
    let source_fired = source
        .triggers
        .iter()
        .filter(|t| t.event == "DELETE")
        .map(|t| {
            (
                t,
                source_name,
                "fires for every archived row and may change other tables",
            )
        });
    let archive_fired = archive
        .triggers
        .iter()
        .filter(|t| t.event == "INSERT" || t.event == "UPDATE")
        .map(|t| (t, archive_name, "may change or refuse the copies"));
    source_fired
        .chain(archive_fired)
        .filter(|(t, _, _)| !allowed.contains(&t.name))
        .map(|(t, table, why)| {
            format!(
                "trigger `{}` ({} {}) on {table} {why}; drop it while the job runs, or list it in [safety] allow_triggers if it is known to be harmless (a copy it changes is then reported as a conflict or a parked batch, never deleted)",
                t.name, t.timing, t.event
            )
        })
        .collect()
}

/// Foreign keys that reference the source (its deletes would cascade, set children to NULL,
/// or fail) and foreign keys of the source. Cascading ones are never allowed; the others only
/// when listed in `[safety] allow_foreign_keys`.
pub(super) fn foreign_key_findings(
    source: &TableInfo,
    name: &TableName,
    allowed: &[String],
) -> Vec<String> {
    let mut findings = Vec::new();
    for fk in &source.referenced_by {
        let rule = fk.delete_rule.as_str();
        let restrictive = matches!(rule, "RESTRICT" | "NO ACTION");
        if restrictive && allowed.contains(&fk.name) {
            continue;
        }
        findings.push(if restrictive {
            format!(
                "foreign key `{}` of {} references {name} (ON DELETE {rule}): a source row with child rows cannot be deleted, so its batch would fail on every run; archive {} first, or list `{}` in [safety] allow_foreign_keys to park such batches (exit 3) instead of refusing the job",
                fk.name, fk.other, fk.other, fk.name
            )
        } else {
            let rule = if rule.is_empty() { "a rule the job's user cannot see; grant it SELECT on the child table".to_string() } else { format!("ON DELETE {rule}") };
            format!(
                "foreign key `{}` of {} references {name} with {rule}: deleting archived rows would delete or change rows of {} that the archive never receives; this is never allowed: archive {} first (its own job), then drop the constraint or make it ON DELETE RESTRICT",
                fk.name, fk.other, fk.other, fk.other
            )
        });
    }
    for fk in &source.references {
        if !allowed.contains(&fk.name) {
            findings.push(format!(
                "foreign key `{}` of {name} references {}: archived rows keep a reference that the archive does not enforce; list `{}` in [safety] allow_foreign_keys to proceed (deleting from {name} never changes {})",
                fk.name, fk.other, fk.name, fk.other
            ));
        }
    }
    findings
}

/// Every finding of the comparison of the two tables, in the order they are listed: columns
/// the user cannot see, primary keys, definitions, archive unique keys, triggers, foreign keys.
pub(super) fn findings(source: &TableInfo, archive: &TableInfo, config: &JobConfig) -> Vec<String> {
    let (source_name, archive_name) = (&config.source.table, &config.archive.table);
    let hidden: Vec<String> = [
        hidden_columns(source, source_name, "source"),
        hidden_columns(archive, archive_name, "archive"),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Columns the user cannot see make every comparison of the definitions meaningless.
    let definitions_known = hidden.is_empty();
    let mut findings = hidden;
    findings.extend(key_findings(source, source_name, "source"));
    if source.primary().is_some() {
        findings.extend(key_findings(archive, archive_name, "archive"));
    }
    let differences = match definitions_known {
        true => table_differences(source, archive),
        false => Vec::new(),
    };
    if !differences.is_empty() {
        findings.push(format!(
            "archive table {archive_name} does not match source table {source_name}: {}",
            differences.join("; ")
        ));
    }
    findings.extend(unique_key_findings(source, archive));
    let safety = &config.safety;
    findings.extend(trigger_findings(
        source,
        source_name,
        archive,
        archive_name,
        &safety.allow_triggers,
    ));
    findings.extend(foreign_key_findings(
        source,
        source_name,
        &safety.allow_foreign_keys,
    ));
    findings
}
