//! Concurrent writers: another connection inserts, updates and deletes source rows (matching
//! and not) while the job runs. Triggers record every version of every source row in `hist`,
//! so afterwards each row's fate can be checked exactly: an archived row holds the last
//! version it had in the source, a kept row holds its last version, a row deleted by the
//! writer is nowhere, and no key is in both tables.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

const ROWS: u64 = 40_000;
const PREDICATE: &str = "created_at < '2025-01-01'";

/// The row's content as one number, the same expression for both tables.
fn row_crc(alias: &str) -> String {
    format!("CRC32(CONCAT_WS('|', {alias}.id, {alias}.grp, {alias}.val, COALESCE({alias}.note, '<null>'), {alias}.created_at))")
}

fn setup(db: &mut TestDb) {
    db.exec(
        "CREATE TABLE src (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, grp INT NOT NULL, val INT NOT NULL,
         note VARCHAR(50) NULL, created_at DATETIME NOT NULL, KEY (created_at)) ENGINE=InnoDB",
    );
    db.exec("CREATE TABLE arch LIKE src");
    db.exec("CREATE TABLE hist (seq BIGINT AUTO_INCREMENT PRIMARY KEY, id BIGINT UNSIGNED NOT NULL, crc BIGINT NULL, op CHAR(1) NOT NULL, KEY (id, seq)) ENGINE=InnoDB");
    let new = row_crc("NEW");
    db.exec(&format!("CREATE TRIGGER src_ins AFTER INSERT ON src FOR EACH ROW INSERT INTO hist (id, crc, op) VALUES (NEW.id, {new}, 'I')"));
    db.exec(&format!("CREATE TRIGGER src_upd AFTER UPDATE ON src FOR EACH ROW INSERT INTO hist (id, crc, op) VALUES (NEW.id, {new}, 'U')"));
    db.exec("CREATE TRIGGER src_del AFTER DELETE ON src FOR EACH ROW INSERT INTO hist (id, crc, op) VALUES (OLD.id, NULL, IF(@writer = 1, 'W', 'D'))");
    db.exec(&format!(
        "INSERT INTO src (grp, val, note, created_at) SELECT seq % 10, seq, IF(seq % 3 = 0, NULL, CONCAT('n', seq)),
         TIMESTAMP'2024-06-01 00:00:00' + INTERVAL seq * 10 MINUTE FROM seq_1_to_{ROWS}"
    ));
}

/// Random inserts, updates (moving rows into and out of the predicate) and deletes, until
/// `stop`. Errors (deadlocks, lock waits against the job) are expected and ignored.
fn writer(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        use mysql_async::prelude::Queryable;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut conn = mysql_async::Conn::from_url(url).await.expect("writer connection");
            conn.query_drop("SET SESSION innodb_lock_wait_timeout = 2").await.unwrap();
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut ops = 0;
            while !stop.load(Ordering::SeqCst) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let id = 1 + x % (ROWS + ops / 3 + 1);
                let sql = match x % 6 {
                    0 => format!("INSERT INTO src (grp, val, note, created_at) VALUES ({}, {}, 'new', '2024-{:02}-01')", x % 10, x % 1000, 1 + x % 12),
                    1 => format!("INSERT INTO src (grp, val, note, created_at) VALUES ({}, {}, NULL, '2026-01-01')", x % 10, x % 1000),
                    2 => format!("UPDATE src SET val = val + 1, note = CONCAT('u', val) WHERE id = {id}"),
                    3 => format!("UPDATE src SET created_at = IF(created_at < '2025-01-01', '2026-06-01', '2024-12-31') WHERE id = {id}"),
                    4 => format!("SET @writer = 1; DELETE FROM src WHERE id = {id}; SET @writer = 0"),
                    _ => format!("UPDATE src SET note = NULL WHERE id = {id}"),
                };
                let _ = conn.query_drop(sql).await;
                let _ = conn.query_drop("SET @writer = 0").await;
                ops += 1;
            }
            ops
        })
    })
}

#[test]
fn concurrent_writers_lose_nothing_and_archive_the_last_version() {
    concurrent_writers("concurrent", "");
}

/// The same with three batches in flight (`parallel`): their copies skip rows other sessions
/// hold, and every row each batch locked when it was planned still moves.
#[test]
fn concurrent_writers_lose_nothing_with_batches_in_flight() {
    concurrent_writers("concpar", "parallel = 3\n");
}

