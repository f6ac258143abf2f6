//! Unit tests of the state machine: a typical life step by step, every contradiction, summary
//! rendering, determinism, and random valid logs driven through `next_action`.

// Tests are tables of cases and stories told in order; they read better whole, so the
// 70-line limit on functions (clippy.toml) is for the product's code only.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::event::{
    KeyValue, RunOutcome, RunPaused, RunResumed, RunSettingsImage, SnapshotFinished,
    SnapshotSettings,
};

fn k(v: u64) -> Key {
    vec![KeyValue::UInt(v)]
}

fn job() -> JobIdentity {
    JobIdentity {
        source_server: "db1:3306".into(),
        source_schema: "app".into(),
        source_table: "rewards".into(),
        archive_server: "db1:3306".into(),
        archive_schema: "app".into(),
        archive_table: "rewards_archive".into(),
        predicate: "created_at < '2025-06-01'".into(),
    }
}

fn created() -> Event {
    Event::LogCreated(LogCreated {
        job: job(),
        created_unix_us: 1_000,
    })
}

fn started_with(run_id: u64, bound: Option<u64>, attempts_max: u32) -> Event {
    Event::RunStarted(RunStarted {
        run_id,
        now_unix_us: 5_000_000,
        key_bound: bound.map(k),
        batch_rows: 1000,
        attempts_max,
        started_unix_us: 10_000_000,
    })
}

fn started(run_id: u64, bound: Option<u64>) -> Event {
    started_with(run_id, bound, 3)
}

fn planned(batch_id: u64, run_id: u64, lower: Option<u64>, upper: u64) -> Event {
    Event::BatchPlanned(BatchPlanned {
        batch_id,
        run_id,
        lower: lower.map(k),
        upper: k(upper),
        rows_planned: 10,
    })
}

fn copied(batch_id: u64) -> Event {
    Event::BatchCopied(BatchCopied {
        batch_id,
        rows_copied: 8,
        rows_already: 2,
    })
}

fn deleted(batch_id: u64) -> Event {
    Event::BatchDeleted(BatchDeleted {
        batch_id,
        rows_copied: 1,
        rows_already: 1,
        rows_deleted: 9,
        rows_conflicting: 1,
    })
}

/// The counts `deleted` carries, as a `BatchCommitting` announces them.
fn deleted_counts() -> AttemptCounts {
    AttemptCounts {
        rows_copied: 1,
        rows_already: 1,
        rows_deleted: 9,
        rows_conflicting: 1,
    }
}

fn committing(batch_id: u64, attempt: u32, earlier: EarlierCommit) -> Event {
    Event::BatchCommitting(BatchCommitting {
        batch_id,
        attempt,
        counts: deleted_counts(),
        witness: Some(k(7)),
        earlier,
    })
}

fn conflict(batch_id: u64, key: u64) -> Event {
    Event::ConflictFound(ConflictFound {
        batch_id,
        key: k(key),
    })
}

fn failed(batch_id: u64, attempt: u32, class: ErrorClass) -> Event {
    Event::BatchFailed(BatchFailed {
        batch_id,
        attempt,
        class,
        message: format!("error {attempt} of batch {batch_id}"),
    })
}

fn reset(batch_id: u64) -> Event {
    Event::BatchReset(BatchReset {
        batch_id,
        reason: "--failed".into(),
    })
}

fn finished(run_id: u64) -> Event {
    Event::RunFinished(RunFinished {
        run_id,
        outcome: RunOutcome::Completed,
        finished_unix_us: 20_000_000,
    })
}

fn resumed(run_id: u64, at_s: i64) -> Event {
    Event::RunResumed(RunResumed {
        run_id,
        resumed_unix_us: at_s * 1_000_000,
    })
}

fn paused(run_id: u64, at_s: i64) -> Event {
    Event::RunPaused(RunPaused {
        run_id,
        paused_unix_us: at_s * 1_000_000,
    })
}

fn changed(run_id: u64, batch_rows: Option<u32>, sleep_ms: Option<u32>, lag: Option<u32>) -> Event {
    Event::SettingsChanged(SettingsChanged {
        run_id,
        batch_rows,
        sleep_ms,
        max_lag_s: lag,
        changed_unix_us: 15_000_000,
    })
}

/// Applies events with LSNs 1, 2, ...; panics on the first error.
fn replay(events: &[Event]) -> State {
    let mut state = State::new();
    for (i, event) in events.iter().enumerate() {
        state.apply(i as u64 + 1, event).unwrap();
    }
    state
}

/// An expected action, compared with [`brief`]: the fields it carries besides its kind, ids,
/// step and keys are checked by `actions_carry_what_their_execution_needs`.
fn exec(batch_id: u64, step: Step) -> Action {
    Action::ExecuteBatch(BatchOrder {
        batch_id,
        step,
        lower: None,
        upper: k(0),
        now_unix_us: 0,
        attempt: 0,
        claim: None,
    })
}

fn plan(run_id: u64, after: Option<u64>, bound: u64) -> Action {
    Action::PlanNext(PlanOrder {
        run_id,
        after: after.map(k),
        bound: k(bound),
        rows: 0,
        rows_set_live: false,
        now_unix_us: 0,
        batch_id: 0,
        sleep_ms: None,
        max_lag_s: None,
    })
}

fn start(run_id: u64) -> Action {
    Action::StartRun { run_id }
}

/// What an action is, as the life tests compare it: its kind, ids, step and keys.
fn brief(action: &Action) -> String {
    match action {
        Action::StartRun { run_id } => format!("start run {run_id}"),
        other => other.to_string(),
    }
}

use ErrorClass::{Batch as BatchClass, Fatal, Transient};

/// A typical life: each event, then the action the state must answer.
fn life() -> Vec<(Event, Action)> {
    vec![
        (created(), start(1)),
        (started(1, Some(100)), plan(1, None, 100)),
        (planned(1, 1, None, 10), exec(1, Step::Copy)),
        (copied(1), exec(1, Step::Delete)),
        (deleted(1), plan(1, Some(10), 100)),
        (planned(2, 1, Some(10), 20), exec(2, Step::Copy)),
        (failed(2, 1, Transient), exec(2, Step::Copy)),
        (failed(2, 2, Transient), exec(2, Step::Copy)),
        // Third attempt of three: parked; planning goes on.
        (failed(2, 3, Transient), plan(1, Some(20), 100)),
        (planned(3, 1, Some(20), 30), exec(3, Step::Copy)),
        (conflict(3, 25), exec(3, Step::Copy)),
        (deleted(3), plan(1, Some(30), 100)),
        (reset(2), exec(2, Step::Copy)),
        (deleted(2), plan(1, Some(30), 100)),
        (planned(4, 1, Some(30), 100), exec(4, Step::Copy)),
        (copied(4), exec(4, Step::Delete)),
        (failed(4, 1, Transient), exec(4, Step::Delete)),
        // A fatal error leaves the batch pending: the engine stops, the next invocation retries.
        (failed(4, 2, Fatal), exec(4, Step::Delete)),
        (deleted(4), Action::FinishRun { run_id: 1 }),
        (finished(1), start(2)),
        // An empty source: nothing to plan.
        (started(2, None), Action::FinishRun { run_id: 2 }),
        (finished(2), start(3)),
        (started(3, Some(200)), plan(3, None, 200)),
        (planned(5, 3, None, 150), exec(5, Step::Copy)),
        // A batch-class error parks at once.
        (failed(5, 1, BatchClass), plan(3, Some(150), 200)),
        (planned(6, 3, Some(150), 200), exec(6, Step::Copy)),
        (deleted(6), Action::FinishRun { run_id: 3 }),
        // A run finishes with a parked batch.
        (finished(3), start(4)),
        // Reset without an open run: a run must start before the batch runs again.
        (reset(5), start(4)),
        (started_with(4, Some(300), 5), exec(5, Step::Copy)),
        (copied(5), exec(5, Step::Delete)),
        (deleted(5), plan(4, None, 300)),
        (planned(7, 4, None, 300), exec(7, Step::Copy)),
        (deleted(7), Action::FinishRun { run_id: 4 }),
        (finished(4), start(5)),
    ]
}

fn life_events() -> Vec<Event> {
    life().into_iter().map(|(event, _)| event).collect()
}

#[test]
fn typical_life_answers_the_expected_action_after_each_event() {
    let mut state = State::new();
    assert_eq!(state.next_action(), Action::CreateLog);
    for (i, (event, expected)) in life().into_iter().enumerate() {
        state.apply(i as u64 + 1, &event).unwrap();
        assert_eq!(
            brief(&state.next_action()),
            brief(&expected),
            "after event {} ({event:?})",
            i + 1
        );
        check_invariants(&state);
    }
}

/// The engine executes an action without asking the state anything: the action carries the
/// batch's key range, the attempt number, and the `NOW()` of the run that planned the batch
/// (not of the run that executes it, for a reset batch of an earlier run).
#[test]
fn actions_carry_what_their_execution_needs() {
    let later_run = Event::RunStarted(RunStarted {
        run_id: 2,
        now_unix_us: 9_000_000,
        key_bound: Some(k(300)),
        batch_rows: 250,
        attempts_max: 3,
        started_unix_us: 20_000_000,
    });
    let mut state = replay(&[created(), started(1, Some(100)), planned(1, 1, None, 10)]);
    let order = BatchOrder {
        batch_id: 1,
        step: Step::Copy,
        lower: None,
        upper: k(10),
        now_unix_us: 5_000_000,
        attempt: 1,
        claim: None,
    };
    assert_eq!(state.next_action(), Action::ExecuteBatch(order.clone()));
    let mut lsn = 4;
    for event in [
        failed(1, 1, Transient),
        failed(1, 2, BatchClass),
        finished(1),
        reset(1),
        later_run,
        copied(1),
    ] {
        state.apply(lsn, &event).unwrap();
        lsn += 1;
        if lsn == 5 {
            assert_eq!(
                state.next_action(),
                Action::ExecuteBatch(BatchOrder {
                    attempt: 2,
                    ..order.clone()
                })
            );
        }
    }
    assert_eq!(
        state.next_action(),
        Action::ExecuteBatch(BatchOrder {
            step: Step::Delete,
            attempt: 1,
            ..order
        }),
        "a reset batch of run 1 keeps run 1's NOW() in run 2"
    );
    state.apply(lsn, &deleted(1)).unwrap();
    assert_eq!(
        state.next_action(),
        Action::PlanNext(PlanOrder {
            run_id: 2,
            after: None,
            bound: k(300),
            rows: 250,
            rows_set_live: false,
            now_unix_us: 9_000_000,
            batch_id: 2,
            sleep_ms: None,
            max_lag_s: None,
        })
    );
    state.apply(lsn + 1, &finished(2)).unwrap();
    assert_eq!(state.next_action(), Action::StartRun { run_id: 3 });
}

