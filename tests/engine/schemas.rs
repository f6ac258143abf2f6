//! Real schemas against the promise, one server (issue 6): names that collide with what the
//! statements could introduce, keys that do not round-trip naively, archive unique keys, column
//! definitions that would alter a copy, values the archive refuses, predicates that change under
//! the batch, and rows entering a batch's range while it runs. Every test snapshots every table
//! it touches and proves that nothing outside the job changed, no row was lost or altered, and
//! that a matching row left in the source is reported (exit 3 or 64, never 0).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::common::toml_string;

/// A job moving `source` to `archive` (each `table` or `database.table`) in `db`'s database.
fn job_for(
    sandbox: &Sandbox,
    db: &TestDb,
    source: &str,
    archive: &str,
    predicate: &str,
    extra: &str,
) -> Job {
    let job = Job::new(sandbox, db, predicate, extra);
    let text = std::fs::read_to_string(&job.config)
        .unwrap()
        .replacen(
            "table = \"src\"",
            &format!("table = {}", toml_string(source)),
            1,
        )
        .replacen(
            "table = \"arch\"",
            &format!("table = {}", toml_string(archive)),
            1,
        );
    std::fs::write(&job.config, text).unwrap();
    job
}

/// The events of type `kind` in the job's WAL, decoded from its bytes.
fn events_of(job: &Job, kind: &str) -> Vec<serde_json::Value> {
    job.events()
        .into_iter()
        .filter(|(t, _)| t == kind)
        .map(|(_, fields)| fields)
        .collect()
}

/// Regression (case 1): the delete's identity subquery aliased the archive `AS a`; with a
/// source table named `a`, the source columns it named resolved to the alias, the archive was
/// compared with itself, and a source row whose archive row differs was deleted (exit 0).
#[test]
fn table_names_like_aliases_or_keywords_keep_differing_rows() {
    let sandbox = common::sandbox();
    for (source, archive) in [
        ("a", "arch"),
        ("src", "a"),
        ("t", "a_t"),
        ("order", "select"),
        ("we`ird name", "a"),
        ("my.table", "tâble ünï ☃"),
        ("x", "arch.2024"),
    ] {
        let mut db = sandbox.fresh_database("alias");
        let (s, a) = (common::ident(source), common::ident(archive));
        // Columns named like the tables and aliases too: `a` is the key, `select` and `a.b`
        // hold values, `src` is compared like any other.
        db.exec(&format!(
            "CREATE TABLE {s} (`a` INT PRIMARY KEY, `select` VARCHAR(20) NOT NULL, `a.b` INT NULL, `src` CHAR(1) NULL)"
        ));
        db.exec(&format!(
            "INSERT INTO {s} SELECT seq, CONCAT('v', seq), seq, 'x' FROM seq_1_to_20"
        ));
        db.exec(&format!("CREATE TABLE {a} LIKE {s}"));
        // Under key 3 the archive holds a different row; under key 4 an identical one.
        db.exec(&format!(
            "INSERT INTO {a} VALUES (3, 'other', 3, 'x'), (4, 'v4', 4, 'x')"
        ));
        let original = db.checksum(source);
        // A name holding a dot is written quoted in the job file.
        let config_name = |name: &str| match name.contains('.') {
            true => common::ident(name),
            false => name.to_string(),
        };
        let job = job_for(
            &sandbox,
            &db,
            &config_name(source),
            &config_name(archive),
            "`a` <= 10",
            "batch_rows = 4",
        );
        let output = job.archiver("run", &[]);
        assert_exit(
            &output,
            3,
            &format!("{source} -> {archive}: conflict needs attention"),
        );
        let left: Vec<i32> = db.query_rows(&format!("SELECT `a` FROM {s} WHERE `a` <= 10"));
        assert_eq!(left, vec![3], "{source}: only the conflicting row stays");
        let kept: String = db.query_scalar(&format!("SELECT `select` FROM {s} WHERE `a` = 3"));
        assert_eq!(kept, "v3");
        let archived: String = db.query_scalar(&format!("SELECT `select` FROM {a} WHERE `a` = 3"));
        assert_eq!(
            archived, "other",
            "the archive's differing row is left as it was"
        );
        assert_eq!(
            db.query_scalar::<u64>(&format!("SELECT COUNT(*) FROM {a}")),
            10
        );
        // The rows outside the predicate are untouched; nothing was lost.
        assert_eq!(
            db.query_scalar::<u64>(&format!("SELECT COUNT(*) FROM {s} WHERE `a` > 10")),
            10
        );
        let union = db.checksum_union(source, archive);
        assert_eq!(
            union.0,
            original.0 + 1,
            "{source}: every row once, plus the archive's own"
        );
        let conflicts = events_of(&job, "ConflictFound");
        assert_eq!(conflicts.len(), 1, "{source}: {conflicts:?}");
    }
}

