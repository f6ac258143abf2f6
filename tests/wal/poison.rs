//! Poisoning: after one failed write or sync (injected through the filesystem seam) the writer
//! refuses every later call, and a fresh open recovers what was durable and invents nothing.

use std::sync::Arc;

use archiver::wal::fs::{FaultKind, FaultyFs};
use archiver::wal::{WalError, WalWriter};

use super::{read_all, small, Rec};

fn open_faulty(dir: &std::path::Path, fs: &FaultyFs) -> WalWriter {
    WalWriter::open_with_fs(dir, small(4096), Arc::new(fs.clone()), &mut |_| Ok(()))
        .unwrap()
        .0
}

fn assert_poisoned(w: &mut WalWriter) {
    assert!(w.is_poisoned());
    assert!(matches!(w.append(1, b"more"), Err(WalError::Poisoned)));
    assert!(matches!(w.sync(), Err(WalError::Poisoned)));
    let message = WalError::Poisoned.to_string();
    assert!(message.contains("restart"), "{message}");
}

/// After the failure, reopening with the real filesystem yields a prefix of what was appended
/// that includes everything synced.
fn assert_recovers(dir: &std::path::Path, appended: &[Rec], durable: u64) {
    let (_, _, seen) = super::open(dir, small(4096)).unwrap();
    assert!(seen.len() as u64 >= durable, "{} < {durable}", seen.len());
    assert_eq!(seen[..], appended[..seen.len()]);
    assert_eq!(read_all(dir).unwrap(), seen);
}

#[test]
fn a_failed_sync_poisons_the_writer() {
    for nth in 1..=3 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let fs = FaultyFs::new();
        let mut w = open_faulty(&dir, &fs);
        let mut appended = Vec::new();
        for i in 0..5u8 {
            let lsn = w.append(1, &[i; 100]).unwrap();
            appended.push((lsn, 1, vec![i; 100]));
        }
        w.sync().unwrap();
        let durable = w.durable_lsn();
        assert_eq!(durable, 5);
        fs.fail_nth(FaultKind::Sync, nth);
        // Appends until the injected failure surfaces (a roll-over also syncs).
        let mut failed = false;
        for i in 0..200u8 {
            match w.append(2, &[i; 100]).and_then(|lsn| {
                appended.push((lsn, 2, vec![i; 100]));
                w.sync()
            }) {
                Ok(()) => {}
                Err(WalError::Io { op, .. }) => {
                    assert!(op.contains("sync"), "{op}");
                    failed = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(failed, "nth {nth}: no failure surfaced");
        let durable = w.durable_lsn();
        assert_poisoned(&mut w);
        assert_eq!(
            w.durable_lsn(),
            durable,
            "a failed sync must not advance durability"
        );
        drop(w);
        assert_recovers(&dir, &appended, durable);
    }
}

#[test]
fn a_failed_write_poisons_the_writer() {
    for nth in [1, 2, 5] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let fs = FaultyFs::new();
        let mut w = open_faulty(&dir, &fs);
        fs.fail_nth(FaultKind::Write, nth);
        let mut appended = Vec::new();
        let mut durable = 0;
        let mut failed = false;
        for i in 0..200u8 {
            let result = w.append(3, &[i; 300]).and_then(|lsn| {
                appended.push((lsn, 3, vec![i; 300]));
                if i % 3 == 0 {
                    w.sync()?;
                    durable = w.durable_lsn();
                }
                Ok(())
            });
            match result {
                Ok(()) => {}
                Err(WalError::Io { op: "write", .. }) => {
                    failed = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(failed, "nth {nth}: no failure surfaced");
        assert_poisoned(&mut w);
        drop(w);
        assert_recovers(&dir, &appended, durable);
    }
}

#[test]
fn a_failed_segment_creation_poisons_the_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = FaultyFs::new();
    let mut w = open_faulty(&dir, &fs);
    // 7 frames of 520 bytes fit a 4096-byte segment after its header; they stay buffered.
    let mut appended = Vec::new();
    for i in 0..7u8 {
        let lsn = w.append(4, &[i; 500]).unwrap();
        appended.push((lsn, 4, vec![i; 500]));
    }
    // The 8th rolls over: flush (write 1 from now), seal, then the new header (write 2) fails.
    fs.fail_nth(FaultKind::Write, 2);
    match w.append(4, &[7; 500]) {
        Err(WalError::Io {
            op: "write", path, ..
        }) => {
            assert_eq!(path, super::seg(&dir, 2));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(w.durable_lsn(), 7, "the seal synced the full segment");
    assert_poisoned(&mut w);
    drop(w);
    // The half-created segment 2 is removed by recovery; the 7 sealed records are all there.
    let (_, report, seen) = super::open(&dir, small(4096)).unwrap();
    assert_eq!(report.removed_segment, Some(super::seg(&dir, 2)));
    assert_eq!(seen, appended);
}
