//! A long randomized test feeding arbitrary bytes, and mutated valid segments, to the reader,
//! recovery and inspect: they never panic, never hang, never trust a length field, and report
//! damage instead. Set `ARCHIVER_FUZZ_ROUNDS` for a longer run.

use std::path::Path;
use std::time::{Duration, Instant};

use archiver::wal::format::{segment_file_name, SegmentHeader};
use archiver::wal::scan::{scan_dir, ScanItem};
use archiver::wal::{RecoveryMode, HEADER_BYTES};

use super::{open, restore, small, snapshot, write_records, Rng};

const SEGMENT_BYTES: u64 = 4096;

/// Runs every reader over `dir`; checks that each finishes promptly, that read-only ones change
/// nothing, and that recovery either succeeds or refuses without changing anything.
fn exercise(dir: &Path, label: &str) -> bool {
    let start = Instant::now();
    let before = snapshot(dir);
    let read = super::read_all(dir);
    let mut records = 0u64;
    let scan = scan_dir(dir, RecoveryMode::TolerateTornTail, &mut |item| {
        if let ScanItem::Record(r) = item {
            assert!(r.payload.len() <= archiver::event::PAYLOAD_BYTES_MAX);
            records += 1;
        }
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(scan.records, records);
    let mut out = Vec::new();
    let mut sink = archiver::ops::inspect::CountingSink::default();
    let verdict = archiver::ops::inspect::inspect(dir, true, &mut out, &mut sink);
    if let Ok(v) = &verdict {
        let text = String::from_utf8(out).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["kind"], "state", "{label}");
        assert_eq!(last["verdict"], v.as_str(), "{label}");
    }
    assert_eq!(
        snapshot(dir),
        before,
        "{label}: a reader changed the directory"
    );
    let opened = open(dir, small(SEGMENT_BYTES));
    match &opened {
        Ok(_) => assert!(read.is_ok() || read.as_ref().is_err_and(|e| !e.is_corruption())),
        Err(e) => {
            assert!(e.is_corruption(), "{label}: {e}");
            assert!(read.as_ref().is_err_and(|e| e.is_corruption()), "{label}");
            assert_eq!(
                snapshot(dir),
                before,
                "{label}: a refused open changed the directory"
            );
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{label}: too slow"
    );
    opened.is_err()
}

#[test]
fn arbitrary_bytes_never_panic_and_are_reported() {
    let seed = super::seed();
    eprintln!("fuzz seed {seed} (ARCHIVER_TEST_SEED to replay)");
    let rounds: usize = std::env::var("ARCHIVER_FUZZ_ROUNDS")
        .ok()
        .map_or(1500, |s| s.parse().unwrap());
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();

    // A valid log to mutate.
    let base = tmp.path().join("base");
    let (mut w, _, _) = open(&base, small(SEGMENT_BYTES)).unwrap();
    write_records(&mut w, &super::payloads(&mut rng, 40, 400));
    drop(w);
    let pristine = snapshot(&base);
    let segments: Vec<String> = pristine
        .keys()
        .filter(|k| k.ends_with(".seg"))
        .cloned()
        .collect();
    let log_id = SegmentHeader::decode(&pristine[&segments[0]])
        .unwrap()
        .log_id;

    let dir = tmp.path().join("fuzz");
    std::fs::create_dir(&dir).unwrap();
    let mut refused = 0;
    for round in 0..rounds {
        let mut files = pristine.clone();
        match round % 4 {
            // Entirely random segments.
            0 => {
                files.retain(|k, _| !k.ends_with(".seg"));
                for seq in 1..=1 + rng.below(3) {
                    let len = rng.below(2 * SEGMENT_BYTES) as usize;
                    files.insert(segment_file_name(seq), rng.bytes(len));
                }
            }
            // A valid header followed by random bytes.
            1 => {
                files.retain(|k, _| !k.ends_with(".seg"));
                let header = SegmentHeader {
                    seq: 1,
                    first_lsn: 1,
                    log_id,
                    base: false,
                };
                let mut bytes = header.encode().to_vec();
                let n = rng.below(SEGMENT_BYTES) as usize;
                bytes.extend(rng.bytes(n));
                files.insert(segment_file_name(1), bytes);
            }
            // Random mutations of a valid log.
            _ => {
                for _ in 0..1 + rng.below(4) {
                    let name = &segments[rng.below(segments.len() as u64) as usize];
                    let Some(bytes) = files.get_mut(name).filter(|b| !b.is_empty()) else {
                        continue;
                    };
                    match rng.below(5) {
                        0 => {
                            let i = rng.below(bytes.len() as u64) as usize;
                            bytes[i] ^= 1 << rng.below(8);
                        }
                        1 => {
                            let i = rng.below(bytes.len() as u64) as usize;
                            let n = (rng.below(64) as usize).min(bytes.len() - i);
                            let junk = rng.bytes(n);
                            bytes[i..i + n].copy_from_slice(&junk);
                        }
                        2 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
                        3 if bytes.len() >= HEADER_BYTES + 4 => {
                            // A huge or just-too-large length field at a record boundary.
                            let at = HEADER_BYTES;
                            let len: u32 = if rng.below(2) == 0 { u32::MAX } else { 1 << 20 };
                            bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
                        }
                        3 => {}
                        _ => {
                            files.remove(name);
                        }
                    }
                }
            }
        }
        restore(&dir, &files);
        if exercise(&dir, &format!("seed {seed} round {round}")) {
            refused += 1;
        }
    }
    // Most rounds damage the log; recovery must have refused many of them.
    assert!(refused > rounds / 4, "only {refused} of {rounds} refused");
}
