//! Two real servers in different time zones (issue 6, cases 3 and 9, and the character set
//! and counting cases of the two-server path): the main sandbox runs in UTC, the archive
//! sandbox (`common::archive_sandbox`, a second `mariadbd`) in America/New_York, which repeats
//! an hour every November. Rows travel between them through the client.
//!
//! Instants are compared with `UNIX_TIMESTAMP()`, which does not depend on any session's time
//! zone; checksums are taken with both test sessions in UTC.

use super::*;

/// Runs `archiver run ARGS` for a two-server job, after checking both servers share the
/// password the job names.
fn run_two(job: &Job, archive: &TestDb, args: &[&str]) -> Output {
    assert_eq!(archive.password(), common::sandbox().password());
    job.archiver("run", args)
}

/// UTC instants around both daylight-saving changes of 2024 in New York: every 10 minutes
/// through the spring gap (2024-03-10 02:00-03:00 local does not exist) and the autumn repeat
/// (2024-11-03 01:00-02:00 local happens twice), as `FROM_UNIXTIME` arguments.
fn dst_instants() -> Vec<i64> {
    let spring = 1_710_050_400; // 2024-03-10 06:00:00 UTC = 01:00 EST
    let autumn = 1_730_606_400; // 2024-11-03 04:00:00 UTC = 00:00 EDT
    let mut instants = Vec::new();
    for start in [spring, autumn] {
        instants.extend((0..24).map(|i| start + i * 600));
    }
    instants
}

/// (id, UNIX_TIMESTAMP(ts) with microseconds as text) of a table, by id.
fn instants(db: &mut TestDb, table: &str) -> Vec<(i64, String)> {
    db.query_rows(&format!(
        "SELECT id, CAST(UNIX_TIMESTAMP(ts) AS CHAR) FROM {table} ORDER BY id"
    ))
}

fn utc(db: &mut TestDb) {
    db.exec("SET time_zone = '+00:00'");
}

/// Creates `name` in `db`: a TIMESTAMP(6) column holding every DST instant, a DATETIME, text.
fn create_timestamps(db: &mut TestDb, name: &str, with_rows: bool) {
    db.exec(&format!(
        "CREATE TABLE {name} (id INT PRIMARY KEY, ts TIMESTAMP(6) NULL, dt DATETIME(6) NOT NULL,
         note VARCHAR(20) CHARACTER SET utf8mb4 NULL) ENGINE=InnoDB"
    ));
    if !with_rows {
        return;
    }
    utc(db);
    for (i, instant) in dst_instants().iter().enumerate() {
        db.exec(&format!(
            "INSERT INTO {name} VALUES ({i} + 1, FROM_UNIXTIME({instant}.123456), FROM_UNIXTIME({instant}), 'ü{i}')"
        ));
    }
}

/// Case 3: a TIMESTAMP travelled as the source session's wall-clock text; an archive server in
/// another zone stored another instant (and both instants of the repeated hour as one), the
/// comparison ran on the same text, agreed, and the source row was deleted. Both directions.
#[test]
fn timestamps_keep_their_instant_between_servers_in_different_zones() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    for (from, to) in [(&main, &other), (&other, &main)] {
        let mut source = from.fresh_database("tz_src");
        let mut archive = to.fresh_database("tz_arch");
        create_timestamps(&mut source, "src", true);
        create_timestamps(&mut archive, "arch", false);
        let before = instants(&mut source, "src");
        assert_eq!(before.len(), dst_instants().len());
        utc(&mut source);
        let original = source.checksum("src");
        let job = two_server_job(&source, &archive, "id > 0", "batch_rows = 7");
        let output = run_two(&job, &archive, &[]);
        assert_success(&output, &format!("port {} -> {}", from.port(), to.port()));
        assert_eq!(
            instants(&mut archive, "arch"),
            before,
            "every instant unchanged"
        );
        assert_eq!(source.query_scalar::<u64>("SELECT COUNT(*) FROM src"), 0);
        utc(&mut archive);
        assert_eq!(archive.checksum("arch"), original, "row for row, in UTC");
        // Counted once: "N rows moved (N copied)", not 2N copied.
        let status = job.status();
        let counts = &status["runs"][0]["counts"];
        assert_eq!(
            counts["rows_copied"].as_u64(),
            Some(before.len() as u64),
            "{status}"
        );
        assert_eq!(
            counts["rows_deleted"].as_u64(),
            Some(before.len() as u64),
            "{status}"
        );
    }
}

