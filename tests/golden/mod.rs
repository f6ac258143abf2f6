//! Golden vectors: the exact bytes of hand-checked event payloads, a record frame and a segment
//! header, and a small committed log directory (`tests/data/golden/`) decoded to exact expected
//! values. Any change to the encoding (bincode, its configuration, the frame or the header) fails
//! here. The committed directory was written once by
//! `ARCHIVER_WRITE_GOLDEN=1 cargo test golden::write_golden_log`; never regenerate it to make a
//! failure go away: a failure means old logs would no longer read.

use std::path::{Path, PathBuf};

use archiver::event::*;
use archiver::wal::format::{encode_frame, SegmentHeader};
use archiver::wal::{read_dir, WalOptions, WalWriter};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn job() -> JobIdentity {
    JobIdentity {
        source_server: "db1:3306".into(),
        source_schema: "shop".into(),
        source_table: "rewards".into(),
        archive_server: "db1:3306".into(),
        archive_schema: "shop".into(),
        archive_table: "rewards_archive".into(),
        predicate: "created_at < '2025-06-01'".into(),
    }
}

/// One hand-checked vector per event type. The hex is grouped by field; see `wal-format.md`
/// for the rules (fixed-width little-endian integers, u64 lengths, u8 option tags, u32 variant
/// indexes).
fn vectors() -> Vec<(Event, &'static str)> {
    vec![
        (
            Event::LogCreated(LogCreated {
                job: job(),
                created_unix_us: 1_700_000_000_000_000,
            }),
            "0800000000000000 6462313a33333036
             0400000000000000 73686f70
             0700000000000000 72657761726473
             0800000000000000 6462313a33333036
             0400000000000000 73686f70
             0f00000000000000 726577617264735f61726368697665
             1900000000000000 637265617465645f6174203c2027323032352d30362d303127
             00401e18240a0600",
        ),
        (
            Event::RunStarted(RunStarted {
                run_id: 1,
                now_unix_us: -2,
                key_bound: Some(vec![KeyValue::UInt(1_000_000)]),
                batch_rows: 1000,
                attempts_max: 5,
                started_unix_us: 1_700_000_000_000_001,
            }),
            "0100000000000000 feffffffffffffff
             01 0100000000000000 01000000 40420f0000000000
             e8030000 05000000 01401e18240a0600",
        ),
        (
            Event::BatchPlanned(BatchPlanned {
                batch_id: 1,
                run_id: 1,
                lower: None,
                upper: vec![KeyValue::UInt(1000)],
                rows_planned: 1000,
            }),
            "0100000000000000 0100000000000000 00
             0100000000000000 01000000 e803000000000000
             e803000000000000",
        ),
        (
            Event::BatchCopied(BatchCopied {
                batch_id: 1,
                rows_copied: 1000,
                rows_already: 0,
            }),
            "0100000000000000 e803000000000000 0000000000000000",
        ),
        (
            Event::BatchDeleted(BatchDeleted {
                batch_id: 1,
                rows_copied: 998,
                rows_already: 2,
                rows_deleted: 999,
                rows_conflicting: 1,
            }),
            "0100000000000000 e603000000000000 0200000000000000 e703000000000000
             0100000000000000",
        ),
        (
            Event::ConflictFound(ConflictFound {
                batch_id: 2,
                key: vec![
                    KeyValue::Int(-5),
                    KeyValue::Bytes(b"ab".to_vec()),
                    KeyValue::Date(2024, 1, 2, 3, 4, 5, 6),
                    KeyValue::Time(true, 1, 2, 3, 4, 5),
                ],
            }),
            "0200000000000000 0400000000000000
             00000000 fbffffffffffffff
             02000000 0200000000000000 6162
             03000000 e807 01 02 03 04 05 06000000
             04000000 01 01000000 02 03 04 05000000",
        ),
        (
            Event::BatchFailed(BatchFailed {
                batch_id: 2,
                attempt: 1,
                class: ErrorClass::Batch,
                message: "deadlock".into(),
            }),
            "0200000000000000 01000000 01000000 0800000000000000 646561646c6f636b",
        ),
        (
            Event::BatchReset(BatchReset {
                batch_id: 2,
                reason: "operator".into(),
            }),
            "0200000000000000 0800000000000000 6f70657261746f72",
        ),
        (
            Event::RunFinished(RunFinished {
                run_id: 1,
                outcome: RunOutcome::Completed,
                finished_unix_us: 1_700_000_000_000_002,
            }),
            "0100000000000000 00000000 02401e18240a0600",
        ),
    ]
}

