//! The archive on its own server (`[archive] url`): copy and delete are separate transactions
//! on separate connections, the archive's commit recorded (`BatchCopied`) before the source's
//! claim and commit. Here the "other
//! server" is another database reached through its own connection and URL; the code path is
//! the same as for a second host.

use std::time::Duration;

use super::*;

/// A job whose archive table lives in `archive_db`, reached through its own URL.
pub(super) fn cross_job(
    sandbox: &Sandbox,
    db: &TestDb,
    archive_db: &TestDb,
    predicate: &str,
    extra: &str,
) -> Job {
    let job = Job::new(sandbox, db, predicate, extra);
    let text = std::fs::read_to_string(&job.config).unwrap().replace(
        "[archive]\n",
        &format!(
            "[archive]\nurl = \"mysql://archiver@127.0.0.1:{}/{}\"\npassword_env = \"ARCHIVER_PASSWORD\"\n",
            sandbox.port(),
            archive_db.name()
        ),
    );
    std::fs::write(&job.config, text).unwrap();
    job
}

/// Checksum of two tables in two databases taken together.
pub(super) fn union(a: (u64, u64, u64), b: (u64, u64, u64)) -> (u64, u64, u64) {
    (a.0 + b.0, a.1 ^ b.1, a.2.wrapping_add(b.2))
}

fn setup(sandbox: &Sandbox, rows: u64) -> (TestDb, TestDb) {
    let mut db = sandbox.fresh_database("xsrc");
    let mut archive_db = sandbox.fresh_database("xarch");
    create_mixed(&mut db, "src", rows);
    create_mixed(&mut archive_db, "arch", 0);
    (db, archive_db)
}

#[test]
fn archive_on_its_own_server_moves_everything_and_reports_conflicts() {
    let sandbox = common::sandbox();
    let (mut db, mut archive_db) = setup(&sandbox, 3_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    // Identical copies of c10..c19 already archived; a differing row under c301's key.
    let src = format!("`{}`.src", db.name());
    archive_db.exec(&format!(
        "INSERT INTO arch SELECT * FROM {src} WHERE code LIKE 'c1_'"
    ));
    archive_db.exec(&format!(
        "INSERT INTO arch SELECT tenant, code, amount + 1, happened, label, payload FROM {src} WHERE code = 'c301'"
    ));
    let identical = archive_db.query_scalar::<u64>("SELECT COUNT(*) FROM arch") - 1;
    let job = cross_job(
        &sandbox,
        &db,
        &archive_db,
        MIXED_PREDICATE,
        "batch_rows = 300",
    );

    let dry = job.archiver("run", &["--dry-run"]);
    assert_success(&dry, "dry run");
    assert!(String::from_utf8_lossy(&dry.stdout).contains("archive on its own server"));

    let output = job.archiver("run", &[]);
    assert_exit(&output, 3, "one conflict");
    let left: u64 = db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {MIXED_PREDICATE}"));
    assert_eq!(left, 1, "only the conflicting row stays");
    assert_eq!(
        archive_db.query_scalar::<u64>("SELECT COUNT(*) FROM arch"),
        matching
    );
    let events = job.events();
    assert!(
        events.iter().any(|(t, _)| t == "BatchCopied"),
        "copy and delete are separate steps"
    );
    let copied: u64 = events
        .iter()
        .filter(|(t, _)| t == "BatchCopied")
        .map(|(_, e)| e["rows_copied"].as_u64().unwrap())
        .sum();
    assert_eq!(copied, matching - identical - 1);
    assert_eq!(
        events.iter().filter(|(t, _)| t == "ConflictFound").count(),
        1
    );
    // Without the differing archive row, source + archive is the original, row for row.
    archive_db.exec("DELETE FROM arch WHERE code = 'c301'");
    assert_eq!(
        union(db.checksum("src"), archive_db.checksum("arch")),
        original
    );
}

#[test]
fn archive_on_its_own_server_resumes_after_the_copy_and_survives_kills() {
    let sandbox = common::sandbox();
    // 137,143 matching rows, 275 batches: enough that six kills after at most 220 ms each come
    // before the job is done (40,000 rows were once enough; the batches got faster).
    let (mut db, mut archive_db) = setup(&sandbox, 160_000);
    let predicate = "tenant < 6";
    let original = db.checksum("src");
    let matching = count_matching(&mut db, predicate);
    // One batch at a time (`sleep_ms`): the next is planned only once the previous one recorded
    // its end, so at the kill below batch 1 has committed and batch 3 has not begun.
    let job = cross_job(
        &sandbox,
        &db,
        &archive_db,
        predicate,
        "batch_rows = 500\nsleep_ms = 1",
    );

    // Killed right after the second BatchCopied is durable: the archive has committed the
    // batch, the source has not deleted it. The next run resumes at the delete step.
    job.run_until_crash_after("BatchCopied:2");
    let (_, lines) = job.inspect();
    let state = lines.iter().find(|l| l["kind"] == "state").unwrap();
    let next = state["summary"]["next_action"].as_str().unwrap_or_default();
    assert!(
        next.contains("batch 2") && next.contains("delete"),
        "{next}"
    );
    let both: u64 = db.query_scalar(&format!(
        "SELECT COUNT(*) FROM src s JOIN `{}`.arch a USING (tenant, code)",
        archive_db.name()
    ));
    assert_eq!(
        both, 500,
        "batch 2 is in both tables until its delete step runs"
    );

    // Then six kill -9s at varied moments (unless the job finishes first, which the assertion
    // below reports), and a final run to the end.
    let mut kills = 0;
    while kills < 6 {
        if !run_and_kill_after(&job, Duration::from_millis(20 + (kills * 37) % 200)) {
            break;
        }
        kills += 1;
    }
    assert_success(&job.archiver("run", &[]), "final run");
    eprintln!("cross-server: {kills} kills");
    assert!(
        kills >= 6,
        "only {kills} kills before the job finished; make the table larger"
    );
    let left: u64 = db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {predicate}"));
    assert_eq!(left, 0);
    assert_eq!(
        archive_db.query_scalar::<u64>("SELECT COUNT(*) FROM arch"),
        matching
    );
    assert_eq!(
        union(db.checksum("src"), archive_db.checksum("arch")),
        original
    );
}
