//! Torn tail: the last record of the last segment cut at every byte offset inside it (as zeros,
//! as a short file, and followed by garbage). Recovery keeps exactly the records before it,
//! logs the cut, and the writer appends after it; inspect reports the tear and changes nothing.

use std::path::Path;

use archiver::ops::inspect::InspectVerdict;
use archiver::wal::{FRAME_OVERHEAD_BYTES, HEADER_BYTES};

use super::{inspect_text, open, read_all, restore, seg, small, snapshot, write_records, Rec, Rng};

const SEGMENT_BYTES: u64 = 8192;

/// Builds a log whose last segment holds several records; returns the records and the offset
/// and length of the last record's frame in the last segment.
fn build(dir: &Path) -> (Vec<Rec>, u64, u64, usize) {
    let (mut w, _, _) = open(dir, small(SEGMENT_BYTES)).unwrap();
    let mut rng = Rng::new(42);
    let mut written = write_records(&mut w, &super::payloads(&mut rng, 120, 300));
    written.extend(write_records(&mut w, &[super::reset_of_len(150)]));
    w.close().unwrap();
    let report = archiver::wal::read_dir(dir, &mut |_| Ok(())).unwrap();
    let last = report.segments.last().unwrap();
    assert!(report.segments.len() >= 2 && last.records >= 2);
    let frame_len = FRAME_OVERHEAD_BYTES + 150;
    let start = last.end_offset - frame_len as u64;
    (written, last.seq, start, frame_len)
}

#[derive(Debug, Clone, Copy)]
enum Tear {
    /// Bytes from the cut to the end of the file are zero (what a preallocated file shows).
    Zeros,
    /// The file ends at the cut.
    Truncated,
    /// Random bytes follow the cut.
    Garbage,
}

