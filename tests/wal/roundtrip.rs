//! Round trip: random records written (with syncs and reopens at random points), closed,
//! reopened, read back identical, across many segment rollovers.

use proptest::prelude::*;

use super::{open, read_all, small, Rec};

fn record() -> impl Strategy<Value = (u16, Vec<u8>)> {
    (
        1u16..=u16::MAX,
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..200),
            1 => proptest::collection::vec(any::<u8>(), 200..3000),
        ],
    )
}

/// What to do between appends.
#[derive(Debug, Clone)]
enum Step {
    Append(u16, Vec<u8>),
    Sync,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => record().prop_map(|(t, p)| Step::Append(t, p)),
        2 => Just(Step::Sync),
        1 => Just(Step::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_records_round_trip_across_rollovers(
        steps in proptest::collection::vec(step(), 1..400),
        segment_bytes in 4096u64..12288,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let (mut w, report, seen) = open(&dir, small(segment_bytes)).unwrap();
        prop_assert!(report.created);
        prop_assert!(seen.is_empty());
        let mut written: Vec<Rec> = Vec::new();
        for step in steps {
            match step {
                Step::Append(t, p) => {
                    let lsn = w.append(t, &p).unwrap();
                    prop_assert_eq!(lsn, written.len() as u64 + 1);
                    written.push((lsn, t, p));
                }
                Step::Sync => {
                    w.sync().unwrap();
                    prop_assert_eq!(w.durable_lsn(), written.len() as u64);
                }
                Step::Reopen => {
                    w.close().unwrap();
                    let (w2, report, seen) = open(&dir, small(segment_bytes)).unwrap();
                    prop_assert!(report.cut.is_none());
                    prop_assert_eq!(&seen, &written);
                    w = w2;
                }
            }
        }
        let log_id = w.log_id();
        w.close().unwrap();
        // Read back through the read-only path and through recovery.
        prop_assert_eq!(&read_all(&dir).unwrap(), &written);
        let (w, report, seen) = open(&dir, small(segment_bytes)).unwrap();
        prop_assert_eq!(&seen, &written);
        prop_assert_eq!(report.log_id, log_id);
        prop_assert_eq!(w.next_lsn(), written.len() as u64 + 1);
        prop_assert!(report.cut.is_none() && !report.created);
    }
}

#[test]
fn many_rollovers_keep_every_record_and_segment_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut w, _, _) = open(&dir, small(4096)).unwrap();
    let mut rng = super::Rng::new(7);
    let written = super::write_records(&mut w, &super::payloads(&mut rng, 2000, 500));
    w.close().unwrap();
    let report = archiver::wal::read_dir(&dir, &mut |_| Ok(())).unwrap();
    assert!(
        report.segments.len() > 100,
        "{} segments",
        report.segments.len()
    );
    assert!(report.segments.iter().all(|s| s.file_bytes == 4096));
    assert_eq!(read_all(&dir).unwrap(), written);
}

#[test]
fn refuses_bad_records_and_options_without_poisoning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    assert!(open(&dir, small(100)).is_err());
    let (mut w, _, _) = open(&dir, small(4096)).unwrap();
    assert!(matches!(
        w.append(0, b"x"),
        Err(archiver::wal::WalError::InvalidRecord(_))
    ));
    assert!(matches!(
        w.append(1, &vec![0u8; 4096]),
        Err(archiver::wal::WalError::InvalidRecord(_))
    ));
    // The largest payload that fits an empty segment is accepted.
    let max = 4096 - archiver::wal::HEADER_BYTES - archiver::wal::FRAME_OVERHEAD_BYTES;
    assert_eq!(w.append(1, &vec![7u8; max]).unwrap(), 1);
    assert_eq!(w.append(2, b"").unwrap(), 2);
    w.close().unwrap();
    let back = read_all(&dir).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].2.len(), max);
}

#[test]
fn default_segments_accept_the_largest_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut w, _, _) = open(&dir, archiver::wal::WalOptions::default()).unwrap();
    let big = vec![0xabu8; archiver::event::PAYLOAD_BYTES_MAX];
    for _ in 0..70 {
        w.append(3, &big).unwrap();
    }
    w.close().unwrap();
    let back = read_all(&dir).unwrap();
    assert_eq!(back.len(), 70);
    assert!(back.iter().all(|r| r.2 == big));
    assert!(
        archiver::wal::read_dir(&dir, &mut |_| Ok(()))
            .unwrap()
            .segments
            .len()
            >= 2
    );
}