fn concurrent_writers(name: &str, extra: &str) {
    let sandbox = common::sandbox();
    let mut db = sandbox.fresh_database(name);
    setup(&mut db);
    let job = Job::new(
        &sandbox,
        &db,
        PREDICATE,
        // The history trigger on DELETE is the test's own audit of what left the source:
        // allowed by name, as an operator would allow a known-harmless audit trigger.
        &format!("batch_rows = 200\nattempts_max = 20\n{extra}\n[safety]\nallow_triggers = [\"src_del\"]"),
    );
    let url = format!(
        "mysql://archiver:{}@127.0.0.1:{}/{}",
        sandbox.password(),
        sandbox.port(),
        db.name()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2).map(|_| writer(url.clone(), stop.clone())).collect();
    let output = job.archiver("run", &[]);
    stop.store(true, Ordering::SeqCst);
    let ops: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_success(&output, "run under concurrent writes");
    eprintln!("concurrent writers: {ops} statements during the run");
    assert!(ops > 100, "the writers did run during the job ({ops})");
    // Every row inside the run's key bound that matched when its batch ran was archived: a
    // matching row still in the source at or below the bound must be one the writers changed
    // (moved into the predicate behind the cursor, or updated while the job held it back).
    let events = job.events();
    let (_, started) = events
        .iter()
        .find(|(t, _)| t == "RunStarted")
        .expect("RunStarted");
    let bound = &started["key_bound"][0];
    let bound = bound["UInt"]
        .as_u64()
        .or(bound["Int"].as_u64())
        .expect("integer key bound");
    let untouched_left: u64 = db.query_scalar(&format!(
        "SELECT COUNT(*) FROM src s WHERE s.id <= {bound} AND ({PREDICATE})
         AND NOT EXISTS (SELECT 1 FROM hist h WHERE h.id = s.id AND h.op = 'U')"
    ));
    assert_eq!(
        untouched_left, 0,
        "matching rows within the bound that no writer touched were left behind"
    );
    // Rows the writers moved into the predicate behind the job's cursor are archived by the
    // next run; after it, no matching row is left.
    assert_success(&job.archiver("run", &[]), "second run");
    let left: u64 = db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {PREDICATE}"));
    assert_eq!(left, 0, "matching rows left in the source");
    let stray: u64 = db.query_scalar(&format!(
        "SELECT COUNT(*) FROM arch WHERE NOT ({PREDICATE})"
    ));
    assert_eq!(stray, 0, "archived rows that never matched");

    db.exec("CREATE TABLE last_op AS SELECT h.id, h.op, (SELECT h2.crc FROM hist h2 WHERE h2.id = h.id AND h2.op IN ('I', 'U') ORDER BY h2.seq DESC LIMIT 1) AS crc
             FROM hist h JOIN (SELECT id, MAX(seq) AS seq FROM hist GROUP BY id) m ON m.seq = h.seq");
    let (src_crc, arch_crc) = (row_crc("s"), row_crc("a"));
    let checks = [
        ("keys in both tables", "SELECT COUNT(*) FROM src s JOIN arch a USING (id)".to_string()),
        ("rows deleted by the writer that still exist", "SELECT COUNT(*) FROM last_op l WHERE l.op = 'W' AND (EXISTS (SELECT 1 FROM src s WHERE s.id = l.id) OR EXISTS (SELECT 1 FROM arch a WHERE a.id = l.id))".to_string()),
        ("archived rows missing or not their last version", format!("SELECT COUNT(*) FROM last_op l WHERE l.op = 'D' AND NOT EXISTS (SELECT 1 FROM arch a WHERE a.id = l.id AND {arch_crc} = l.crc)")),
        ("live rows missing or not their last version", format!("SELECT COUNT(*) FROM last_op l WHERE l.op IN ('I', 'U') AND NOT EXISTS (SELECT 1 FROM src s WHERE s.id = l.id AND {src_crc} = l.crc)")),
        ("archive rows with no history", "SELECT COUNT(*) FROM arch a WHERE NOT EXISTS (SELECT 1 FROM last_op l WHERE l.id = a.id AND l.op = 'D')".to_string()),
    ];
    for (what, sql) in checks {
        let count: u64 = db.query_scalar(&sql);
        assert_eq!(count, 0, "{what}");
    }
    let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
    assert!(archived > 10_000, "{archived}");
}