#[test]
fn typical_life_ends_with_the_expected_batches_and_counts() {
    let state = replay(&life_events());
    assert_eq!(state.runs().len(), 4);
    assert!(state.open_run().is_none());
    assert_eq!(state.last_run().unwrap().run_id, 4);
    assert_eq!(state.pending_batches().count(), 0);
    assert_eq!(state.parked_batches().count(), 0);
    assert!(state.batches().all(|b| b.status == BatchStatus::Done));

    let b2 = state.batch(2).unwrap();
    assert_eq!((b2.attempts, b2.failures, b2.resets), (0, 3, 1));
    let e = b2.last_error.as_ref().unwrap();
    assert_eq!((e.attempt, e.class), (3, Transient));
    assert_eq!(e.message, "error 3 of batch 2");

    let b4 = state.batch(4).unwrap();
    assert_eq!((b4.attempts, b4.failures), (2, 2));
    // BatchCopied (8 + 2) plus BatchDeleted (1 + 1).
    assert_eq!(
        (b4.rows_copied, b4.rows_already, b4.rows_deleted),
        (9, 3, 9)
    );

    // Batch 5 was planned by run 3 and executed under run 4: it counts for run 3.
    assert_eq!(state.run_of(5).unwrap().run_id, 3);
    assert_eq!(state.run(3).unwrap().counts.batches_done, 2);
    assert_eq!(state.run(4).unwrap().counts.batches_done, 1);
    assert_eq!(state.run(4).unwrap().attempts_max, 5);

    let run1 = &state.run(1).unwrap().counts;
    assert_eq!(run1.batches_planned, 4);
    assert_eq!(run1.failures, 5);
    assert_eq!(run1.conflicts, 1);
    assert_eq!(state.totals().batches_done, 7);
    assert_eq!(state.totals().rows_deleted, 63);
    assert_eq!(
        state.conflicts(),
        &[Conflict {
            batch_id: 3,
            key: k(25),
            lsn: 11
        }]
    );
    assert_eq!(state.next_batch_id(), 8);
    assert_eq!(state.next_run_id(), 5);
    assert_eq!(state.job(), Some(&job()));
    check_invariants(&state);
}

#[test]
fn replaying_the_same_log_twice_gives_identical_states() {
    let events = life_events();
    let first = replay(&events);
    let second = replay(&events);
    assert_eq!(first, second);
    assert_eq!(first.summary(30_000_000), second.summary(30_000_000));
}

#[test]
fn transient_failures_stop_at_the_attempt_limit_and_fatal_ones_too() {
    // attempts_max 2: the second failure parks, whatever the retryable class.
    for class in [Transient, Fatal] {
        let mut events = vec![
            created(),
            started_with(1, Some(9), 2),
            planned(1, 1, None, 9),
        ];
        events.push(failed(1, 1, class));
        let state = replay(&events);
        assert_eq!(
            state.batch(1).unwrap().status,
            BatchStatus::Planned,
            "{class:?}"
        );
        assert_eq!(state.failed_batches().count(), 1);
        events.push(failed(1, 2, class));
        let state = replay(&events);
        assert_eq!(
            state.batch(1).unwrap().status,
            BatchStatus::Parked { step: Step::Copy },
            "{class:?}"
        );
        assert_eq!(state.failed_batches().count(), 0);
        assert_eq!(state.parked_batches().count(), 1);
    }
}

#[test]
fn a_parked_copied_batch_resumes_at_the_delete_step_after_reset() {
    let state = replay(&[
        created(),
        started(1, Some(9)),
        planned(1, 1, None, 9),
        copied(1),
        failed(1, 1, BatchClass),
    ]);
    assert_eq!(
        state.batch(1).unwrap().status,
        BatchStatus::Parked { step: Step::Delete }
    );
    assert_eq!(state.next_action(), Action::FinishRun { run_id: 1 });
    let mut state = state;
    state.apply(6, &reset(1)).unwrap();
    assert_eq!(brief(&state.next_action()), brief(&exec(1, Step::Delete)));
    // Attempts start again at 1 after a reset.
    state.apply(7, &failed(1, 1, Transient)).unwrap();
}

#[test]
fn a_reset_of_a_pending_batch_only_restarts_its_attempts() {
    let mut state = replay(&[
        created(),
        started(1, Some(9)),
        planned(1, 1, None, 9),
        failed(1, 1, Transient),
    ]);
    state.apply(5, &reset(1)).unwrap();
    let b = state.batch(1).unwrap();
    assert_eq!(
        (b.status, b.attempts, b.failures),
        (BatchStatus::Planned, 0, 1)
    );
}

