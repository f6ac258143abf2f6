//! Two-server batches in flight side by side (issue 10, `parallel` with `[archive] url`): each
//! on its own source and archive connections and key range, the archive's copy of each
//! committed before its source delete, their claims made durable together. The archive is a
//! second real server (`common::archive_sandbox`, another time zone, a binary log). Every test
//! checks both tables (counts, and checksums of source and archive taken together) and the
//! log's own counts, decoded from the WAL.

use std::time::Duration;

use super::cross::union;
use super::exact_counts::logged_totals;
use super::parallel::{
    batch_records, failed_batches, planned_in_flight, run_with_the_row_after_the_first_batch_held,
};
use super::*;

/// A two-server job over a `mixed` source table of `rows` rows on the main sandbox and an
/// empty archive table of the same shape on the archive sandbox, with what it must end with.
pub(super) struct Moving {
    pub source: TestDb,
    pub archive: TestDb,
    predicate: &'static str,
    original: (u64, u64, u64),
    pub matching: u64,
    pub job: Job,
}

impl Moving {
    pub fn new(prefix: &str, rows: u64, predicate: &'static str, extra: &str) -> Moving {
        let mut source = common::sandbox().fresh_database(prefix);
        let mut archive = common::archive_sandbox().fresh_database(&format!("{prefix}_a"));
        create_mixed(&mut source, "src", rows);
        create_mixed(&mut archive, "arch", 0);
        let original = source.checksum("src");
        let matching = count_matching(&mut source, predicate);
        let job = two_server_job(&source, &archive, predicate, extra);
        Moving {
            source,
            archive,
            predicate,
            original,
            matching,
            job,
        }
    }

    /// The matching rows that the job's open transaction has deleted from the source, as a
    /// dirty read sees them: `READ UNCOMMITTED` for the one statement's transaction reads the
    /// newest version of every row, an uncommitted deletion included, and takes no lock.
    ///
    /// Not `information_schema.INNODB_TRX`'s `trx_rows_modified`: MariaDB serves that table
    /// from a cache that it refreshes only when nobody has read it for 100 ms
    /// (`trx_i_s_cache`), so a poll every 20 ms kept the first answer for good. Measured on the
    /// sandbox (10.11): a session that deleted 1 row, then 10 more a second later, stayed at 1
    /// for three seconds under the 20 ms poll, and showed 11 at once under a 150 ms one. The
    /// paced test's unpaced case (`cross_copy`) failed that way whenever its first poll came
    /// before the job's delete (a busy machine), and its paced cases could not have seen a
    /// delete that came after their first poll.
    pub fn deleted_uncommitted(&mut self) -> u64 {
        (self.source).exec("SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED");
        self.matching - count_matching(&mut self.source, self.predicate)
    }

    /// Every matching row moved exactly once, between the servers: none left in the source,
    /// as many in the archive, none there that does not match, both tables together holding
    /// the original rows; and the log's counts equal to them.
    pub fn assert_moved_exactly(&mut self, what: &str) {
        let predicate = self.predicate;
        let left: u64 =
            (self.source).query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {predicate}"));
        assert_eq!(left, 0, "{what}: matching rows left in the source");
        let archived: u64 = self.archive.query_scalar("SELECT COUNT(*) FROM arch");
        assert_eq!(archived, self.matching, "{what}: rows in the archive");
        let stray: u64 = self.archive.query_scalar(&format!(
            "SELECT COUNT(*) FROM arch WHERE NOT ({predicate})"
        ));
        assert_eq!(stray, 0, "{what}: archived rows that do not match");
        assert_eq!(
            union(self.source.checksum("src"), self.archive.checksum("arch")),
            self.original,
            "{what}: source and archive together hold the original rows"
        );
        let matching = self.matching;
        assert_eq!(logged_totals(&self.job), (matching, matching), "{what}");
    }
}

/// Four two-server batches in flight: every matching row moves exactly once, every row is
/// copied by this run, every batch records its copy, then its claim, then its end, in that
/// order, batches were planned while others ran, and none waited for another's locks.
#[test]
fn two_server_batches_in_flight_move_every_row_exactly_once() {
    let extra = "batch_rows = 60\nparallel = 4\nlock_wait_timeout_s = 1";
    let mut moving = Moving::new("par2s", 6_000, MIXED_PREDICATE, extra);
    assert_success(&moving.job.archiver("run", &[]), "4 in flight");
    moving.assert_moved_exactly("4 in flight");
    let events = moving.job.events();
    let copied: u64 = (events.iter())
        .filter(|(t, _)| t == "BatchCopied")
        .map(|(_, e)| e["rows_copied"].as_u64().unwrap())
        .sum();
    assert_eq!(
        copied, moving.matching,
        "every row copied once, by this run"
    );
    let records = batch_records(&moving.job);
    let overlapping = planned_in_flight(&records);
    assert!(
        overlapping > 5,
        "only {overlapping} batches planned while another ran"
    );
    let at = |kind: &str, id: u64| {
        (records.iter())
            .position(|(k, i)| k == kind && *i == id)
            .unwrap_or_else(|| panic!("no {kind} for batch {id}"))
    };
    for (_, id) in records.iter().filter(|(k, _)| k == "BatchDeleted") {
        let order = [
            "BatchPlanned",
            "BatchCopied",
            "BatchCommitting",
            "BatchDeleted",
        ];
        let places: Vec<usize> = order.iter().map(|kind| at(kind, *id)).collect();
        assert!(
            places.is_sorted(),
            "batch {id}: {order:?} at {places:?} in {records:?}"
        );
    }
    assert_eq!(failed_batches(&records), Vec::<u64>::new());
}