/// Case 1 across schemas: source and archive with the same table name in two databases.
#[test]
fn same_table_name_in_two_schemas_compares_the_right_tables() {
    let sandbox = common::sandbox();
    let mut db = sandbox.fresh_database("schema1");
    let mut other = sandbox.fresh_database("schema2");
    db.exec("CREATE TABLE t (k VARCHAR(10) PRIMARY KEY, v INT NOT NULL)");
    db.exec("INSERT INTO t SELECT CONCAT('k', seq), seq FROM seq_1_to_30");
    other.exec(&format!("CREATE TABLE t LIKE `{}`.t", db.name()));
    other.exec("INSERT INTO t VALUES ('k5', 500), ('k6', 6)");
    let original = db.checksum("t");
    let archive = format!("{}.t", other.name());
    let job = job_for(&sandbox, &db, "t", &archive, "v <= 10", "batch_rows = 3");
    assert_exit(&job.archiver("run", &[]), 3, "one conflict");
    let left: Vec<String> = db.query_rows("SELECT k FROM t WHERE v <= 10");
    assert_eq!(left, vec!["k5"]);
    assert_eq!(
        other.query_scalar::<i32>("SELECT v FROM t WHERE k = 'k5'"),
        500
    );
    assert_eq!(other.query_scalar::<u64>("SELECT COUNT(*) FROM t"), 10);
    let moved = db.checksum("t").0 + other.checksum("t").0;
    assert_eq!(moved, original.0 + 1);
}

/// Case 10: an AUTO_INCREMENT key holding 0 (or a negative value) is copied as it is. Without
/// NO_AUTO_VALUE_ON_ZERO the archive gave it a new id, the source row stayed, and a different
/// row was reported as a false conflict.
#[test]
fn auto_increment_zero_and_negative_keys_copy_as_they_are() {
    let sandbox = common::sandbox();
    for key_type in ["INT", "BIGINT", "SMALLINT"] {
        let mut db = sandbox.fresh_database("autozero");
        db.exec(&format!(
            "CREATE TABLE src (id {key_type} AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10) NOT NULL)"
        ));
        db.exec("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')");
        db.exec("INSERT INTO src VALUES (-5, 'minus'), (0, 'zero'), (1, 'one'), (2, 'two'), (7, 'seven')");
        db.exec("CREATE TABLE arch LIKE src");
        let original = db.checksum("src");
        let job = Job::new(&sandbox, &db, "id < 5", "batch_rows = 2");
        assert_success(&job.archiver("run", &[]), key_type);
        let archived: Vec<(i64, String)> = db.query_rows("SELECT id, v FROM arch ORDER BY id");
        assert_eq!(
            archived,
            vec![
                (-5, "minus".to_string()),
                (0, "zero".to_string()),
                (1, "one".to_string()),
                (2, "two".to_string())
            ],
            "{key_type}"
        );
        let left: Vec<i64> = db.query_rows("SELECT id FROM src");
        assert_eq!(left, vec![7], "{key_type}");
        assert_eq!(db.checksum_union("src", "arch"), original, "{key_type}");
        assert!(events_of(&job, "ConflictFound").is_empty(), "{key_type}");
    }
}