fn counts() -> CountsImage {
    CountsImage {
        batches_planned: 2,
        batches_done: 1,
        rows_planned: 2000,
        rows_copied: 1000,
        rows_already: 0,
        rows_deleted: 999,
        rows_conflicting: 1,
        conflicts: 1,
        failures: 1,
    }
}

/// One hand-checked vector per snapshot record type (10..=14), with one image each: run 1
/// planned batches 1 and 2 and finished; batch 2 is parked at the delete step after a
/// batch-class failure and holds a conflict.
fn snapshot_vectors() -> Vec<(Event, &'static str)> {
    vec![
        (
            Event::SnapshotStarted(SnapshotStarted {
                covers_lsn: 71,
                job: job(),
                created_lsn: 1,
                created_unix_us: 1_700_000_000_000_000,
                taken_unix_us: 1_700_000_000_000_003,
                keep_runs: 2,
                totals: counts(),
                conflicts_unstored: 0,
                runs: 1,
                batches: 1,
                conflicts: 1,
            }),
            "4700000000000000
             0800000000000000 6462313a33333036
             0400000000000000 73686f70
             0700000000000000 72657761726473
             0800000000000000 6462313a33333036
             0400000000000000 73686f70
             0f00000000000000 726577617264735f61726368697665
             1900000000000000 637265617465645f6174203c2027323032352d30362d303127
             0100000000000000 00401e18240a0600 03401e18240a0600 02000000
             0200000000000000 0100000000000000 d007000000000000 e803000000000000
             0000000000000000 e703000000000000 0100000000000000 0100000000000000
             0100000000000000
             0000000000000000 0100000000000000 0100000000000000 0100000000000000",
        ),
        (
            Event::SnapshotRuns(SnapshotRuns {
                runs: vec![RunImage {
                    run_id: 1,
                    started_lsn: 2,
                    now_unix_us: -2,
                    key_bound: Some(vec![KeyValue::UInt(1_000_000)]),
                    batch_rows: 1000,
                    attempts_max: 5,
                    started_unix_us: 1_700_000_000_000_001,
                    cursor: Some(vec![KeyValue::UInt(2000)]),
                    first_upper: Some(vec![KeyValue::UInt(1000)]),
                    first_batch_id: Some(1),
                    last_batch_id: Some(2),
                    counts: counts(),
                    finished: Some(RunEndImage {
                        lsn: 9,
                        outcome: RunOutcome::Completed,
                        finished_unix_us: 1_700_000_000_000_002,
                    }),
                }],
            }),
            "0100000000000000
             0100000000000000 0200000000000000 feffffffffffffff
             01 0100000000000000 01000000 40420f0000000000
             e8030000 05000000 01401e18240a0600
             01 0100000000000000 01000000 d007000000000000
             01 0100000000000000 01000000 e803000000000000
             01 0100000000000000 01 0200000000000000
             0200000000000000 0100000000000000 d007000000000000 e803000000000000
             0000000000000000 e703000000000000 0100000000000000 0100000000000000
             0100000000000000
             01 0900000000000000 00000000 02401e18240a0600",
        ),
        (
            Event::SnapshotBatches(SnapshotBatches {
                batches: vec![BatchImage {
                    batch_id: 2,
                    run_id: 1,
                    planned_lsn: 3,
                    lower: Some(vec![KeyValue::UInt(1000)]),
                    upper: vec![KeyValue::UInt(2000)],
                    rows_planned: 1000,
                    status: BatchStatusImage::Parked {
                        step: StepImage::Delete,
                    },
                    attempts: 1,
                    failures: 1,
                    resets: 0,
                    last_error: Some(BatchErrorImage {
                        lsn: 7,
                        attempt: 1,
                        class: ErrorClass::Batch,
                        message: "deadlock".into(),
                    }),
                    rows_copied: 1000,
                    rows_already: 0,
                    rows_deleted: 0,
                    rows_conflicting: 0,
                    conflicts: 1,
                }],
            }),
            "0100000000000000
             0200000000000000 0100000000000000 0300000000000000
             01 0100000000000000 01000000 e803000000000000
             0100000000000000 01000000 d007000000000000
             e803000000000000 02000000 01000000
             01000000 0100000000000000 0000000000000000
             01 0700000000000000 01000000 01000000 0800000000000000 646561646c6f636b
             e803000000000000 0000000000000000 0000000000000000 0000000000000000
             0100000000000000",
        ),
        (
            Event::SnapshotConflicts(SnapshotConflicts {
                conflicts: vec![ConflictImage {
                    batch_id: 2,
                    key: vec![KeyValue::Int(-5)],
                    lsn: 6,
                }],
            }),
            "0100000000000000
             0200000000000000 0100000000000000 00000000 fbffffffffffffff 0600000000000000",
        ),
        (
            Event::SnapshotFinished(SnapshotFinished { covers_lsn: 71 }),
            "4700000000000000",
        ),
    ]
}

