//! Compaction (`WalWriter::replace_with`, wal-format.md §5.1) and growing segment sizes: the
//! replacement round trip, a failure injected at every filesystem step of it (the log is then
//! exactly the old one or exactly the new one), a hand-made directory caught mid-compaction,
//! and the sizes of successive segments.

use std::path::Path;
use std::sync::Arc;

use archiver::ops::inspect::InspectVerdict;
use archiver::wal::format::{compact_file_name, encode_frame, SegmentHeader, SEGMENT_BYTES_FIRST};
use archiver::wal::fs::{FaultKind, FaultyFs};
use archiver::wal::{read_dir, SegmentStatus, WalError, WalOptions, WalWriter};

use super::{open, payloads, read_all, seg, small, snapshot, write_records, Rec, Rng};

const SEGMENT_BYTES: u64 = 4096;

/// The records `records` become when written from `first_lsn` on.
fn numbered(first_lsn: u64, records: &[(u16, Vec<u8>)]) -> Vec<Rec> {
    (first_lsn..)
        .zip(records)
        .map(|(lsn, (t, p))| (lsn, *t, p.clone()))
        .collect()
}

/// The names of the files in `dir`, sorted, without `LOCK`.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "LOCK")
        .collect();
    names.sort();
    names
}

fn seg_name(seq: u64) -> String {
    archiver::wal::format::segment_file_name(seq)
}

#[test]
fn replace_with_keeps_only_the_new_records_and_lsns_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut w, _, _) = open(&dir, small(SEGMENT_BYTES)).unwrap();
    let mut rng = Rng::new(11);
    let old = write_records(&mut w, &payloads(&mut rng, 300, 200));
    // Two more, buffered and not synced: replace_with makes them part of the old log first.
    let unsynced = payloads(&mut rng, 2, 50);
    for (t, p) in &unsynced {
        w.append(*t, p).unwrap();
    }
    let old_last = old.len() as u64 + 2;
    let before = read_dir(&dir, &mut |_| Ok(())).unwrap().segments.len();
    assert!(before >= 5, "{before} segments");

    let new = payloads(&mut rng, 5, 100);
    let r = w.replace_with(&new).unwrap();
    assert_eq!(r.first_lsn, old_last + 1);
    assert_eq!(r.next_lsn, old_last + 6);
    assert_eq!(r.records_written, 5);
    assert_eq!((r.segments_before, r.segments_after), (before, 1));
    assert_eq!(r.bytes_before, before as u64 * SEGMENT_BYTES);
    assert_eq!(r.bytes_after, SEGMENT_BYTES);
    assert_eq!(r.base_segment, seg(&dir, before as u64 + 1));
    assert_eq!(w.durable_lsn(), old_last + 5);
    assert_eq!(files(&dir), [seg_name(before as u64 + 1)]);

    // Appending continues right after the new records, in the base segment.
    let mut expected = numbered(old_last + 1, &new);
    expected.extend(write_records(&mut w, &[(1, b"after".to_vec())]));
    assert_eq!(expected.last().unwrap().0, old_last + 6);
    w.close().unwrap();
    assert_eq!(read_all(&dir).unwrap(), expected);
    let report = read_dir(&dir, &mut |_| Ok(())).unwrap();
    assert_eq!(report.start_lsn, old_last + 1);
    assert_eq!(report.segments.len(), 1);
    assert!(report.segments[0].base);

    let (mut w, report, seen) = open(&dir, small(SEGMENT_BYTES)).unwrap();
    assert_eq!(seen, expected);
    assert_eq!(report.start_lsn, old_last + 1);
    assert!(report.removed_compact.is_empty() && report.removed_superseded.is_empty());

    // A compacted log compacts again, here to nothing: the LSNs still never go back.
    let next = w.next_lsn();
    let r = w.replace_with(&[]).unwrap();
    assert_eq!(
        (r.first_lsn, r.next_lsn, r.records_written),
        (next, next, 0)
    );
    w.close().unwrap();
    let (mut w, report, seen) = open(&dir, small(SEGMENT_BYTES)).unwrap();
    assert!(seen.is_empty());
    assert_eq!((report.start_lsn, report.next_lsn), (next, next));
    assert_eq!(w.append(2, b"x").unwrap(), next);
}

#[test]
fn replace_with_refuses_records_it_cannot_hold_without_poisoning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut w, _, _) = open(&dir, small(SEGMENT_BYTES)).unwrap();
    let old = write_records(&mut w, &[(1, b"kept".to_vec())]);
    let too_big = vec![0u8; archiver::wal::format::PAYLOAD_BYTES_MAX + 1];
    for records in [vec![(0u16, b"x".to_vec())], vec![(1, too_big)]] {
        assert!(matches!(
            w.replace_with(&records),
            Err(WalError::InvalidRecord(_))
        ));
        assert!(!w.is_poisoned());
    }
    // A replacement larger than the maximum segment size gets a base segment of its size.
    let big = vec![(3u16, vec![9u8; 3000]), (3, vec![8u8; 3000])];
    let r = w.replace_with(&big).unwrap();
    assert!(r.bytes_after > SEGMENT_BYTES, "{r:?}");
    w.close().unwrap();
    assert_eq!(
        read_all(&dir).unwrap(),
        numbered(old.len() as u64 + 1, &big)
    );
}

