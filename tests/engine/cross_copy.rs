//! The two-server copy at speed (issue 10, item 4): rows stream to the archive as `LOAD DATA
//! LOCAL INFILE` data, prepared `INSERT`s where the archive server refuses that, and the
//! source deletes while the archive copies; none of it may let a row go without its identical
//! copy. What the archive server executed is read from its statement counters, under
//! `exclusive()` so that no other test's statements are counted.

use super::*;

/// (LOAD DATA statements, INSERT statements, prepared statements closed) the server `db` is on
/// has run so far.
fn copies(db: &mut TestDb) -> (u64, u64, u64) {
    (
        server_counter(db, "COM_LOAD"),
        server_counter(db, "COM_INSERT"),
        server_counter(db, "COM_STMT_CLOSE"),
    )
}

/// Runs `archiver run ARGS` and returns its output with the (LOAD DATA, INSERT, statement
/// close) commands its batches ran on the archive server: what the run counted there less what
/// a dry run counts (the pre-flight's `EXPLAIN INSERT` counts as an INSERT).
fn run_counting_copies(
    job: &Job,
    archive: &mut TestDb,
    args: &[&str],
) -> (Output, (u64, u64, u64)) {
    let before = copies(archive);
    assert_success(&job.archiver("run", &["--dry-run"]), "dry run");
    let dry = copies(archive);
    let output = job.archiver("run", args);
    let after = copies(archive);
    let runs = |before: u64, dry: u64, after: u64| after - dry - (dry - before);
    let counted = (
        runs(before.0, dry.0, after.0),
        runs(before.1, dry.1, after.1),
        runs(before.2, dry.2, after.2),
    );
    (output, counted)
}

/// With `local_infile` on, each batch's copy is one `LOAD DATA` and no `INSERT`; with it off
/// (`SET GLOBAL local_infile = 0` on the archive server), the first batch's `LOAD DATA` is
/// refused and every batch is copied with `INSERT`s instead, 500 rows a statement, the run
/// succeeding as before; the short last `INSERT` of a batch is closed after use, so that the
/// connection's statement cache does not keep one per batch size. Both times the rows arrive
/// exactly (checksums of both tables) and the log counts them once.
#[test]
fn the_copy_streams_load_data_and_falls_back_to_inserts_where_local_infile_is_off() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    // Statement counters and a global setting: no other test may use the servers meanwhile.
    let server = other.exclusive();
    struct Restore<'a>(&'a mut TestDb);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0.exec("SET GLOBAL local_infile = ON");
        }
    }
    for local_infile in [true, false] {
        let what = format!("local_infile = {local_infile}");
        let mut source = main.fresh_database("load_src");
        let mut archive = server.fresh_database("load_arch");
        create_mixed(&mut source, "src", 3_000);
        create_mixed(&mut archive, "arch", 0);
        let original = source.checksum("src");
        let matching = count_matching(&mut source, MIXED_PREDICATE);
        let mut setting = server.fresh_database("load_setting");
        setting.exec(&format!(
            "SET GLOBAL local_infile = {}",
            u8::from(local_infile)
        ));
        let _restore = Restore(&mut setting);
        // 1,200-row batches: INSERTs of 500, 500 and 200 rows.
        let fixed = "batch_rows = 1200\nbatch_time_ms = 0";
        let job = two_server_job(&source, &archive, MIXED_PREDICATE, fixed);
        let (output, (loads, inserts, closed)) = run_counting_copies(&job, &mut archive, &["-v"]);
        assert_success(&output, &what);
        let copied: Vec<u64> = job
            .events()
            .iter()
            .filter(|(t, _)| t == "BatchCopied")
            .map(|(_, event)| event["rows_copied"].as_u64().expect("rows_copied"))
            .collect();
        let batches = copied.len() as u64;
        assert!(batches >= 3, "{what}: {copied:?} rows copied by batch");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if local_infile {
            assert_eq!((loads, inserts, closed), (batches, 0, 0), "{what}");
            assert!(!stderr.contains("refuses LOAD DATA"), "{stderr}");
        } else {
            // The refused statement may count as one.
            assert!(loads <= 1, "{what}: {loads} LOAD DATA");
            let statements: u64 = copied.iter().map(|rows| rows.div_ceil(500)).sum();
            assert_eq!(
                inserts, statements,
                "{what}: {copied:?} rows copied by batch"
            );
            let short = copied.iter().filter(|rows| *rows % 500 != 0).count() as u64;
            assert_eq!(closed, short, "{what}: {copied:?} rows copied by batch");
            assert!(
                stderr.contains("the archive server refuses LOAD DATA LOCAL INFILE"),
                "{stderr}"
            );
        }
        let left: u64 = count_matching(&mut source, MIXED_PREDICATE);
        assert_eq!(left, 0, "{what}");
        assert_eq!(
            archive.query_scalar::<u64>("SELECT COUNT(*) FROM arch"),
            matching
        );
        assert_eq!(
            super::cross::union(source.checksum("src"), archive.checksum("arch")),
            original,
            "{what}: row for row"
        );
        let status = job.status();
        let counts = &status["runs"][0]["counts"];
        assert_eq!(counts["rows_copied"].as_u64(), Some(matching), "{status}");
        assert_eq!(counts["rows_deleted"].as_u64(), Some(matching), "{status}");
    }
}

