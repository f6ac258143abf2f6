//! The schema-safety pre-flight against what the statements would touch outside the job (issue
//! 6, cases 2, 5 and 11, and the pre-flight findings): foreign keys in both directions,
//! triggers on either table, the job user's privileges (minimal grants, each one missing,
//! column-level grants), hidden columns and the WAL directory. Every test snapshots every table
//! involved, child and audit tables included: a refused job changes nothing and writes no WAL;
//! an allowed one moves exactly what it should, and a matching row it leaves is reported (exit 3),
//! never passed over with exit 0.

use super::*;

/// `src` (id, v) with ids 1..=`rows`, and `arch` like it.
fn simple_tables(db: &mut TestDb, rows: u32) {
    db.exec("CREATE TABLE src (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL, n INT NULL)");
    if rows > 0 {
        db.exec(&format!(
            "INSERT INTO src SELECT seq, CONCAT('v', seq), seq * 10 FROM seq_1_to_{rows}"
        ));
    }
    db.exec("CREATE TABLE arch LIKE src");
}

/// Appends `[safety]` lines to a job's `[job]` extra text.
fn with_safety(job_extra: &str, safety: &str) -> String {
    format!("{job_extra}\n\n[safety]\n{safety}")
}

/// Case 2: foreign keys referencing the source. CASCADE and SET NULL deleted or nulled child
/// rows outside the job (exit 0); RESTRICT failed the same batch on every run (exit 1).
#[test]
fn foreign_keys_referencing_the_source_are_refused_and_cascades_never_allowed() {
    let sandbox = common::sandbox();
    for (rule, constraint) in [
        ("CASCADE", "fk_lines_order"),
        ("SET NULL", "child_nulls"),
        ("RESTRICT", "restricts"),
        ("NO ACTION", "Weird Name"),
    ] {
        let mut db = sandbox.fresh_database("fk_to");
        simple_tables(&mut db, 30);
        db.exec(&format!(
            "CREATE TABLE child (cid INT PRIMARY KEY, order_id INT NULL,
             CONSTRAINT `{constraint}` FOREIGN KEY (order_id) REFERENCES src (id) ON DELETE {rule})"
        ));
        db.exec("INSERT INTO child VALUES (1, 3), (2, 12), (3, 25)");
        let job = Job::new(&sandbox, &db, "id <= 20", "batch_rows = 5");
        assert_refused(
            &job,
            &mut db,
            &["src", "arch", "child"],
            &[
                &format!("foreign key `{constraint}`"),
                &format!("ON DELETE {rule}"),
            ],
        );
        // Listing it changes nothing for the cascading rules: they can never be allowed.
        if matches!(rule, "CASCADE" | "SET NULL") {
            let allowed = Job::new(
                &sandbox,
                &db,
                "id <= 20",
                &with_safety(
                    "batch_rows = 5",
                    &format!("allow_foreign_keys = [{constraint:?}]"),
                ),
            );
            assert_refused(
                &allowed,
                &mut db,
                &["src", "arch", "child"],
                &["this is never allowed"],
            );
        }
    }
}

