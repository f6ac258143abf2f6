//! WAL tests: round trip, torn tails, corruption, crashes, poisoning, fuzzing, locking,
//! compaction and segment growth, replay visitors that fail, and `replay --inspect`. Helpers
//! shared by them live here.

mod compact;
mod corruption;
mod crash;
mod fuzz;
mod inspect;
mod lock;
mod permissions;
mod poison;
mod power_loss;
mod replay;
mod roundtrip;
mod split_sync;
mod torn_tail;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use archiver::ops::inspect::{inspect, CountingSink, InspectVerdict};
use archiver::wal::{read_dir, OpenReport, RecoveryMode, WalError, WalOptions, WalWriter};

/// A record as the tests compare them: (lsn, type, payload).
pub type Rec = (u64, u16, Vec<u8>);

/// Options with small segments, so tests roll over often.
pub fn small(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        recovery: RecoveryMode::TolerateTornTail,
    }
}

/// Opens a writer, collecting the replayed records.
pub fn open(
    dir: &Path,
    options: WalOptions,
) -> Result<(WalWriter, OpenReport, Vec<Rec>), WalError> {
    let mut seen = Vec::new();
    let (w, report) = WalWriter::open(dir, options, &mut |r| {
        seen.push((r.lsn, r.record_type, r.payload.to_vec()));
        Ok(())
    })?;
    Ok((w, report, seen))
}

/// Every record `read_dir` returns.
pub fn read_all(dir: &Path) -> Result<Vec<Rec>, WalError> {
    let mut seen = Vec::new();
    read_dir(dir, &mut |r| {
        seen.push((r.lsn, r.record_type, r.payload.to_vec()));
        Ok(())
    })?;
    Ok(seen)
}

/// Appends `payloads` (type, bytes) and syncs; returns the records as written.
pub fn write_records(w: &mut WalWriter, payloads: &[(u16, Vec<u8>)]) -> Vec<Rec> {
    let mut out = Vec::new();
    for (t, p) in payloads {
        let lsn = w.append(*t, p).expect("append");
        out.push((lsn, *t, p.clone()));
    }
    w.sync().expect("sync");
    out
}

/// Every file of a directory and its bytes, to prove a read-only operation changed nothing.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        let bytes = std::fs::read(entry.path()).expect("read file");
        files.insert(entry.file_name().to_string_lossy().into_owned(), bytes);
    }
    files
}

/// Copies every file of `from` into the (existing, emptied) directory `to`.
pub fn restore(to: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(to).expect("read dir") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove");
    }
    for (name, bytes) in files {
        std::fs::write(to.join(name), bytes).expect("write");
    }
}

/// Path of segment `seq` in `dir`.
pub fn seg(dir: &Path, seq: u64) -> PathBuf {
    dir.join(archiver::wal::format::segment_file_name(seq))
}

/// Runs inspect in-process; returns the verdict and the output.
pub fn inspect_text(dir: &Path, json: bool) -> (InspectVerdict, String) {
    let mut out = Vec::new();
    let mut sink = CountingSink::default();
    let verdict = inspect(dir, json, &mut out, &mut sink).expect("inspect runs");
    (verdict, String::from_utf8(out).expect("utf-8 output"))
}

/// A small deterministic PRNG (xorshift64*), so randomized tests can print their seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A seed from the clock (printed by the tests that use it, so a failure can be replayed with
/// `ARCHIVER_TEST_SEED`).
pub fn seed() -> u64 {
    if let Ok(s) = std::env::var("ARCHIVER_TEST_SEED") {
        return s.parse().expect("ARCHIVER_TEST_SEED is a number");
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// `n` records holding real events (so inspect can decode them) with payloads of roughly 20 to
/// `bytes_max` bytes, deterministic in the generator's state.
pub fn payloads(rng: &mut Rng, n: usize, bytes_max: usize) -> Vec<(u16, Vec<u8>)> {
    use archiver::event::{BatchFailed, BatchReset, ConflictFound, ErrorClass, Event, KeyValue};
    (0..n)
        .map(|i| {
            let len = rng.below(bytes_max.saturating_sub(20) as u64 + 1) as usize;
            let text: String = (0..len)
                .map(|_| (b' ' + rng.below(95) as u8) as char)
                .collect();
            let event = match rng.below(3) {
                0 => Event::BatchFailed(BatchFailed {
                    batch_id: i as u64,
                    attempt: 1,
                    class: ErrorClass::Transient,
                    message: text,
                }),
                1 => Event::BatchReset(BatchReset {
                    batch_id: i as u64,
                    reason: text,
                }),
                _ => Event::ConflictFound(ConflictFound {
                    batch_id: i as u64,
                    key: vec![KeyValue::Bytes(text.into_bytes())],
                }),
            };
            (event.record_type(), event.encode_payload())
        })
        .collect()
}

/// One `BatchReset` record whose payload is exactly `bytes` long (at least 16).
pub fn reset_of_len(bytes: usize) -> (u16, Vec<u8>) {
    use archiver::event::{BatchReset, Event};
    let event = Event::BatchReset(BatchReset {
        batch_id: 7,
        reason: "r".repeat(bytes - 16),
    });
    let payload = event.encode_payload();
    assert_eq!(payload.len(), bytes);
    (event.record_type(), payload)
}
