//! Resume after each step: the process is killed (SIGKILL, through the test-only hook) right
//! after each kind of WAL transition is durable, and the next run must continue at exactly the
//! right step and end with every row moved once.

use super::*;

/// (event after which the process dies, which occurrence, what replay must say next;
/// [`FROM_THE_LOG`]: the lowest batch the log has planned and not finished, else a plan).
const STEPS: &[(&str, u32, &str)] = &[
    ("LogCreated", 1, "start"),
    ("RunStarted", 1, "plan"),
    ("BatchPlanned", 1, "batch 1"),
    ("BatchPlanned", 3, FROM_THE_LOG),
    ("ConflictFound", 1, "batch"),
    ("BatchDeleted", 2, FROM_THE_LOG),
    ("BatchFailed", 1, "batch"),
    ("RunFinished", 1, "start"),
];

/// The next batch is planned while the previous one waits for its sync and commit, so
/// whether batch 3's `BatchPlanned` or batch 2's `BatchDeleted` comes first is a race the
/// test reads from the log it killed.
const FROM_THE_LOG: &str = "";

/// What the next action must mention after the kill, read from the log's records.
fn expected_from_the_log(events: &[(String, serde_json::Value)]) -> String {
    let ids = |kind: &str| -> std::collections::BTreeSet<u64> {
        (events.iter())
            .filter(|(k, _)| k == kind)
            .map(|(_, e)| e["batch_id"].as_u64().unwrap())
            .collect()
    };
    let done = ids("BatchDeleted");
    match ids("BatchPlanned").difference(&done).next() {
        Some(id) => format!("batch {id} "),
        None => "plan".to_string(),
    }
}

#[test]
fn killed_right_after_each_transition_resumes_at_the_right_step() {
    let sandbox = common::sandbox();
    for &(event, nth, next) in STEPS {
        let what = format!("killed after {event} #{nth}");
        let mut db = mixed_db(&sandbox, "resume", 4_000);
        // One differing archive row, so a conflict is found (and ConflictFound written).
        db.exec("INSERT INTO arch SELECT tenant, code, amount, happened, 'different', payload FROM src WHERE code = 'c401'");
        let original_rows: u64 = db.query_scalar("SELECT COUNT(*) FROM src");
        let matching = count_matching(&mut db, MIXED_PREDICATE);
        let job = Job::new(
            &sandbox,
            &db,
            MIXED_PREDICATE,
            "batch_rows = 200\nlock_wait_timeout_s = 1",
        );
        // For BatchFailed: another session holds a lock on the first row, so the first batch
        // times out (lock_wait_timeout_s = 1) and fails.
        let blocker = (event == "BatchFailed").then(|| {
            RowLock::hold(
                &sandbox,
                &db,
                "SELECT * FROM src ORDER BY tenant, code LIMIT 1 FOR UPDATE",
            )
        });
        job.run_until_crash_after(&format!("{event}:{nth}"));
        drop(blocker);

        // The last record in the log is the transition we died after, and replay's next
        // action is the right one.
        let events = job.events();
        assert_eq!(events.last().map(|e| e.0.as_str()), Some(event), "{what}");
        let (_, lines) = job.inspect();
        let state = lines
            .iter()
            .find(|l| l["kind"] == "state")
            .expect("inspect prints the state");
        let next_action = state["summary"]["next_action"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let next = match next {
            FROM_THE_LOG => expected_from_the_log(&events),
            fixed => fixed.to_string(),
        };
        let next = next.as_str();
        assert!(
            next_action.contains(next),
            "{what}: next action {next_action:?} should mention {next:?}"
        );

        // Run again to the end: everything moved once, the conflicting row kept.
        let output = job.archiver("run", &[]);
        assert_exit(&output, 3, &format!("{what}: resumed run (one conflict)"));
        let left: u64 =
            db.query_scalar(&format!("SELECT COUNT(*) FROM src WHERE {MIXED_PREDICATE}"));
        assert_eq!(left, 1, "{what}: only the conflicting row stays");
        let archived: u64 = db.query_scalar("SELECT COUNT(*) FROM arch");
        assert_eq!(archived, matching, "{what}");
        let total: u64 =
            db.query_scalar("SELECT (SELECT COUNT(*) FROM src) + (SELECT COUNT(*) FROM arch)");
        assert_eq!(
            total,
            original_rows + 1,
            "{what}: nothing lost or duplicated"
        );
    }
}