/// One run of replace_with with the `n`th operation of `kind` failing; returns whether the
/// failure was injected (false: replace_with ran out of such operations and succeeded).
fn replace_failing(kind: FaultKind, n: u64) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = FaultyFs::new();
    let (mut w, _) = WalWriter::open_with_fs(
        &dir,
        small(SEGMENT_BYTES),
        Arc::new(fs.clone()),
        &mut |_| Ok(()),
    )
    .unwrap();
    let mut rng = Rng::new(n);
    let old = write_records(&mut w, &payloads(&mut rng, 60, 300));
    let old_segments = read_dir(&dir, &mut |_| Ok(())).unwrap().segments.len() as u64;
    let new = payloads(&mut rng, 4, 100);
    let new_recs = numbered(old.len() as u64 + 1, &new);

    let attempts = fs.attempts(kind);
    fs.fail_nth(kind, n);
    let result = w.replace_with(&new);
    let injected = fs.attempts(kind) >= attempts + n;
    let base = seg(&dir, old_segments + 1);
    let switched = base.exists();
    match result {
        Ok(_) => assert!(!injected, "{kind:?} #{n} failed but replace_with succeeded"),
        Err(WalError::Io { .. }) => {
            assert!(injected, "{kind:?} #{n}: an error without a fault");
            assert!(w.is_poisoned());
            assert!(matches!(w.append(1, b"x"), Err(WalError::Poisoned)));
            assert!(matches!(w.replace_with(&new), Err(WalError::Poisoned)));
        }
        Err(e) => panic!("{kind:?} #{n}: unexpected {e}"),
    }
    drop(w);

    // Recovery with the real filesystem: exactly the old log, or exactly the new one.
    let (mut w, report, seen) = open(&dir, small(SEGMENT_BYTES)).unwrap();
    if switched {
        assert_eq!(seen, new_recs, "{kind:?} #{n}: after the switch");
        assert_eq!(files(&dir), [seg_name(old_segments + 1)], "{kind:?} #{n}");
        assert_eq!(report.start_lsn, old.len() as u64 + 1);
    } else {
        assert_eq!(seen, old, "{kind:?} #{n}: before the switch");
        assert!(report.removed_superseded.is_empty());
        assert!(
            files(&dir).iter().all(|f| f.ends_with(".seg")),
            "{kind:?} #{n}"
        );
    }
    // And the log compacts again.
    let next = w.next_lsn();
    let again = payloads(&mut rng, 3, 100);
    w.replace_with(&again).unwrap();
    w.close().unwrap();
    assert_eq!(
        read_all(&dir).unwrap(),
        numbered(next, &again),
        "{kind:?} #{n}"
    );
    injected
}

#[test]
fn a_failure_at_any_step_of_replace_with_leaves_the_old_log_or_the_new_one() {
    for kind in FaultKind::ALL {
        let mut injected = 0;
        for n in 1.. {
            assert!(n < 100, "{kind:?}: replace_with never succeeded");
            if !replace_failing(kind, n) {
                break;
            }
            injected += 1;
        }
        // create .compact; header + records; 5 syncs; the rename; every old segment.
        let at_least = match kind {
            FaultKind::Create | FaultKind::Rename => 1,
            FaultKind::Write => 2,
            FaultKind::Sync => 5,
            FaultKind::Remove => 3,
        };
        assert!(injected >= at_least, "{kind:?}: only {injected} faults");
    }
}

/// A directory as a crash in the middle of a compaction leaves it, made by hand from the spec:
/// the old log, a base segment after it holding `new`, and a `.compact` file of a later attempt.
fn mid_compaction(dir: &Path, new: &[(u16, Vec<u8>)]) -> (Vec<Rec>, u64) {
    let (mut w, _, _) = open(dir, small(SEGMENT_BYTES)).unwrap();
    let old = write_records(&mut w, &payloads(&mut Rng::new(5), 60, 300));
    let log_id = w.log_id();
    w.close().unwrap();
    let n = read_dir(dir, &mut |_| Ok(())).unwrap().segments.len() as u64;
    let first_lsn = old.len() as u64 + 1;
    let header = SegmentHeader {
        seq: n + 1,
        first_lsn,
        log_id,
        base: true,
    };
    let mut bytes = header.encode().to_vec();
    for (lsn, (t, p)) in (first_lsn..).zip(new) {
        encode_frame(&mut bytes, *t, lsn, p);
    }
    bytes.resize(SEGMENT_BYTES as usize, 0);
    std::fs::write(seg(dir, n + 1), bytes).unwrap();
    std::fs::write(dir.join(compact_file_name(n + 2)), [0xab; 100]).unwrap();
    // Damage in a superseded segment is not the log's problem.
    let mut first = std::fs::read(seg(dir, 1)).unwrap();
    first[100] ^= 0xff;
    std::fs::write(seg(dir, 1), first).unwrap();
    (old, n)
}