/// Every contradiction: the events before it, the bad event, and the problem expected.
fn contradictions() -> Vec<(&'static str, Vec<Event>, Event, Problem)> {
    let c = created;
    let parked_then_finished = vec![
        c(),
        started(1, Some(9)),
        planned(1, 1, None, 9),
        failed(1, 1, BatchClass),
        finished(1),
    ];
    let mut wide = match planned(2, 1, Some(10), 20) {
        Event::BatchPlanned(p) => p,
        _ => unreachable!(),
    };
    wide.upper.push(KeyValue::Int(1));
    let mut empty_bound = match started(1, Some(1)) {
        Event::RunStarted(s) => s,
        _ => unreachable!(),
    };
    empty_bound.key_bound = Some(vec![]);
    let mut zero_rows = match started(1, Some(1)) {
        Event::RunStarted(s) => s,
        _ => unreachable!(),
    };
    zero_rows.batch_rows = 0;
    let one_batch = vec![c(), started(1, Some(100)), planned(1, 1, None, 10)];
    let done_batch = vec![
        c(),
        started(1, Some(100)),
        planned(1, 1, None, 10),
        deleted(1),
    ];
    let wrong = |batch_id, status, needs| Problem::WrongStatus {
        batch_id,
        status,
        needs,
    };
    vec![
        (
            "run before the log",
            vec![],
            started(1, None),
            Problem::NoLogCreated,
        ),
        (
            "second log created",
            vec![c()],
            c(),
            Problem::LogAlreadyCreated { created_lsn: 1 },
        ),
        (
            "run while one is open",
            vec![c(), started(1, None)],
            started(2, None),
            Problem::RunStillOpen { run_id: 1 },
        ),
        (
            "run id skips",
            vec![c()],
            started(2, None),
            Problem::RunIdOutOfOrder {
                got: 2,
                expected: 1,
            },
        ),
        (
            "run id repeats",
            vec![c(), started(1, None), finished(1)],
            started(1, None),
            Problem::RunIdOutOfOrder {
                got: 1,
                expected: 2,
            },
        ),
        (
            "zero batch rows",
            vec![c()],
            Event::RunStarted(zero_rows),
            Problem::ZeroLimit {
                run_id: 1,
                field: "batch_rows",
            },
        ),
        (
            "zero attempts",
            vec![c()],
            started_with(1, Some(1), 0),
            Problem::ZeroLimit {
                run_id: 1,
                field: "attempts_max",
            },
        ),
        (
            "bound without columns",
            vec![c()],
            Event::RunStarted(empty_bound),
            Problem::EmptyKey,
        ),
        (
            "plan with no run",
            vec![c()],
            planned(1, 1, None, 10),
            Problem::NoOpenRun,
        ),
        (
            "plan for a finished run",
            vec![c(), started(1, None), finished(1)],
            planned(1, 1, None, 10),
            Problem::NoOpenRun,
        ),
        (
            "plan for another run",
            vec![c(), started(1, Some(100))],
            planned(1, 2, None, 10),
            Problem::NotOpenRun {
                run_id: 2,
                open_run_id: 1,
            },
        ),
        (
            "batch id skips",
            vec![c(), started(1, Some(100))],
            planned(2, 1, None, 10),
            Problem::BatchIdOutOfOrder {
                got: 2,
                expected: 1,
            },
        ),
        (
            "batch id repeats",
            one_batch.clone(),
            planned(1, 1, Some(10), 20),
            Problem::BatchIdOutOfOrder {
                got: 1,
                expected: 2,
            },
        ),
        (
            "plan without a bound",
            vec![c(), started(1, None)],
            planned(1, 1, None, 10),
            Problem::RunHasNoBound { run_id: 1 },
        ),
        (
            "plan past the bound",
            vec![c(), started(1, Some(10)), planned(1, 1, None, 10)],
            planned(2, 1, Some(10), 20),
            Problem::PlannedPastBound {
                run_id: 1,
                bound: "(10)".into(),
            },
        ),
        (
            "first batch not at the start",
            vec![c(), started(1, Some(100))],
            planned(1, 1, Some(5), 10),
            Problem::LowerNotCursor {
                batch_id: 1,
                run_id: 1,
                lower: "key (5)".into(),
                cursor: "the start of the table".into(),
            },
        ),
        (
            "gap after the cursor",
            one_batch.clone(),
            planned(2, 1, Some(11), 20),
            Problem::LowerNotCursor {
                batch_id: 2,
                run_id: 1,
                lower: "key (11)".into(),
                cursor: "key (10)".into(),
            },
        ),
        (
            "restart from the start",
            one_batch.clone(),
            planned(2, 1, None, 20),
            Problem::LowerNotCursor {
                batch_id: 2,
                run_id: 1,
                lower: "the start of the table".into(),
                cursor: "key (10)".into(),
            },
        ),
        (
            "key wider than the bound",
            one_batch.clone(),
            Event::BatchPlanned(wide),
            Problem::KeyWidth {
                run_id: 1,
                expected: 1,
                got: 2,
            },
        ),
        (
            "empty range",
            one_batch.clone(),
            planned(2, 1, Some(10), 10),
            Problem::EmptyRange {
                batch_id: 2,
                key: "(10)".into(),
            },
        ),
        (
            "copy of an unknown batch",
            vec![c(), started(1, Some(100))],
            copied(1),
            Problem::UnknownBatch { batch_id: 1 },
        ),
        (
            "delete of an unknown batch",
            one_batch.clone(),
            deleted(2),
            Problem::UnknownBatch { batch_id: 2 },
        ),
        (
            "conflict in an unknown batch",
            one_batch.clone(),
            conflict(0, 1),
            Problem::UnknownBatch { batch_id: 0 },
        ),
        (
            "failure of an unknown batch",
            one_batch.clone(),
            failed(7, 1, Transient),
            Problem::UnknownBatch { batch_id: 7 },
        ),
        (
            "reset of an unknown batch",
            vec![c()],
            reset(1),
            Problem::UnknownBatch { batch_id: 1 },
        ),
        (
            "copied twice",
            vec![
                c(),
                started(1, Some(100)),
                planned(1, 1, None, 10),
                copied(1),
            ],
            copied(1),
            wrong(1, BatchStatus::Copied, "planned"),
        ),
        (
            "copied after done",
            done_batch.clone(),
            copied(1),
            wrong(1, BatchStatus::Done, "planned"),
        ),
        (
            "deleted twice",
            done_batch.clone(),
            deleted(1),
            wrong(1, BatchStatus::Done, "planned or copied"),
        ),
        (
            "conflict after done",
            done_batch.clone(),
            conflict(1, 5),
            wrong(1, BatchStatus::Done, "planned or copied"),
        ),
        (
            "failure after done",
            done_batch.clone(),
            failed(1, 1, Transient),
            wrong(1, BatchStatus::Done, "planned or copied"),
        ),
        (
            "reset of a done batch",
            done_batch.clone(),
            reset(1),
            wrong(1, BatchStatus::Done, "not done"),
        ),
        (
            "failure of a parked batch",
            {
                let mut e = parked_then_finished.clone();
                e.pop();
                e
            },
            failed(1, 2, Transient),
            wrong(
                1,
                BatchStatus::Parked { step: Step::Copy },
                "planned or copied",
            ),
        ),
        (
            "delete of a parked batch",
            {
                let mut e = parked_then_finished.clone();
                e.pop();
                e
            },
            deleted(1),
            wrong(
                1,
                BatchStatus::Parked { step: Step::Copy },
                "planned or copied",
            ),
        ),
        (
            "execution with no open run",
            {
                let mut e = parked_then_finished.clone();
                e.push(reset(1));
                e
            },
            copied(1),
            Problem::NoOpenRun,
        ),
        (
            "conflict with no open run",
            {
                let mut e = parked_then_finished.clone();
                e.push(reset(1));
                e
            },
            conflict(1, 3),
            Problem::NoOpenRun,
        ),
        (
            "conflict key too wide",
            one_batch.clone(),
            Event::ConflictFound(ConflictFound {
                batch_id: 1,
                key: vec![KeyValue::UInt(1), KeyValue::UInt(2)],
            }),
            Problem::KeyWidth {
                run_id: 1,
                expected: 1,
                got: 2,
            },
        ),
        (
            "attempt skips",
            one_batch.clone(),
            failed(1, 2, Transient),
            Problem::AttemptOutOfOrder {
                batch_id: 1,
                got: 2,
                expected: 1,
            },
        ),
        (
            "attempt repeats",
            {
                let mut e = one_batch.clone();
                e.push(failed(1, 1, Transient));
                e
            },
            failed(1, 1, Transient),
            Problem::AttemptOutOfOrder {
                batch_id: 1,
                got: 1,
                expected: 2,
            },
        ),
        (
            "finish with a pending batch",
            one_batch.clone(),
            finished(1),
            Problem::RunHasPendingBatch {
                run_id: 1,
                batch_id: 1,
            },
        ),
        (
            "finish another run",
            vec![c(), started(1, None)],
            finished(2),
            Problem::NotOpenRun {
                run_id: 2,
                open_run_id: 1,
            },
        ),
        (
            "finish twice",
            vec![c(), started(1, None), finished(1)],
            finished(1),
            Problem::NoOpenRun,
        ),
        (
            "finish with no run",
            vec![c()],
            finished(1),
            Problem::NoOpenRun,
        ),
        (
            "settings changed with no run",
            vec![c()],
            changed(1, Some(10), None, None),
            Problem::NoOpenRun,
        ),
        (
            "settings changed for a finished run",
            vec![c(), started(1, None), finished(1)],
            changed(1, None, Some(10), None),
            Problem::NoOpenRun,
        ),
        (
            "settings changed for another run",
            vec![c(), started(1, None)],
            changed(2, None, None, Some(3)),
            Problem::NotOpenRun {
                run_id: 2,
                open_run_id: 1,
            },
        ),
        (
            "settings changed to zero batch rows",
            one_batch.clone(),
            changed(1, Some(0), Some(5), None),
            Problem::ZeroLimit {
                run_id: 1,
                field: "batch_rows",
            },
        ),
    ]
}

/// `archiver ctl set` (issue 9): a `SettingsChanged` reaches the open run's next `PlanOrder`,
/// merges with earlier changes setting by setting, survives a resume (replay), and ends with
/// the run: the next run starts from what its `RunStarted` says.
#[test]
fn live_settings_reach_the_next_plan_order_and_end_with_the_run() {
    let mut events = vec![
        created(),
        started(1, Some(100)),
        planned(1, 1, None, 10),
        deleted(1),
    ];
    let order = |state: &State| match state.next_action() {
        Action::PlanNext(order) => (
            order.rows,
            order.rows_set_live,
            order.sleep_ms,
            order.max_lag_s,
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(order(&replay(&events)), (1000, false, None, None));
    events.push(changed(1, Some(5), Some(20), None));
    let state = replay(&events);
    assert_eq!(order(&state), (5, true, Some(20), None));
    let live = state.open_run().unwrap().live;
    assert_eq!(
        live,
        LiveSettings {
            batch_rows: Some(5),
            sleep_ms: Some(20),
            max_lag_s: None,
            changed_lsn: 5,
            changed_unix_us: 15_000_000,
        }
    );
    // A later change of one setting keeps the others.
    events.push(changed(1, None, None, Some(3)));
    events.push(planned(2, 1, Some(10), 15));
    let state = replay(&events);
    assert_eq!(state.open_run().unwrap().batch_rows, 1000, "as started");
    assert_eq!(state.open_run().unwrap().batch_rows_now(), 5);
    events.push(deleted(2));
    assert_eq!(order(&replay(&events)), (5, true, Some(20), Some(3)));
    let lines = replay(&events).summary(20_000_000).lines().join("\n");
    assert!(
        lines.contains("settings changed live at 1970-01-01 00:00:15 UTC: batch_rows 5, sleep_ms 20, max_lag_s 3"),
        "{lines}"
    );
    // The next run starts from the job file's values again.
    events.push(finished(1));
    events.push(started(2, Some(200)));
    let state = replay(&events);
    assert_eq!(order(&state), (1000, false, None, None));
    assert!(state.run(1).unwrap().live.any(), "run 1 keeps its history");
    assert!(!state.open_run().unwrap().live.any());
}

#[test]
fn every_contradiction_is_an_error_that_leaves_the_state_unchanged() {
    for (name, before, bad, expected) in contradictions() {
        let mut state = replay(&before);
        let snapshot = state.clone();
        let lsn = before.len() as u64 + 1;
        let err = state.apply(lsn, &bad).expect_err(name);
        assert_eq!(err.problem, expected, "{name}");
        assert_eq!(err.lsn, lsn, "{name}");
        assert_eq!(err.event, bad.name(), "{name}");
        assert_eq!(state.check(lsn, &bad), Err(err.clone()), "{name}");
        assert_eq!(state, snapshot, "{name}: a failed apply changed the state");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("record at lsn {lsn} ({})", bad.name())),
            "{text}"
        );
        assert!(!text.contains("\n"), "{text}");
    }
}

#[test]
fn lsns_must_increase() {
    let mut state = replay(&[created(), started(1, None)]);
    for lsn in [0, 1, 2] {
        let err = state.apply(lsn, &finished(1)).unwrap_err();
        assert_eq!(err.problem, Problem::LsnNotIncreasing { previous: 2 });
    }
    // Gaps are allowed (the state does not own LSN numbering).
    state.apply(10, &finished(1)).unwrap();
    assert_eq!(state.last_lsn(), 10);
}

#[test]
fn error_messages_name_the_record_and_the_contradiction() {
    let mut state = replay(&[created(), started(1, Some(100)), planned(1, 1, None, 10)]);
    let err = state.apply(4, &planned(2, 1, Some(11), 20)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "record at lsn 4 (BatchPlanned) contradicts the log before it: batch 2 starts after \
         key (11), but run 1's cursor is at key (10) (batches must follow each other)"
    );
    let err = state.apply(4, &reset(9)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "record at lsn 4 (BatchReset) contradicts the log before it: batch 9 was never planned"
    );
}

#[test]
fn long_error_messages_are_cut_at_a_character_boundary() {
    let mut state = replay(&[created(), started(1, Some(100)), planned(1, 1, None, 10)]);
    let message = "é".repeat(ERROR_MESSAGE_BYTES_MAX);
    let event = Event::BatchFailed(BatchFailed {
        batch_id: 1,
        attempt: 1,
        class: Transient,
        message,
    });
    state.apply(4, &event).unwrap();
    let kept = &state.batch(1).unwrap().last_error.as_ref().unwrap().message;
    assert!(kept.len() <= ERROR_MESSAGE_BYTES_MAX + "…".len());
    assert!(kept.ends_with('…'));
}