/// Killed with two-server batches in flight: right after a copy's record is durable (the
/// archive committed, the source not), after it was appended and lost, on either side of a
/// claim's sync, after a commit whose `BatchDeleted` was lost, and after a plan was lost.
/// Resumed (again with batches in flight), the run ends with both tables exact and the log's
/// counts equal to them.
#[test]
fn a_kill_with_two_server_batches_in_flight_resumes_exactly() {
    for hook in [
        "BatchCopied:4",
        "BatchCopied:5:unsynced",
        "BatchCommitting:5",
        "BatchCommitting:6:unsynced",
        "BatchDeleted:4:unsynced",
        "BatchPlanned:7:unsynced",
    ] {
        let extra = "batch_rows = 40\nparallel = 3";
        let mut moving = Moving::new("par2skill", 3_000, MIXED_PREDICATE, extra);
        moving.job.run_until_crash_after(hook);
        let output = moving.job.archiver("run", &[]);
        let what = format!("resumed after a kill at {hook}");
        assert_success(&output, &what);
        moving.assert_moved_exactly(&what);
    }
}

/// Eight `kill -9`s of a two-server run with batches in flight, each after 40 to 340 ms, then
/// a run to the end: nothing lost, nothing moved twice, the log's counts equal to the tables.
/// 137,143 matching rows in batches of 100 (about 1,400 batches), so that every kill comes
/// before the job is done and cuts batches in the middle.
#[test]
fn random_kills_of_two_server_batches_in_flight_lose_nothing() {
    let extra = "batch_rows = 100\nparallel = 3";
    let mut moving = Moving::new("par2srand", 160_000, "tenant < 6", extra);
    let mut kills = 0;
    while kills < 8 {
        if !run_and_kill_after(&moving.job, Duration::from_millis(40 + (kills * 53) % 300)) {
            break; // the job finished before the kill; the assertion below says so
        }
        kills += 1;
    }
    assert_success(&moving.job.archiver("run", &[]), "final run");
    eprintln!("two-server batches in flight: {kills} kills");
    assert!(
        kills >= 8,
        "only {kills} kills before the job finished; make the table larger"
    );
    moving.assert_moved_exactly("after random kills");
}

/// The row right after a two-server batch's upper key is the next batch's first row, locked
/// by the next batch's planning read while both are in flight. The batch's early delete
/// must never wait for it: here another session holds that row past `lock_wait_timeout_s`,
/// and the first batch still moves (only the held row's batch fails and is parked);
/// released and reset, the next run moves the rest exactly.
#[test]
fn a_two_server_batch_never_waits_for_the_row_after_its_range() {
    let extra = "batch_rows = 100\nparallel = 2\nattempts_max = 1\nlock_wait_timeout_s = 1";
    let mut moving = Moving::new("par2snext", 1_000, MIXED_PREDICATE, extra);
    run_with_the_row_after_the_first_batch_held(&moving.job, &mut moving.source);
    assert_success(&moving.job.archiver("reset", &["--failed"]), "reset");
    assert_success(
        &moving.job.archiver("run", &[]),
        "run after the lock is gone",
    );
    moving.assert_moved_exactly("after the held row's batch was reset");
}

/// A row held by another session past `lock_wait_timeout_s` while two-server batches run
/// beside its batch: that batch fails (transient) and is run again once the row is free;
/// nothing is lost, nothing moves twice.
#[test]
fn a_lock_wait_among_two_server_batches_in_flight_is_retried_without_loss() {
    let extra = "batch_rows = 100\nparallel = 3\nattempts_max = 50\nlock_wait_timeout_s = 1";
    let mut moving = Moving::new("par2slock", 3_000, MIXED_PREDICATE, extra);
    let key = nth_matching_key(&mut moving.source, MIXED_PREDICATE, 549);
    let blocker = hold_mixed_row(moving.source.sandbox(), &moving.source, key);
    let mut run = Running::start(&moving.job);
    run.wait_for_log("failed (Transient)");
    drop(blocker);
    let (code, stderr) = run.finish();
    assert_eq!(code, Some(0), "{stderr}");
    moving.assert_moved_exactly("after a lock wait");
}