/// Values that are easy to alter as LOAD DATA text, in every column type it carries (the
/// table has no YEAR, BIT, spatial or UUID column, which go by `INSERT`): the field and line
/// separators and the escape inside text and bytes, NUL, the text `\N` and the word NULL, the
/// empty string beside NULL, floating-point extremes, zero and negative dates and times,
/// instants in New York's repeated hour, 4-byte characters in several character sets. Every
/// batch goes by `LOAD DATA`, and the archive holds exactly the original rows.
#[test]
fn load_data_carries_every_value_exactly() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    let server = other.exclusive();
    let table = |db: &mut TestDb, name: &str| {
        db.exec(&format!(
            "CREATE TABLE {name} (id INT PRIMARY KEY,
               ti TINYINT UNSIGNED NULL, bi BIGINT NULL, ub BIGINT UNSIGNED NULL, f FLOAT NULL,
               d DOUBLE NULL, dec65 DECIMAL(65,30) NULL, dt DATE NULL, dtm DATETIME(6) NULL,
               ts TIMESTAMP(6) NULL, tm TIME(6) NULL,
               c CHAR(10) CHARACTER SET latin1 NULL,
               v VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
               sj VARCHAR(20) CHARACTER SET sjis NULL, u16 VARCHAR(20) CHARACTER SET utf16 NULL,
               t TEXT CHARACTER SET utf8mb4 NULL, b BLOB NULL, vb VARBINARY(20) NULL,
               j JSON NULL, e ENUM('b','a') NULL, st SET('y','x') NULL,
               gen INT AS (id * 2) VIRTUAL) ENGINE=InnoDB"
        ));
    };
    let columns = "id, ti, bi, ub, f, d, dec65, dt, dtm, ts, tm, c, v, sj, u16, t, b, vb, j, e, st";
    let rows = [
        r#"1, 255, -9223372036854775808, 18446744073709551615, 0.1, 1/3, -0.000000000000000000000000000001, '0000-00-00', '0000-00-00 00:00:00', '2024-11-03 05:30:00.000001', '-838:59:59.999999', 'é ', 'A\tb\nc\\d\re', '日本', '😀', '\\N', x'00FF5C090A0D4E', x'5C4E', '{"k": [1, 2.50, null]}', 'a', 'x,y'"#,
        r#"2, 0, 9223372036854775807, 0, 3.4e38, 1e308, 99999999999999999999999999999999999.999999999999999999999999999999, '9999-12-31', '9999-12-31 23:59:59.999999', '2024-11-03 06:30:00', '838:59:59', '', '', '', '', 'NULL', x'', x'', '[]', 'b', ''"#,
        "3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL",
        r#"4, 1, -1, 1, -1.17549435e-38, -2.2250738585072014e-308, 0, '2024-02-29', '2024-03-10 00:00:00', '1970-01-01 00:00:01', '-00:00:00.000001', 'x', 'é', 'ｱｲ', '𝄞', REPEAT('ü\t', 1000), REPEAT(x'FF0A', 3000), x'00', '"just a string"', 'a', 'y'"#,
        r#"5, 7, 0, 42, 1e-45, 5e-324, -1.5, '2024-01-01', '2024-01-01 00:00:00.500000', '2038-01-19 03:14:07.999999', '00:00:00', 'N', '\\', '\\', '\\', '\\\\N', x'5C', x'5C5C', 'null', NULL, 'x'"#,
    ];
    let mut source = main.fresh_database("loadvals");
    table(&mut source, "src");
    source.exec("SET time_zone = '+00:00'");
    for row in rows {
        source.exec(&format!("INSERT INTO src ({columns}) VALUES ({row})"));
    }
    let original = source.checksum("src");
    let mut archive = server.fresh_database("loadvals_arch");
    table(&mut archive, "arch");
    let job = two_server_job(&source, &archive, "id > 0", "batch_rows = 2");
    let (output, counted) = run_counting_copies(&job, &mut archive, &[]);
    assert_success(&output, "two servers");
    assert_eq!(counted, (3, 0, 0), "three batches, each one LOAD DATA");
    assert_eq!(source.query_scalar::<u64>("SELECT COUNT(*) FROM src"), 0);
    archive.exec("SET time_zone = '+00:00'");
    assert_eq!(
        archive.checksum("arch"),
        original,
        "row for row, byte for byte"
    );
    // Exit 0 is itself the proof for what the checksum's text rounds (floating point): the
    // run compared every value as the servers sent them, and a copy that differed would have
    // been a conflict (exit 3).
    assert_eq!(job.rows_deleted(), rows.len() as u64);
}

