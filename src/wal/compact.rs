//! Compaction at the WAL level: [`WalWriter::replace_with`] replaces every segment of the log
//! with one new *base segment* holding the records it is given (the layer above writes a
//! snapshot of its state there). The WAL stays payload-agnostic: it neither knows nor checks
//! what the records mean.
//!
//! The protocol, whose every intermediate state recovery and readers handle (wal-format.md §5.1):
//!
//! 1. sync the current segment, so the old log is complete and durable;
//! 2. write the base segment under `wal-{seq:016x}.seg.compact` (header flag base, seq = last
//!    seq + 1, first LSN = next LSN, the records), fsync it, fsync the directory;
//! 3. rename it to `wal-{seq:016x}.seg` and fsync the directory: **the rename is the atomic
//!    switch** from the old log to the new one;
//! 4. remove every older segment, lowest seq first, and fsync the directory.
//!
//! A crash before step 3's rename leaves the old log plus a `.compact` file nobody reads; after
//! it, the base segment plus superseded segments nobody reads. [`WalWriter::open`] deletes
//! whichever is left over.

use super::format::{
    compact_file_name, encode_frame, first_segment_bytes, segment_file_name, SegmentHeader,
    FRAME_OVERHEAD_BYTES, HEADER_BYTES, PAYLOAD_BYTES_MAX, SEGMENT_BYTES_MAX,
};
use super::scan::segment_files;
use super::writer::{create_segment, remove};
use super::{Lsn, WalError, WalWriter};
use std::path::PathBuf;

/// What [`WalWriter::replace_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// Segment files of the log before (all removed).
    pub segments_before: usize,
    /// Their total size on disk, in bytes (file lengths).
    pub bytes_before: u64,
    /// Segment files of the log after: 1, the base segment.
    pub segments_after: usize,
    /// The base segment's size on disk, in bytes.
    pub bytes_after: u64,
    /// Records written into the base segment.
    pub records_written: u64,
    /// LSN of the first of them: the old log's last LSN + 1, where the new log begins.
    pub first_lsn: Lsn,
    /// LSN the next append gets.
    pub next_lsn: Lsn,
    /// The base segment file.
    pub base_segment: PathBuf,
}

impl WalWriter {
    /// Replaces the whole log with `records` (type, payload), crash-safely: afterwards the log
    /// holds exactly these records, with LSNs continuing after the old last LSN, in one base
    /// segment (sized the larger of the normal next segment size and what the records need),
    /// and the writer appends right after them. A crash at any point leaves either the old log
    /// or the new one, never a mix (module doc).
    ///
    /// Records the log cannot hold (type 0, a payload over [`PAYLOAD_BYTES_MAX`], more than fits
    /// one segment of [`SEGMENT_BYTES_MAX`]) are refused with [`WalError::InvalidRecord`] before
    /// anything is written, and do not poison the writer. **Any I/O failure poisons it**, as a
    /// failed append or sync does; the next open finishes or undoes the compaction.
    pub fn replace_with(&mut self, records: &[(u16, Vec<u8>)]) -> Result<Replacement, WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        let first_lsn = self.next_lsn;
        let frames = encode_records(records, first_lsn)?;
        let needed = HEADER_BYTES as u64 + frames.len() as u64;
        // The log is small again: its size restarts at the first segment's, as a new log's
        // does (a base sized as the next one after the old last would double every compaction).
        let segment_bytes = first_segment_bytes(self.segment_bytes).max(needed);
        self.poison_on_error(|w| w.switch(&frames, records.len() as u64, segment_bytes))
    }

    /// Steps 1 to 4 of the protocol (module doc), with the records already encoded.
    fn switch(
        &mut self,
        frames: &[u8],
        records: u64,
        segment_bytes: u64,
    ) -> Result<Replacement, WalError> {
        // 1. The old log, complete and durable.
        self.flush()?;
        self.file
            .sync_data()
            .map_err(WalError::io("fdatasync", &self.path))?;
        self.durable_lsn = self.next_lsn - 1;
        // Under the lock, after open's cleanup, these are exactly the log's segments.
        let before = segment_files(&self.dir)?;

        // 2. The base segment, under a name no reader takes for a segment.
        let seq = self.seq + 1;
        let header = SegmentHeader {
            seq,
            first_lsn: self.next_lsn,
            log_id: self.log_id,
            base: true,
        };
        let compact = self.dir.join(compact_file_name(seq));
        let file = create_segment(
            self.fs.as_ref(),
            &self.dir,
            &compact,
            segment_bytes,
            &header,
            frames,
        )?;

        // 3. The switch.
        let path = self.dir.join(segment_file_name(seq));
        self.fs
            .rename(&compact, &path)
            .map_err(WalError::io("rename", &compact))?;
        self.sync_dir()?;
        let first_lsn = self.next_lsn;
        self.seq = seq;
        self.path.clone_from(&path);
        self.file = file;
        self.capacity = segment_bytes;
        self.write_offset = HEADER_BYTES as u64 + frames.len() as u64;
        self.next_lsn += records;
        self.durable_lsn = self.next_lsn - 1;

        // 4. The superseded segments, oldest first, so that what is left after a crash here is
        // always a run of consecutive seqs ending at the base segment.
        for (_, old, _) in &before {
            remove(self.fs.as_ref(), old)?;
        }
        self.sync_dir()?;
        Ok(Replacement {
            segments_before: before.len(),
            bytes_before: before.iter().map(|(_, _, bytes)| bytes).sum(),
            segments_after: 1,
            bytes_after: segment_bytes,
            records_written: records,
            first_lsn,
            next_lsn: self.next_lsn,
            base_segment: path,
        })
    }

    fn sync_dir(&self) -> Result<(), WalError> {
        self.fs
            .sync_dir(&self.dir)
            .map_err(WalError::io("fsync", &self.dir))
    }
}

/// The frames of `records` with LSNs from `first_lsn`, or why they cannot be one segment's.
fn encode_records(records: &[(u16, Vec<u8>)], first_lsn: Lsn) -> Result<Vec<u8>, WalError> {
    let room = SEGMENT_BYTES_MAX - HEADER_BYTES as u64;
    let mut frames = Vec::new();
    for (lsn, (record_type, payload)) in (first_lsn..).zip(records) {
        if *record_type == 0 {
            return Err(WalError::InvalidRecord(format!(
                "record type 0 is reserved (record {} of the replacement)",
                lsn - first_lsn + 1
            )));
        }
        if payload.len() > PAYLOAD_BYTES_MAX {
            return Err(WalError::InvalidRecord(format!(
                "payload of {} bytes is larger than the maximum of {PAYLOAD_BYTES_MAX} bytes",
                payload.len()
            )));
        }
        if frames.len() as u64 + (FRAME_OVERHEAD_BYTES + payload.len()) as u64 > room {
            return Err(WalError::InvalidRecord(format!(
                "the replacement records do not fit one segment of {SEGMENT_BYTES_MAX} bytes"
            )));
        }
        encode_frame(&mut frames, *record_type, lsn, payload);
    }
    Ok(frames)
}
