//! The split sync of group commit (`WalWriter::begin_sync`, run on another thread, then
//! `finish_sync`): appends go on while it runs, and the writer calls durable only what was
//! appended before it began, and only once it is finished. The kill -9 test
//! (`crash.rs`, every other round `--split-sync`) checks the same against a real crash.

use std::sync::Arc;

use archiver::wal::fs::{FaultKind, FaultyFs};
use archiver::wal::{WalError, WalWriter};

use super::{read_all, small};

#[test]
fn a_sync_run_on_another_thread_makes_durable_what_came_before_it_began() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut w, _, _) = super::open(&dir, small(16 * 1024)).unwrap();
    for i in 0..5u8 {
        w.append(1, &[i; 50]).unwrap();
    }
    let pending = w.begin_sync().unwrap();
    assert!(pending.has_work());
    assert_eq!(
        w.durable_lsn(),
        0,
        "nothing is durable before the sync ends"
    );
    let sync = std::thread::spawn(move || pending.run());
    // Appends go on meanwhile, across a segment roll-over (which syncs what it seals).
    for i in 0..200u8 {
        w.append(2, &[i; 100]).unwrap();
    }
    let rolled = w.durable_lsn();
    w.finish_sync(sync.join().unwrap()).unwrap();
    assert_eq!(
        w.durable_lsn(),
        rolled.max(5),
        "the sync covers what came before it began, no more"
    );
    // Nothing new: nothing to run.
    let idle = w.begin_sync().unwrap();
    w.sync().unwrap();
    let durable = w.durable_lsn();
    assert_eq!(durable, 205);
    w.finish_sync(idle.run()).unwrap();
    assert_eq!(
        w.durable_lsn(),
        durable,
        "an older sync never moves durability back"
    );
    drop(w);
    let records = read_all(&dir).unwrap();
    assert_eq!(records.len(), 205);
}

/// A file that cannot sync from another thread (the fault-injection seam) syncs when the sync
/// begins, and a failure there poisons the writer as a failed `sync` does.
#[test]
fn without_a_syncer_the_sync_runs_when_it_begins_and_a_failure_poisons() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = FaultyFs::new();
    let mut w = WalWriter::open_with_fs(&dir, small(4096), Arc::new(fs.clone()), &mut |_| Ok(()))
        .unwrap()
        .0;
    w.append(1, b"one").unwrap();
    let pending = w.begin_sync().unwrap();
    assert!(!pending.has_work());
    assert_eq!(w.durable_lsn(), 1);
    w.finish_sync(pending.run()).unwrap();
    w.append(1, b"two").unwrap();
    fs.fail_nth(FaultKind::Sync, 1);
    assert!(matches!(w.begin_sync(), Err(WalError::Io { .. })));
    assert!(w.is_poisoned());
    assert!(matches!(w.begin_sync(), Err(WalError::Poisoned)));
    assert_eq!(w.durable_lsn(), 1);
}
