use super::compare::{
    foreign_key_findings, hidden_columns, key_findings, table_differences, trigger_findings,
    unique_key_findings,
};
use super::predicate::{predicate_findings, sql_mode_findings};
use super::server::same_table;
use super::tables::{
    defined_columns, ColumnInfo, ForeignKeyInfo, IndexInfo, TableInfo, TriggerInfo,
};
use super::wal_dir::wal_dir_findings;
use crate::config::TableName;

fn column(name: &str, column_type: &str, nullable: bool) -> ColumnInfo {
    ColumnInfo {
        name: name.into(),
        column_type: column_type.into(),
        nullable,
        ..ColumnInfo::default()
    }
}

fn text(name: &str, charset: &str, collation: &str) -> ColumnInfo {
    ColumnInfo {
        text: true,
        charset: charset.into(),
        collation: collation.into(),
        ..column(name, "varchar(20)", true)
    }
}

fn index(name: &str, unique: bool, columns: &[(&str, u32)]) -> IndexInfo {
    IndexInfo {
        name: name.into(),
        unique,
        columns: columns.iter().map(|(c, p)| (c.to_string(), *p)).collect(),
    }
}

fn table(columns: Vec<ColumnInfo>, indexes: Vec<IndexInfo>) -> TableInfo {
    TableInfo {
        defined_columns: columns.iter().map(|c| c.name.clone()).collect(),
        columns,
        indexes,
        ..TableInfo::default()
    }
}

fn name(table: &str) -> TableName {
    TableName {
        schema: "db".into(),
        table: table.into(),
    }
}

#[test]
fn every_table_difference_is_listed() {
    let generated = |expression: &str| ColumnInfo {
        generated: "VIRTUAL".into(),
        expression: expression.into(),
        ..column("g", "int(11)", true)
    };
    let source = table(
        vec![
            column("id", "bigint(20) unsigned", false),
            column("amount", "decimal(12,2)", true),
            column("note", "varchar(255)", true),
            text("name", "utf8mb4", "utf8mb4_general_ci"),
            text("code", "utf8mb4", "utf8mb4_general_ci"),
            generated("`amount` * 2"),
            column("kind", "enum('a','b')", false),
            ColumnInfo {
                invisible: true,
                ..column("hidden", "int(11)", true)
            },
        ],
        vec![index("PRIMARY", true, &[("id", 0)])],
    );
    let archive = table(
        vec![
            column("id", "bigint(20) unsigned", false),
            column("amount", "decimal(10,2)", false),
            column("extra", "int(11)", true),
            text("name", "latin1", "latin1_swedish_ci"),
            text("code", "utf8mb4", "utf8mb4_bin"),
            generated("`amount` * 3"),
            column("kind", "enum('a','b','c')", false),
            column("hidden", "int(11)", true),
        ],
        vec![index("PRIMARY", true, &[("id", 0), ("amount", 0)])],
    );
    let found = table_differences(&source, &archive);
    let expected = [
        "column `amount` is decimal(12,2) in the source but decimal(10,2) in the archive",
        "column `amount` is NULL in the source but NOT NULL in the archive",
        "column `note` is missing in the archive",
        "column `name` has character set utf8mb4 in the source but latin1 in the archive",
        "column `name` has collation utf8mb4_general_ci in the source but latin1_swedish_ci",
        "column `code` has collation utf8mb4_general_ci in the source but utf8mb4_bin",
        "column `g` has generation expression `amount` * 2 in the source but `amount` * 3",
        "column `kind` is enum('a','b') in the source but enum('a','b','c') in the archive",
        "column `hidden` has visibility INVISIBLE in the source but visible in the archive",
        "column `extra` exists in the archive but not in the source",
        "the primary key is (id) in the source but (id, amount) in the archive",
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (found, expected) in found.iter().zip(expected) {
        assert!(
            found.starts_with(expected),
            "{found:?} should start with {expected:?}"
        );
    }
    assert!(table_differences(&source, &source).is_empty());
}

#[test]
fn hidden_columns_are_found_from_the_definition() {
    let create = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `we``ird` int(11) DEFAULT NULL,\n  `secret` varchar(10) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `k` (`secret`)\n) ENGINE=InnoDB";
    assert_eq!(defined_columns(create), vec!["id", "we`ird", "secret"]);
    let mut info = table(vec![column("id", "int(11)", false)], vec![]);
    info.defined_columns = defined_columns(create);
    let finding = hidden_columns(&info, &name("t"), "source").expect("hidden columns");
    assert!(finding.contains("`we`ird`, `secret`"), "{finding}");
    assert!(
        finding.contains("grant SELECT on the whole table"),
        "{finding}"
    );
}