/// An archive trigger the job is told to allow changes some copies as they are written (the
/// case the trigger pre-flight leaves to the identity check). The source deletes every locked
/// row while the archive copies; the changed copies make the batch undo that delete to its
/// savepoint and delete the identical rows only: each changed row stays in the source as it was
/// and is reported as a conflict, every other row moves, and a second run finds the same.
#[test]
fn an_archive_trigger_changing_copies_leaves_those_rows_in_the_source() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    // The source server's statement counters: no other test may use the servers meanwhile.
    let server = other.exclusive();
    let mut source = main.fresh_database("trig_src");
    let mut archive = server.fresh_database("trig_arch");
    let create = "CREATE TABLE src (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(20) NULL)";
    source.exec(create);
    source.exec("INSERT INTO src SELECT seq, seq * 10, CONCAT('n', seq) FROM seq_1_to_300");
    archive.exec(&create.replace("src", "arch"));
    archive.exec(
        "CREATE TRIGGER bump BEFORE INSERT ON arch FOR EACH ROW
         IF NEW.id % 10 = 3 THEN SET NEW.v = NEW.v + 1; END IF",
    );
    // What must stay: the rows outside the predicate, and the 20 whose copy the trigger changed.
    source.exec("CREATE TABLE kept AS SELECT * FROM src WHERE id > 200 OR id % 10 = 3");
    let kept = source.checksum("kept");
    source.exec("CREATE TABLE moved AS SELECT * FROM src WHERE id <= 200 AND id % 10 <> 3");
    let moved = source.checksum("moved");
    let job = two_server_job(
        &source,
        &archive,
        "id <= 200",
        "batch_rows = 50\n\n[safety]\nallow_triggers = [\"bump\"]",
    );
    // The first run's 4 batches each deleted its 50 rows early and undid that for its 5
    // changed copies; the second run's one batch holds the 20 rows left, all changed copies.
    for (round, batches) in [("run", 4), ("second run", 1)] {
        let undone = server_counter(&mut source, "COM_ROLLBACK_TO_SAVEPOINT");
        let output = job.archiver("run", &[]);
        let undone = server_counter(&mut source, "COM_ROLLBACK_TO_SAVEPOINT") - undone;
        assert_eq!(undone, batches, "{round}");
        assert_exit(
            &output,
            3,
            &format!("{round}: the changed copies are conflicts"),
        );
        assert_eq!(
            source.checksum("src"),
            kept,
            "{round}: the kept rows as they were"
        );
        assert_eq!(job.rows_deleted(), 180, "{round}");
    }
    let conflicts: Vec<_> = job
        .events()
        .into_iter()
        .filter(|(t, _)| t == "ConflictFound")
        .collect();
    assert_eq!(
        conflicts.len(),
        40,
        "20 conflicts in each run: {conflicts:?}"
    );
    assert_eq!(
        archive.query_scalar::<u64>("SELECT COUNT(*) FROM arch"),
        200
    );
    archive.exec("DELETE FROM arch WHERE id % 10 = 3");
    assert_eq!(archive.checksum("arch"), moved, "the identical copies");
}