/// An allowed RESTRICT / NO ACTION foreign key: rows without children move; a batch holding a
/// row with children is parked (exit 3, every run), the child table and the parent row stay.
#[test]
fn an_allowed_restricting_foreign_key_parks_only_the_batches_with_children() {
    let sandbox = common::sandbox();
    for rule in ["RESTRICT", "NO ACTION"] {
        let mut db = sandbox.fresh_database("fk_park");
        simple_tables(&mut db, 40);
        db.exec(&format!(
            "CREATE TABLE child (cid INT PRIMARY KEY, order_id INT NOT NULL,
             CONSTRAINT keep_orders FOREIGN KEY (order_id) REFERENCES src (id) ON DELETE {rule})"
        ));
        // Children under ids 7 (batch 2: ids 6..10) and 23 (batch 5: ids 21..25).
        db.exec("INSERT INTO child VALUES (1, 7), (2, 23), (3, 35)");
        let child_before = db.checksum("child");
        let original = db.checksum("src");
        let job = Job::new(
            &sandbox,
            &db,
            "id <= 30",
            &with_safety(
                "batch_rows = 5\nattempts_max = 2",
                "allow_foreign_keys = [\"keep_orders\"]",
            ),
        );
        for (round, parked_so_far) in [("first run", 2), ("second run", 4)] {
            let output = job.archiver("run", &[]);
            assert_exit(&output, 3, &format!("{rule}: {round}"));
            let left: Vec<i32> = db.query_rows("SELECT id FROM src WHERE id <= 30 ORDER BY id");
            assert_eq!(
                left,
                vec![6, 7, 8, 9, 10, 21, 22, 23, 24, 25],
                "{rule}: {round}: exactly the two parked batches stay"
            );
            assert_eq!(
                db.checksum("child"),
                child_before,
                "{rule}: children untouched"
            );
            assert_eq!(
                db.checksum_union("src", "arch"),
                original,
                "{rule}: nothing lost or doubled"
            );
            // Each run plans the rows still matching afresh: the same two row ranges park
            // again, as new batches, each with the constraint's error.
            let status = job.status();
            let parked: Vec<_> = status["problem_batches"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert_eq!(parked.len(), parked_so_far, "{rule}: {round}: {status}");
            for batch in &parked {
                let message = batch["last_error"]["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("(1451)") && message.contains("keep_orders"),
                    "{rule}: {message}"
                );
            }
        }
    }
}

/// Foreign keys of the source (to a parent): refused unless allowed by name; allowed, the job
/// moves every matching row and the parent table is unchanged.
#[test]
fn foreign_keys_of_the_source_are_refused_unless_allowed() {
    let sandbox = common::sandbox();
    let mut db = sandbox.fresh_database("fk_from");
    db.exec("CREATE TABLE customer (cust INT PRIMARY KEY, name VARCHAR(10))");
    db.exec("INSERT INTO customer SELECT seq, CONCAT('c', seq) FROM seq_1_to_5");
    db.exec(
        "CREATE TABLE src (id INT PRIMARY KEY, cust INT NOT NULL, note VARCHAR(10),
         CONSTRAINT src_customer FOREIGN KEY (cust) REFERENCES customer (cust))",
    );
    db.exec("INSERT INTO src SELECT seq, 1 + seq % 5, 'x' FROM seq_1_to_50");
    db.exec("CREATE TABLE arch (id INT PRIMARY KEY, cust INT NOT NULL, note VARCHAR(10))");
    let job = Job::new(&sandbox, &db, "id <= 30", "batch_rows = 7");
    assert_refused(
        &job,
        &mut db,
        &["src", "arch", "customer"],
        &["foreign key `src_customer`", "allow_foreign_keys"],
    );
    let parent = db.checksum("customer");
    let original = db.checksum("src");
    let job = Job::new(
        &sandbox,
        &db,
        "id <= 30",
        &with_safety("batch_rows = 7", "allow_foreign_keys = [\"src_customer\"]"),
    );
    assert_success(
        &job.archiver("run", &[]),
        "allowed foreign key of the source",
    );
    assert_eq!(
        db.query_scalar::<u64>("SELECT COUNT(*) FROM src WHERE id <= 30"),
        0
    );
    assert_eq!(db.query_scalar::<u64>("SELECT COUNT(*) FROM arch"), 30);
    assert_eq!(db.checksum_union("src", "arch"), original);
    assert_eq!(
        db.checksum("customer"),
        parent,
        "the parent table is unchanged"
    );
}