/// A differing archive row in the repeated hour is a conflict, not an identical copy, even
/// though its wall-clock text in New York equals the source row's.
#[test]
fn the_other_instant_of_the_repeated_hour_is_a_conflict() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    let mut source = main.fresh_database("tz_conf_src");
    let mut archive = other.fresh_database("tz_conf_arch");
    create_timestamps(&mut source, "src", true);
    create_timestamps(&mut archive, "arch", false);
    // 05:30 UTC (01:30 EDT) and 06:30 UTC (01:30 EST) read the same in New York. The archive
    // holds the second instant under the first one's key.
    let first: i64 =
        source.query_scalar("SELECT id FROM src WHERE UNIX_TIMESTAMP(ts) = 1730611800.123456");
    utc(&mut archive);
    archive.exec(&format!(
        "INSERT INTO arch VALUES ({first}, FROM_UNIXTIME(1730615400.123456), FROM_UNIXTIME(1730611800), 'ü{}')",
        first - 1
    ));
    let job = two_server_job(&source, &archive, "id > 0", "batch_rows = 5");
    let output = run_two(&job, &archive, &[]);
    assert_exit(&output, 3, "the other instant is a conflict");
    let left: Vec<i64> = source.query_rows("SELECT id FROM src");
    assert_eq!(left, vec![first], "only the conflicting row stays");
}

/// Case 9: a TIMESTAMP primary key on a server in a zone with daylight saving time. Keys
/// round-tripped as local DATETIME, so the rows of the repeated hour were skipped on every run
/// (exit 0). One server (New York) and two servers, single and composite keys.
#[test]
fn timestamp_keys_in_the_repeated_hour_are_all_archived() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    for (key, composite) in [("ts", false), ("tenant, ts", true)] {
        for two in [false, true] {
            let what = format!("key ({key}), two servers: {two}");
            let mut source = other.fresh_database("tzkey");
            let create = format!(
                "CREATE TABLE src (tenant INT NOT NULL, ts TIMESTAMP(6) NOT NULL, v INT NOT NULL,
                 PRIMARY KEY ({key})) ENGINE=InnoDB"
            );
            source.exec(&create);
            utc(&mut source);
            for (i, instant) in dst_instants().iter().enumerate() {
                let tenant = if composite { i % 2 } else { 0 };
                source.exec(&format!(
                    "INSERT INTO src VALUES ({tenant}, FROM_UNIXTIME({instant}), {i})"
                ));
            }
            let rows = dst_instants().len() as u64;
            let original = source.checksum("src");
            let mut archive_db = if two {
                main.fresh_database("tzkey_arch")
            } else {
                other.fresh_database("tzkey_same")
            };
            let job = if two {
                archive_db.exec(&create.replace("src", "arch"));
                two_server_job(&source, &archive_db, "v >= 0", "batch_rows = 4")
            } else {
                source.exec("CREATE TABLE arch LIKE src");
                Job::new(&other, &source, "v >= 0", "batch_rows = 4")
            };
            let output = run_two(&job, &archive_db, &[]);
            assert_success(&output, &what);
            assert_eq!(
                source.query_scalar::<u64>("SELECT COUNT(*) FROM src"),
                0,
                "{what}"
            );
            let archived = if two { &mut archive_db } else { &mut source };
            utc(archived);
            let table = "arch";
            assert_eq!(
                archived.query_scalar::<u64>(&format!("SELECT COUNT(*) FROM {table}")),
                rows,
                "{what}"
            );
            assert_eq!(archived.checksum(table), original, "{what}");
            assert_eq!(job.rows_deleted(), rows, "{what}");
        }
    }
}

/// Case 4 across servers: a column whose character set or collation differs between the two
/// servers is refused before any row moves (a double-encoded copy was accepted as identical).
#[test]
fn character_sets_must_match_across_servers() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    for archive_column in [
        "VARCHAR(20) CHARACTER SET latin1 NULL",
        "VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL",
        "VARCHAR(20) CHARACTER SET utf8mb3 NULL",
    ] {
        let mut source = main.fresh_database("cs_src");
        let mut archive = other.fresh_database("cs_arch");
        create_timestamps(&mut source, "src", true);
        create_timestamps(&mut archive, "arch", false);
        archive.exec(&format!("ALTER TABLE arch MODIFY note {archive_column}"));
        let before = (source.checksum("src"), archive.checksum("arch"));
        let job = two_server_job(&source, &archive, "id > 0", "");
        for args in [&["--dry-run"][..], &[][..]] {
            let output = run_two(&job, &archive, args);
            assert_exit(&output, 64, archive_column);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("column `note` has"), "{stderr}");
        }
        assert_eq!((source.checksum("src"), archive.checksum("arch")), before);
        assert!(!job.wal_dir.exists());
    }
}