/// The records of live control (issue 9): a `SettingsChanged` (`archiver ctl set`) and the
/// snapshot chunk that carries such settings through a compaction.
fn live_settings_vectors() -> Vec<(Event, &'static str)> {
    vec![
        (
            Event::SettingsChanged(SettingsChanged {
                run_id: 1,
                batch_rows: Some(500),
                sleep_ms: None,
                max_lag_s: Some(30),
                changed_unix_us: 1_700_000_000_000_003,
            }),
            "0100000000000000 01 f4010000 00 01 1e000000 03401e18240a0600",
        ),
        (
            Event::SnapshotSettings(SnapshotSettings {
                settings: vec![RunSettingsImage {
                    run_id: 1,
                    changed_lsn: 9,
                    batch_rows: Some(500),
                    sleep_ms: Some(0),
                    max_lag_s: None,
                    changed_unix_us: 1_700_000_000_000_003,
                }],
            }),
            "0100000000000000
             0100000000000000 0900000000000000 01 f4010000 01 00000000 00 03401e18240a0600",
        ),
    ]
}

/// The records of a run's active time (issue 9): an invocation resuming and leaving an open
/// run, and the snapshot chunk that carries the runs' activity through a compaction.
fn activity_vectors() -> Vec<(Event, &'static str)> {
    vec![
        (
            Event::RunResumed(RunResumed {
                run_id: 1,
                resumed_unix_us: 1_700_000_000_000_004,
            }),
            "0100000000000000 04401e18240a0600",
        ),
        (
            Event::RunPaused(RunPaused {
                run_id: 1,
                paused_unix_us: 1_700_000_000_000_005,
            }),
            "0100000000000000 05401e18240a0600",
        ),
        (
            Event::SnapshotActivity(SnapshotActivity {
                activity: vec![ActivityImage {
                    run_id: 2,
                    active_us: 90_000_000,
                    active_rows: 1000,
                    since_unix_us: Some(1_700_000_000_000_006),
                    since_rows: 500,
                }],
            }),
            "0100000000000000
             0200000000000000 804a5d0500000000 e803000000000000 01 06401e18240a0600 f401000000000000",
        ),
    ]
}

/// The records of exact counts after a crash (issue 9): an attempt announcing its commit
/// after finding the earlier attempt's commit had happened, and the snapshot chunk that carries
/// an unconfirmed commit through a compaction.
fn claim_vectors() -> Vec<(Event, &'static str)> {
    vec![
        (
            Event::BatchCommitting(BatchCommitting {
                batch_id: 3,
                attempt: 2,
                counts: AttemptCounts {
                    rows_copied: 998,
                    rows_already: 2,
                    rows_deleted: 1000,
                    rows_conflicting: 1,
                },
                witness: Some(vec![KeyValue::UInt(3000)]),
                earlier: EarlierCommit::Committed(AttemptCounts {
                    rows_copied: 1000,
                    rows_already: 0,
                    rows_deleted: 1000,
                    rows_conflicting: 0,
                }),
            }),
            "0300000000000000 02000000
             e603000000000000 0200000000000000 e803000000000000 0100000000000000
             01 0100000000000000 01000000 b80b000000000000
             01000000 e803000000000000 0000000000000000 e803000000000000 0000000000000000",
        ),
        (
            Event::SnapshotClaims(SnapshotClaims {
                claims: vec![ClaimImage {
                    batch_id: 3,
                    lsn: 42,
                    attempt: 2,
                    counts: AttemptCounts {
                        rows_copied: 998,
                        rows_already: 2,
                        rows_deleted: 1000,
                        rows_conflicting: 1,
                    },
                    witness: None,
                }],
            }),
            "0100000000000000
             0300000000000000 2a00000000000000 02000000
             e603000000000000 0200000000000000 e803000000000000 0100000000000000 00",
        ),
    ]
}