fn tear(path: &Path, cut: u64, how: Tear, rng: &mut Rng) {
    let mut bytes = std::fs::read(path).unwrap();
    match how {
        Tear::Zeros => bytes[cut as usize..].fill(0),
        Tear::Truncated => bytes.truncate(cut as usize),
        Tear::Garbage => {
            let n = 1 + rng.below(400) as usize;
            let end = (cut as usize + n).min(bytes.len());
            let mut garbage = rng.bytes(end - cut as usize);
            garbage[0] |= 1;
            bytes[cut as usize..end].copy_from_slice(&garbage);
            bytes[end..].fill(0);
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn torn_last_record_at_every_offset_is_cut_and_the_writer_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (written, last_seq, start, frame_len) = build(&dir);
    let pristine = snapshot(&dir);
    let before = &written[..written.len() - 1];
    let mut rng = Rng::new(super::seed());
    let mut cases = 0;
    for how in [Tear::Zeros, Tear::Truncated, Tear::Garbage] {
        for cut in start..start + frame_len as u64 {
            restore(&dir, &pristine);
            tear(&seg(&dir, last_seq), cut, how, &mut rng);
            let clean = cut == start && !matches!(how, Tear::Garbage);

            // inspect reports the tear at the record's start, and changes nothing.
            let damaged = snapshot(&dir);
            let (verdict, text) = inspect_text(&dir, false);
            assert_eq!(snapshot(&dir), damaged, "inspect changed the directory");
            if clean {
                assert_eq!(verdict, InspectVerdict::Clean, "{how:?} cut {cut}\n{text}");
            } else {
                assert_eq!(
                    verdict,
                    InspectVerdict::TornTail,
                    "{how:?} cut {cut}\n{text}"
                );
                assert!(
                    text.contains(&format!(
                        "DAMAGE (torn-tail) wal-{last_seq:016x}.seg offset {start}:"
                    )),
                    "{how:?} cut {cut}\n{text}"
                );
            }

            // Recovery keeps exactly the records before the torn one.
            let (mut w, report, seen) = open(&dir, small(SEGMENT_BYTES)).unwrap();
            assert_eq!(seen, before, "{how:?} cut {cut}");
            match &report.cut {
                None => assert!(clean, "{how:?} cut {cut}: no cut reported"),
                Some(c) => {
                    assert!(!clean);
                    assert_eq!((c.offset, c.salvaged), (start, false), "{how:?} cut {cut}");
                    assert_eq!(c.segment, seg(&dir, last_seq));
                }
            }
            // The writer continues after the cut, and a reopen sees exactly that.
            let lsn = w.append(9, b"after the cut").unwrap();
            assert_eq!(lsn, before.len() as u64 + 1);
            w.close().unwrap();
            let mut expected = before.to_vec();
            expected.push((lsn, 9, b"after the cut".to_vec()));
            assert_eq!(read_all(&dir).unwrap(), expected, "{how:?} cut {cut}");
            let (_, report, seen) = open(&dir, small(SEGMENT_BYTES)).unwrap();
            assert_eq!(seen, expected);
            assert!(report.cut.is_none());
            cases += 1;
        }
    }
    assert_eq!(cases, 3 * frame_len);
}

#[test]
fn garbage_after_the_last_valid_record_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (written, last_seq, start, frame_len) = build(&dir);
    let end = start + frame_len as u64;
    let pristine = snapshot(&dir);
    let mut rng = Rng::new(super::seed());
    for round in 0..50 {
        restore(&dir, &pristine);
        let path = seg(&dir, last_seq);
        let mut bytes = std::fs::read(&path).unwrap();
        let room = bytes.len() - end as usize;
        let at = end as usize + rng.below(64.min(room as u64)) as usize;
        let n = 1 + rng.below((bytes.len() - at) as u64) as usize;
        let garbage = rng.bytes(n);
        bytes[at..at + n].copy_from_slice(&garbage);
        // Make sure the garbage is not all zeros.
        bytes[at] |= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (verdict, text) = inspect_text(&dir, true);
        assert_eq!(verdict, InspectVerdict::TornTail, "round {round}\n{text}");
        let (mut w, report, seen) = open(&dir, small(SEGMENT_BYTES)).unwrap();
        assert_eq!(seen, written, "round {round}");
        assert_eq!(report.cut.as_ref().map(|c| c.offset), Some(end));
        w.append(1, b"x").unwrap();
        w.close().unwrap();
        assert_eq!(read_all(&dir).unwrap().len(), written.len() + 1);
    }
}

#[test]
fn torn_segment_creation_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (written, last_seq, _, _) = build(&dir);
    let next = seg(&dir, last_seq + 1);
    // A crash during creation: empty file, zero-filled file, half a header.
    let header_half = {
        let bytes = std::fs::read(seg(&dir, last_seq)).unwrap();
        let mut v = vec![0u8; SEGMENT_BYTES as usize];
        v[..HEADER_BYTES / 2].copy_from_slice(&bytes[..HEADER_BYTES / 2]);
        v
    };
    for contents in [
        vec![],
        vec![0u8; SEGMENT_BYTES as usize],
        vec![0u8; 10],
        header_half,
    ] {
        std::fs::write(&next, &contents).unwrap();
        let (verdict, _) = inspect_text(&dir, false);
        assert_eq!(verdict, InspectVerdict::TornTail);
        let (w, report, seen) = open(&dir, small(SEGMENT_BYTES)).unwrap();
        assert_eq!(seen, written);
        assert_eq!(report.removed_segment.as_deref(), Some(next.as_path()));
        assert!(!next.exists());
        w.close().unwrap();
    }
}

#[test]
fn salvage_cuts_a_hole_in_the_last_segment_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (written, last_seq, start, frame_len) = build(&dir);
    // Damage the record before the last one: valid records follow, so it is corruption.
    let report = archiver::wal::read_dir(&dir, &mut |_| Ok(())).unwrap();
    let first_in_last = report.segments.last().unwrap().first_lsn.unwrap();
    assert!(first_in_last < written.len() as u64);
    let path = seg(&dir, last_seq);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_BYTES + 17] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let before = snapshot(&dir);
    let err = open(&dir, small(SEGMENT_BYTES)).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert_eq!(snapshot(&dir), before);
    let options = archiver::wal::WalOptions {
        segment_bytes: SEGMENT_BYTES,
        recovery: archiver::wal::RecoveryMode::SalvageLastSegment,
    };
    let (w, report, seen) = open(&dir, options).unwrap();
    let cut = report.cut.unwrap();
    assert!(cut.salvaged);
    assert_eq!(cut.offset, HEADER_BYTES as u64);
    assert!(cut.bytes_discarded >= start + frame_len as u64 - HEADER_BYTES as u64);
    assert_eq!(seen, written[..first_in_last as usize - 1]);
    drop(w);
    assert_eq!(
        read_all(&dir).unwrap(),
        written[..first_in_last as usize - 1]
    );
}