#[test]
fn actions_read_as_sentences() {
    let cases = [
        (Action::CreateLog, "create the log"),
        (start(3), "start a new run"),
        (
            exec(412, Step::Delete),
            "resume batch 412 at the delete step",
        ),
        (exec(7, Step::Copy), "run batch 7 from the copy step"),
        (
            plan(3, Some(1000), 5000),
            "plan the next batch of run 3 after key (1000), up to key (5000)",
        ),
        (
            plan(3, None, 5000),
            "plan the first batch of run 3, up to key (5000)",
        ),
        (Action::FinishRun { run_id: 2 }, "finish run 2"),
        (
            {
                let Action::ExecuteBatch(mut order) = exec(9, Step::Copy) else {
                    unreachable!()
                };
                order.claim = Some(Claim {
                    lsn: 40,
                    attempt: 2,
                    counts: deleted_counts(),
                    witness: Some(k(7)),
                });
                Action::ExecuteBatch(order)
            },
            "run batch 9 from the copy step, first finding out whether the commit of its \
             attempt 2 happened (cut short before it was confirmed)",
        ),
    ];
    for (action, text) in cases {
        assert_eq!(action.to_string(), text);
    }
}

#[test]
fn keys_read_as_sql_like_tuples() {
    let cases: Vec<(Key, &str)> = vec![
        (vec![KeyValue::Int(-5), KeyValue::UInt(7)], "(-5, 7)"),
        (vec![KeyValue::Bytes(b"o'k".to_vec())], "('o''k')"),
        (vec![KeyValue::Bytes(vec![0xff, 0x00])], "(0xff00)"),
        (
            vec![KeyValue::Bytes(vec![b'a'; 70])],
            &*Box::leak(format!("('{}…')", "a".repeat(64)).into_boxed_str()),
        ),
        (
            vec![KeyValue::Date(2024, 1, 2, 3, 4, 5, 0)],
            "('2024-01-02 03:04:05')",
        ),
        (
            vec![KeyValue::Date(2024, 1, 2, 3, 4, 5, 60)],
            "('2024-01-02 03:04:05.000060')",
        ),
        (vec![KeyValue::Time(true, 1, 2, 3, 4, 0)], "('-26:03:04')"),
    ];
    for (key, text) in cases {
        assert_eq!(key_text(&key), text);
    }
}

/// A completed run planned its whole key range, even when its last batch ended below the bound
/// (nothing past it matched): `status` said "62.6% of the key range planned" for such a run.
#[test]
fn a_completed_run_has_planned_all_of_its_range() {
    let events = vec![
        created(),
        started(1, Some(110)),
        planned(1, 1, None, 10),
        deleted(1),
        planned(2, 1, Some(10), 70),
        deleted(2),
    ];
    let open = replay(&events);
    let p = open.summary(20_000_000).current_run.unwrap();
    assert!(
        (p.fraction_planned.unwrap() - 0.6).abs() < 1e-9,
        "open: 60 of 100"
    );
    let mut events = events;
    events.push(finished(1));
    let p = replay(&events).summary(20_000_000).current_run.unwrap();
    assert_eq!(p.fraction_planned, Some(1.0), "completed");
    assert_eq!(
        p.cursor.as_deref(),
        Some("(70)"),
        "the cursor is still where it stopped"
    );
}

#[test]
fn summary_reports_progress_rate_eta_and_problems() {
    let mut events = vec![
        created(),
        started(1, Some(110)),
        planned(1, 1, None, 10),
        deleted(1),
        planned(2, 1, Some(10), 60),
        conflict(2, 33),
        deleted(2),
        planned(3, 1, Some(60), 80),
        failed(3, 1, Transient),
    ];
    let state = replay(&events);
    // Started at 10 s; now is 28 s: 18 rows, but no invocation has ended, so no rate yet.
    let s = state.summary(28_000_000);
    let p = s.current_run.as_ref().unwrap();
    assert_eq!(p.run_id, 1);
    assert!(p.open);
    assert_eq!(
        p.batches,
        BatchTally {
            total: 3,
            done: 2,
            pending: 1,
            failed: 1,
            parked: 0
        }
    );
    assert_eq!(p.rows_moved, 18);
    assert_eq!(p.elapsed_s, 18.0);
    assert_eq!((p.active_s, p.rate_rows_per_s), (0.0, None));
    // From the first batch's upper bound 10 to the bound 110: cursor 80 is 70%.
    assert!((p.fraction_planned.unwrap() - 0.7).abs() < 1e-9);
    assert_eq!(p.cursor.as_deref(), Some("(80)"));
    assert_eq!(s.next_action, "run batch 3 from the copy step");
    assert_eq!(s.conflicts.total, 1);
    assert_eq!(s.conflicts.listed[0].key, "(33)");
    assert_eq!(s.problem_batches_total, 1);
    assert_eq!(
        s.problem_batches[0].status,
        "failed, pending at the copy step"
    );
    assert_eq!(
        s.problem_batches[0].last_error.as_ref().unwrap().message,
        "error 1 of batch 3"
    );

    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["current_run"]["rows_moved"], 18);
    assert_eq!(
        json["problem_batches"][0]["last_error"]["class"],
        "Transient"
    );
    assert_eq!(json["job"]["source_table"], "rewards");

    let lines = s.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("no invocation of it has recorded its end yet")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("70.0% of the key range planned")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("key (33) in batch 2 (run 1)")),
        "{lines:#?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        "next: run batch 3 from the copy step"
    );

    // The invocation stops at 28 s; the next resumes at 1000 s (a night later) and is still
    // running at 1005 s: the rate is over the 18 s the run ran, not the 995 s since it began.
    let mut later = events.clone();
    later.extend([paused(1, 28), resumed(1, 1000)]);
    let s = replay(&later).summary(1_005_000_000);
    let p = s.current_run.as_ref().unwrap();
    assert_eq!((p.elapsed_s, p.active_s, p.active_rows), (995.0, 18.0, 18));
    assert_eq!(p.rate_rows_per_s, Some(1.0));
    let lines = s.lines();
    assert!(
        lines
            .iter()
            .any(|l| l
                .contains("18 rows moved in 18s of running (1.0 rows/s; 16m35s since it started)")),
        "{lines:#?}"
    );

    // A finished run: elapsed and active time up to its end.
    events.extend([
        deleted(3),
        planned(4, 1, Some(80), 110),
        deleted(4),
        finished(1),
    ]);
    let s = replay(&events).summary(99_000_000);
    let p = s.current_run.as_ref().unwrap();
    assert!(!p.open);
    assert_eq!(
        (p.elapsed_s, p.active_s, p.fraction_planned),
        (10.0, 10.0, Some(1.0))
    );
    assert_eq!(p.rate_rows_per_s, Some(3.6));
    assert_eq!(s.next_action, "start a new run");
}

#[test]
fn summary_of_an_empty_log_and_of_non_integer_keys() {
    let s = State::new().summary(0);
    assert_eq!(
        s.lines(),
        vec![
            "the log is empty: no job recorded yet",
            "next: create the log"
        ]
    );
    serde_json::to_string(&s).unwrap();

    let text_key = |t: &str| vec![KeyValue::Bytes(t.as_bytes().to_vec())];
    let state = replay(&[
        created(),
        Event::RunStarted(RunStarted {
            run_id: 1,
            now_unix_us: 0,
            key_bound: Some(text_key("zz")),
            batch_rows: 10,
            attempts_max: 1,
            started_unix_us: 0,
        }),
        Event::BatchPlanned(BatchPlanned {
            batch_id: 1,
            run_id: 1,
            lower: None,
            upper: text_key("mm"),
            rows_planned: 10,
        }),
    ]);
    let p = state.summary(0).current_run.unwrap();
    assert_eq!(
        (p.fraction_planned, p.active_rows, p.rate_rows_per_s),
        (None, 0, None)
    );
    assert_eq!(
        state.next_action().to_string(),
        "run batch 1 from the copy step"
    );
}

/// An invocation killed before it could record its end is left out of the run's active time,
/// with the rows it moved; the next invocation's span counts. A snapshot keeps the activity.
#[test]
fn active_time_leaves_out_an_invocation_whose_end_is_missing() {
    let events = vec![
        created(),
        started(1, Some(1000)),
        planned(1, 1, None, 10),
        deleted(1),
        // killed: no RunPaused; the next invocation resumes at 100 s
        resumed(1, 100),
        planned(2, 1, Some(10), 20),
        deleted(2),
        paused(1, 104),
        resumed(1, 200),
        paused(1, 201),
    ];
    let state = replay(&events);
    let run = state.open_run().unwrap();
    assert_eq!(run.activity.active_us, 5_000_000);
    assert_eq!(run.activity.active_rows, 9);
    assert_eq!(run.counts.rows_deleted, 18);
    let p = state.summary(300_000_000).current_run.unwrap();
    assert_eq!(p.rate_rows_per_s, Some(1.8));

    let mut compacted = State::new();
    for (i, event) in state.snapshot(10, 0).unwrap().iter().enumerate() {
        compacted.apply(100 + i as u64, event).unwrap();
    }
    assert_eq!(compacted.open_run().unwrap().activity, run.activity);
    assert!(compacted.same_but_last_lsn(&state.retained(10)));

    // A resume or pause must name the open run.
    let mut wrong = events.clone();
    wrong.push(paused(2, 300));
    let mut state = State::new();
    let error = wrong
        .iter()
        .enumerate()
        .find_map(|(i, e)| state.apply(i as u64 + 1, e).err())
        .expect("a pause of a run that is not open is refused");
    assert!(
        matches!(error.problem, Problem::NotOpenRun { .. }),
        "{error:?}"
    );
}

