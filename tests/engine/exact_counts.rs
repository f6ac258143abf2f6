//! Exact counts after a crash (issue 9): an attempt makes `BatchCommitting` durable before its
//! source `COMMIT`; `BatchDeleted` follows unsynced. A process killed between the two loses
//! `BatchDeleted`, and the batch's next attempt must find out from the witness key whether the
//! commit happened, so that the log's counts equal the rows the tables say moved. Killed
//! before the commit (right after `BatchCommitting`), the transaction rolls back and the next
//! attempt must not count it.

use super::cross::{cross_job, union};
use super::*;

/// What the log's totals say, from `status --format json`: (rows moved, rows copied + rows
/// already archived).
pub(super) fn logged_totals(job: &Job) -> (u64, u64) {
    let status = job.status();
    let totals = &status["totals"];
    let moved = totals["rows_deleted"].as_u64().unwrap();
    let copied = totals["rows_copied"].as_u64().unwrap() + totals["rows_already"].as_u64().unwrap();
    (moved, copied)
}

/// The `earlier` field of every `BatchCommitting` that resolved an unconfirmed commit, decoded
/// from the WAL: "Committed" or "RolledBack".
fn resolutions(job: &Job) -> Vec<String> {
    job.events()
        .iter()
        .filter(|(t, _)| t == "BatchCommitting")
        .filter_map(|(_, fields)| match &fields["earlier"] {
            serde_json::Value::String(s) if s == "None" => None,
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o.keys().next().cloned(),
            other => panic!("unexpected earlier: {other}"),
        })
        .collect()
}

/// On one server: killed after the commit with `BatchDeleted` lost, and killed after
/// `BatchCommitting` before the commit; each time the resumed run ends with the log's counts
/// equal to the rows in the tables, and the WAL says how it resolved the claim.
#[test]
fn counts_are_exact_after_a_kill_on_either_side_of_the_commit() {
    let sandbox = common::sandbox();
    // (hook, how the next attempt resolves the claim, rows archived at the kill, rows the
    // log counts at the kill): batch 1 moves 199 rows (its first row is the conflict), batch
    // 2 moves 200.
    for (hook, resolved, archived_at_kill, logged_at_kill) in [
        ("BatchDeleted:2:unsynced", "Committed", 399, 199),
        ("BatchCommitting:2", "RolledBack", 199, 199),
        ("ConflictFound:1:unsynced", "Committed", 199, 0),
    ] {
        let what = format!("killed at {hook}");
        let mut db = mixed_db(&sandbox, "exact", 4_000);
        // One differing archive row in the first batch: a conflict, kept in the source.
        db.exec("INSERT INTO arch SELECT tenant, code, amount, happened, 'different', payload FROM src ORDER BY tenant, code LIMIT 1");
        let original = db.checksum_union("src", "arch");
        let matching = count_matching(&mut db, MIXED_PREDICATE);
        // `sleep_ms` runs one batch at a time (the next is planned only once the previous one
        // recorded its end): without it, batch 3 may run, sync its claim and commit while
        // batch 2's `COMMIT` is on its way, and be in the archive at the kill.
        let extra = "batch_rows = 200\nsleep_ms = 1";
        let job = Job::new(&sandbox, &db, MIXED_PREDICATE, extra);
        job.run_until_crash_after(hook);

        let events = job.events();
        let last = events.last().map(|e| e.0.as_str());
        assert_eq!(
            last,
            Some("BatchCommitting"),
            "{what}: the last durable record"
        );
        let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
        assert_eq!(
            archived - 1,
            archived_at_kill,
            "{what}: rows archived at the kill"
        );
        let (moved_in_log, _) = logged_totals(&job);
        assert_eq!(
            moved_in_log, logged_at_kill,
            "{what}: the log before the resume"
        );
        let next = job.status()["next_action"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            next.contains("first finding out whether the commit of its attempt 1 happened"),
            "{what}: status says the next run checks the unconfirmed commit: {next}"
        );

        let output = job.archiver("run", &[]);
        assert_exit(&output, 3, &format!("{what}: resumed run (one conflict)"));
        let left: u64 =
            db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {MIXED_PREDICATE}"));
        assert_eq!(left, 1, "{what}: only the conflicting row stays");
        let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
        assert_eq!(archived, matching, "{what}");
        assert_eq!(db.checksum_union("src", "arch"), original, "{what}");
        let (moved, copied) = logged_totals(&job);
        assert_eq!(
            moved,
            matching - 1,
            "{what}: the log counts every row moved once"
        );
        assert_eq!(copied, matching - 1, "{what}: and every row copied once");
        assert_eq!(
            job.status()["totals"]["conflicts"].as_u64(),
            Some(1),
            "{what}"
        );
        assert_eq!(resolutions(&job), vec![resolved.to_string()], "{what}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = if resolved == "Committed" {
            "had happened"
        } else {
            "did not happen"
        };
        assert!(stderr.contains(said), "{what}: {stderr}");
    }
}

/// The same with the archive on its own connection and URL (the two-step batch): the source
/// commit's `BatchDeleted` lost, then the source commit rolled back. One batch at a time
/// (`sleep_ms`), so that the kill leaves exactly one claim to resolve (batches in flight
/// beside it are `parallel_two_servers`' tests).
#[test]
fn counts_are_exact_after_a_kill_around_the_source_commit_of_the_two_step_batch() {
    let sandbox = common::sandbox();
    for (hook, resolved) in [
        ("BatchDeleted:2:unsynced", "Committed"),
        ("BatchCommitting:2", "RolledBack"),
    ] {
        let what = format!("two steps, killed at {hook}");
        let mut db = sandbox.fresh_database("xexact");
        let mut archive_db = sandbox.fresh_database("xexact_arch");
        create_mixed(&mut db, "src", 3_000);
        create_mixed(&mut archive_db, "arch", 0);
        let original = db.checksum("src");
        let matching = count_matching(&mut db, MIXED_PREDICATE);
        let job = cross_job(
            &sandbox,
            &db,
            &archive_db,
            MIXED_PREDICATE,
            "batch_rows = 150\nsleep_ms = 1",
        );
        job.run_until_crash_after(hook);
        assert_eq!(
            job.events().last().map(|e| e.0.clone()).as_deref(),
            Some("BatchCommitting"),
            "{what}"
        );
        assert_success(&job.archiver("run", &[]), &what);
        assert_eq!(
            archive_db.query_scalar::<u64>("SELECT COUNT(*) FROM arch"),
            matching,
            "{what}"
        );
        assert_eq!(
            union(db.checksum("src"), archive_db.checksum("arch")),
            original,
            "{what}"
        );
        let (moved, copied) = logged_totals(&job);
        assert_eq!((moved, copied), (matching, matching), "{what}");
        assert_eq!(resolutions(&job), vec![resolved.to_string()], "{what}");
    }
}