/// Case 4, the bytes themselves: a byte the column's character set does not define (0xE9 in
/// an ascii column, stored by a non-strict client) travels between servers as '?', and the
/// copy read back as '?' too: equal text, different bytes. On two servers the row is now a
/// conflict (the source row kept, bytes intact, exit 3); on one server the copy is made by the
/// server, byte for byte, and the row moves.
#[test]
fn bytes_a_character_set_does_not_define_are_never_altered_in_transit() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    let create = |db: &mut TestDb, name: &str| {
        db.exec(&format!(
            "CREATE TABLE {name} (id INT PRIMARY KEY, code VARCHAR(10) CHARACTER SET ascii NULL,
             note TEXT CHARACTER SET latin1 NULL)"
        ));
    };
    for two_servers in [true, false] {
        let mut source = main.fresh_database("bytes_src");
        create(&mut source, "src");
        source.exec("SET SESSION sql_mode = ''");
        source.exec(
            "INSERT INTO src VALUES (1, 'plain', 'fine'), (2, _binary x'41E942', 'ascii?'),
             (3, 'ok', _binary x'E9FF81'), (4, NULL, NULL)",
        );
        let original = source.checksum("src");
        let (job, mut archive) = if two_servers {
            let mut archive = other.fresh_database("bytes_arch");
            create(&mut archive, "arch");
            (
                two_server_job(&source, &archive, "id > 0", ""),
                Some(archive),
            )
        } else {
            create(&mut source, "arch");
            (Job::new(&main, &source, "id > 0", ""), None)
        };
        let output = job.archiver("run", &[]);
        if two_servers {
            assert_exit(&output, 3, "the altered copy is a conflict");
            let kept: Vec<(i64, String)> =
                source.query_rows("SELECT id, HEX(code) FROM src ORDER BY id");
            assert_eq!(
                kept,
                vec![(2, "41E942".to_string())],
                "only row 2 stays, bytes intact"
            );
            let conflicts: Vec<_> = job
                .events()
                .into_iter()
                .filter(|(t, _)| t == "ConflictFound")
                .collect();
            assert_eq!(conflicts.len(), 1, "{conflicts:?}");
            let archive = archive.as_mut().unwrap();
            // Latin-1 bytes (every one defined) arrive exactly.
            let note: String = archive.query_scalar("SELECT HEX(note) FROM arch WHERE id = 3");
            assert_eq!(note, "E9FF81");
        } else {
            assert_success(&output, "one server copies bytes as they are");
            assert_eq!(source.query_scalar::<u64>("SELECT COUNT(*) FROM src"), 0);
            assert_eq!(source.checksum("arch"), original, "byte for byte");
        }
    }
}

/// Smaller case: `binlog_format=STATEMENT` was found only at the first batch (error 1665 under
/// READ COMMITTED). The pre-flight refuses it, on either path, before any row moves.
#[test]
fn a_statement_format_binary_log_is_refused_before_any_row_moves() {
    let other = common::archive_sandbox();
    // A global setting: no other test may open a session on the servers meanwhile.
    let server = other.exclusive();
    let mut db = server.fresh_database("binlog");
    db.exec("CREATE TABLE src (id INT PRIMARY KEY, v INT NOT NULL)");
    db.exec("INSERT INTO src SELECT seq, seq FROM seq_1_to_50");
    db.exec("CREATE TABLE arch LIKE src");
    let original = db.checksum("src");
    struct Restore<'a>(&'a mut TestDb);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0.exec("SET GLOBAL binlog_format = 'MIXED'");
        }
    }
    let job = Job::new(&server, &db, "v <= 20", "batch_rows = 7");
    {
        db.exec("SET GLOBAL binlog_format = 'STATEMENT'");
        let guard = Restore(&mut db);
        for args in [&["--dry-run"][..], &[][..]] {
            let output = job.archiver("run", args);
            assert_exit(&output, 64, "binlog_format=STATEMENT");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("binlog_format=STATEMENT"), "{stderr}");
        }
        assert_eq!(guard.0.checksum("src"), original);
        assert_eq!(guard.0.query_scalar::<u64>("SELECT COUNT(*) FROM arch"), 0);
        assert!(!job.wal_dir.exists());
    }
    // With the binary log in MIXED format the same job runs.
    assert_success(&job.archiver("run", &[]), "binlog_format=MIXED");
    assert_moved(&mut db, "v <= 20", original, 20);
}