/// Invariants that hold after every event of every valid log, and of a snapshot of one (which
/// may hold only some of the done batches: the checks over a run's batches then cover what it
/// holds).
fn check_invariants(state: &State) {
    let runs = state.runs();
    let mut runs_sum = Counts::default();
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run.run_id, i as u64 + 1);
        if i + 1 < runs.len() {
            assert!(!run.is_open(), "only the last run may be open");
        }
        runs_sum.add(&run.counts);
        let first_upper = run.first_batch_id.and_then(|id| state.batch(id));
        if let Some(first) = first_upper {
            assert_eq!(run.first_upper.as_ref(), Some(&first.upper));
        }
        // The cursor is the last planned batch's upper bound; batches chain.
        if let Some(last) = run.last_batch_id.and_then(|id| state.batch(id)) {
            assert_eq!(run.cursor.as_ref(), Some(&last.upper));
        }
        assert_eq!(run.cursor.is_some(), run.last_batch_id.is_some());
        let mut previous: Option<Option<&Key>> = Some(None);
        let mut sum = Counts::default();
        let mut complete = true;
        for id in run.batch_ids() {
            let Some(batch) = state.batch(id) else {
                complete = false;
                previous = None;
                continue;
            };
            assert_eq!(batch.run_id, run.run_id);
            if let Some(previous) = previous {
                assert_eq!(batch.lower.as_ref(), previous);
            }
            previous = Some(Some(&batch.upper));
            sum.add(&batch_counts(batch));
        }
        if complete {
            assert_eq!(
                run.counts, sum,
                "run {} counts are the sum over its batches",
                run.run_id
            );
        }
    }
    assert_eq!(*state.totals(), runs_sum, "totals are the sum over runs");
    let mut sum = Counts::default();
    let mut previous_id = 0;
    for batch in state.batches() {
        assert!(batch.batch_id > previous_id && batch.batch_id < state.next_batch_id());
        previous_id = batch.batch_id;
        sum.add(&batch_counts(batch));
        assert_eq!(state.pending.contains(&batch.batch_id), batch.is_pending());
        assert_eq!(
            state.parked.contains(&batch.batch_id),
            matches!(batch.status, BatchStatus::Parked { .. })
        );
    }
    assert!(state
        .pending
        .iter()
        .chain(&state.parked)
        .all(|id| state.batch(*id).is_some()));
    if state.batches().count() as u64 == state.totals().batches_planned {
        assert_eq!(*state.totals(), sum, "totals are the sum over batches");
    }
    assert_eq!(
        state.conflicts().len() as u64 + state.conflicts_unstored(),
        state.totals().conflicts
    );
    match state.next_action() {
        Action::ExecuteBatch(BatchOrder { batch_id, step, .. }) => {
            assert!(state.open_run().is_some());
            assert_eq!(state.pending.first(), Some(&batch_id));
            assert_eq!(state.batch(batch_id).unwrap().step(), Some(step));
        }
        Action::PlanNext(PlanOrder { run_id, .. }) | Action::FinishRun { run_id } => {
            assert!(state.pending.is_empty());
            assert_eq!(state.open_run().unwrap().run_id, run_id);
        }
        Action::StartRun { run_id } => {
            assert!(state.open_run().is_none() && state.job().is_some());
            assert_eq!(run_id, state.next_run_id());
        }
        Action::CreateLog => assert!(state.job().is_none()),
    }
}

fn batch_counts(b: &Batch) -> Counts {
    Counts {
        batches_planned: 1,
        batches_done: u64::from(b.status == BatchStatus::Done),
        rows_planned: b.rows_planned,
        rows_copied: b.rows_copied,
        rows_already: b.rows_already,
        rows_deleted: b.rows_deleted,
        rows_conflicting: b.rows_conflicting,
        conflicts: b.conflicts,
        failures: b.failures,
    }
}

/// A reference model of one batch, folded from its events independently of `State`.
#[derive(Debug, Default, Clone, Copy)]
struct ModelBatch {
    copied: bool,
    done: bool,
    parked: bool,
    attempts: u32,
}

impl ModelBatch {
    fn status(&self) -> BatchStatus {
        let step = if self.copied {
            Step::Delete
        } else {
            Step::Copy
        };
        match (self.done, self.parked, self.copied) {
            (true, _, _) => BatchStatus::Done,
            (false, true, _) => BatchStatus::Parked { step },
            (false, false, true) => BatchStatus::Copied,
            (false, false, false) => BatchStatus::Planned,
        }
    }
}

/// Drives a state through `next_action` with outcomes chosen by `choices`; returns the log and
/// checks invariants, the batch model and atomicity of rejected events on the way.
fn drive(choices: &[u8]) -> (Vec<Event>, State) {
    drive_from(State::new(), choices)
}

/// [`drive`] from `state` on (a replayed or a compacted one): the events appended, with LSNs
/// from `state.last_lsn() + 1`, and the state after them.
fn drive_from(mut state: State, choices: &[u8]) -> (Vec<Event>, State) {
    let mut events = Vec::new();
    let mut model: BTreeMap<u64, ModelBatch> =
        state.batches().map(|b| (b.batch_id, model_of(b))).collect();
    let mut attempts_max = state.last_run().map_or(0, |r| r.attempts_max);
    let open_live = state.open_run().map(|r| r.live).unwrap_or_default();
    let (mut live_rows, mut live_sleep, mut live_lag) = (
        open_live.batch_rows,
        open_live.sleep_ms,
        open_live.max_lag_s,
    );
    let mut tape = choices.iter().copied();
    while let Some(c) = tape.next() {
        let mut next = || tape.next().unwrap_or(0);
        let mut batch_events = Vec::new();
        if c % 13 == 0 && !model.is_empty() {
            // An operator reset of some batch that is not done (between invocations or not).
            let not_done: Vec<u64> = model
                .iter()
                .filter(|(_, m)| !m.done)
                .map(|(&id, _)| id)
                .collect();
            if !not_done.is_empty() {
                batch_events.push(reset(not_done[next() as usize % not_done.len()]));
            }
        }
        if batch_events.is_empty() && c % 17 == 0 {
            // An invocation ends and the next continues the open run; or (c % 34) it was
            // killed and the next continues without the end recorded.
            if let Some(run) = state.open_run() {
                let at = 10 + i64::from(next());
                if c % 34 != 0 {
                    batch_events.push(paused(run.run_id, at));
                }
                batch_events.push(resumed(run.run_id, at + i64::from(next())));
            }
        }
        if c % 17 == 3 && state.open_run().is_some() {
            // An operator's `ctl set` while the run runs.
            let run_id = state.open_run().unwrap().run_id;
            let rows = (next() % 3 != 0).then(|| 1 + u32::from(next() % 50));
            let sleep = (next() % 2 == 0).then(|| u32::from(next()));
            let lag = (next() % 3 == 0).then(|| 1 + u32::from(next()));
            batch_events.push(changed(run_id, rows, sleep, lag));
            live_rows = rows.or(live_rows);
            live_sleep = sleep.or(live_sleep);
            live_lag = lag.or(live_lag);
        }
        // Now and then, batches in flight (`parallel`): a random set of the pending ones is
        // busy, so the action is a later pending batch or the next plan, and their records
        // interleave with the busy batches' later ones.
        let busy: BTreeSet<u64> = if c % 5 == 1 {
            let pick = next();
            let pending: Vec<u64> = state.pending_batches().map(|b| b.batch_id).collect();
            pending
                .iter()
                .enumerate()
                .filter(|(i, _)| (pick >> (i % 8)) & 1 == 1)
                .map(|(_, &id)| id)
                .collect()
        } else {
            BTreeSet::new()
        };
        let action = state.next_action_besides(&busy);
        if busy.is_empty() {
            assert_eq!(action.as_ref(), Some(&state.next_action()));
        }
        if let Some(Action::ExecuteBatch(order)) = &action {
            assert!(
                !busy.contains(&order.batch_id),
                "a busy batch is not run twice"
            );
        }
        if action.is_none() {
            assert!(state.pending_batches().any(|b| busy.contains(&b.batch_id)));
            assert!(state.pending_batches().all(|b| busy.contains(&b.batch_id)));
        }
        let others_pending = state.pending_batches().next().is_some();
        if let (true, Some(action)) = (batch_events.is_empty(), action) {
            match action {
                Action::CreateLog => batch_events.push(created()),
                Action::StartRun { .. } => {
                    let bound = if c % 7 == 0 {
                        None
                    } else {
                        Some(1 + u64::from(next()))
                    };
                    attempts_max = 1 + u32::from(next() % 4);
                    batch_events.push(started_with(state.next_run_id(), bound, attempts_max));
                    (live_rows, live_sleep, live_lag) = (None, None, None);
                }
                Action::ExecuteBatch(BatchOrder {
                    batch_id,
                    step,
                    attempt,
                    claim,
                    ..
                }) => {
                    assert_eq!(attempt, state.batch(batch_id).unwrap().attempts + 1);
                    assert_eq!(claim, state.batch(batch_id).unwrap().claim);
                    // What this attempt finds of an unconfirmed earlier commit.
                    let earlier = match &claim {
                        None => EarlierCommit::None,
                        Some(claim) if next() % 2 == 0 => EarlierCommit::Committed(claim.counts),
                        Some(_) => EarlierCommit::RolledBack,
                    };
                    match c % 8 {
                        // A commit sent, then the connection lost: the outcome is unknown.
                        0 if c % 16 == 0 => {
                            batch_events.push(committing(batch_id, attempt, earlier));
                            batch_events.push(failed(batch_id, attempt, Transient));
                        }
                        0 => batch_events.push(failed(batch_id, attempt, Transient)),
                        1 => batch_events.push(failed(batch_id, attempt, Fatal)),
                        2 => batch_events.push(failed(batch_id, attempt, BatchClass)),
                        3 if step == Step::Copy => batch_events.push(copied(batch_id)),
                        // Killed after the commit was announced: BatchDeleted is lost.
                        4 if c % 16 == 4 => {
                            batch_events.push(committing(batch_id, attempt, earlier));
                        }
                        _ => {
                            batch_events.push(committing(batch_id, attempt, earlier));
                            for i in 0..next() % 3 {
                                batch_events.push(conflict(batch_id, u64::from(i)));
                            }
                            batch_events.push(deleted(batch_id));
                        }
                    }
                }
                Action::PlanNext(PlanOrder {
                    run_id,
                    after,
                    bound,
                    rows,
                    rows_set_live,
                    sleep_ms,
                    max_lag_s,
                    ..
                }) => {
                    // What `ctl set` changed for this run, else what it started with.
                    assert_eq!(rows, live_rows.unwrap_or(1000));
                    assert_eq!(rows_set_live, live_rows.is_some());
                    assert_eq!((sleep_ms, max_lag_s), (live_sleep, live_lag));
                    let start = after.as_ref().map_or(0, |key| match key[0] {
                        KeyValue::UInt(v) => v,
                        _ => unreachable!(),
                    });
                    let bound = match bound[0] {
                        KeyValue::UInt(v) => v,
                        _ => unreachable!(),
                    };
                    if c % 11 == 0 && others_pending {
                        // Planning found no more rows while batches are in flight: the
                        // engine finishes the run only once they are done.
                    } else if c % 11 == 0 {
                        // Planning found no more matching rows.
                        batch_events.push(finished(run_id));
                    } else {
                        let upper = (start + 1 + u64::from(next() % 40)).min(bound);
                        let id = state.next_batch_id();
                        batch_events.push(planned(id, run_id, after.map(|_| start), upper));
                    }
                }
                Action::FinishRun { run_id } => batch_events.push(finished(run_id)),
            }
        }
        for event in batch_events {
            // A random bogus event on the side must either apply or leave the state unchanged.
            let bogus = bogus_event(next(), next(), state.next_batch_id());
            let mut probe = state.clone();
            let lsn = state.last_lsn() + 1;
            if probe.apply(lsn, &bogus).is_err() {
                assert_eq!(probe, state, "rejected {bogus:?} changed the state");
            }

            let open_attempts_max = state.open_run().map(|r| r.attempts_max);
            state.apply(lsn, &event).unwrap();
            fold_model(
                &mut model,
                &event,
                open_attempts_max.unwrap_or(attempts_max),
            );
            events.push(event);
            check_invariants(&state);
            for (&id, m) in &model {
                let batch = state.batch(id).unwrap();
                assert_eq!(batch.status, m.status(), "batch {id}");
                assert_eq!(batch.attempts, m.attempts, "batch {id}");
            }
        }
        if events.len() > 2_000 {
            break;
        }
    }
    (events, state)
}

