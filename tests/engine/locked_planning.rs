//! Planning that locks (issue 10): a batch's planning read locks its rows (`SELECT ... LIMIT n
//! FOR UPDATE`; with the archive on its own server, reading them whole) in the transaction the
//! batch then runs in. A row held by another session must still fail (and park) only its batch, not stall or
//! fail planning: planning falls back to a read without locks, as before.

use super::*;

/// Another session holds a row of the third batch past `lock_wait_timeout_s`: planning falls
/// back to an unlocked read (and says so at -v), the batch fails its attempts and is parked,
/// every other batch moves, exit 3. Released and reset, the next run moves the rest exactly.
#[test]
fn a_row_held_by_another_session_parks_its_batch_and_planning_goes_on() {
    held_row_parks_its_batch("lockplan", false);
}

/// The same with the archive reached through its own url (the two-step batch), whose
/// planning read locks and reads the batch's rows.
#[test]
fn a_row_held_by_another_session_parks_its_two_step_batch_and_planning_goes_on() {
    held_row_parks_its_batch("lockplan2", true);
}

fn held_row_parks_its_batch(name: &str, two_step: bool) {
    let sandbox = common::sandbox();
    let mut db = mixed_db(&sandbox, name, 1_000);
    let original = db.checksum("src");
    let matching = count_matching(&mut db, MIXED_PREDICATE);
    let extra = "batch_rows = 100\nattempts_max = 2\nlock_wait_timeout_s = 1";
    let job = if two_step {
        super::cross::cross_job(&sandbox, &db, &db, MIXED_PREDICATE, extra)
    } else {
        Job::new(&sandbox, &db, MIXED_PREDICATE, extra)
    };
    // The 250th matching row in key order (in the third batch), locked alone: by its key.
    let key = nth_matching_key(&mut db, MIXED_PREDICATE, 249);
    let blocker = hold_mixed_row(&sandbox, &db, key);
    let output = job.archiver("run", &["-v"]);
    drop(blocker);
    assert_exit(&output, 3, "a parked batch needs attention");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("planning batch 3 met a row lock")
            && stderr.contains("planning it without locks"),
        "{stderr}"
    );
    let events = job.events();
    let failed: Vec<&serde_json::Value> = events
        .iter()
        .filter(|(t, _)| t == "BatchFailed")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(failed.len(), 2, "two attempts at batch 3: {events:?}");
    assert!(failed.iter().all(|e| e["batch_id"] == 3), "{failed:?}");
    let left: u64 = db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {MIXED_PREDICATE}"));
    assert_eq!(left, 100, "only the parked batch's rows stay");
    // Every batch planned with its rows locked records exactly the rows it then moved.
    for (_, planned) in events.iter().filter(|(t, _)| t == "BatchPlanned") {
        let id = &planned["batch_id"];
        let Some((_, deleted)) = events
            .iter()
            .find(|(t, e)| t == "BatchDeleted" && &e["batch_id"] == id)
        else {
            continue;
        };
        assert_eq!(
            planned["rows_planned"], deleted["rows_deleted"],
            "batch {id}"
        );
    }

    assert_success(&job.archiver("reset", &["--failed"]), "reset");
    assert_success(&job.archiver("run", &[]), "run after the lock is gone");
    assert_moved(&mut db, MIXED_PREDICATE, original, matching);
    assert_eq!(
        job.status()["totals"]["rows_deleted"].as_u64(),
        Some(matching)
    );
}
