//! `archiver replay --inspect` through the real binary: output forms, the exit code, and bad
//! input (missing, empty or unrelated directories, zero-length and oversized segments, huge
//! length fields) giving a one-line error or a precise report, never a panic or a hang.

use std::path::Path;
use std::process::Command;

use archiver::event::{BatchPlanned, Event, KeyValue};
use archiver::wal::HEADER_BYTES;

use super::{open, seg, small, snapshot};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, json: bool) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_archiver"));
    cmd.args(["replay", "--inspect", "--wal-dir"]).arg(dir);
    if json {
        cmd.args(["--format", "json"]);
    }
    let out = cmd.output().unwrap();
    let r = Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    r
}

fn planned(batch_id: u64) -> Event {
    Event::BatchPlanned(BatchPlanned {
        batch_id,
        run_id: 1,
        lower: None,
        upper: vec![KeyValue::UInt(batch_id * 1000)],
        rows_planned: 1000,
    })
}

#[test]
fn prints_segments_records_and_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut w, _, _) = open(&dir, small(4096)).unwrap();
    for id in 1..=100 {
        let e = planned(id);
        w.append(e.record_type(), &e.encode_payload()).unwrap();
    }
    w.append(42, b"from the future").unwrap();
    w.close().unwrap();
    let before = snapshot(&dir);

    // In-process with the counting sink: the exact text.
    let (verdict, text) = super::inspect_text(&dir, false);
    assert_eq!(
        verdict,
        archiver::ops::inspect::InspectVerdict::Corrupt,
        "undecodable for replay"
    );
    assert!(text.contains("wal-0000000000000001.seg"), "{text}");
    assert!(text.contains("lsn 100 "), "{text}");
    assert!(text.contains("BatchPlanned {\"batch_id\":100,"), "{text}");
    assert!(text.contains("lsn 101 "), "{text}");
    assert!(
        text.contains("UNDECODABLE: unknown record type 42"),
        "{text}"
    );
    assert!(text.contains("100 events applied, last lsn 100"), "{text}");
    let (_, json) = super::inspect_text(&dir, true);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.last().unwrap()["replayed_through_lsn"], 100);
    assert_eq!(lines.iter().filter(|v| v["kind"] == "damage").count(), 1);

    // Through the binary (whatever state sink it uses): the JSON lines and the exit code.
    let json = run(&dir, true);
    assert_ne!(json.code, 0, "an undecodable record is corrupt for replay");
    let lines: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds = |k: &str| lines.iter().filter(|v| v["kind"] == k).count();
    let segments = archiver::wal::read_dir(&dir, &mut |_| Ok(()))
        .unwrap()
        .segments
        .len();
    assert_eq!(kinds("segment"), segments);
    assert_eq!(kinds("record"), 101);
    assert!(kinds("damage") >= 1);
    assert_eq!(lines.last().unwrap()["kind"], "state");
    assert_eq!(lines.last().unwrap()["verdict"], "corrupt");
    let rec = lines.iter().find(|v| v["lsn"] == 7).unwrap();
    assert_eq!(rec["type_name"], "BatchPlanned");
    assert_eq!(rec["segment"], "wal-0000000000000001.seg");
    assert_eq!(rec["event"]["upper"][0]["UInt"], 7000);
    let text = run(&dir, false);
    assert_ne!(text.code, 0);
    assert!(
        text.stdout.contains("UNDECODABLE: unknown record type 42"),
        "{}",
        text.stdout
    );
    assert_eq!(snapshot(&dir), before, "inspect changed the directory");
}

#[test]
fn bad_input_gives_a_clear_error_or_report() {
    let tmp = tempfile::tempdir().unwrap();

    let missing = run(&tmp.path().join("nope"), false);
    assert_ne!(missing.code, 0);
    assert!(
        missing.stderr.contains("cannot inspect the WAL directory"),
        "{}",
        missing.stderr
    );
    assert_eq!(
        missing.stderr.trim().lines().count(),
        1,
        "{}",
        missing.stderr
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let r = run(&empty, false);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("holds no WAL segments"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1);

    let unrelated = tmp.path().join("unrelated");
    std::fs::create_dir(&unrelated).unwrap();
    std::fs::write(unrelated.join("notes.txt"), "hello").unwrap();
    std::fs::write(unrelated.join("wal-1.seg"), "not ours").unwrap();
    let r = run(&unrelated, false);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("holds no WAL segments"), "{}", r.stderr);

    let file = unrelated.join("notes.txt");
    let r = run(&file, false);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not a directory"), "{}", r.stderr);

    // A zero-length segment alone: an interrupted creation (recovery deletes it).
    let zero = tmp.path().join("zero");
    std::fs::create_dir(&zero).unwrap();
    std::fs::write(seg(&zero, 1), b"").unwrap();
    let r = run(&zero, false);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("torn-creation"), "{}", r.stdout);

    // A zero-length segment before another one: corruption.
    let dir = tmp.path().join("wal");
    let (mut w, _, _) = open(&dir, small(4096)).unwrap();
    for i in 0..40u8 {
        w.append(1, &[i; 300]).unwrap();
    }
    w.close().unwrap();
    let pristine = snapshot(&dir);
    std::fs::write(seg(&dir, 2), b"").unwrap();
    let r = run(&dir, true);
    assert_ne!(r.code, 0);
    assert!(
        r.stdout.contains("shorter than the 64-byte segment header"),
        "{}",
        r.stdout
    );

    // A huge length field in a sealed segment: a precise report, promptly.
    super::restore(&dir, &pristine);
    let path = seg(&dir, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_BYTES..HEADER_BYTES + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let start = std::time::Instant::now();
    let r = run(&dir, false);
    assert!(start.elapsed().as_secs() < 5);
    assert_ne!(r.code, 0);
    assert!(
        r.stdout.contains(
            "wal-0000000000000001.seg offset 64: record length field is 4294967295 bytes"
        ),
        "{}",
        r.stdout
    );
    // It keeps going: the later segments are still listed and their records shown.
    assert!(
        r.stdout.contains("wal-0000000000000003.seg"),
        "{}",
        r.stdout
    );
}

#[test]
fn salvage_is_explicit_and_cuts_the_last_segment_at_the_first_bad_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut w, _, _) = open(&dir, small(1 << 20)).unwrap();
    for id in 1..=10 {
        let e = planned(id);
        w.append(e.record_type(), &e.encode_payload()).unwrap();
    }
    w.close().unwrap();
    // Damage the 4th record's payload: valid records follow, so this is corruption, not a tear.
    let path = seg(&dir, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let frame_len =
        |at: usize| 20 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut at = HEADER_BYTES;
    for _ in 0..3 {
        at += frame_len(at);
    }
    bytes[at + 18] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let (verdict, _) = super::inspect_text(&dir, false);
    assert_eq!(verdict, archiver::ops::inspect::InspectVerdict::Corrupt);
    // Opening for write (what `run` does) refuses it: salvage is never automatic.
    assert!(open(&dir, small(1 << 20)).is_err());

    let out = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(["replay", "--salvage-last-segment", "--wal-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(&format!("at offset {at}")), "{stdout}");
    let (verdict, text) = super::inspect_text(&dir, false);
    assert_eq!(
        verdict,
        archiver::ops::inspect::InspectVerdict::Clean,
        "{text}"
    );
    assert!(text.contains("verdict: clean: 3 records"), "{text}");
}