/// A server whose global sql_mode reads the predicate differently (ANSI_QUOTES: "v" is a
/// column there, a string in the job's pinned sessions, where `"v" < "w"` is true for every
/// row) is refused when the predicate holds such text, and accepted when it does not.
#[test]
fn a_predicate_the_servers_sql_mode_reads_differently_is_refused() {
    let other = common::archive_sandbox();
    // A global setting: no other test may open a session on the servers meanwhile.
    let server = other.exclusive();
    let mut db = server.fresh_database("sqlmode");
    db.exec("CREATE TABLE src (id INT PRIMARY KEY, v INT NOT NULL, w INT NOT NULL)");
    db.exec("INSERT INTO src SELECT seq, seq, 10 FROM seq_1_to_50");
    db.exec("CREATE TABLE arch LIKE src");
    let global: String = db.query_scalar("SELECT @@GLOBAL.sql_mode");
    struct Restore<'a>(&'a mut TestDb, String);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0.exec(&format!("SET GLOBAL sql_mode = '{}'", self.1));
        }
    }
    db.exec("SET GLOBAL sql_mode = 'ANSI'");
    let guard = Restore(&mut db, global);
    let refused = Job::new(&server, guard.0, "\"v\" < \"w\"", "");
    assert_refused(
        &refused,
        guard.0,
        &["src", "arch"],
        &["global sql_mode has ANSI_QUOTES"],
    );
    let original = guard.0.checksum("src");
    let job = Job::new(&server, guard.0, "v < w", "batch_rows = 3");
    assert_success(
        &job.archiver("run", &[]),
        "no text the mode reads differently",
    );
    assert_moved(guard.0, "v < w", original, 9);
}

/// A read_only server (a replica, most likely) as source or as archive is refused before any
/// row moves: the sandbox user has SUPER and would write past the setting.
#[test]
fn a_read_only_server_is_refused_on_either_side() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    // A global setting: no other test may open a session on the servers meanwhile.
    let server = other.exclusive();
    let mut on_main = main.fresh_database("ro_main");
    let mut on_other = server.fresh_database("ro_other");
    for db in [&mut on_main, &mut on_other] {
        db.exec("CREATE TABLE src (id INT PRIMARY KEY, v INT NOT NULL)");
        db.exec("INSERT INTO src SELECT seq, seq FROM seq_1_to_20");
        db.exec("CREATE TABLE arch LIKE src");
    }
    struct Restore<'a>(&'a mut TestDb);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0.exec("SET GLOBAL read_only = OFF");
        }
    }
    on_other.exec("SET GLOBAL read_only = ON");
    let guard = Restore(&mut on_other);
    // The read-only server as the archive, then as the source.
    let job = two_server_job(&on_main, guard.0, "id <= 10", "");
    assert_refused(
        &job,
        &mut on_main,
        &["src", "arch"],
        &["is read_only (a replica?)"],
    );
    let job = two_server_job(guard.0, &on_main, "id <= 10", "");
    assert_refused(
        &job,
        guard.0,
        &["src", "arch"],
        &["is read_only (a replica?)"],
    );
    let job = Job::new(&server, guard.0, "id <= 10", "");
    assert_refused(
        &job,
        guard.0,
        &["src", "arch"],
        &["is read_only (a replica?)"],
    );
    drop(guard);
    let original = on_other.checksum("src");
    let job = Job::new(&server, &on_other, "id <= 10", "");
    assert_success(&job.archiver("run", &[]), "writable again");
    assert_moved(&mut on_other, "id <= 10", original, 10);
}