#[test]
fn keys_must_be_whole_columns_and_archive_unique_keys_must_exist_in_the_source() {
    let prefixed = table(vec![], vec![index("PRIMARY", true, &[("code", 10)])]);
    assert!(
        key_findings(&prefixed, &name("t"), "archive")[0].contains("column prefix (`code`(10))")
    );
    let none = table(vec![], vec![]);
    assert!(key_findings(&none, &name("t"), "source")[0].contains("has no primary key"));
    let source = table(
        vec![],
        vec![
            index("PRIMARY", true, &[("id", 0)]),
            index("u_email", true, &[("email", 0)]),
        ],
    );
    let archive = table(
        vec![],
        vec![
            index("PRIMARY", true, &[("id", 0)]),
            index("u_email_archive", true, &[("email", 0)]),
            index("u_code", true, &[("code", 0)]),
            index("k_code", false, &[("user", 0)]),
        ],
    );
    let found = unique_key_findings(&source, &archive);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("UNIQUE key `u_code` (`code`)"),
        "{found:?}"
    );
}

#[test]
fn triggers_that_would_fire_are_refused_unless_allowed_by_name() {
    let trigger = |name: &str, event: &str| TriggerInfo {
        name: name.into(),
        event: event.into(),
        timing: "AFTER".into(),
    };
    let mut source = table(vec![], vec![]);
    source.triggers = vec![trigger("audit_del", "DELETE"), trigger("src_ins", "INSERT")];
    let mut archive = table(vec![], vec![]);
    archive.triggers = vec![
        trigger("rekey", "INSERT"),
        trigger("touch", "UPDATE"),
        trigger("arch_del", "DELETE"),
    ];
    let found = trigger_findings(&source, &name("s"), &archive, &name("a"), &[]);
    let named: Vec<bool> = ["audit_del", "rekey", "touch"]
        .iter()
        .map(|t| found.iter().any(|f| f.contains(&format!("`{t}`"))))
        .collect();
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_eq!(named, vec![true, true, true]);
    let allowed = vec!["audit_del".to_string(), "rekey".to_string()];
    let found = trigger_findings(&source, &name("s"), &archive, &name("a"), &allowed);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("`touch`"));
}