/// Case 7: a secondary UNIQUE key in the archive that an incoming row collides with was
/// swallowed by ON DUPLICATE KEY UPDATE: no conflict, no parked batch, exit 0. Now a unique
/// key the source lacks is refused, and a collision on one both have parks the batch.
#[test]
fn archive_unique_keys_never_swallow_a_row() {
    let sandbox = common::sandbox();
    let mut db = sandbox.fresh_database("uniq");
    db.exec(
        "CREATE TABLE src (id INT PRIMARY KEY, email VARCHAR(40) NOT NULL, code CHAR(6) NOT NULL,
         UNIQUE KEY u_email (email))",
    );
    db.exec(
        "INSERT INTO src SELECT seq, CONCAT('u', seq, '@x'), LPAD(seq, 6, '0') FROM seq_1_to_40",
    );
    db.exec("CREATE TABLE arch LIKE src");
    db.exec("ALTER TABLE arch ADD UNIQUE KEY u_code_prefix (code(3))");
    let job = Job::new(&sandbox, &db, "id <= 30", "batch_rows = 5");
    assert_refused(
        &job,
        &mut db,
        &["src", "arch"],
        &["UNIQUE key `u_code_prefix`", "drop it from the archive"],
    );

    // A unique key both tables have: an old archived row holds the email that source row 12
    // now uses. Its batch is parked, nothing of it is deleted; every other batch moves.
    db.exec("ALTER TABLE arch DROP KEY u_code_prefix");
    db.exec("INSERT INTO arch VALUES (1000, 'u12@x', 'old')");
    let archive_before: (u64, u64, u64) = db.checksum("arch");
    let source_before = db.checksum("src");
    let output = job.archiver("run", &[]);
    assert_exit(&output, 3, "a parked batch needs attention");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("parked"), "{stderr}");
    let left: Vec<i32> = db.query_rows("SELECT id FROM src WHERE id <= 30");
    assert_eq!(
        left,
        (11..=15).collect::<Vec<_>>(),
        "the colliding row's batch stays whole"
    );
    let old: String = db.query_scalar("SELECT email FROM arch WHERE id = 1000");
    assert_eq!(old, "u12@x", "the archive's own row is untouched");
    assert_eq!(db.query_scalar::<u64>("SELECT COUNT(*) FROM arch"), 26);
    let union = db.checksum_union("src", "arch");
    assert_eq!(
        union.0,
        source_before.0 + archive_before.0,
        "nothing lost or doubled"
    );
    let status = job.status();
    let problems = status["problem_batches"].to_string();
    assert!(problems.contains("Duplicate entry"), "{status}");
}

/// Keys on column prefixes cannot be walked exactly: refused in either table.
#[test]
fn primary_keys_on_a_column_prefix_are_refused() {
    let sandbox = common::sandbox();
    for (source_key, archive_key) in [("code", "code(4)"), ("code(4)", "code(4)")] {
        let mut db = sandbox.fresh_database("prefix");
        db.exec(&format!(
            "CREATE TABLE src (code VARCHAR(20) NOT NULL, v INT, PRIMARY KEY ({source_key}))"
        ));
        db.exec("INSERT INTO src SELECT CONCAT(seq, 'abcd'), seq FROM seq_1_to_10");
        db.exec(&format!(
            "CREATE TABLE arch (code VARCHAR(20) NOT NULL, v INT, PRIMARY KEY ({archive_key}))"
        ));
        let job = Job::new(&sandbox, &db, "v < 5", "");
        assert_refused(
            &job,
            &mut db,
            &["src", "arch"],
            &["column prefix", "`code`(4)"],
        );
    }
}