/// An `[archive] url` that reaches the source's own server under another name (`localhost`
/// for `127.0.0.1`) and names the source table: the "archive" was the source itself, every row
/// looked archived already, and the rows were deleted with exit 0. Recognised by the server,
/// not by the url: refused. The same server with another table works on the two-step path, and
/// a predicate naming that table is refused as on one server.
#[test]
fn an_archive_url_that_reaches_the_source_server_is_recognised() {
    let main = common::sandbox();
    let mut db = main.fresh_database("self");
    db.exec("CREATE TABLE src (id INT PRIMARY KEY, v VARCHAR(10) NOT NULL)");
    db.exec("INSERT INTO src SELECT seq, CONCAT('v', seq) FROM seq_1_to_30");
    let database = db.name().to_string();
    let as_localhost = |job: &Job, archive_table: &str| {
        let text = std::fs::read_to_string(&job.config).unwrap().replace(
            "[archive]\ntable = \"arch\"\n",
            &format!(
                "[archive]\nurl = \"mysql://archiver@localhost:{}/{}\"\npassword_env = \"ARCHIVER_PASSWORD\"\ntable = \"{archive_table}\"\n",
                main.port(),
                database
            ),
        );
        assert!(text.contains("localhost"), "{text}");
        std::fs::write(&job.config, text).unwrap();
    };
    let job = Job::new(&main, &db, "id <= 20", "");
    as_localhost(&job, "src");
    assert_refused(
        &job,
        &mut db,
        &["src"],
        &[
            "is the source table",
            "[archive] url reaches the same server",
        ],
    );

    db.exec("CREATE TABLE arch LIKE src");
    let job = Job::new(
        &main,
        &db,
        "id <= 20 AND id NOT IN (SELECT id FROM arch)",
        "",
    );
    as_localhost(&job, "arch");
    assert_refused(
        &job,
        &mut db,
        &["src", "arch"],
        &["names the archive table `arch`"],
    );

    let original = db.checksum("src");
    let job = Job::new(&main, &db, "id <= 20", "batch_rows = 6");
    as_localhost(&job, "arch");
    assert_success(
        &job.archiver("run", &[]),
        "same server, other table, two-step path",
    );
    assert_moved(&mut db, "id <= 20", original, 20);
    assert!(
        job.events().iter().any(|(t, _)| t == "BatchCopied"),
        "the two-step path ran"
    );
}

/// Batches larger than one statement's key list (`KEYS_PER_STATEMENT_MAX`, 1,000 keys): the
/// two-server path reads back and deletes in chunks, every row once, with identical archive
/// copies planted across chunk borders counted as already archived and a differing one kept.
#[test]
fn batches_larger_than_one_key_list_move_in_chunks() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    let mut source = main.fresh_database("chunks_src");
    let mut archive = other.fresh_database("chunks_arch");
    source.exec(
        "CREATE TABLE src (g INT NOT NULL, k INT NOT NULL, v VARCHAR(20) NOT NULL,
         PRIMARY KEY (g, k))",
    );
    source.exec("INSERT INTO src SELECT seq % 3, seq, CONCAT('v', seq) FROM seq_1_to_6000");
    archive.exec(
        "CREATE TABLE arch (g INT NOT NULL, k INT NOT NULL, v VARCHAR(20) NOT NULL,
         PRIMARY KEY (g, k))",
    );
    // Identical copies around the first chunk border of the first batch, one differing row.
    archive.exec("INSERT INTO arch SELECT seq % 3, seq, CONCAT('v', seq) FROM seq_995_to_1005");
    archive.exec("INSERT INTO arch VALUES (0, 3000, 'different')");
    let original = source.checksum("src");
    let job = two_server_job(&source, &archive, "k <= 5000", "batch_rows = 2500");
    assert_exit(&run_two(&job, &archive, &[]), 3, "one conflict");
    let left: Vec<(i32, i32)> = source.query_rows("SELECT g, k FROM src WHERE k <= 5000");
    assert_eq!(left, vec![(0, 3000)], "only the conflicting row stays");
    assert_eq!(source.query_scalar::<u64>("SELECT COUNT(*) FROM src"), 1001);
    assert_eq!(
        archive.query_scalar::<u64>("SELECT COUNT(*) FROM arch"),
        5000
    );
    assert_eq!(job.rows_deleted(), 4999);
    assert_eq!(
        job.rows_already(),
        12,
        "11 identical copies and the differing row's key"
    );
    let kept = source.checksum("src");
    let archived = archive.checksum("arch");
    assert_eq!(
        kept.0 + archived.0,
        original.0 + 1,
        "the archive's own row beside the source's"
    );
}
