//! Corruption: a flipped byte in a sealed segment, a hole in the last segment with valid records
//! after it, a missing middle segment, a segment from another log, an unknown version. Opening
//! for write fails naming the file and offset and pointing at `replay --inspect`, and nothing on
//! disk changes.

use std::path::Path;

use archiver::ops::inspect::InspectVerdict;
use archiver::wal::format::SegmentHeader;
use archiver::wal::{WalError, FRAME_OVERHEAD_BYTES, HEADER_BYTES};

use super::{inspect_text, open, read_all, restore, seg, small, snapshot, write_records, Rng};

const SEGMENT_BYTES: u64 = 4096;

fn build(dir: &Path, seed: u64) -> Vec<super::Rec> {
    let (mut w, _, _) = open(dir, small(SEGMENT_BYTES)).unwrap();
    let mut rng = Rng::new(seed);
    let written = write_records(&mut w, &super::payloads(&mut rng, 150, 300));
    w.close().unwrap();
    written
}

/// Opens for write, expecting corruption at `file`/`offset`; checks the message and that the
/// directory did not change. Returns the message.
fn expect_corruption(dir: &Path, file: &Path, offset: u64) -> String {
    let before = snapshot(dir);
    let err = open(dir, small(SEGMENT_BYTES)).unwrap_err();
    let message = err.to_string();
    match &err {
        WalError::Corruption {
            path, offset: o, ..
        } => {
            assert_eq!((path.as_path(), *o), (file, offset), "{message}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains(&format!("offset {offset}")), "{message}");
    assert!(
        message.contains(&format!(
            "archiver replay --inspect --wal-dir {}",
            dir.display()
        )),
        "{message}"
    );
    assert_eq!(
        snapshot(dir),
        before,
        "a refused open changed the directory"
    );
    // The read-only reader refuses it too; inspect reports it and changes nothing.
    assert!(read_all(dir).unwrap_err().is_corruption());
    let (verdict, text) = inspect_text(dir, false);
    assert_eq!(verdict, InspectVerdict::Corrupt, "{text}");
    assert!(text.contains("DAMAGE (corruption)"), "{text}");
    assert_eq!(snapshot(dir), before, "inspect changed the directory");
    message
}

#[test]
fn every_flipped_byte_of_a_sealed_record_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    build(&dir, 1);
    let pristine = snapshot(&dir);
    // The second record of segment 1 (sealed).
    let mut offsets = Vec::new();
    archiver::wal::read_dir(&dir, &mut |r| {
        if r.segment_seq == 1 {
            offsets.push((r.offset, r.payload.len()));
        }
        Ok(())
    })
    .unwrap();
    let (start, len) = offsets[1];
    let path = seg(&dir, 1);
    for i in 0..(FRAME_OVERHEAD_BYTES + len) as u64 {
        for mask in [0x01u8, 0xff] {
            restore(&dir, &pristine);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[(start + i) as usize] ^= mask;
            std::fs::write(&path, &bytes).unwrap();
            expect_corruption(&dir, &path, start);
        }
    }
}

#[test]
fn a_hole_followed_by_valid_records_in_the_last_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    build(&dir, 2);
    let report = archiver::wal::read_dir(&dir, &mut |_| Ok(())).unwrap();
    let last = report.segments.last().unwrap();
    assert!(last.records >= 2);
    let path = last.path.clone();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_BYTES + FRAME_OVERHEAD_BYTES] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let message = expect_corruption(&dir, &path, HEADER_BYTES as u64);
    assert!(message.contains("follows at offset"), "{message}");
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    build(&dir, 3);
    let segments = archiver::wal::read_dir(&dir, &mut |_| Ok(()))
        .unwrap()
        .segments
        .len() as u64;
    assert!(segments >= 4);
    std::fs::remove_file(seg(&dir, 2)).unwrap();
    let message = expect_corruption(&dir, &seg(&dir, 3), 0);
    assert!(
        message.contains("wal-0000000000000002.seg is missing"),
        "{message}"
    );
    // The first segment missing is as bad.
    let tmp2 = tempfile::tempdir().unwrap();
    let dir2 = tmp2.path().join("wal");
    build(&dir2, 3);
    std::fs::remove_file(seg(&dir2, 1)).unwrap();
    expect_corruption(&dir2, &seg(&dir2, 2), 0);
}

#[test]
fn a_segment_from_another_log_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    // Same records, so only the log id tells the segments apart.
    build(&a, 4);
    build(&b, 4);
    std::fs::copy(seg(&b, 2), seg(&a, 2)).unwrap();
    let message = expect_corruption(&a, &seg(&a, 2), 32);
    assert!(message.contains("belongs to another log"), "{message}");
}

#[test]
fn unknown_version_and_bad_header_checksum_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    build(&dir, 5);
    let pristine = snapshot(&dir);
    let path = seg(&dir, 2);
    // Version 2 with a valid checksum.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8] = 2;
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let message = expect_corruption(&dir, &path, 0);
    assert!(
        message.contains("unknown WAL format version 2"),
        "{message}"
    );
    // A flipped header byte.
    restore(&dir, &pristine);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let message = expect_corruption(&dir, &path, 0);
    assert!(message.contains("checksum"), "{message}");
    // A header whose first LSN does not follow the previous segment (valid checksum).
    restore(&dir, &pristine);
    let bytes = std::fs::read(&path).unwrap();
    let mut header = SegmentHeader::decode(&bytes).unwrap();
    header.first_lsn += 1;
    let mut bytes = bytes;
    bytes[..HEADER_BYTES].copy_from_slice(&header.encode());
    std::fs::write(&path, &bytes).unwrap();
    let message = expect_corruption(&dir, &path, 24);
    assert!(message.contains("first lsn"), "{message}");
}

#[test]
fn the_cli_exits_non_zero_on_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    build(&dir, 6);
    let path = seg(&dir, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_BYTES + 30] ^= 4;
    std::fs::write(&path, &bytes).unwrap();
    let before = snapshot(&dir);
    for json in [false, true] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_archiver"));
        cmd.args(["replay", "--inspect", "--wal-dir"]).arg(&dir);
        if json {
            cmd.args(["--format", "json"]);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.contains("corruption"), "{stdout}");
        if json {
            for line in stdout.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(v["kind"].is_string(), "{line}");
            }
            let last: serde_json::Value =
                serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
            assert_eq!(last["kind"], "state");
            assert_eq!(last["verdict"], "corrupt");
        }
    }
    assert_eq!(snapshot(&dir), before);
}