/// Runs the statements `sql` makes of a pseudo-random number, autocommitted, until `stop`;
/// returns the rows they changed. Errors (lock waits against the job) are ignored.
fn churn(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sql: fn(u64) -> String,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        use mysql_async::prelude::Queryable;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut conn = mysql_async::Conn::from_url(url)
                .await
                .expect("writer connection");
            let mut x: u64 = 0x2545_F491_4F6C_DD1D;
            let mut changed = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if conn.query_drop(sql(x)).await.is_ok() {
                    changed += conn.affected_rows();
                }
            }
            changed
        })
    })
}

/// The source's delete runs while the archive copies, with the locking read's filter: a row
/// another client moves into the batch's range meanwhile (here: `flag` set to 1 on a row the
/// locking read did not lock, while the delete scans) is deleted by it too. The batch then
/// deleted more rows than it locked, undoes that delete to its savepoint and deletes the
/// locked rows by key: the moved row stays in the source (the next run archives it), every
/// archived row is one the batch locked and copied. Rows move under a writer until the undo
/// has happened at least once (it needs the writer's update to land during the delete: one
/// attempt in two or three misses).
#[test]
fn a_row_entering_the_range_during_the_copy_is_not_deleted_with_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const ROWS: u64 = 20_000;
    let main = common::sandbox();
    let other = common::archive_sandbox();
    // The source server's statement counters: no other test may use the servers meanwhile.
    let server = other.exclusive();
    let create =
        "CREATE TABLE src (id INT PRIMARY KEY, flag TINYINT NOT NULL, v VARCHAR(20) NOT NULL)";
    let mut undone_total = 0;
    for attempt in 1..=10 {
        let mut source = main.fresh_database("enter_src");
        let mut archive = server.fresh_database("enter_arch");
        source.exec(create);
        source.exec(&format!(
            "INSERT INTO src SELECT seq, seq % 2, CONCAT('v', seq) FROM seq_1_to_{ROWS}"
        ));
        archive.exec(&create.replace("src", "arch"));
        // One batch of every matching row, so that the delete scans the whole table.
        let job = two_server_job(&source, &archive, "flag = 1", "batch_rows = 20000");
        let url = format!(
            "mysql://archiver:{}@127.0.0.1:{}/{}",
            main.password(),
            main.port(),
            source.name()
        );
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        // Flips rows into the predicate (flag 0 to 1, marking v) at random.
        let flip = |x: u64| {
            let id = 2 * (1 + x % (ROWS / 2));
            format!("UPDATE src SET flag = 1, v = CONCAT(v, '+') WHERE id = {id} AND flag = 0")
        };
        let writer = churn(url, stop.clone(), flip);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let undone = server_counter(&mut source, "COM_ROLLBACK_TO_SAVEPOINT");
        let output = job.archiver("run", &[]);
        let undone = server_counter(&mut source, "COM_ROLLBACK_TO_SAVEPOINT") - undone;
        stop.store(true, Ordering::SeqCst);
        let flipped = writer.join().unwrap();
        assert_success(&output, &format!("attempt {attempt}"));
        assert!(flipped > 0, "the writer ran");
        // Every archived row is a matching row as some version of it was: odd rows as seeded,
        // even rows flipped (flag 1, v marked); no key is in both tables; none is lost.
        let archived: Vec<(i64, i64, String)> =
            archive.query_rows("SELECT id, flag, v FROM arch ORDER BY id");
        for (id, flag, v) in &archived {
            let expected = if id % 2 == 1 {
                format!("v{id}")
            } else {
                format!("v{id}+")
            };
            assert_eq!((*flag, v), (1, &expected), "archived row {id}");
        }
        let kept: Vec<(i64, i64, String)> =
            source.query_rows("SELECT id, flag, v FROM src ORDER BY id");
        for (id, flag, v) in &kept {
            let expected = if *flag == 1 {
                format!("v{id}+")
            } else {
                format!("v{id}")
            };
            assert!(id % 2 == 0 && v == &expected, "kept row {id}: {flag} {v}");
        }
        let mut ids: Vec<i64> = archived.iter().chain(&kept).map(|r| r.0).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=ROWS as i64).collect::<Vec<_>>(), "every row once");
        assert_eq!(job.rows_deleted(), archived.len() as u64);
        // The next run moves the rows flipped behind the first.
        assert_success(&job.archiver("run", &[]), "second run");
        assert_eq!(
            source.query_scalar::<u64>("SELECT COUNT(*) FROM src WHERE flag = 1"),
            0
        );
        undone_total += undone;
        if undone_total > 0 {
            eprintln!("entering rows: the early delete was undone after {attempt} attempt(s)");
            return;
        }
    }
    panic!("in 10 attempts no update landed during the delete; the undo was never exercised");
}