#[test]
fn event_payloads_have_the_pinned_bytes() {
    let mut vectors = vectors();
    vectors.extend(snapshot_vectors());
    vectors.extend(live_settings_vectors());
    vectors.extend(activity_vectors());
    vectors.extend(claim_vectors());
    assert_eq!(
        vectors.len(),
        RECORD_TYPES.len(),
        "one vector per record type"
    );
    for (i, (event, hex)) in vectors.iter().enumerate() {
        assert_eq!(event.record_type() as usize, i + 1);
        let bytes = unhex(hex);
        assert_eq!(
            event.encode_payload(),
            bytes,
            "{} encodes differently",
            event.name()
        );
        let decoded = Event::decode(event.record_type(), &bytes).unwrap();
        assert_eq!(&decoded, event);
    }
}

#[test]
fn frame_and_header_have_the_pinned_bytes() {
    let payload = unhex("0100000000000000 e803000000000000 0000000000000000");
    let mut frame = Vec::new();
    encode_frame(&mut frame, 4, 4, &payload);
    // len 24 | type 4 | flags 0 | lsn 4 | payload | crc32 (zlib.crc32 of all before it)
    let expected = unhex(
        "18000000 0400 0000 0400000000000000
         0100000000000000 e803000000000000 0000000000000000
         6f0d55a8",
    );
    assert_eq!(frame, expected);
    assert_eq!(
        frame.len(),
        payload.len() + archiver::wal::FRAME_OVERHEAD_BYTES
    );

    let header = SegmentHeader {
        seq: 2,
        first_lsn: 10,
        log_id: 0x0011_2233_4455_6677_8899_aabb_ccdd_eeff,
        base: false,
    };
    // magic | version 1 | header len 64 | flags 0 | seq 2 | first lsn 10 | log id (u128 LE) |
    // 12 reserved zero bytes | crc32 of bytes 0..60
    let expected = unhex(
        "4152434857414c00 0100 4000 00000000 0200000000000000 0a00000000000000
         ffeeddccbbaa99887766554433221100 000000000000000000000000 52d933d8",
    );
    assert_eq!(header.encode().to_vec(), expected);
    assert_eq!(SegmentHeader::decode(&expected), Ok(header));

    // A base segment (written by a compaction): flags bit 0, any first LSN (wal-format.md 2.1).
    let base = SegmentHeader {
        seq: 6,
        first_lsn: 100,
        log_id: 0x0011_2233_4455_6677_8899_aabb_ccdd_eeff,
        base: true,
    };
    let expected = unhex(
        "4152434857414c00 0100 4000 01000000 0600000000000000 6400000000000000
         ffeeddccbbaa99887766554433221100 000000000000000000000000 dfd556de",
    );
    assert_eq!(base.encode().to_vec(), expected);
    assert_eq!(SegmentHeader::decode(&expected), Ok(base));
}

/// The events of the committed golden log, in order.
fn golden_events() -> Vec<Event> {
    let mut events: Vec<Event> = vectors().into_iter().map(|(e, _)| e).collect();
    events.pop(); // RunFinished goes last
    for batch_id in 3..=70u64 {
        let lower = Some(vec![KeyValue::UInt((batch_id - 1) * 1000)]);
        events.push(Event::BatchPlanned(BatchPlanned {
            batch_id,
            run_id: 1,
            lower,
            upper: vec![KeyValue::UInt(batch_id * 1000)],
            rows_planned: 1000,
        }));
        events.push(Event::BatchDeleted(BatchDeleted {
            batch_id,
            rows_copied: 1000,
            rows_already: 0,
            rows_deleted: 1000,
            rows_conflicting: 0,
        }));
    }
    events.push(Event::RunFinished(RunFinished {
        run_id: 1,
        outcome: RunOutcome::Completed,
        finished_unix_us: 1_700_000_000_000_002,
    }));
    events
}

fn golden_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name)
}

/// The log id the committed golden log was created with.
const GOLDEN_LOG_ID: u128 = 0x129c_8bfb_0778_5697_a523_e1e6_e31d_891a;
/// Segment size of the golden log.
const GOLDEN_SEGMENT_BYTES: u64 = 4096;