/// Case 11: triggers the statements fire. A source DELETE trigger fired with no warning; an
/// archive BEFORE INSERT trigger that changed the key left rows behind with exit 0.
#[test]
fn triggers_the_job_would_fire_are_refused_unless_allowed() {
    let sandbox = common::sandbox();
    let cases: &[(&str, &str)] = &[
        (
            "audit_src_delete",
            "CREATE TRIGGER audit_src_delete AFTER DELETE ON src FOR EACH ROW
             INSERT INTO audit VALUES (OLD.id, 'deleted')",
        ),
        (
            "BeforeDel",
            "CREATE TRIGGER BeforeDel BEFORE DELETE ON src FOR EACH ROW SET @x = OLD.id",
        ),
        (
            "rekey",
            "CREATE TRIGGER rekey BEFORE INSERT ON arch FOR EACH ROW SET NEW.id = NEW.id + 1000",
        ),
        (
            "stamp",
            "CREATE TRIGGER stamp AFTER INSERT ON arch FOR EACH ROW INSERT INTO audit VALUES (NEW.id, 'copied')",
        ),
        (
            "arch_upd",
            "CREATE TRIGGER arch_upd BEFORE UPDATE ON arch FOR EACH ROW SET NEW.n = 0",
        ),
    ];
    for (name, create) in cases {
        let mut db = sandbox.fresh_database("trig");
        simple_tables(&mut db, 20);
        db.exec("CREATE TABLE audit (id INT, what VARCHAR(10))");
        db.exec(create);
        let job = Job::new(&sandbox, &db, "id <= 10", "batch_rows = 3");
        assert_refused(
            &job,
            &mut db,
            &["src", "arch", "audit"],
            &[&format!("trigger `{name}`"), "allow_triggers"],
        );
    }
}

/// Triggers the job never fires (INSERT or UPDATE on the source, DELETE on the archive) are
/// not refused.
#[test]
fn triggers_the_job_never_fires_are_not_refused() {
    let sandbox = common::sandbox();
    let mut db = sandbox.fresh_database("trig_ok");
    simple_tables(&mut db, 20);
    db.exec("CREATE TABLE audit (id INT, what VARCHAR(10))");
    db.exec("CREATE TRIGGER src_ins AFTER INSERT ON src FOR EACH ROW INSERT INTO audit VALUES (NEW.id, 'ins')");
    db.exec("CREATE TRIGGER src_upd BEFORE UPDATE ON src FOR EACH ROW SET NEW.n = NEW.n");
    db.exec("CREATE TRIGGER arch_del AFTER DELETE ON arch FOR EACH ROW INSERT INTO audit VALUES (OLD.id, 'del')");
    let original = db.checksum("src");
    let audit = db.checksum("audit");
    let job = Job::new(&sandbox, &db, "id <= 10", "batch_rows = 3");
    assert_success(&job.archiver("run", &[]), "triggers that never fire");
    assert_moved(&mut db, "id <= 10", original, 10);
    assert_eq!(db.checksum("audit"), audit, "no trigger fired");
}

/// Allowed triggers: an audit trigger on the source's DELETE records exactly the rows moved;
/// an archive trigger that changes the key parks the batches (the copies do not land under
/// their keys) and deletes nothing; one that changes a value makes every copy a conflict.
#[test]
fn allowed_triggers_never_let_a_row_go_without_its_identical_copy() {
    let sandbox = common::sandbox();

    // A harmless audit trigger: the job moves everything, the audit holds one row per move.
    let mut db = sandbox.fresh_database("trig_audit");
    simple_tables(&mut db, 20);
    db.exec("CREATE TABLE audit (id INT, what VARCHAR(10))");
    db.exec("CREATE TRIGGER audit_del AFTER DELETE ON src FOR EACH ROW INSERT INTO audit VALUES (OLD.id, 'deleted')");
    let original = db.checksum("src");
    let job = Job::new(
        &sandbox,
        &db,
        "id <= 10",
        &with_safety("batch_rows = 3", "allow_triggers = [\"audit_del\"]"),
    );
    assert_success(&job.archiver("run", &[]), "allowed audit trigger");
    assert_moved(&mut db, "id <= 10", original, 10);
    let audited: Vec<i32> = db.query_rows("SELECT id FROM audit ORDER BY id");
    assert_eq!(audited, (1..=10).collect::<Vec<_>>());

    // A key-changing archive trigger: nothing lands under its key, nothing is deleted.
    let mut db = sandbox.fresh_database("trig_rekey");
    simple_tables(&mut db, 20);
    db.exec("CREATE TRIGGER rekey BEFORE INSERT ON arch FOR EACH ROW SET NEW.id = NEW.id + 1000");
    let source = db.checksum("src");
    let job = Job::new(
        &sandbox,
        &db,
        "id <= 10",
        &with_safety(
            "batch_rows = 4\nattempts_max = 1",
            "allow_triggers = [\"rekey\"]",
        ),
    );
    let output = job.archiver("run", &[]);
    assert_exit(&output, 3, "rekeyed copies park their batches");
    assert_eq!(db.checksum("src"), source, "no source row deleted");
    assert_eq!(
        db.query_scalar::<u64>("SELECT COUNT(*) FROM arch"),
        0,
        "every batch rolled back"
    );
    let status = job.status();
    assert_eq!(
        status["problem_batches"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );

    // A value-changing archive trigger: every copy differs; conflicts, sources kept.
    let mut db = sandbox.fresh_database("trig_value");
    simple_tables(&mut db, 20);
    db.exec("CREATE TRIGGER bump BEFORE INSERT ON arch FOR EACH ROW SET NEW.n = NEW.n + 1");
    let source = db.checksum("src");
    let job = Job::new(
        &sandbox,
        &db,
        "id <= 10",
        &with_safety("batch_rows = 4", "allow_triggers = [\"bump\"]"),
    );
    assert_exit(&job.archiver("run", &[]), 3, "changed copies are conflicts");
    assert_eq!(db.checksum("src"), source, "no source row deleted");
    let conflicts = job
        .events()
        .into_iter()
        .filter(|(t, _)| t == "ConflictFound")
        .count();
    assert_eq!(conflicts, 10);
    let differing: u64 =
        db.query_scalar("SELECT COUNT(*) FROM src JOIN arch USING (id) WHERE arch.n = src.n + 1");
    assert_eq!(
        differing, 10,
        "the archive holds the trigger's versions beside the sources"
    );
}

/// A MariaDB user for one test, on both hosts a sandbox client may come from, dropped at the
/// end whatever happens.
struct TestUser<'a> {
    db: &'a Sandbox,
    name: String,
}