/// The read-back asks the archive for its rows in the batch's key range, one more than the
/// batch locked. Where the archive also holds rows the batch did not lock (here: rows under
/// keys the source no longer has, between the batch's keys), the range holds more than that,
/// and the rows are read by the locked keys instead: one more prepared statement executed on
/// the archive server per batch (`Com_stmt_execute`, which the pre-flight moves alike in both
/// runs, and which no other client of the sandbox moves), the same outcome, the archive's own
/// rows untouched. Each batch's 250 keys are one short key list (under the 1,000 a statement
/// carries), a text that depends on the batch's row count: prepared, run and closed
/// (`Com_stmt_close`), not left in the connection's statement cache.
#[test]
fn archive_rows_the_batch_did_not_lock_send_the_read_back_by_key() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    // The archive server's counters: no other test may use the servers meanwhile.
    let server = other.exclusive();
    let mut executed = Vec::new();
    let mut closed = Vec::new();
    for planted in [false, true] {
        let what = format!("archive rows between the batch's keys: {planted}");
        let mut source = main.fresh_database("readback_src");
        let mut archive = server.fresh_database("readback_arch");
        let create = "CREATE TABLE src (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)";
        source.exec(create);
        source.exec("INSERT INTO src SELECT 2 * seq, CONCAT('v', seq) FROM seq_1_to_1000");
        archive.exec(&create.replace("src", "arch"));
        if planted {
            archive
                .exec("INSERT INTO arch SELECT 2 * seq + 1, 'archived before' FROM seq_0_to_999");
        }
        let original = source.checksum("src");
        let own = archive.checksum("arch");
        let job = two_server_job(&source, &archive, "id > 0", "batch_rows = 250");
        let before = server_counter(&mut archive, "COM_STMT_EXECUTE");
        let closes_before = server_counter(&mut archive, "COM_STMT_CLOSE");
        assert_success(&job.archiver("run", &[]), &what);
        executed.push(server_counter(&mut archive, "COM_STMT_EXECUTE") - before);
        closed.push(server_counter(&mut archive, "COM_STMT_CLOSE") - closes_before);
        assert_eq!(
            source.query_scalar::<u64>("SELECT COUNT(*) FROM src"),
            0,
            "{what}"
        );
        assert_eq!(job.rows_deleted(), 1000, "{what}");
        archive.exec("CREATE TABLE moved AS SELECT * FROM arch WHERE id % 2 = 0");
        assert_eq!(archive.checksum("moved"), original, "{what}");
        archive.exec("DELETE FROM arch WHERE id % 2 = 0");
        assert_eq!(
            archive.checksum("arch"),
            own,
            "{what}: the archive's own rows"
        );
    }
    // 4 batches, each reading its 250 keys again by key list.
    assert_eq!(
        executed[1],
        executed[0] + 4,
        "statements executed: {executed:?}"
    );
    assert_eq!(closed[1], closed[0] + 4, "statements closed: {closed:?}");
}