/// The model of a batch already in a state (a drive that starts from one).
fn model_of(batch: &Batch) -> ModelBatch {
    ModelBatch {
        copied: batch.step() == Some(Step::Delete),
        done: batch.status == BatchStatus::Done,
        parked: matches!(batch.status, BatchStatus::Parked { .. }),
        attempts: batch.attempts,
    }
}

fn fold_model(model: &mut BTreeMap<u64, ModelBatch>, event: &Event, attempts_max: u32) {
    match event {
        Event::BatchPlanned(e) => {
            model.insert(e.batch_id, ModelBatch::default());
        }
        Event::BatchCopied(e) => model.get_mut(&e.batch_id).unwrap().copied = true,
        Event::BatchDeleted(e) => model.get_mut(&e.batch_id).unwrap().done = true,
        Event::BatchFailed(e) => {
            let m = model.get_mut(&e.batch_id).unwrap();
            m.attempts = e.attempt;
            m.parked = e.class == BatchClass || e.attempt >= attempts_max;
        }
        Event::BatchReset(e) => {
            let m = model.get_mut(&e.batch_id).unwrap();
            m.attempts = 0;
            m.parked = false;
        }
        _ => {}
    }
}

/// Some event, plausible or not, naming a batch near the existing ones.
fn bogus_event(kind: u8, id: u8, next_batch_id: u64) -> Event {
    let batch_id = (next_batch_id + u64::from(id % 4)).saturating_sub(2);
    let n = u64::from(id % 3);
    match kind % 11 {
        10 => committing(batch_id, u32::from(id % 3), EarlierCommit::None),
        9 => changed(n, Some(u32::from(id % 2)), None, None),
        0 => created(),
        1 => started(n + 1, Some(n * 10)),
        2 => planned(batch_id, n, Some(n), n + 5),
        3 => copied(batch_id),
        4 => deleted(batch_id),
        5 => conflict(batch_id, n),
        6 => failed(batch_id, u32::from(id % 4), Transient),
        7 => reset(batch_id),
        _ => finished(n),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_valid_logs_keep_the_invariants_and_replay_identically(
        choices in prop::collection::vec(any::<u8>(), 0..600)
    ) {
        let (events, live) = drive(&choices);
        let replayed = replay(&events);
        prop_assert_eq!(&replayed, &live);
        prop_assert_eq!(replayed.summary(1 << 40), live.summary(1 << 40));
        serde_json::to_string(&live.summary(1 << 40)).unwrap();
        live.summary(0).lines();
    }
}

#[test]
fn long_random_logs_reach_every_kind_of_event() {
    // A fixed tape long enough to cover resets, parks, fatal errors and several runs.
    let choices: Vec<u8> = (0..5_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (events, state) = drive(&choices);
    let seen: std::collections::BTreeSet<u16> = events.iter().map(Event::record_type).collect();
    // Snapshot records are written by compaction, not by a run: the snapshot tests reach them.
    let known: std::collections::BTreeSet<u16> = crate::event::RECORD_TYPES
        .iter()
        .filter(|(_, name)| !name.starts_with("Snapshot"))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(seen, known, "every kind of event a run writes is reached");
    assert!(state.runs().len() > 2);
    // Batches in flight together: a batch planned, then another planned, then the first
    // one's records (as `parallel` writes them).
    let mut replayed = State::new();
    let mut interleaved = 0;
    for (i, event) in events.iter().enumerate() {
        if let Event::BatchPlanned(e) = event {
            if replayed.pending_batches().any(|b| b.batch_id < e.batch_id) {
                interleaved += 1;
            }
        }
        replayed.apply(i as u64 + 1, event).unwrap();
    }
    assert!(
        interleaved > 10,
        "only {interleaved} plans with batches in flight"
    );
}

/// Replay speed: `cargo test --release -- --ignored replay_speed --nocapture`.
#[test]
#[ignore]
fn replay_speed() {
    let mut events = vec![created()];
    let batches_per_run = 1_000u64;
    let mut batch_id = 0;
    for run_id in 1..=333 {
        events.push(started(run_id, Some(batches_per_run * 10)));
        for i in 0..batches_per_run {
            batch_id += 1;
            let lower = (i > 0).then_some(i * 10);
            events.push(planned(batch_id, run_id, lower, (i + 1) * 10));
            events.push(copied(batch_id));
            events.push(deleted(batch_id));
        }
        events.push(finished(run_id));
    }
    let started_at = std::time::Instant::now();
    let state = replay(&events);
    let elapsed = started_at.elapsed();
    eprintln!(
        "replayed {} events ({} batches) in {:?}: {:.0} events/s",
        events.len(),
        state.batches().count(),
        elapsed,
        events.len() as f64 / elapsed.as_secs_f64()
    );
    assert!(matches!(state.next_action(), Action::StartRun { .. }));
}

/// A sample of the rendering: `cargo test --lib prints_a_sample -- --ignored --nocapture`.
#[test]
#[ignore]
fn prints_a_sample_summary() {
    let mut events = life_events();
    events.truncate(10);
    let state = replay(&events);
    for line in state.summary(25_000_000).lines() {
        println!("{line}");
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&state.summary(25_000_000)).unwrap()
    );
    println!(
        "size_of Batch {} Run {}",
        std::mem::size_of::<Batch>(),
        std::mem::size_of::<Run>()
    );
}

// ---------------------------------------------------------------------------------------------
// Snapshots (issue 8, log compaction).
//
// What "equal" means here: a compacted state equals `original.retained(keep_runs)` in every
// field except `last_lsn`, which is honestly the LSN of the snapshot's own last record (the
// next record appended follows it); the tests set the expected `last_lsn` to it and then
// compare whole states (`==` on `State`), so nothing else is let off.

/// Applies `events` to `state` with LSNs from `state.last_lsn() + 1`; panics on an error.
fn append(state: &mut State, events: &[Event]) {
    for event in events {
        let lsn = state.last_lsn() + 1;
        state
            .apply(lsn, event)
            .unwrap_or_else(|e| panic!("{e} ({event:?})"));
    }
}

/// The compacted log of `state`: its snapshot replayed alone, with LSNs after its last one.
fn compacted(state: &State, keep_runs: u32) -> (Vec<Event>, State) {
    let records = state.snapshot(keep_runs, 7).unwrap();
    let mut rebuilt = State {
        last_lsn: state.last_lsn(),
        ..State::new()
    };
    append(&mut rebuilt, &records);
    (records, rebuilt)
}

/// `state.retained(keep_runs)` as it stands after a snapshot ending at `last_lsn`.
fn expected_after_snapshot(state: &State, keep_runs: u32, last_lsn: u64) -> State {
    State {
        last_lsn,
        ..state.retained(keep_runs)
    }
}

/// The whole equivalence for one history: the snapshot replayed alone and appended to its log
/// rebuild `retained`, answer the same action and summary, and a continuation driven from the
/// compacted state applies to the original alike and keeps them equal but for the batches the
/// snapshot dropped.
fn check_snapshot_equivalence(events: &[Event], original: &State, keep_runs: u32, more: &[u8]) {
    let (records, rebuilt) = compacted(original, keep_runs);
    let expected = expected_after_snapshot(original, keep_runs, rebuilt.last_lsn());
    assert_eq!(
        rebuilt.last_lsn(),
        original.last_lsn() + records.len() as u64
    );
    assert_eq!(rebuilt, expected, "keep_runs {keep_runs}");
    check_invariants(&rebuilt);
    assert_eq!(rebuilt.next_action(), original.next_action());
    let now = 1 << 40;
    let mut original_summary = original.summary(now);
    original_summary.last_lsn = rebuilt.last_lsn();
    assert_eq!(rebuilt.summary(now), original_summary);

    // The old log followed by its snapshot (a compaction finishing) gives the same state.
    let mut followed = replay(events);
    append(&mut followed, &records);
    assert_eq!(followed, rebuilt);

    // A snapshot of the snapshot changes nothing more.
    let (_, again) = compacted(&rebuilt, keep_runs);
    assert_eq!(
        again,
        expected_after_snapshot(&rebuilt, keep_runs, again.last_lsn())
    );

    // The engine goes on identically from either.
    let (continuation, rebuilt_after) = drive_from(rebuilt.clone(), more);
    let mut original_after = original.clone();
    original_after.last_lsn = rebuilt.last_lsn();
    append(&mut original_after, &continuation);
    assert_eq!(rebuilt_after.next_action(), original_after.next_action());
    assert_eq!(rebuilt_after.summary(now), original_after.summary(now));
    let mut without_dropped = original_after.clone();
    without_dropped.batches = original_after
        .batches
        .filtered(|b| rebuilt.batch(b.batch_id).is_some() || b.batch_id > original.last_batch_id);
    assert_eq!(rebuilt_after, without_dropped);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn a_snapshot_rebuilds_the_state_it_keeps_and_continues_alike(
        choices in prop::collection::vec(any::<u8>(), 0..600),
        keep_runs in 0u32..5,
        more in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let (events, original) = drive(&choices);
        match original.snapshot(keep_runs, 0) {
            Err(SnapshotRefused::Empty) => prop_assert!(original.job().is_none()),
            Err(other) => panic!("{other}"),
            Ok(_) => check_snapshot_equivalence(&events, &original, keep_runs, &more),
        }
    }
}

#[test]
fn a_long_history_snapshot_rebuilds_it_for_every_keep_runs() {
    let choices: Vec<u8> = (0..5_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (events, original) = drive(&choices);
    for keep_runs in 0..5 {
        check_snapshot_equivalence(&events, &original, keep_runs, &choices[..300]);
    }
    let (_, rebuilt) = compacted(&original, 0);
    assert!(
        rebuilt.batches().count() < original.batches().count(),
        "keep_runs 0 drops done batches"
    );
    assert!(rebuilt.batches().all(|b| b.status != BatchStatus::Done));
}

/// `before` as a log, then a snapshot record `bad` at the next LSN; the problem it must raise.
fn snapshot_contradictions() -> Vec<(&'static str, Vec<Event>, Event, Problem)> {
    let base = vec![
        created(),
        started(1, Some(100)),
        planned(1, 1, None, 10),
        conflict(1, 5),
        deleted(1),
        planned(2, 1, Some(10), 20),
        failed(2, 1, BatchClass),
    ];
    let records = replay(&base).snapshot(1, 0).unwrap();
    let started_record = records[0].clone();
    let finish = records.last().unwrap().clone();
    let opened = |n: usize| -> Vec<Event> { base.iter().chain(&records[..n]).cloned().collect() };
    let alone = |n: usize| -> Vec<Event> { records[..n].to_vec() };
    let mut tampered = records.clone();
    let Event::SnapshotBatches(chunk) = &mut tampered[2] else {
        panic!("{:?}", tampered[2]);
    };
    chunk.batches[0].failures += 1;
    let tampered_batches = tampered[2].clone();
    let Event::SnapshotRuns(mut runs) = records[1].clone() else {
        panic!("{:?}", records[1]);
    };
    runs.runs[0].run_id = 2;
    let Event::SnapshotStarted(mut header) = started_record.clone() else {
        unreachable!()
    };
    header.covers_lsn = 1;
    let covers_one = Event::SnapshotStarted(header);
    vec![
        (
            "snapshot mid-log with the wrong covers_lsn",
            base[..3].to_vec(),
            started_record.clone(),
            Problem::SnapshotNotAtEnd {
                covers_lsn: 7,
                last_lsn: 3,
            },
        ),
        (
            "snapshot first in a log covering itself",
            vec![],
            covers_one,
            Problem::SnapshotCoversItself { covers_lsn: 1 },
        ),
        (
            "an ordinary event inside an open snapshot",
            opened(1),
            reset(2),
            Problem::SnapshotOpen { started_lsn: 8 },
        ),
        (
            "a second snapshot inside an open one",
            opened(2),
            started_record.clone(),
            Problem::SnapshotOpen { started_lsn: 8 },
        ),
        (
            "images without a snapshot",
            base.clone(),
            records[1].clone(),
            Problem::NoSnapshotOpen,
        ),
        (
            "an end without a snapshot",
            base.clone(),
            finish.clone(),
            Problem::NoSnapshotOpen,
        ),
        (
            "more images than announced",
            opened(2),
            records[1].clone(),
            Problem::SnapshotTooManyImages {
                images: "run",
                declared: 1,
            },
        ),
        (
            "fewer images than announced",
            opened(2),
            finish.clone(),
            Problem::SnapshotImagesMissing {
                images: "batch",
                declared: 2,
                collected: 0,
            },
        ),
        (
            "an end naming another snapshot",
            opened(records.len() - 1),
            Event::SnapshotFinished(SnapshotFinished { covers_lsn: 6 }),
            Problem::SnapshotEndMismatch {
                covers_lsn: 6,
                open_covers_lsn: 7,
            },
        ),
        (
            "a snapshot that does not match the state it follows",
            {
                let mut e = opened(2);
                e.push(tampered_batches.clone());
                e.extend(records[3..records.len() - 1].iter().cloned());
                e
            },
            finish.clone(),
            Problem::SnapshotDiffers { part: "batches" },
        ),
        (
            "images that no log reaches",
            {
                let mut e = alone(1);
                e.push(Event::SnapshotRuns(runs));
                e.extend(records[2..records.len() - 1].iter().cloned());
                e
            },
            finish.clone(),
            Problem::SnapshotInvalid {
                detail: "run 2 is listed in place 1".into(),
            },
        ),
    ]
}

#[test]
fn every_snapshot_contradiction_is_an_error_that_leaves_the_state_unchanged() {
    for (name, before, bad, expected) in snapshot_contradictions() {
        // A log that begins with the snapshot continues the numbering of the one it covers.
        let first_lsn = match before.first() {
            Some(Event::SnapshotStarted(e)) => e.covers_lsn + 1,
            _ => 1,
        };
        let mut state = State::new();
        for (i, event) in before.iter().enumerate() {
            state
                .apply(first_lsn + i as u64, event)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let unchanged = state.clone();
        let lsn = state.last_lsn() + 1;
        let err = state.apply(lsn, &bad).expect_err(name);
        assert_eq!(err.problem, expected, "{name}");
        assert_eq!(state.check(lsn, &bad), Err(err.clone()), "{name}");
        assert_eq!(state, unchanged, "{name}: a failed apply changed the state");
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}

#[test]
fn a_half_applied_snapshot_refuses_to_be_snapshotted_and_the_state_is_the_one_before_it() {
    let mut state = replay(&life_events());
    let records = state.snapshot(2, 0).unwrap();
    let before = state.clone();
    append(&mut state, &records[..1]);
    assert_eq!(state.snapshot_open_since(), Some(before.last_lsn() + 1));
    assert_eq!(
        state.snapshot(2, 0),
        Err(SnapshotRefused::Open {
            started_lsn: before.last_lsn() + 1
        })
    );
    // The state is the one before the snapshot, but for the LSN of its records.
    assert_eq!(
        state.retained(2),
        expected_after_snapshot(&before, 2, state.last_lsn())
    );
    assert_eq!(state.next_action(), before.next_action());
    append(&mut state, &records[1..]);
    assert_eq!(state.snapshot_open_since(), None);
    assert_eq!(State::new().snapshot(0, 0), Err(SnapshotRefused::Empty));
}

#[test]
fn snapshot_images_are_cut_into_chunks_within_the_bound() {
    let mut events = vec![created(), started(1, Some(1_000_000))];
    for id in 1..=3_000u64 {
        let lower = (id > 1).then(|| (id - 1) * 10);
        events.push(planned(id, 1, lower, id * 10));
        for key in 0..3 {
            events.push(conflict(id, id * 10 - key));
        }
        events.push(deleted(id));
    }
    let original = replay(&events);
    let records = original.snapshot(1, 0).unwrap();
    let chunks = |name: &str| records.iter().filter(|e| e.name() == name).count();
    assert!(
        chunks("SnapshotBatches") > 1,
        "3,000 batches take several records"
    );
    assert!(
        chunks("SnapshotConflicts") > 1,
        "9,000 conflicts take several records"
    );
    assert_eq!(chunks("SnapshotRuns"), 1);
    for record in &records {
        assert!(
            record.payload_len() <= crate::event::SNAPSHOT_CHUNK_BYTES_MAX,
            "{} of {} bytes",
            record.name(),
            record.payload_len()
        );
        assert_eq!(record.payload_len(), record.encode_payload().len());
        let decoded = Event::decode(record.record_type(), &record.encode_payload()).unwrap();
        assert_eq!(&decoded, record);
    }
    check_snapshot_equivalence(&events, &original, 1, &[]);
    // inspect's line for a chunk sums it up instead of listing its images.
    let text = records[2].text();
    assert!(
        text.starts_with("1") && text.contains("batches 1..="),
        "{text}"
    );
    assert!(text.len() < 100, "{text}");
}

/// After a snapshot the state holds the live batches, the done batches of `keep_runs` runs,
/// the stored conflicts and one run per run, however long the history: a year of daily runs
/// of 1,000 batches each, with a parked batch every 50 runs.
#[test]
fn a_snapshot_holds_live_batches_and_those_of_the_kept_runs_only() {
    let batches_per_run = 1_000u64;
    let mut events = vec![created()];
    let mut batch_id = 0;
    let mut parked = 0;
    for run_id in 1..=365u64 {
        events.push(started(run_id, Some(batches_per_run * 10)));
        for i in 0..batches_per_run {
            batch_id += 1;
            let lower = (i > 0).then_some(i * 10);
            events.push(planned(batch_id, run_id, lower, (i + 1) * 10));
            if run_id % 50 == 0 && i == 0 {
                events.push(failed(batch_id, 1, BatchClass));
                parked += 1;
            } else {
                events.push(conflict(batch_id, i * 10 + 1));
                events.push(deleted(batch_id));
            }
        }
        events.push(finished(run_id));
    }
    let original = replay(&events);
    assert_eq!(original.batches().count() as u64, 365 * batches_per_run);
    let keep_runs = 2;
    let (_, rebuilt) = compacted(&original, keep_runs);
    assert_eq!(
        rebuilt.batches().count() as u64,
        parked + u64::from(keep_runs) * batches_per_run
    );
    assert_eq!(rebuilt.parked_batches().count() as u64, parked);
    assert_eq!(rebuilt.runs().len(), 365);
    assert_eq!(rebuilt.conflicts().len(), CONFLICTS_STORED_MAX);
    assert_eq!(rebuilt.totals(), original.totals());
    assert_eq!(rebuilt.next_batch_id(), original.next_batch_id());
    let mut status = original.summary(1 << 40);
    status.last_lsn = rebuilt.last_lsn();
    assert_eq!(
        rebuilt.summary(1 << 40),
        status,
        "status reads the same but for the last lsn"
    );
}

/// `ctl set` (issue 9) survives compaction: a snapshot carries the live settings of the runs
/// that have some in `SnapshotSettings` records, the compacted log plans the open run's next
/// batch with them, and settings images that no log reaches are refused.
#[test]
fn live_settings_survive_a_snapshot_and_bad_settings_images_are_refused() {
    let events = vec![
        created(),
        started(1, Some(100)),
        planned(1, 1, None, 10),
        deleted(1),
        changed(1, Some(7), Some(30), None),
        finished(1),
        started(2, Some(200)),
        planned(2, 2, None, 20),
        deleted(2),
        changed(2, Some(5), None, Some(9)),
    ];
    let original = replay(&events);
    let records = original.snapshot(0, 0).unwrap();
    let names: Vec<&str> = records.iter().map(Event::name).collect();
    assert_eq!(
        names,
        [
            "SnapshotStarted",
            "SnapshotRuns",
            "SnapshotSettings",
            "SnapshotActivity",
            "SnapshotFinished"
        ]
    );
    for keep_runs in 0..3 {
        check_snapshot_equivalence(&events, &original, keep_runs, &[7; 40]);
    }
    let (_, rebuilt) = compacted(&original, 0);
    let Action::PlanNext(order) = rebuilt.next_action() else {
        panic!("{:?}", rebuilt.next_action());
    };
    assert_eq!(
        (order.rows, order.sleep_ms, order.max_lag_s),
        (5, None, Some(9))
    );
    assert_eq!(rebuilt.run(1).unwrap().live, original.run(1).unwrap().live);

    // Tampered settings images, replayed alone (a compacted log) or after their log.
    let Event::SnapshotSettings(good) = records[2].clone() else {
        panic!("{:?}", records[2]);
    };
    let with = |settings: Vec<RunSettingsImage>| -> Vec<Event> {
        let mut e = records.clone();
        e[2] = Event::SnapshotSettings(SnapshotSettings { settings });
        e
    };
    let mut unknown_run = good.settings.clone();
    unknown_run[1].run_id = 3;
    let mut twice = good.settings.clone();
    twice[1].run_id = 1;
    let mut three = good.settings.clone();
    three.push(good.settings[0].clone());
    let mut never = good.settings.clone();
    never[0].changed_lsn = 0;
    let mut other_value = good.settings.clone();
    other_value[1].batch_rows = Some(6);
    let cases = [
        (
            "settings of a run the snapshot does not hold",
            with(unknown_run),
            false,
            Problem::SnapshotInvalid {
                detail: "live settings of run 3, which it does not hold".into(),
            },
        ),
        (
            "a run's settings twice",
            with(twice),
            false,
            Problem::SnapshotInvalid {
                detail: "run 1 has live settings twice".into(),
            },
        ),
        (
            "more settings than runs",
            with(three),
            false,
            Problem::SnapshotTooManyImages {
                images: "run settings",
                declared: 2,
            },
        ),
        (
            "settings never changed",
            with(never),
            false,
            Problem::SnapshotInvalid {
                detail: "run 1's live settings are invalid".into(),
            },
        ),
        (
            "settings other than the log's",
            with(other_value),
            true,
            Problem::SnapshotDiffers { part: "runs" },
        ),
    ];
    for (name, records, after_log, expected) in cases {
        let mut state = if after_log {
            original.clone()
        } else {
            State {
                last_lsn: original.last_lsn(),
                ..State::new()
            }
        };
        let mut error = None;
        for event in &records {
            let lsn = state.last_lsn() + 1;
            if let Err(e) = state.apply(lsn, event) {
                error = Some(e.problem);
                break;
            }
        }
        assert_eq!(error, Some(expected), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Unconfirmed commits (`BatchCommitting`): exact counts after a crash.

/// A batch's claim is what its next attempt resolves: a commit found to have happened counts
/// as its lost `BatchDeleted` would have (less the conflicting rows, which the redo finds
/// again); one found rolled back counts nothing; `BatchDeleted` confirms a claim only with the
/// same counts; a failure keeps the claim; a snapshot carries it.
#[test]
fn an_unconfirmed_commit_is_resolved_by_the_next_attempt() {
    let base = vec![created(), started(1, Some(100)), planned(1, 1, None, 10)];
    let claimed = {
        let mut events = base.clone();
        events.push(committing(1, 1, EarlierCommit::None));
        events
    };
    let state = replay(&claimed);
    let claim = state.batch(1).unwrap().claim.clone().expect("a claim");
    assert_eq!((claim.lsn, claim.attempt), (4, 1));
    assert_eq!(claim.counts, deleted_counts());
    assert_eq!(
        state.batch(1).unwrap().rows_deleted,
        0,
        "nothing counts yet"
    );
    // Killed here: the next invocation's order carries the claim, same attempt number.
    let Action::ExecuteBatch(order) = state.next_action() else {
        panic!("{:?}", state.next_action())
    };
    assert_eq!((order.attempt, order.claim.as_ref()), (1, Some(&claim)));

    // The redo found the earlier commit happened, moved nothing more, and was confirmed.
    let redo_counts = AttemptCounts::default();
    let mut committed = claimed.clone();
    committed.push(Event::BatchCommitting(BatchCommitting {
        batch_id: 1,
        attempt: 1,
        counts: redo_counts,
        witness: None,
        earlier: EarlierCommit::Committed(deleted_counts()),
    }));
    committed.push(Event::BatchDeleted(BatchDeleted {
        batch_id: 1,
        rows_copied: 0,
        rows_already: 0,
        rows_deleted: 0,
        rows_conflicting: 0,
    }));
    let state = replay(&committed);
    let batch = state.batch(1).unwrap();
    assert_eq!(batch.status, BatchStatus::Done);
    assert_eq!(batch.claim, None);
    assert_eq!(
        (
            batch.rows_copied,
            batch.rows_already,
            batch.rows_deleted,
            batch.rows_conflicting
        ),
        (1, 1, 9, 0),
        "the earlier commit's rows count, its conflicts are the redo's to find"
    );
    assert_eq!(state.totals().rows_deleted, 9);
    assert_eq!(state.run(1).unwrap().counts.rows_deleted, 9);

    // The redo found it rolled back and moved the rows itself.
    let mut rolled_back = claimed.clone();
    rolled_back.push(committing(1, 1, EarlierCommit::RolledBack));
    rolled_back.push(deleted(1));
    let state = replay(&rolled_back);
    assert_eq!(state.totals().rows_deleted, 9, "counted once");

    // Contradictions, each leaving the state unchanged.
    let wrong_counts = AttemptCounts {
        rows_deleted: 8,
        ..deleted_counts()
    };
    let cases: Vec<(&str, Vec<Event>, Event, Problem)> = vec![
        (
            "a claim left unresolved",
            claimed.clone(),
            committing(1, 1, EarlierCommit::None),
            Problem::ClaimUnresolved {
                batch_id: 1,
                claim_lsn: 4,
            },
        ),
        (
            "an earlier commit with other counts",
            claimed.clone(),
            committing(1, 1, EarlierCommit::Committed(wrong_counts)),
            Problem::ClaimCountsDiffer {
                batch_id: 1,
                claim_lsn: 4,
            },
        ),
        (
            "a resolution without a claim",
            base.clone(),
            committing(1, 1, EarlierCommit::RolledBack),
            Problem::NoClaim { batch_id: 1 },
        ),
        (
            "a BatchDeleted that does not repeat the claim",
            claimed.clone(),
            Event::BatchDeleted(BatchDeleted {
                batch_id: 1,
                rows_copied: 1,
                rows_already: 1,
                rows_deleted: 8,
                rows_conflicting: 1,
            }),
            Problem::ClaimCountsDiffer {
                batch_id: 1,
                claim_lsn: 4,
            },
        ),
        (
            "a witness of the wrong width",
            base.clone(),
            Event::BatchCommitting(BatchCommitting {
                batch_id: 1,
                attempt: 1,
                counts: deleted_counts(),
                witness: Some(vec![KeyValue::UInt(1), KeyValue::UInt(2)]),
                earlier: EarlierCommit::None,
            }),
            Problem::KeyWidth {
                run_id: 1,
                expected: 1,
                got: 2,
            },
        ),
    ];
    for (name, before, bad, expected) in cases {
        let mut state = replay(&before);
        let unchanged = state.clone();
        let lsn = state.last_lsn() + 1;
        let err = state.apply(lsn, &bad).expect_err(name);
        assert_eq!(err.problem, expected, "{name}");
        assert_eq!(state, unchanged, "{name}");
        assert!(!err.to_string().contains('\n'), "{err}");
    }

    // A failed attempt (the commit's connection lost) keeps the claim for the next attempt;
    // a snapshot keeps it too, and refuses a claim on a batch it does not hold as not done.
    let mut failed_after = claimed.clone();
    failed_after.push(failed(1, 1, Transient));
    let state = replay(&failed_after);
    assert_eq!(state.batch(1).unwrap().claim.as_ref(), Some(&claim));
    let Action::ExecuteBatch(order) = state.next_action() else {
        panic!()
    };
    assert_eq!((order.attempt, order.claim.as_ref()), (2, Some(&claim)));
    let (records, rebuilt) = compacted(&state, 0);
    assert!(records
        .iter()
        .any(|r| matches!(r, Event::SnapshotClaims(c) if c.claims.len() == 1)));
    assert_eq!(rebuilt.batch(1).unwrap().claim.as_ref(), Some(&claim));
    let mut bad_records = records.clone();
    let at = bad_records
        .iter()
        .position(|r| matches!(r, Event::SnapshotClaims(_)))
        .unwrap();
    if let Event::SnapshotClaims(c) = &mut bad_records[at] {
        c.claims[0].batch_id = 2;
    }
    let mut bad = State {
        last_lsn: state.last_lsn(),
        ..State::new()
    };
    let mut refused = None;
    for record in &bad_records {
        let lsn = bad.last_lsn() + 1;
        if let Err(e) = bad.apply(lsn, record) {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("a claim on a batch the snapshot lacks is refused");
    assert!(
        refused
            .to_string()
            .contains("unconfirmed commit of batch 2"),
        "{refused}"
    );
}