impl<'a> TestUser<'a> {
    const PASSWORD: &'static str = "grant-test-pw";

    fn create(sandbox: &'a Sandbox, admin: &mut TestDb, name: &str) -> TestUser<'a> {
        for host in ["127.0.0.1", "localhost"] {
            admin.exec(&format!("DROP USER IF EXISTS '{name}'@'{host}'"));
            admin.exec(&format!(
                "CREATE USER '{name}'@'{host}' IDENTIFIED BY '{}'",
                Self::PASSWORD
            ));
        }
        TestUser {
            db: sandbox,
            name: name.to_string(),
        }
    }

    fn grant(&self, admin: &mut TestDb, privileges: &str, on: &str) {
        for host in ["127.0.0.1", "localhost"] {
            admin.exec(&format!(
                "GRANT {privileges} ON {on} TO '{}'@'{host}'",
                self.name
            ));
        }
    }

    /// The job file rewritten to connect as this user.
    fn use_in(&self, job: &Job) {
        let text = std::fs::read_to_string(&job.config)
            .unwrap()
            .replace("mysql://archiver@", &format!("mysql://{}@", self.name));
        std::fs::write(&job.config, text).unwrap();
    }
}

impl Drop for TestUser<'_> {
    fn drop(&mut self) {
        let mut admin = self.db.fresh_database("dropuser");
        for host in ["127.0.0.1", "localhost"] {
            let _ = admin.try_exec(&format!("DROP USER IF EXISTS '{}'@'{host}'", self.name));
        }
    }
}