/// Where the archive already holds identical copies of some of a batch's rows, the batch's
/// one `LOAD DATA` does not take every row, is rolled back, and the careful copy reads which
/// keys the archive holds (the batch's 250 keys, one short key list) and inserts the other
/// rows (one short `INSERT`). Both statements' texts depend on the batch's row count: each is
/// prepared, run and closed (`Com_stmt_close`, two a batch), not left in the statement cache.
/// The copies already there count as archived, the others arrive; every row once.
#[test]
fn archive_copies_already_there_are_read_by_key_and_the_short_statements_closed() {
    let main = common::sandbox();
    let other = common::archive_sandbox();
    // The archive server's counters: no other test may use the servers meanwhile.
    let server = other.exclusive();
    let mut source = main.fresh_database("already_src");
    let mut archive = server.fresh_database("already_arch");
    let create = "CREATE TABLE src (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)";
    source.exec(create);
    source.exec("INSERT INTO src SELECT seq, CONCAT('v', seq) FROM seq_1_to_1000");
    archive.exec(&create.replace("src", "arch"));
    archive
        .exec("INSERT INTO arch SELECT seq, CONCAT('v', seq) FROM seq_1_to_1000 WHERE seq % 4 = 0");
    let original = source.checksum("src");
    let job = two_server_job(&source, &archive, "id > 0", "batch_rows = 250");
    let (output, (loads, inserts, closed)) = run_counting_copies(&job, &mut archive, &[]);
    assert_success(&output, "identical copies already archived");
    assert_eq!(source.query_scalar::<u64>("SELECT COUNT(*) FROM src"), 0);
    assert_eq!(archive.checksum("arch"), original, "every row, once");
    assert_eq!(job.rows_deleted(), 1000);
    assert_eq!(
        job.rows_already(),
        250,
        "the copies already there (BatchCopied)"
    );
    assert_eq!(
        (loads, inserts, closed),
        (4, 4, 8),
        "4 batches: a LOAD DATA each, then a key list read and an INSERT of the other rows, both closed"
    );
}

/// A predicate that reads another table (`id NOT IN (SELECT id FROM hold)`) can change its
/// mind about a row between the locking read and the delete while another client changes that
/// table: a locked row the delete no longer matches, an unlocked row it now matches, possibly
/// both in one batch, so that the delete deletes as many rows as were locked but not the same
/// ones. The early delete stands only if the keys it deleted are the locked keys; otherwise it
/// is undone and the locked rows with identical copies are deleted by key. Whatever the writer
/// does, every row ends in exactly one table, and every archived row as it was.
#[test]
fn a_predicate_reading_another_table_that_changes_meanwhile_deletes_only_locked_rows() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const ROWS: u64 = 20_000;
    let main = common::sandbox();
    let other = common::archive_sandbox();
    // The source server's statement counters: no other test may use the servers meanwhile.
    let server = other.exclusive();
    let create = "CREATE TABLE src (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)";
    let mut undone_total = 0;
    for attempt in 1..=10 {
        let mut source = main.fresh_database("hold_src");
        let mut archive = server.fresh_database("hold_arch");
        source.exec(create);
        source.exec(&format!(
            "INSERT INTO src SELECT seq, CONCAT('v', seq) FROM seq_1_to_{ROWS}"
        ));
        source.exec("CREATE TABLE hold (id INT PRIMARY KEY)");
        source.exec(&format!(
            "INSERT INTO hold SELECT seq FROM seq_1_to_{ROWS} WHERE seq % 2 = 0"
        ));
        archive.exec(&create.replace("src", "arch"));
        let original = source.checksum("src");
        let job = two_server_job(
            &source,
            &archive,
            "id NOT IN (SELECT id FROM hold)",
            "batch_rows = 20000",
        );
        let url = format!(
            "mysql://archiver:{}@127.0.0.1:{}/{}",
            main.password(),
            main.port(),
            source.name()
        );
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        // Holds a row, or releases one, at random.
        let toggle = |x: u64| {
            let id = 1 + x % ROWS;
            match x % 2 {
                0 => format!("INSERT IGNORE INTO hold VALUES ({id})"),
                _ => format!("DELETE FROM hold WHERE id = {id}"),
            }
        };
        let writer = churn(url, stop.clone(), toggle);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let undone = server_counter(&mut source, "COM_ROLLBACK_TO_SAVEPOINT");
        let output = job.archiver("run", &[]);
        let undone = server_counter(&mut source, "COM_ROLLBACK_TO_SAVEPOINT") - undone;
        stop.store(true, Ordering::SeqCst);
        assert!(writer.join().unwrap() > 0, "the writer ran");
        assert_success(&output, &format!("attempt {attempt}"));
        let kept: Vec<i64> = source.query_rows("SELECT id FROM src ORDER BY id");
        let archived: Vec<i64> = archive.query_rows("SELECT id FROM arch ORDER BY id");
        let mut ids: Vec<i64> = kept.iter().chain(&archived).copied().collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=ROWS as i64).collect::<Vec<_>>(), "every row once");
        assert_eq!(
            super::cross::union(source.checksum("src"), archive.checksum("arch")),
            original,
            "every row as it was"
        );
        assert_eq!(job.rows_deleted(), archived.len() as u64);
        undone_total += undone;
        if undone_total > 0 {
            eprintln!("changing predicate: the early delete was undone after {attempt} attempt(s)");
            return;
        }
    }
    panic!("in 10 attempts the predicate never changed during the delete; the undo was never exercised");
}