/// Tables a DELETE does not remove rows from, or without transactions, are refused on either
/// side: a system-versioned table (the row stays in its history), a view, MyISAM and Aria. A
/// partitioned InnoDB table is an ordinary table and moves.
#[test]
fn table_kinds_without_transactions_or_real_deletes_are_refused() {
    let sandbox = common::sandbox();
    for (source, archive, fragment) in [
        (
            "CREATE TABLE src (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING",
            "CREATE TABLE arch (id INT PRIMARY KEY, v INT)",
            "src is a system-versioned table",
        ),
        (
            "CREATE TABLE src (id INT PRIMARY KEY, v INT)",
            "CREATE TABLE arch (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING",
            "arch is a system-versioned table",
        ),
        (
            "CREATE TABLE src (id INT PRIMARY KEY, v INT) ENGINE=MyISAM",
            "CREATE TABLE arch (id INT PRIMARY KEY, v INT)",
            "engine \"MyISAM\"",
        ),
        (
            "CREATE TABLE src (id INT PRIMARY KEY, v INT)",
            "CREATE TABLE arch (id INT PRIMARY KEY, v INT) ENGINE=Aria",
            "engine \"Aria\"",
        ),
        (
            "CREATE TABLE base (id INT PRIMARY KEY, v INT)",
            "CREATE TABLE arch (id INT PRIMARY KEY, v INT)",
            "is a VIEW",
        ),
    ] {
        let mut db = sandbox.fresh_database("kinds");
        db.exec(source);
        db.exec(archive);
        let tables: &[&str] = if source.contains("base") {
            db.exec("INSERT INTO base SELECT seq, seq FROM seq_1_to_10");
            db.exec("CREATE VIEW src AS SELECT * FROM base");
            &["base", "arch"]
        } else {
            db.exec("INSERT INTO src SELECT seq, seq FROM seq_1_to_10");
            &["src", "arch"]
        };
        let job = Job::new(&sandbox, &db, "id < 5", "");
        assert_refused(&job, &mut db, tables, &[fragment]);
    }
    let mut db = sandbox.fresh_database("partitioned");
    db.exec("CREATE TABLE src (id INT PRIMARY KEY, v INT) PARTITION BY HASH (id) PARTITIONS 3");
    db.exec("INSERT INTO src SELECT seq, seq FROM seq_1_to_30");
    db.exec("CREATE TABLE arch (id INT PRIMARY KEY, v INT) PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN MAXVALUE)");
    let original = db.checksum("src");
    let job = Job::new(&sandbox, &db, "id <= 20", "batch_rows = 4");
    assert_success(&job.archiver("run", &[]), "partitioned tables");
    assert_moved(&mut db, "id <= 20", original, 20);
}

/// Cases 4 and 6: column definitions under which a copy is not the same value: another
/// character set or collation, another generation expression or kind, another visibility.
#[test]
fn column_definitions_that_would_alter_a_copy_are_refused() {
    let sandbox = common::sandbox();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "MODIFY note VARCHAR(40) CHARACTER SET latin1 NULL",
            "ignored",
            &["column `note` has character set utf8mb4 in the source but latin1 in the archive"],
        ),
        (
            "MODIFY note VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL",
            "ignored",
            &["column `note` has collation utf8mb4_unicode_ci in the source but utf8mb4_bin"],
        ),
        (
            "MODIFY doubled INT AS (n * 3) VIRTUAL",
            "ignored",
            &["column `doubled` has generation expression"],
        ),
        (
            "DROP COLUMN doubled, ADD COLUMN doubled INT AS (n * 2) STORED",
            "ignored",
            &["column `doubled` has generated kind VIRTUAL GENERATED in the source but STORED"],
        ),
        (
            "MODIFY n INT NULL INVISIBLE",
            "ignored",
            &["column `n` has visibility visible in the source but INVISIBLE"],
        ),
        (
            "MODIFY kind ENUM('new','old','gone') NOT NULL",
            "ignored",
            &["column `kind` is enum('new','old') in the source but enum('new','old','gone')"],
        ),
    ];
    for (alter, _, fragments) in cases {
        let mut db = sandbox.fresh_database("coldef");
        db.exec(
            "CREATE TABLE src (id INT PRIMARY KEY, n INT NULL,
             note VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
             kind ENUM('new','old') NOT NULL, doubled INT AS (n * 2) VIRTUAL)",
        );
        db.exec(
            "INSERT INTO src (id, n, note, kind) SELECT seq, seq, 'ünï €', 'old' FROM seq_1_to_20",
        );
        db.exec("CREATE TABLE arch LIKE src");
        db.exec(&format!("ALTER TABLE arch {alter}"));
        let job = Job::new(&sandbox, &db, "id <= 10", "");
        assert_refused(&job, &mut db, &["src", "arch"], fragments);
    }
}