/// The minimal grants README documents (SELECT, DELETE on the source; SELECT, INSERT on the
/// archive) run a job; with any one of them missing, `run` and `--dry-run` refuse it (64)
/// before any row moves, naming the statement. The source may be empty: the statements are
/// proved all the same.
#[test]
fn minimal_grants_work_and_each_missing_privilege_is_refused() {
    let sandbox = common::sandbox();
    let grants: [(&str, &str); 4] = [
        ("SELECT", "src"),
        ("DELETE", "src"),
        ("SELECT", "arch"),
        ("INSERT", "arch"),
    ];
    let pid = std::process::id();
    for missing in [None, Some(0), Some(1), Some(2), Some(3)] {
        for empty_source in [false, true] {
            let mut db = sandbox.fresh_database("grants");
            simple_tables(&mut db, if empty_source { 0 } else { 25 });
            let user = TestUser::create(
                &sandbox,
                &mut db,
                &format!(
                    "u_{pid}_{}_{}",
                    missing.map_or(9, |m| m),
                    empty_source as u8
                ),
            );
            for (i, (privilege, table)) in grants.iter().enumerate() {
                if Some(i) != missing {
                    let on = format!("`{}`.`{table}`", db.name());
                    user.grant(&mut db, privilege, &on);
                }
            }
            let job = Job::new(&sandbox, &db, "id <= 20", "batch_rows = 6");
            user.use_in(&job);
            let env = [("ARCHIVER_PASSWORD", TestUser::PASSWORD)];
            match missing {
                None => {
                    let original = db.checksum("src");
                    let output = job
                        .command("run")
                        .env("ARCHIVER_PASSWORD", TestUser::PASSWORD)
                        .output()
                        .unwrap();
                    assert_success(&output, "exactly the minimal grants");
                    let moved = if empty_source { 0 } else { 20 };
                    assert_moved(&mut db, "id <= 20", original, moved);
                }
                Some(m) => {
                    let (privilege, table) = grants[m];
                    let what = format!("without {privilege} on {table} (empty: {empty_source})");
                    let expected = match (privilege, table) {
                        ("SELECT", "src") => "may not read the source table",
                        // The server's own message names the command and the table.
                        (_, _) => &format!("{privilege} command denied"),
                    };
                    let before = db.checksum(table);
                    assert_refused_with(&job, &mut db, &["src", "arch"], &[expected], &env);
                    assert_eq!(db.checksum(table), before, "{what}");
                }
            }
        }
    }
}

/// Case 5: a user whose column-level grants hide a column would copy NULL in its place. The
/// job is refused whichever table hides it.
#[test]
fn column_level_grants_that_hide_a_column_are_refused() {
    let sandbox = common::sandbox();
    let pid = std::process::id();
    for (hidden_in, name) in [("src", "colsrc"), ("arch", "colarch")] {
        let mut db = sandbox.fresh_database("colgrant");
        simple_tables(&mut db, 10);
        let user = TestUser::create(&sandbox, &mut db, &format!("u_{pid}_{name}"));
        let (src, arch) = (
            format!("`{}`.`src`", db.name()),
            format!("`{}`.`arch`", db.name()),
        );
        if hidden_in == "src" {
            user.grant(&mut db, "SELECT (id, v), DELETE", &src);
            user.grant(&mut db, "SELECT, INSERT", &arch);
        } else {
            user.grant(&mut db, "SELECT, DELETE", &src);
            user.grant(&mut db, "SELECT (id, v, n), INSERT (id, v)", &arch);
        }
        let job = Job::new(&sandbox, &db, "id <= 5", "");
        user.use_in(&job);
        let expected = match hidden_in {
            "src" => "cannot see column(s) `n` of the source table",
            _ => "holds only column-level privileges there",
        };
        assert_refused_with(
            &job,
            &mut db,
            &["src", "arch"],
            &[expected],
            &[("ARCHIVER_PASSWORD", TestUser::PASSWORD)],
        );
    }
}

/// Invisible columns are copied like any other when both tables have them; one present in
/// only one table, or visible in one and invisible in the other, is refused.
#[test]
fn invisible_columns_are_copied_or_refused_never_dropped() {
    let sandbox = common::sandbox();
    let mut db = sandbox.fresh_database("invisible");
    db.exec("CREATE TABLE src (id INT PRIMARY KEY, v INT, secret VARCHAR(10) INVISIBLE)");
    db.exec("INSERT INTO src (id, v, secret) SELECT seq, seq, CONCAT('s', seq) FROM seq_1_to_12");
    db.exec("CREATE TABLE arch LIKE src");
    let job = Job::new(&sandbox, &db, "id <= 8", "batch_rows = 3");
    assert_success(&job.archiver("run", &[]), "invisible in both");
    let secrets: Vec<String> = db.query_rows("SELECT secret FROM arch ORDER BY id");
    assert_eq!(
        secrets,
        (1..=8).map(|i| format!("s{i}")).collect::<Vec<_>>(),
        "the invisible column is copied"
    );

    for alter in [
        "ALTER TABLE arch MODIFY secret VARCHAR(10)",
        "ALTER TABLE arch DROP COLUMN secret",
    ] {
        let mut db = sandbox.fresh_database("invisible_diff");
        db.exec("CREATE TABLE src (id INT PRIMARY KEY, v INT, secret VARCHAR(10) INVISIBLE)");
        db.exec("INSERT INTO src (id, v, secret) SELECT seq, seq, 'x' FROM seq_1_to_5");
        db.exec("CREATE TABLE arch LIKE src");
        db.exec(alter);
        let job = Job::new(&sandbox, &db, "id <= 3", "");
        assert_refused(&job, &mut db, &["src", "arch"], &["column `secret`"]);
    }
}