/// Whether a session is copying rows into `db` (a `LOAD DATA` or `INSERT` in progress).
fn copying_into(db: &mut TestDb) -> bool {
    db.query_scalar::<u64>(&format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST
         WHERE DB = {} AND (INFO LIKE 'LOAD DATA%' OR INFO LIKE 'INSERT%')",
        common::sql_string(db.name())
    )) > 0
}

/// An unpaced two-server job deletes a batch's rows on the source while the archive copies
/// them (the two servers at once, the fast way); a paced one (`sleep_ms`, `sleep_coef`) only
/// once the archive has committed the copy, so that one server works for the job at a time
/// (`db::copy_and_delete`; ARCHITECTURE, "Speed, measured": what two servers at once cost an
/// application writing to the source). Seen from the servers: a test session holds the empty
/// archive table's gap lock, so the job's copy waits for it; meanwhile the job's source
/// transaction has deleted the whole batch (unpaced) or nothing (paced). Then the lock goes
/// and every row moves exactly once.
#[test]
fn a_paced_two_server_job_deletes_only_once_the_archive_committed() {
    for (pacing, at_once) in [
        ("", true),
        ("sleep_ms = 1", false),
        ("[throttle]\nsleep_coef = 0.5", false),
    ] {
        let extra = format!("batch_rows = 1000\nlock_wait_timeout_s = 60\n{pacing}");
        let mut moving =
            super::parallel_two_servers::Moving::new("paced", 600, MIXED_PREDICATE, &extra);
        let what = if at_once { "unpaced" } else { pacing };
        assert!(
            moving.matching > 0 && moving.matching < 1000,
            "{what}: one batch"
        );
        // REPEATABLE READ: the locking read of the empty table locks the gap every insert
        // into it needs.
        let gap = RowLock::hold(
            moving.archive.sandbox(),
            &moving.archive,
            "SELECT * FROM arch FOR UPDATE",
        );
        let mut run = Running::start(&moving.job);
        // Once the copy's statement is there it cannot finish while the gap stays locked.
        wait_for(&format!("{what}: the copy begins"), || {
            let ended = run.child.try_wait().unwrap();
            assert!(
                ended.is_none(),
                "{what}: ended before its copy: {}",
                run.stderr()
            );
            copying_into(&mut moving.archive)
        });
        let deleted = if at_once {
            let matching = moving.matching;
            wait_for(
                &format!("{what}: the batch deleted while the copy waits"),
                || {
                    let ended = run.child.try_wait().unwrap();
                    assert!(
                        ended.is_none(),
                        "{what}: ended before its delete: {}",
                        run.stderr()
                    );
                    moving.deleted_uncommitted() == matching
                },
            );
            matching
        } else {
            // Nothing may be deleted while the copy waits, however long it waits.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
            let mut deleted = 0;
            while deleted == 0 && std::time::Instant::now() < until {
                deleted = moving.deleted_uncommitted();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            deleted
        };
        let expected = if at_once { moving.matching } else { 0 };
        assert_eq!(
            deleted, expected,
            "{what}: rows deleted while the copy waits"
        );
        assert!(
            copying_into(&mut moving.archive),
            "{what}: the copy still waits"
        );
        drop(gap);
        let (code, stderr) = run.finish();
        assert_eq!(code, Some(0), "{what}: {stderr}");
        moving.assert_moved_exactly(what);
    }
}