/// Smaller case: a value the archive refuses (an ENUM's '' error value, stored in the source
/// by a non-strict session, travelling to an archive reached through its own connection)
/// parks its batch (exit 3); it was classed fatal, so every run stopped with exit 1. On one
/// server the same row copies inside the server, as it is.
#[test]
fn a_value_the_archive_refuses_parks_its_batch() {
    let sandbox = common::sandbox();
    let create = "CREATE TABLE src (id INT PRIMARY KEY, kind ENUM('a','b') NOT NULL)";
    let mut db = sandbox.fresh_database("enumbad");
    let mut archive_db = sandbox.fresh_database("enumbad_arch");
    db.exec(create);
    archive_db.exec(&create.replace("src", "arch"));
    db.exec("SET SESSION sql_mode = ''");
    db.exec("INSERT INTO src VALUES (1,'a'),(2,'b'),(3,'a'),(4,'zzz'),(5,'b'),(6,'a')");
    assert_eq!(
        db.query_scalar::<String>("SELECT kind FROM src WHERE id = 4"),
        ""
    );
    let original = db.checksum("src");
    let job = super::cross::cross_job(&sandbox, &db, &archive_db, "id <= 6", "batch_rows = 2");
    let output = job.archiver("run", &[]);
    assert_exit(&output, 3, "parked, not fatal");
    let left: Vec<i32> = db.query_rows("SELECT id FROM src ORDER BY id");
    assert_eq!(left, vec![3, 4], "only the refused row's batch stays");
    let moved: Vec<i32> = archive_db.query_rows("SELECT id FROM arch ORDER BY id");
    assert_eq!(moved, vec![1, 2, 5, 6]);
    let union = super::cross::union(db.checksum("src"), archive_db.checksum("arch"));
    assert_eq!(union, original);
    let status = job.status();
    assert!(
        status["problem_batches"].to_string().contains("parked"),
        "{status}"
    );
}

/// Smaller case: a predicate that is not deterministic, or that reads the archive, selects
/// different rows in a batch's plan, copy and delete, and left rows in both tables. Refused.
#[test]
fn predicates_that_change_under_the_batch_are_refused() {
    let sandbox = common::sandbox();
    let cases: &[(&str, &str)] = &[
        ("RAND() < 0.5", "RAND()"),
        ("happened < '2024-01-02' AND rand () > 0.1", "RAND()"),
        ("LENGTH(UUID()) > 0 AND tenant = 1", "UUID()"),
        ("happened < SYSDATE() - INTERVAL 1 YEAR", "SYSDATE()"),
        (
            "tenant = 1 AND code NOT IN (SELECT code FROM arch)",
            "archive table `arch`",
        ),
        (
            "NOT EXISTS (SELECT 1 FROM `arch` x WHERE x.code = src.code)",
            "archive table `arch`",
        ),
        ("tenant < @cutoff", "user variable @cutoff"),
    ];
    for (predicate, fragment) in cases {
        let mut db = mixed_db(&sandbox, "pred", 200);
        let job = Job::new(&sandbox, &db, predicate, "");
        assert_refused(&job, &mut db, &["src", "arch"], &[fragment]);
    }
    // A stored function not declared DETERMINISTIC is refused, however it is called.
    for call in [
        "coin_flip(tenant)",
        "`Coin_Flip` (tenant)",
        "{db}.coin_flip(tenant)",
    ] {
        let mut db = mixed_db(&sandbox, "pred_fn", 200);
        db.exec(
            "CREATE FUNCTION coin_flip(t INT) RETURNS INT NOT DETERMINISTIC NO SQL RETURN RAND() < 0.5",
        );
        let predicate = format!("tenant < 3 AND {}", call.replace("{db}", db.name()));
        let job = Job::new(&sandbox, &db, &predicate, "");
        assert_refused(
            &job,
            &mut db,
            &["src", "arch"],
            &[
                "calls the stored function `",
                "`coin_flip`, which is not declared DETERMINISTIC",
            ],
        );
    }
    // One declared DETERMINISTIC is trusted (the declaration is the operator's word).
    let mut db = mixed_db(&sandbox, "pred_det", 200);
    db.exec("CREATE FUNCTION tenant_is_old(t INT) RETURNS INT DETERMINISTIC NO SQL RETURN t < 3");
    let predicate = "tenant_is_old(tenant) AND happened < '2024-01-02'";
    let matching = count_matching(&mut db, predicate);
    assert!(matching > 0);
    let original = db.checksum("src");
    let job = Job::new(&sandbox, &db, predicate, "");
    assert_success(&job.archiver("run", &[]), "deterministic stored function");
    assert_moved(&mut db, predicate, original, matching);

    // NOW() is pinned per run, and a string that mentions RAND() is no call: both accepted.
    let mut db = mixed_db(&sandbox, "pred_ok", 200);
    let predicate = "happened < NOW() AND COALESCE(label, 'RAND()') <> 'UUID()'";
    let matching = count_matching(&mut db, predicate);
    let original = db.checksum("src");
    let job = Job::new(&sandbox, &db, predicate, "");
    assert_success(&job.archiver("run", &[]), "deterministic predicate");
    assert_moved(&mut db, predicate, original, matching);
}

