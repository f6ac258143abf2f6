//! WAL benchmarks (`cargo bench --bench wal`): append throughput for 100-byte records without
//! and with a sync per record, the same bytes written with plain large `write(2)` calls for
//! comparison, and replay speed of a 1,000,000-record log (read-only scan and writer recovery).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use archiver::wal::format::encode_frame;
use archiver::wal::{read_dir, WalOptions, WalWriter};

/// Records in the unsynced append run and in the replayed log.
const RECORDS: u64 = 1_000_000;
/// Records in the synced run (each one fdatasync'ed).
const SYNCED_RECORDS: u64 = 2_000;
/// Payload size of every record.
const PAYLOAD_BYTES: usize = 100;
/// Write size of the raw `write(2)` baseline.
const RAW_WRITE_BYTES: usize = 256 << 10;

fn per_sec(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64()
}

fn payload(i: u64) -> [u8; PAYLOAD_BYTES] {
    let mut p = [0u8; PAYLOAD_BYTES];
    p[..8].copy_from_slice(&i.to_le_bytes());
    p
}

/// Bytes of one record's frame.
fn frame_bytes() -> f64 {
    (PAYLOAD_BYTES + archiver::wal::FRAME_OVERHEAD_BYTES) as f64
}

fn main() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("unsynced");
    let appends_per_sec = append_unsynced(&dir);
    raw_write(tmp.path(), appends_per_sec);
    append_synced(&tmp.path().join("synced"));
    replay(&dir);
}

/// Step 1: unsynced appends (one sync at the end, timed separately) of [`RECORDS`] records into a
/// new log in `dir`, which [`replay`] reads later. Returns appends per second.
fn append_unsynced(dir: &Path) -> f64 {
    let (mut w, _) = WalWriter::open(dir, WalOptions::default(), &mut |_| Ok(())).unwrap();
    let start = Instant::now();
    for i in 0..RECORDS {
        w.append(1, &payload(i)).unwrap();
    }
    let appended = start.elapsed();
    let start = Instant::now();
    w.close().unwrap();
    let final_sync = start.elapsed();
    let appends_per_sec = per_sec(RECORDS as f64, appended);
    println!(
        "append, no sync:   {RECORDS} x {PAYLOAD_BYTES}-byte records in {:.3} s = {:.0} appends/s, {:.1} MB/s of frames (final sync {:.3} s)",
        appended.as_secs_f64(),
        appends_per_sec,
        appends_per_sec * frame_bytes() / 1e6,
        final_sync.as_secs_f64()
    );
    appends_per_sec
}

/// Step 2: the same frames with plain large write(2) calls, compared with `appends_per_sec`.
fn raw_write(tmp: &Path, appends_per_sec: f64) {
    let mut frames = Vec::with_capacity(RAW_WRITE_BYTES + 256);
    let raw_path = tmp.join("raw");
    let mut raw = File::create(&raw_path).unwrap();
    let start = Instant::now();
    for i in 0..RECORDS {
        encode_frame(&mut frames, 1, i + 1, &payload(i));
        if frames.len() >= RAW_WRITE_BYTES {
            raw.write_all(&frames).unwrap();
            frames.clear();
        }
    }
    raw.write_all(&frames).unwrap();
    let raw_time = start.elapsed();
    raw.sync_data().unwrap();
    let raw_per_sec = per_sec(RECORDS as f64, raw_time);
    println!(
        "raw write(2):      same frames, {} KiB writes, in {:.3} s = {:.0} frames/s, {:.1} MB/s; WAL append / raw = {:.2}",
        RAW_WRITE_BYTES >> 10,
        raw_time.as_secs_f64(),
        raw_per_sec,
        raw_per_sec * frame_bytes() / 1e6,
        appends_per_sec / raw_per_sec
    );
    drop(raw);
    std::fs::remove_file(&raw_path).unwrap();
}

/// Step 3: a sync per record, into a new log in `dir`.
fn append_synced(dir: &Path) {
    let (mut w, _) = WalWriter::open(dir, WalOptions::default(), &mut |_| Ok(())).unwrap();
    let start = Instant::now();
    for i in 0..SYNCED_RECORDS {
        w.append(1, &payload(i)).unwrap();
        w.sync().unwrap();
    }
    let synced = start.elapsed();
    drop(w);
    println!(
        "append + fdatasync: {SYNCED_RECORDS} records in {:.3} s = {:.0} appends/s ({:.1} us per durable append)",
        synced.as_secs_f64(),
        per_sec(SYNCED_RECORDS as f64, synced),
        synced.as_secs_f64() * 1e6 / SYNCED_RECORDS as f64
    );
}

/// Step 4: replay of the [`RECORDS`]-record log in `dir`: read-only scan (twice), then writer
/// recovery.
fn replay(dir: &Path) {
    for round in 1..=2 {
        let start = Instant::now();
        let mut n = 0u64;
        let mut bytes = 0u64;
        let mut check = 0u64;
        let report = read_dir(dir, &mut |r| {
            n += 1;
            bytes += r.payload.len() as u64;
            check = check.wrapping_add(u64::from(r.payload[0]));
            Ok(())
        })
        .unwrap();
        let t = start.elapsed();
        assert_eq!(n, RECORDS);
        let framed = bytes as f64 + n as f64 * archiver::wal::FRAME_OVERHEAD_BYTES as f64;
        println!(
            "replay read_dir #{round}: {n} records, {} segments, in {:.3} s = {:.0} records/s, {:.1} MB/s of frames (checksum {check})",
            report.segments.len(),
            t.as_secs_f64(),
            per_sec(n as f64, t),
            per_sec(framed, t) / 1e6
        );
    }
    let start = Instant::now();
    let mut n = 0u64;
    let (w, report) = WalWriter::open(dir, WalOptions::default(), &mut |_| {
        n += 1;
        Ok(())
    })
    .unwrap();
    let t = start.elapsed();
    assert_eq!(report.records, RECORDS);
    drop(w);
    println!(
        "replay WalWriter::open: {n} records in {:.3} s = {:.0} records/s",
        t.as_secs_f64(),
        per_sec(n as f64, t)
    );
}