/// `wal_dir` that is a file, or lies under a file: refused (64) by `run` and `--dry-run`,
/// nothing changed.
#[test]
fn a_wal_dir_that_cannot_be_a_directory_is_refused() {
    let sandbox = common::sandbox();
    let mut db = sandbox.fresh_database("waldir");
    simple_tables(&mut db, 10);
    for under_file in [false, true] {
        let job = Job::new(&sandbox, &db, "id <= 5", "");
        std::fs::create_dir_all(job.wal_dir.parent().unwrap()).unwrap();
        let file = job.wal_dir.parent().unwrap().join("a-file");
        std::fs::write(&file, b"not a directory").unwrap();
        let target = if under_file {
            file.join("wal")
        } else {
            file.clone()
        };
        let text = std::fs::read_to_string(&job.config).unwrap().replace(
            &job.wal_dir.display().to_string(),
            &target.display().to_string(),
        );
        std::fs::write(&job.config, text).unwrap();
        let before = (db.checksum("src"), db.checksum("arch"));
        for args in [&["--dry-run"][..], &[][..]] {
            let output = job.archiver("run", args);
            assert_exit(&output, 64, &format!("under a file: {under_file} {args:?}"));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("wal_dir"), "{stderr}");
        }
        assert_eq!((db.checksum("src"), db.checksum("arch")), before);
        assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");
    }
}

/// A foreign key of the source to itself (a parent row in the same table): cascading is refused
/// like any other; allowed with RESTRICT, a batch that would delete a parent whose child stays
/// is parked, rows without children move, and nothing is lost.
#[test]
fn a_foreign_key_of_the_source_to_itself_is_treated_like_any_other() {
    let sandbox = common::sandbox();
    for rule in ["CASCADE", "RESTRICT"] {
        let mut db = sandbox.fresh_database("fk_self");
        db.exec(&format!(
            "CREATE TABLE src (id INT PRIMARY KEY, parent INT NULL, v INT NOT NULL,
             CONSTRAINT tree FOREIGN KEY (parent) REFERENCES src (id) ON DELETE {rule})"
        ));
        // Rows 1..=30; row 25 (kept: outside the predicate) is a child of row 3.
        db.exec("INSERT INTO src SELECT seq, NULL, seq FROM seq_1_to_30");
        db.exec("UPDATE src SET parent = 3 WHERE id = 25");
        db.exec("CREATE TABLE arch (id INT PRIMARY KEY, parent INT NULL, v INT NOT NULL)");
        let job = Job::new(&sandbox, &db, "v <= 20", "batch_rows = 5");
        assert_refused(&job, &mut db, &["src", "arch"], &["foreign key `tree`"]);
        if rule == "CASCADE" {
            continue;
        }
        let original = db.checksum("src");
        let job = Job::new(
            &sandbox,
            &db,
            "v <= 20",
            &with_safety("batch_rows = 5", "allow_foreign_keys = [\"tree\"]"),
        );
        assert_exit(
            &job.archiver("run", &[]),
            3,
            "a parent with a child parks its batch",
        );
        let left: Vec<i32> = db.query_rows("SELECT id FROM src WHERE v <= 20 ORDER BY id");
        assert_eq!(
            left,
            vec![1, 2, 3, 4, 5],
            "only the batch holding row 3 stays"
        );
        assert_eq!(
            db.checksum_union("src", "arch"),
            original,
            "nothing lost or doubled"
        );
        let parent: Option<i32> = db.query_scalar("SELECT parent FROM src WHERE id = 25");
        assert_eq!(parent, Some(3), "the child row unchanged");
    }
}