#[test]
fn cascading_foreign_keys_are_never_allowed() {
    let fk = |name: &str, rule: &str| ForeignKeyInfo {
        name: name.into(),
        other: "db.child".into(),
        delete_rule: rule.into(),
    };
    let mut source = table(vec![], vec![]);
    source.referenced_by = vec![
        fk("c_cascade", "CASCADE"),
        fk("c_null", "SET NULL"),
        fk("c_restrict", "RESTRICT"),
        fk("c_unseen", ""),
    ];
    source.references = vec![ForeignKeyInfo {
        other: "db.parent".into(),
        ..fk("to_parent", "")
    }];
    let all: Vec<String> = ["c_cascade", "c_null", "c_restrict", "c_unseen", "to_parent"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(foreign_key_findings(&source, &name("src"), &[]).len(), 5);
    let left = foreign_key_findings(&source, &name("src"), &all);
    assert_eq!(left.len(), 3, "{left:#?}");
    assert!(
        left.iter().all(|f| f.contains("never allowed")),
        "{left:#?}"
    );
}

#[test]
fn non_deterministic_predicates_are_found_outside_strings_and_comments() {
    let archive = name("arch");
    let cases: &[(&str, &[&str])] = &[
        ("created_at < NOW() - INTERVAL 90 DAY", &[]),
        ("RAND() < 0.5", &["RAND()"]),
        ("id % 2 = 0 AND uuid () IS NOT NULL", &["UUID()"]),
        ("created_at < SYSDATE()", &["SYSDATE()"]),
        ("note = 'RAND()' AND x = \"sysdate()\" -- rand()\n", &[]),
        ("/* uuid() */ id > 3 # sysdate()", &[]),
        ("`rand` > 3", &[]),
        ("id < @cut", &["user variable @cut"]),
        ("@@time_zone = 'UTC' AND id > 1", &[]),
        ("id IN (SELECT id FROM arch)", &["archive table `arch`"]),
        ("id IN (SELECT id FROM `arch`)", &["archive table `arch`"]),
        ("id < NEXT VALUE FOR s1", &["sequence"]),
        ("archived = 0", &[]),
    ];
    for (predicate, expected) in cases {
        let found = predicate_findings(predicate, Some(&archive), &[]);
        assert_eq!(found.len(), expected.len(), "{predicate}: {found:#?}");
        for (f, e) in found.iter().zip(expected.iter()) {
            assert!(f.contains(e), "{predicate}: {f}");
        }
    }
    // With the archive on its own server, a table of that name on the source is another one.
    assert!(predicate_findings("id IN (SELECT id FROM arch)", None, &[]).is_empty());
    assert!(
        predicate_findings("id IN (SELECT id FROM other.arch)", Some(&archive), &[]).is_empty()
    );
    assert!(predicate_findings("id IN (SELECT x.arch FROM t x)", Some(&archive), &[]).is_empty());
    // A source column spelled like the archive table is a column, except where only a
    // table can stand.
    let columns = ["id".to_string(), "ARCH".to_string()];
    for (predicate, refused) in [
        ("arch = 0", false),
        ("src.arch = 0 AND `arch` > 1", false),
        ("id IN (SELECT id FROM arch)", true),
        (
            "id IN (SELECT 1 FROM src s JOIN `arch` x ON x.id = s.id)",
            true,
        ),
        ("EXISTS (SELECT 1 FROM dual WHERE arch.id = 1)", true),
        ("id IN (SELECT id FROM db.arch)", true),
        ("id IN (SELECT id FROM other.arch)", false),
        ("id IN (SELECT id FROM `db` . `arch`)", true),
    ] {
        let found = predicate_findings(predicate, Some(&archive), &columns);
        assert_eq!(!found.is_empty(), refused, "{predicate}: {found:#?}");
    }
}

#[test]
fn predicates_read_differently_under_the_servers_sql_mode_are_found() {
    let default = "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";
    let ansi = "REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI";
    for (mode, predicate, expected) in [
        (default, "\"status\" = 'done' AND a || b", 0),
        (ansi, "status = 'done'", 0),
        (ansi, "\"status\" = 'done'", 1),
        (ansi, "a || b", 1),
        (ansi, "note = 'a||b'", 0),
        ("NO_BACKSLASH_ESCAPES", "note LIKE 'a\\_%'", 1),
        ("PIPES_AS_CONCAT,ANSI_QUOTES,ORACLE", "id < 5", 1),
    ] {
        let found = sql_mode_findings(mode, predicate);
        assert_eq!(found.len(), expected, "{mode} / {predicate}: {found:#?}");
    }
}

#[test]
fn one_table_under_two_spellings_is_found_where_the_server_ignores_case() {
    let (lower, upper) = (name("orders"), name("Orders"));
    assert!(!same_table(&lower, &upper, 0));
    assert!(same_table(&lower, &upper, 1));
    assert!(same_table(&lower, &upper, 2));
    assert!(same_table(&lower, &lower, 0));
    assert!(!same_table(&lower, &name("orders_archive"), 1));
}

#[test]
fn wal_dir_must_be_a_writable_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(wal_dir_findings(&dir.path().join("new/wal")), None);
    assert_eq!(wal_dir_findings(dir.path()), None);
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(wal_dir_findings(&file)
        .unwrap()
        .contains("is not a directory"));
    assert!(wal_dir_findings(&file.join("wal"))
        .unwrap()
        .contains("cannot be created"));
}
