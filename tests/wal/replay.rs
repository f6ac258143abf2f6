//! Replay visitors: a visitor that refuses a record stops `read_dir` there, and the error names
//! the record's lsn, segment file and offset exactly as `WalWriter::open` names them.

use std::path::{Path, PathBuf};

use archiver::wal::{read_dir, BoxError, Record, WalError, WalOptions, WalWriter};

use super::{open, seg, small, snapshot, write_records};

/// Where a refused record is, as the error must name it.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    lsn: u64,
    path: PathBuf,
    offset: u64,
    message: String,
}

fn refusal(err: WalError) -> Refusal {
    match err {
        WalError::Visitor {
            lsn,
            path,
            offset,
            source,
        } => Refusal {
            lsn,
            path,
            offset,
            message: source.to_string(),
        },
        other => panic!("expected a visitor error, got {other:?}"),
    }
}

/// A visitor that refuses `lsn` and records every lsn it was shown.
fn refusing(
    lsn: u64,
    shown: &mut Vec<u64>,
) -> impl FnMut(&Record<'_>) -> Result<(), BoxError> + '_ {
    move |r| {
        shown.push(r.lsn);
        if r.lsn == lsn {
            return Err(format!("refused lsn {lsn}").into());
        }
        Ok(())
    }
}

/// A log of several small segments; returns every record's (lsn, segment seq, offset).
fn log_of_segments(dir: &Path) -> Vec<(u64, u64, u64)> {
    let (mut w, _, _) = open(dir, small(4096)).unwrap();
    let payloads: Vec<(u16, Vec<u8>)> = (0..100u8).map(|i| (1, vec![i; 100])).collect();
    write_records(&mut w, &payloads);
    w.close().unwrap();
    let mut records = Vec::new();
    read_dir(dir, &mut |r| {
        records.push((r.lsn, r.segment_seq, r.offset));
        Ok(())
    })
    .unwrap();
    records
}

#[test]
fn a_failing_visitor_stops_read_dir_at_its_record_and_names_segment_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let records = log_of_segments(&dir);
    let last = *records.last().unwrap();
    assert!(last.1 >= 3, "the log spans several segments: {last:?}");
    let second_segment_first = *records.iter().find(|r| r.1 == 2).unwrap();
    let before = snapshot(&dir);

    // The first record, the first record of a later segment, a record inside one, the last.
    for (lsn, segment_seq, offset) in [records[0], second_segment_first, records[40], last] {
        let expected = Refusal {
            lsn,
            path: seg(&dir, segment_seq),
            offset,
            message: format!("refused lsn {lsn}"),
        };

        let mut shown = Vec::new();
        let err = read_dir(&dir, &mut refusing(lsn, &mut shown)).unwrap_err();
        let text = err.to_string();
        assert_eq!(refusal(err), expected);
        assert_eq!(
            shown,
            (1..=lsn).collect::<Vec<_>>(),
            "every record up to the refused one, nothing after it"
        );
        assert!(
            text.contains(&format!(
                "lsn {lsn} ({}, offset {offset}): refused lsn {lsn}",
                seg(&dir, segment_seq).display()
            )),
            "{text}"
        );

        // Opening for write reports the same refusal the same way.
        let mut shown = Vec::new();
        let err = WalWriter::open(&dir, WalOptions::default(), &mut refusing(lsn, &mut shown))
            .unwrap_err();
        assert_eq!(refusal(err), expected);
        assert_eq!(shown.len() as u64, lsn);
    }
    assert_eq!(
        snapshot(&dir),
        before,
        "a refused read changed the directory"
    );
}
