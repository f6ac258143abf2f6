//! The deterministic append loop behind the hidden `archiver debug wal-append` subcommand, which
//! the crash test runs in a child process and kills with SIGKILL at random moments. Every
//! record's type and payload are a function of its LSN, so the test can check that what
//! survives is exactly what was written, and nothing else.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::{Lsn, WalOptions, WalWriter};

/// The record type the stress loop writes for `lsn` (1..=9, never 0).
pub fn expected_type(lsn: Lsn) -> u16 {
    1 + (lsn % 9) as u16
}

/// The payload the stress loop writes for `lsn`: 1 to `payload_bytes` bytes, derived from it.
pub fn expected_payload(lsn: Lsn, payload_bytes: usize) -> Vec<u8> {
    let mut x = lsn.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    let len = 1 + usize::try_from(x % payload_bytes.max(1) as u64)
        .expect("less than payload_bytes, which is a usize");
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        // xorshift64*: cheap, deterministic, covers every byte value.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let word = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&word[..take]);
    }
    out
}

/// Opens (recovering) the log in `dir`, checks that every replayed record is what this loop
/// would have written, then appends `records` more records, syncing every `sync_every`
/// appends and printing `durable <lsn>` (flushed) after each sync returns. With `split`, each
/// sync is begun there and run on another thread while the appends go on
/// ([`WalWriter::begin_sync`]); it is finished, and acknowledged, at the next sync point.
pub fn append_loop(
    dir: &Path,
    (records, payload_bytes): (u64, usize),
    (sync_every, split): (u64, bool),
    segment_bytes: u64,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let options = WalOptions {
        segment_bytes,
        ..WalOptions::default()
    };
    let (mut wal, report) = WalWriter::open(dir, options, &mut |record| {
        if record.record_type != expected_type(record.lsn)
            || record.payload != expected_payload(record.lsn, payload_bytes).as_slice()
        {
            return Err(format!("record lsn {} is not what was written", record.lsn).into());
        }
        Ok(())
    })
    .with_context(|| format!("cannot open the WAL in {}", dir.display()))?;
    writeln!(out, "opened next_lsn {}", report.next_lsn)?;
    out.flush()?;
    let sync_every = sync_every.max(1);
    let mut running: Option<std::thread::JoinHandle<super::SyncOutcome>> = None;
    for i in 1..=records {
        let lsn = wal.next_lsn();
        wal.append(expected_type(lsn), &expected_payload(lsn, payload_bytes))?;
        if i % sync_every == 0 || i == records {
            if split {
                if let Some(sync) = running.take() {
                    let outcome = sync.join().expect("the sync thread does not panic");
                    wal.finish_sync(outcome)?;
                    writeln!(out, "durable {}", wal.durable_lsn())?;
                    out.flush()?;
                }
                let pending = wal.begin_sync()?;
                running = Some(std::thread::spawn(move || pending.run()));
            } else {
                wal.sync()?;
                writeln!(out, "durable {}", wal.durable_lsn())?;
                out.flush()?;
            }
        }
    }
    if let Some(sync) = running {
        wal.finish_sync(sync.join().expect("the sync thread does not panic"))?;
    }
    wal.close()?;
    Ok(())
}