/// Case 8: rows entering a batch's key range while it runs made the deleted and locked counts
/// agree although a locked row was kept, so its conflict was never looked for (exit 0). Now
/// the locked rows left are always asked for: every planted conflict is reported, whatever
/// other clients insert meanwhile, and no row leaves the source without its identical copy.
#[test]
fn rows_entering_the_range_do_not_hide_a_conflict() {
    let sandbox = common::sandbox();
    let mut db = sandbox.fresh_database("enter");
    db.exec("CREATE TABLE src (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)");
    // Odd keys now; the writer fills in even keys while the job runs.
    db.exec("INSERT INTO src SELECT seq * 2 - 1, CONCAT('v', seq) FROM seq_1_to_2000");
    db.exec("CREATE TABLE arch LIKE src");
    db.exec("INSERT INTO arch SELECT id, 'different' FROM src WHERE id % 200 = 1");
    let planted: Vec<i32> = db.query_rows("SELECT id FROM arch ORDER BY id");
    assert_eq!(planted.len(), 20);
    let job = Job::new(&sandbox, &db, "id > 0", "batch_rows = 50");
    let opts = db.opts();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            use mysql_async::prelude::Queryable;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = mysql_async::Conn::new(opts).await.unwrap();
                let mut inserted = Vec::new();
                let mut id = 2;
                while !stop.load(Ordering::SeqCst) && id < 4000 {
                    if conn
                        .exec_drop("INSERT INTO src VALUES (?, 'new')", (id,))
                        .await
                        .is_ok()
                    {
                        inserted.push(id);
                    }
                    id += 2;
                }
                inserted
            })
        })
    };
    let output = job.archiver("run", &[]);
    stop.store(true, Ordering::SeqCst);
    let inserted = writer.join().unwrap();
    assert_exit(&output, 3, "conflicts need attention");
    let mut reported: Vec<i64> = events_of(&job, "ConflictFound")
        .iter()
        .map(|c| {
            c["key"][0]["Int"]
                .as_i64()
                .or(c["key"][0]["UInt"].as_i64())
                .unwrap()
        })
        .collect();
    reported.sort();
    reported.dedup();
    assert_eq!(
        reported,
        planted.iter().map(|&k| i64::from(k)).collect::<Vec<_>>()
    );
    // The planted rows stay in the source, unchanged; each key is in exactly one table except
    // the planted ones, which are in both (two different rows).
    let kept: Vec<i32> =
        db.query_rows("SELECT s.id FROM src s JOIN arch a USING (id) ORDER BY s.id");
    assert_eq!(kept, planted);
    let source_odd_new: u64 =
        db.query_scalar("SELECT COUNT(*) FROM src WHERE id % 2 = 1 AND v = 'new'");
    assert_eq!(source_odd_new, 0);
    let total: u64 =
        db.query_scalar("SELECT (SELECT COUNT(*) FROM src) + (SELECT COUNT(*) FROM arch)");
    assert_eq!(
        total,
        2000 + inserted.len() as u64 + 20,
        "nothing lost or doubled"
    );
    let differing: u64 =
        db.query_scalar("SELECT COUNT(*) FROM arch a JOIN src s USING (id) WHERE a.v <> s.v");
    assert_eq!(differing, 20);
}