#[test]
fn readers_begin_at_the_base_segment_and_list_what_a_compaction_left() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let new = payloads(&mut Rng::new(9), 3, 100);
    let (old, n) = mid_compaction(&dir, &new);
    let new_recs = numbered(old.len() as u64 + 1, &new);
    let before = snapshot(&dir);

    let mut seen = Vec::new();
    let report = read_dir(&dir, &mut |r| {
        seen.push((r.lsn, r.record_type, r.payload.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, new_recs);
    assert_eq!(report.start_lsn, old.len() as u64 + 1);
    let statuses: Vec<SegmentStatus> = report.segments.iter().map(|s| s.status).collect();
    let mut want = vec![SegmentStatus::Superseded; n as usize];
    want.push(SegmentStatus::Active);
    assert_eq!(statuses, want);
    assert!(report.segments.last().unwrap().base);
    assert_eq!(report.compact_leftovers.len(), 1);
    assert_eq!(report.compact_leftovers[0].seq, n + 2);

    let (verdict, text) = super::inspect_text(&dir, false);
    assert_eq!(verdict, InspectVerdict::Clean, "{text}");
    assert!(text.contains("superseded"), "{text}");
    assert!(text.contains("active, base"), "{text}");
    assert!(text.contains(&compact_file_name(n + 2)), "{text}");
    assert!(
        text.contains(&format!(
            "the log begins at base segment {}",
            seg_name(n + 1)
        )),
        "{text}"
    );
    assert!(
        text.contains("verdict: clean: 3 records in 1 segments"),
        "{text}"
    );
    let (_, json) = super::inspect_text(&dir, true);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |key: &str, value: &str| lines.iter().filter(|v| v[key] == value).count();
    assert_eq!(count("status", "superseded"), n as usize);
    assert_eq!(count("kind", "compact-leftover"), 1);
    let state = lines.last().unwrap();
    assert_eq!(state["superseded_segments"], n);
    assert_eq!(state["start_lsn"], old.len() + 1);
    assert_eq!(snapshot(&dir), before, "readers changed the directory");

    // Opening for write finishes the compaction: only the base segment is left.
    let (w, report, seen) = open(&dir, small(SEGMENT_BYTES)).unwrap();
    assert_eq!(seen, new_recs);
    assert_eq!(report.removed_superseded.len(), n as usize);
    assert_eq!(report.removed_compact, [dir.join(compact_file_name(n + 2))]);
    assert_eq!(w.next_lsn(), old.len() as u64 + 4);
    assert_eq!(files(&dir), [seg_name(n + 1)]);
}

#[test]
fn corruption_after_the_base_segment_changes_nothing_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let new = payloads(&mut Rng::new(9), 3, 100);
    let (_, n) = mid_compaction(&dir, &new);
    let base = seg(&dir, n + 1);
    let mut bytes = std::fs::read(&base).unwrap();
    bytes[80] ^= 0xff; // inside the first record after the header
    std::fs::write(&base, bytes).unwrap();
    let before = snapshot(&dir);
    let err = open(&dir, small(SEGMENT_BYTES)).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert_eq!(snapshot(&dir), before, "a refused open deleted something");
}

#[test]
fn segments_grow_from_the_first_size_to_the_maximum() {
    const MIB: u64 = 1 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let options = WalOptions {
        segment_bytes: 8 * MIB,
        ..WalOptions::default()
    };
    let (mut w, _, _) = open(&dir, options).unwrap();
    let payload = vec![5u8; 100 << 10];
    while read_dir(&dir, &mut |_| Ok(())).unwrap().segments.len() < 4 {
        w.append(1, &payload).unwrap();
    }
    w.close().unwrap();
    let sizes: Vec<u64> = read_dir(&dir, &mut |_| Ok(()))
        .unwrap()
        .segments
        .iter()
        .map(|s| s.file_bytes)
        .collect();
    assert_eq!(sizes, [2 * MIB, 4 * MIB, 8 * MIB, 8 * MIB]);
}

#[test]
fn a_small_job_directory_holds_one_first_size_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut w, _, _) = open(&dir, WalOptions::default()).unwrap();
    write_records(&mut w, &payloads(&mut Rng::new(3), 50, 200));
    w.close().unwrap();
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(files(&dir), [seg_name(1)]);
    assert!(bytes < SEGMENT_BYTES_FIRST + 100, "{bytes} bytes");
    assert_eq!(SEGMENT_BYTES_FIRST, 2 << 20);
}
