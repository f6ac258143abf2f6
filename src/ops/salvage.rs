//! `archiver replay --salvage-last-segment`: the explicit override for damage in the last
//! segment.

use std::io::Write;
use std::path::Path;

use crate::error::Error;
use crate::wal::{RecoveryMode, WalOptions, WalWriter};

/// Opens the log for writing with [`RecoveryMode::SalvageLastSegment`], which cuts the last
/// segment at its first invalid record even when valid records follow, and reports the cut.
/// Damage in sealed segments is still refused. The records it drops were never acted on only
/// if they were never synced; the operator decides that from `--inspect` before running this.
/// Appends nothing, so it replays nothing: the records are checked by the scanner only.
pub fn salvage(dir: &Path, out: &mut dyn Write) -> Result<(), Error> {
    let options = WalOptions {
        recovery: RecoveryMode::SalvageLastSegment,
        ..WalOptions::default()
    };
    let (writer, report) = WalWriter::open(dir, options, &mut |_| Ok(()))?;
    writer.close()?;
    match report.cut {
        Some(cut) => writeln!(
            out,
            "cut {} at offset {}: {} bytes discarded ({})",
            cut.segment.display(),
            cut.offset,
            cut.bytes_discarded,
            cut.detail
        )?,
        None => writeln!(out, "nothing to salvage: the last segment ends cleanly")?,
    }
    Ok(())
}