/// Writes the golden directories. Runs only with `ARCHIVER_WRITE_GOLDEN=1`; the output is
/// committed, and the log id printed must be pasted into `GOLDEN_LOG_ID`.
#[test]
fn write_golden_log() {
    if std::env::var("ARCHIVER_WRITE_GOLDEN").as_deref() != Ok("1") {
        return;
    }
    let dir = golden_dir("log");
    let _ = std::fs::remove_dir_all(&dir);
    let options = WalOptions {
        segment_bytes: GOLDEN_SEGMENT_BYTES,
        ..WalOptions::default()
    };
    let (mut w, _) = WalWriter::open(&dir, options, &mut |_| Ok(())).unwrap();
    for e in golden_events() {
        w.append(e.record_type(), &e.encode_payload()).unwrap();
    }
    eprintln!("golden log id {:032x}", w.log_id());
    w.close().unwrap();
    std::fs::remove_file(dir.join("LOCK")).unwrap();

    // The same log with its last record torn halfway (zeros after the tear).
    let torn = golden_dir("torn");
    let _ = std::fs::remove_dir_all(&torn);
    std::fs::create_dir_all(&torn).unwrap();
    let mut last = None;
    read_dir(&dir, &mut |r| {
        last = Some((r.segment_seq, r.offset, r.payload.len()));
        Ok(())
    })
    .unwrap();
    let (seq, offset, len) = last.unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let mut bytes = std::fs::read(entry.path()).unwrap();
        if entry.file_name().to_str() == Some(&archiver::wal::format::segment_file_name(seq)) {
            let cut = offset as usize + (20 + len) / 2;
            bytes[cut..].fill(0);
        }
        std::fs::write(torn.join(entry.file_name()), bytes).unwrap();
    }
    let mut out = Vec::new();
    archiver::ops::inspect::inspect(
        &torn,
        false,
        &mut out,
        &mut archiver::ops::inspect::CountingSink::default(),
    )
    .unwrap();
    let text = String::from_utf8(out)
        .unwrap()
        .replace(&*torn.to_string_lossy(), "TORN");
    std::fs::write(golden_dir("torn.inspect.txt"), text).unwrap();
}

#[test]
fn the_committed_log_decodes_to_the_expected_events() {
    let dir = golden_dir("log");
    let expected = golden_events();
    let mut seen = Vec::new();
    let report = read_dir(&dir, &mut |r| {
        let event = Event::decode(r.record_type, r.payload).unwrap();
        // The committed bytes are exactly what this code encodes today.
        assert_eq!(event.encode_payload(), r.payload, "lsn {}", r.lsn);
        seen.push((r.lsn, r.segment_seq, event));
        Ok(())
    })
    .unwrap();
    assert_eq!(report.log_id, Some(GOLDEN_LOG_ID));
    assert_eq!(report.segments.len(), 3);
    assert!(report.torn_tail.is_none() && report.torn_segment.is_none());
    assert_eq!(seen.len(), expected.len());
    for (i, ((lsn, _, event), want)) in seen.iter().zip(&expected).enumerate() {
        assert_eq!(*lsn, i as u64 + 1);
        assert_eq!(event, want, "lsn {lsn}");
    }
    for s in &report.segments {
        assert_eq!(s.file_bytes, GOLDEN_SEGMENT_BYTES);
        assert_eq!(s.log_id, Some(GOLDEN_LOG_ID));
    }
}

#[test]
fn the_committed_torn_log_recovers_to_all_but_the_last_event() {
    let torn = golden_dir("torn");
    let expected = golden_events();
    let mut seen = Vec::new();
    let report = read_dir(&torn, &mut |r| {
        seen.push(Event::decode(r.record_type, r.payload).unwrap());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, expected[..expected.len() - 1]);
    let cut = report.torn_tail.expect("a torn tail");
    assert!(!cut.salvaged);
    assert_eq!(cut.segment.file_name().unwrap(), "wal-0000000000000003.seg");

    // inspect's report of it is pinned too.
    let mut out = Vec::new();
    let verdict = archiver::ops::inspect::inspect(
        &torn,
        false,
        &mut out,
        &mut archiver::ops::inspect::CountingSink::default(),
    )
    .unwrap();
    assert_eq!(verdict, archiver::ops::inspect::InspectVerdict::TornTail);
    let text = String::from_utf8(out)
        .unwrap()
        .replace(&*torn.to_string_lossy(), "TORN");
    let want = std::fs::read_to_string(golden_dir("torn.inspect.txt")).unwrap();
    assert_eq!(text, want);

    // Recovery on a copy cuts exactly there and appends after it.
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&torn).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    let (mut w, report) = WalWriter::open(
        tmp.path(),
        WalOptions {
            segment_bytes: GOLDEN_SEGMENT_BYTES,
            ..WalOptions::default()
        },
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(report.cut.as_ref().map(|c| c.offset), Some(cut.offset));
    assert_eq!(w.log_id(), GOLDEN_LOG_ID);
    assert_eq!(w.append(9, b"x").unwrap(), expected.len() as u64);
}
