//! The read-only scanner: lists a WAL directory's segments, checks every header and frame, and
//! classifies damage exactly as recovery does. Recovery ([`crate::wal::WalWriter::open`]),
//! [`read_dir`] and `inspect` all go through [`scan_dir`], so they can never disagree about
//! what a log holds. Recovery and [`read_dir`] also share `replay`, the loop that feeds
//! records to a fallible visitor and stops at its first error, so they report a refused record
//! the same way.
//!
//! A log begins at its latest *base segment* (header flag [`FLAG_BASE`](super::format::FLAG_BASE), written by a
//! compaction) or, without one, at segment 1. Segments below the latest base are superseded:
//! they are listed ([`SegmentStatus::Superseded`]) but not read, so damage in them is nobody's
//! problem; unfinished compaction files (`*.seg.compact`) are listed in
//! [`DirScan::compact_leftovers`] and never read. Only the writer deletes either.
//!
//! It never writes, never locks, and opens files read-only. Sealed segments (all but the last)
//! are memory-mapped; the last one is read into memory, because a concurrent writer may still
//! change it. Memory is bounded: no length field is trusted before it is bounds-checked, and a
//! segment file larger than [`SEGMENT_BYTES_MAX`] is reported, not read.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::format::{
    all_zero, check_frame, find_valid_frame_after, nonzero_end, parse_compact_file_name,
    parse_segment_file_name, segment_file_name, Frame, FrameCheck, Resync, SegmentHeader,
    HEADER_BYTES, SEGMENT_BYTES_MAX,
};
use super::{BoxError, Lsn, Record, RecoveryMode, TailCut, WalError};

/// What the scanner concluded about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentStatus {
    /// Not the last segment, every record valid, zeros after the last one.
    Sealed,
    /// The last segment, every record valid, zeros after the last one.
    Active,
    /// The last segment ends in a torn tail that recovery cuts.
    TornTail,
    /// The last segment's header was never completely written and nothing follows it: a crash
    /// while creating it. Recovery deletes it.
    TornCreation,
    /// Damage recovery refuses to touch.
    Corrupt,
    /// Below the log's latest base segment: replaced by a compaction, not read, deleted by the
    /// writer's next open.
    Superseded,
}

impl SegmentStatus {
    /// The status as `inspect` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentStatus::Sealed => "sealed",
            SegmentStatus::Active => "active",
            SegmentStatus::TornTail => "torn-tail",
            SegmentStatus::TornCreation => "torn-creation",
            SegmentStatus::Corrupt => "corrupt",
            SegmentStatus::Superseded => "superseded",
        }
    }
}

/// One segment as scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Sequence number from the file name.
    pub seq: u64,
    /// File name, `wal-{seq:016x}.seg`.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Log id from the header, if the header is valid.
    pub log_id: Option<u128>,
    /// LSN the header says the segment starts at, if the header is valid.
    pub header_first_lsn: Option<Lsn>,
    /// The header is valid and has flag [`FLAG_BASE`](super::format::FLAG_BASE): a compaction wrote it and the log
    /// begins at the latest such segment.
    pub base: bool,
    /// LSN of the first valid record found.
    pub first_lsn: Option<Lsn>,
    /// LSN of the last valid record found.
    pub last_lsn: Option<Lsn>,
    /// Valid records found.
    pub records: u64,
    /// Offset just past the last valid record before any damage: where appending resumes.
    pub end_offset: u64,
    /// What the scanner concluded.
    pub status: SegmentStatus,
}

/// Damage found by the scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The last segment ends in an incomplete or invalid record with nothing valid after it (or
    /// salvage was asked for): recovery cuts it.
    TornTail(TailCut),
    /// The last segment was never completely created: recovery deletes it.
    TornCreation {
        /// The segment file.
        segment: PathBuf,
        /// What its header looks like.
        detail: String,
    },
    /// Anything else: recovery refuses to open the log.
    Corruption {
        /// The damaged file.
        segment: PathBuf,
        /// Offset of the damage.
        offset: u64,
        /// What was found and what was expected.
        detail: String,
    },
}

impl Damage {
    /// The error recovery reports for this damage (only corruption is an error).
    pub fn to_error(&self) -> Option<WalError> {
        match self {
            Damage::Corruption {
                segment,
                offset,
                detail,
            } => Some(WalError::Corruption {
                path: segment.clone(),
                offset: *offset,
                detail: detail.clone(),
            }),
            _ => None,
        }
    }
}

/// What the scanner hands its visitor, in file order.
#[derive(Debug)]
pub enum ScanItem<'a> {
    /// A valid record. Records come in increasing LSN order until a `Corruption`; after one
    /// (if the visitor continues) they come from wherever the scanner could resynchronise.
    Record(Record<'a>),
    /// Damage, at the point of the scan where it was found.
    Damage(&'a Damage),
}

/// A file a compaction left before its switch (`wal-{seq:016x}.seg.compact`): not part of the
/// log, deleted by the writer's next open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactLeftover {
    /// Sequence number of the segment it would have become.
    pub seq: u64,
    /// Full path.
    pub path: PathBuf,
    /// File size in bytes.
    pub file_bytes: u64,
}

/// The result of scanning a directory.
#[derive(Debug, Clone, Default)]
pub struct DirScan {
    /// Log id of the log's first segment (the latest base segment, else segment 1), if its
    /// header is valid.
    pub log_id: Option<u128>,
    /// Every segment file, in sequence order (up to where the visitor stopped): superseded
    /// ones first, then the log's.
    pub segments: Vec<SegmentSummary>,
    /// Sequence number of the latest base segment, where the log begins (`None`: segment 1).
    pub base_seq: Option<u64>,
    /// LSN the log begins at: the latest base segment's first LSN, else 1.
    pub start_lsn: Lsn,
    /// Unfinished compaction files, in sequence order. Never read.
    pub compact_leftovers: Vec<CompactLeftover>,
    /// Every damage found, in scan order.
    pub damages: Vec<Damage>,
    /// Valid records found.
    pub records: u64,
    /// LSN of the last valid record found before any corruption (`start_lsn - 1` if none: 0
    /// for a log that begins at LSN 1).
    pub last_lsn: Lsn,
    /// Whether the visitor stopped the scan early.
    pub stopped: bool,
}

/// Summary of a read-only scan by [`read_dir`].
#[derive(Debug, Clone, Default)]
pub struct DirReport {
    /// The log's id (`None` if the directory holds no segment).
    pub log_id: Option<u128>,
    /// Every segment, in order, superseded ones ([`SegmentStatus::Superseded`]) included.
    pub segments: Vec<SegmentSummary>,
    /// LSN the log begins at: 1, or the first LSN of its latest base segment.
    pub start_lsn: Lsn,
    /// Unfinished compaction files the writer's next open deletes.
    pub compact_leftovers: Vec<CompactLeftover>,
    /// Valid records visited.
    pub records: u64,
    /// LSN of the last valid record (`start_lsn - 1` if none).
    pub last_lsn: Lsn,
    /// The torn tail recovery would cut, if any.
    pub torn_tail: Option<TailCut>,
    /// The torn last segment recovery would delete, if any.
    pub torn_segment: Option<PathBuf>,
}

/// Read-only, lock-free scan of a WAL directory (for `status` and tools): feeds every valid
/// record, in LSN order, to `visit`, and never modifies a byte. A torn tail is reported in the
/// result (it is what a crash leaves); corruption is an error. A visitor error stops the read
/// and comes back as [`WalError::Visitor`] with the record's LSN, segment file and offset, as
/// it does from [`crate::wal::WalWriter::open`]: both go through `replay`. On any error the
/// visitor may have seen a prefix of the log: discard what it built. A directory without
/// segments is an empty log (`segments` empty); a missing directory is an `Io` error.
pub fn read_dir(
    dir: &Path,
    visit: &mut dyn FnMut(&Record<'_>) -> Result<(), BoxError>,
) -> Result<DirReport, WalError> {
    let scan = replay(dir, RecoveryMode::TolerateTornTail, visit)?;
    let mut report = DirReport {
        log_id: scan.log_id,
        records: scan.records,
        last_lsn: scan.last_lsn,
        start_lsn: scan.start_lsn,
        compact_leftovers: scan.compact_leftovers,
        ..DirReport::default()
    };
    for d in scan.damages {
        match d {
            Damage::TornTail(cut) => report.torn_tail = Some(cut),
            Damage::TornCreation { segment, .. } => report.torn_segment = Some(segment),
            Damage::Corruption { .. } => unreachable!("replay returns corruption as an error"),
        }
    }
    report.segments = scan.segments;
    Ok(report)
}

/// The one replay loop of every reader that applies records, recovery and [`read_dir`] alike:
/// scans `dir` and feeds every valid record, in LSN order, to `visit`. Stops at the first
/// corruption ([`WalError::Corruption`]) or the first visitor error ([`WalError::Visitor`], with
/// the record's LSN, segment file and offset). What `recovery` lets recovery cut is left in the
/// result's `damages`.
pub(crate) fn replay(
    dir: &Path,
    recovery: RecoveryMode,
    visit: &mut dyn FnMut(&Record<'_>) -> Result<(), BoxError>,
) -> Result<DirScan, WalError> {
    let mut stop = None;
    let scan = scan_dir(dir, recovery, &mut |item| {
        let error = match item {
            ScanItem::Record(record) => visit(&record).err().map(|source| WalError::Visitor {
                lsn: record.lsn,
                path: dir.join(segment_file_name(record.segment_seq)),
                offset: record.offset,
                source,
            }),
            ScanItem::Damage(damage) => damage.to_error(),
        };
        match error {
            Some(e) => {
                stop = Some(e);
                ControlFlow::Break(())
            }
            None => ControlFlow::Continue(()),
        }
    })?;
    match stop {
        Some(e) => Err(e),
        None => Ok(scan),
    }
}

/// Lists the segment files of `dir` in sequence order. Other files are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    Ok(list_dir(dir)?.segments)
}

/// The WAL files of a directory, each kind in sequence order.
#[derive(Debug, Default)]
pub struct DirListing {
    /// Segment files `wal-{seq:016x}.seg`.
    pub segments: Vec<(u64, PathBuf)>,
    /// Unfinished compaction files `wal-{seq:016x}.seg.compact`.
    pub compact: Vec<(u64, PathBuf)>,
}

/// Lists the segment and compaction files of `dir`. Other files are ignored.
pub fn list_dir(dir: &Path) -> Result<DirListing, WalError> {
    let entries = std::fs::read_dir(dir).map_err(WalError::io("read directory", dir))?;
    let mut listing = DirListing::default();
    for entry in entries {
        let entry = entry.map_err(WalError::io("read directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_segment_file_name(name) {
            listing.segments.push((seq, entry.path()));
        } else if let Some(seq) = parse_compact_file_name(name) {
            listing.compact.push((seq, entry.path()));
        }
    }
    listing.segments.sort();
    listing.compact.sort();
    Ok(listing)
}

/// The header of a segment file, if it has a valid one. I/O errors are errors.
fn read_header(path: &Path) -> Result<Option<SegmentHeader>, WalError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(WalError::io("open", path))?;
    let mut bytes = Vec::with_capacity(HEADER_BYTES);
    file.take(HEADER_BYTES as u64)
        .read_to_end(&mut bytes)
        .map_err(WalError::io("read", path))?;
    Ok(SegmentHeader::decode(&bytes).ok())
}

/// The index in `segments` and the header of the latest base segment (a valid header with
/// [`FLAG_BASE`](super::format::FLAG_BASE) and the seq of its file name), if any. Looks from the highest seq down, so
/// only the segments from the base on are opened.
fn latest_base(segments: &[(u64, PathBuf)]) -> Result<Option<(usize, SegmentHeader)>, WalError> {
    for (i, (seq, path)) in segments.iter().enumerate().rev() {
        if let Some(header) = read_header(path)? {
            if header.base && header.seq == *seq {
                return Ok(Some((i, header)));
            }
        }
    }
    Ok(None)
}

/// Every segment file of `dir` with its size on disk in bytes (preallocated), in sequence
/// order: `(seq, path, bytes)`.
pub fn segment_files(dir: &Path) -> Result<Vec<(u64, PathBuf, u64)>, WalError> {
    let mut files = Vec::new();
    for (seq, path) in list_segments(dir)? {
        let bytes = std::fs::metadata(&path)
            .map_err(WalError::io("stat", &path))?
            .len();
        files.push((seq, path, bytes));
    }
    Ok(files)
}

/// Scans every segment of `dir` in order, checking headers, sequence numbers, log ids, LSN
/// continuity and every frame, and hands records and damage to `visit` as it finds them.
/// `recovery` decides how the last segment's damage is classified. If `visit` returns
/// `Continue` after a corruption, the scan resynchronises (next valid frame, next segment) and
/// goes on, which is what `inspect` wants; recovery stops at the first corruption.
/// Errors are I/O errors only; damage is reported through `visit` and the result.
pub fn scan_dir(
    dir: &Path,
    recovery: RecoveryMode,
    visit: &mut dyn FnMut(ScanItem<'_>) -> ControlFlow<()>,
) -> Result<DirScan, WalError> {
    let listing = list_dir(dir)?;
    let files = listing.segments;
    let mut scanner = Scanner {
        recovery,
        expected_seq: 1,
        next_lsn: 1,
        damaged: false,
        scan: DirScan {
            start_lsn: 1,
            compact_leftovers: listing.compact.into_iter().map(leftover).collect(),
            ..DirScan::default()
        },
        visit,
    };
    let start = match latest_base(&files)? {
        Some((i, header)) => {
            scanner.begin_at_base(&header);
            i
        }
        None => 0,
    };
    for (seq, path) in &files[..start] {
        scanner.superseded(*seq, path);
    }
    for (i, (seq, path)) in files.iter().enumerate().skip(start) {
        let is_last = i + 1 == files.len();
        let flow = match SegmentBytes::load(path, !is_last)? {
            Some(data) => scanner.segment(*seq, path, &data, is_last),
            None => scanner.oversized(*seq, path),
        };
        if flow.is_break() {
            scanner.scan.stopped = true;
            break;
        }
    }
    Ok(scanner.scan)
}

/// Describes an unfinished compaction file (its size only; it is never read).
fn leftover((seq, path): (u64, PathBuf)) -> CompactLeftover {
    let file_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    CompactLeftover {
        seq,
        path,
        file_bytes,
    }
}

/// A segment's bytes: mapped (sealed segments) or read (the last one).
enum SegmentBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl SegmentBytes {
    /// The file's bytes, or `None` if it is larger than any segment may be.
    fn load(path: &Path, map: bool) -> Result<Option<SegmentBytes>, WalError> {
        let file = std::fs::File::open(path).map_err(WalError::io("open", path))?;
        let len = file.metadata().map_err(WalError::io("stat", path))?.len();
        if len > SEGMENT_BYTES_MAX {
            // Not read at all: the scanner reports it from its length alone.
            return Ok(None);
        }
        if map && len > 0 {
            // SAFETY: sealed segments are never modified or truncated by the writer (only the
            // last segment is ever cut or deleted; a compaction deletes sealed ones whole, and an
            // unlinked file stays mapped intact), so the mapping stays valid while we read it.
            let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(WalError::io("map", path))?;
            let _ = mmap.advise(memmap2::Advice::Sequential);
            return Ok(Some(SegmentBytes::Mapped(mmap)));
        }
        use std::io::Read;
        let capacity = usize::try_from(len)
            .expect("len <= SEGMENT_BYTES_MAX, which fits usize (asserted in format.rs)");
        let mut data = Vec::with_capacity(capacity);
        (&file)
            .take(SEGMENT_BYTES_MAX)
            .read_to_end(&mut data)
            .map_err(WalError::io("read", path))?;
        Ok(Some(SegmentBytes::Owned(data)))
    }
}

impl std::ops::Deref for SegmentBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            SegmentBytes::Mapped(m) => m,
            SegmentBytes::Owned(v) => v,
        }
    }
}

struct Scanner<'v> {
    recovery: RecoveryMode,
    /// Sequence number the next segment should have.
    expected_seq: u64,
    /// LSN the next record should have.
    next_lsn: Lsn,
    /// Whether corruption was seen: records after it are not counted in `last_lsn`.
    damaged: bool,
    scan: DirScan,
    visit: &'v mut dyn FnMut(ScanItem<'_>) -> ControlFlow<()>,
}

impl Scanner<'_> {
    fn damage(&mut self, damage: Damage) -> ControlFlow<()> {
        if matches!(damage, Damage::Corruption { .. }) {
            self.damaged = true;
        }
        let flow = (self.visit)(ScanItem::Damage(&damage));
        self.scan.damages.push(damage);
        flow
    }

    fn corruption(
        &mut self,
        summary: &mut SegmentSummary,
        offset: usize,
        detail: String,
    ) -> ControlFlow<()> {
        summary.status = SegmentStatus::Corrupt;
        self.damage(Damage::Corruption {
            segment: summary.path.clone(),
            offset: offset as u64,
            detail,
        })
    }

    fn summary(seq: u64, path: &Path, data: &[u8], is_last: bool) -> SegmentSummary {
        SegmentSummary {
            seq,
            name: segment_file_name(seq),
            path: path.to_path_buf(),
            file_bytes: data.len() as u64,
            log_id: None,
            header_first_lsn: None,
            base: false,
            first_lsn: None,
            last_lsn: None,
            records: 0,
            end_offset: HEADER_BYTES as u64,
            status: if is_last {
                SegmentStatus::Active
            } else {
                SegmentStatus::Sealed
            },
        }
    }

    /// Starts the log at a base segment: its seq and first LSN are the expected ones.
    fn begin_at_base(&mut self, header: &SegmentHeader) {
        self.expected_seq = header.seq;
        // A first LSN of 0 is refused by the header check against this expectation.
        self.next_lsn = header.first_lsn.max(1);
        self.scan.base_seq = Some(header.seq);
        self.scan.start_lsn = self.next_lsn;
        self.scan.last_lsn = self.next_lsn - 1;
    }

    /// Lists a segment below the latest base without reading past its header: it is garbage
    /// awaiting deletion, so nothing in it is damage. Tolerates the file vanishing meanwhile
    /// (a writer deleting it).
    fn superseded(&mut self, seq: u64, path: &Path) {
        let mut summary = Scanner::summary(seq, path, &[], false);
        summary.status = SegmentStatus::Superseded;
        summary.file_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        if let Ok(Some(header)) = read_header(path) {
            summary.log_id = Some(header.log_id);
            summary.header_first_lsn = Some(header.first_lsn);
            summary.base = header.base;
        }
        self.scan.segments.push(summary);
    }

    fn oversized(&mut self, seq: u64, path: &Path) -> ControlFlow<()> {
        let mut summary = Scanner::summary(seq, path, &[], false);
        summary.file_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        self.expected_seq = seq.saturating_add(1);
        let detail = format!(
            "segment file is {} bytes, more than the largest segment size ({SEGMENT_BYTES_MAX} bytes); it was not read",
            summary.file_bytes
        );
        let flow = self.corruption(&mut summary, 0, detail);
        self.scan.segments.push(summary);
        flow
    }

    fn segment(&mut self, seq: u64, path: &Path, data: &[u8], is_last: bool) -> ControlFlow<()> {
        let mut summary = Scanner::summary(seq, path, data, is_last);
        let flow = self.segment_body(&mut summary, data, is_last);
        self.scan.segments.push(summary);
        flow
    }

    fn segment_body(
        &mut self,
        summary: &mut SegmentSummary,
        data: &[u8],
        is_last: bool,
    ) -> ControlFlow<()> {
        let seq = summary.seq;
        if seq != self.expected_seq {
            let detail = format!(
                "segment {} is missing: expected segment sequence number {}, found {seq}",
                segment_file_name(self.expected_seq),
                self.expected_seq
            );
            self.corruption(summary, 0, detail)?;
        }
        self.expected_seq = seq.saturating_add(1);

        let mut offset = HEADER_BYTES;
        match SegmentHeader::decode(data) {
            Err(problem) => {
                let body_zero = all_zero(data.get(HEADER_BYTES..).unwrap_or(&[]));
                if is_last && problem.may_be_torn() && body_zero {
                    summary.status = SegmentStatus::TornCreation;
                    return self.damage(Damage::TornCreation {
                        segment: summary.path.clone(),
                        detail: problem.to_string(),
                    });
                }
                let detail = if is_last {
                    problem.to_string()
                } else {
                    format!("{problem}; this is not the last segment, so its header was synced")
                };
                self.corruption(summary, 0, detail)?;
                // Resynchronise on the first valid frame after the header, if any.
                match find_valid_frame_after(data, HEADER_BYTES - 1, self.next_lsn - 1) {
                    Resync::Found(frame) => {
                        offset = frame.offset;
                        self.next_lsn = frame.lsn;
                    }
                    Resync::NotFound | Resync::GaveUp { .. } => return ControlFlow::Continue(()),
                }
            }
            Ok(header) => {
                summary.log_id = Some(header.log_id);
                summary.header_first_lsn = Some(header.first_lsn);
                summary.base = header.base;
                if header.seq != seq {
                    let detail = format!(
                        "segment header says sequence number {}, the file name says {seq}",
                        header.seq
                    );
                    self.corruption(summary, 16, detail)?;
                }
                match self.scan.log_id {
                    None => self.scan.log_id = Some(header.log_id),
                    Some(id) if id != header.log_id => {
                        let detail = format!(
                            "segment belongs to another log: log id {:032x}, this log's id is {id:032x}",
                            header.log_id
                        );
                        self.corruption(summary, 32, detail)?;
                    }
                    Some(_) => {}
                }
                if header.first_lsn != self.next_lsn {
                    let detail = format!(
                        "segment header says its first lsn is {}, expected {} (one after the previous record)",
                        header.first_lsn, self.next_lsn
                    );
                    self.corruption(summary, 24, detail)?;
                    self.next_lsn = header.first_lsn.max(1);
                }
            }
        }
        self.frames(summary, data, offset, is_last)
    }

    /// Checks the frames of a segment from `offset` on, up to its clean end or its damage.
    fn frames(
        &mut self,
        summary: &mut SegmentSummary,
        data: &[u8],
        mut offset: usize,
        is_last: bool,
    ) -> ControlFlow<()> {
        loop {
            match check_frame(data, offset, self.next_lsn) {
                FrameCheck::Valid(frame) => {
                    offset = frame.end();
                    self.valid_frame(summary, &frame)?;
                }
                FrameCheck::End => {
                    if !self.damaged {
                        summary.end_offset = offset as u64;
                    }
                    return ControlFlow::Continue(());
                }
                FrameCheck::Bad {
                    detail,
                    checksum_valid,
                } => {
                    match self.bad_frame(summary, data, offset, detail, checksum_valid, is_last)? {
                        Some(resume) => offset = resume,
                        None => return ControlFlow::Continue(()),
                    }
                }
            }
        }
    }

    /// Counts a valid frame and hands its record to the visitor.
    fn valid_frame(&mut self, summary: &mut SegmentSummary, frame: &Frame<'_>) -> ControlFlow<()> {
        summary.first_lsn.get_or_insert(frame.lsn);
        summary.last_lsn = Some(frame.lsn);
        summary.records += 1;
        self.scan.records += 1;
        if !self.damaged {
            self.scan.last_lsn = frame.lsn;
            summary.end_offset = frame.end() as u64;
        }
        self.next_lsn = frame.lsn + 1;
        (self.visit)(ScanItem::Record(Record {
            lsn: frame.lsn,
            record_type: frame.record_type,
            payload: frame.payload,
            segment_seq: summary.seq,
            offset: frame.offset as u64,
        }))
    }

    /// Classifies an invalid frame at `offset` as a torn tail (the last segment only) or
    /// corruption, and reports it. On `Continue`, the offset of the next valid frame to resume
    /// the segment at, or `None` when the segment has nothing more to read.
    fn bad_frame(
        &mut self,
        summary: &mut SegmentSummary,
        data: &[u8],
        offset: usize,
        detail: String,
        checksum_valid: bool,
        is_last: bool,
    ) -> ControlFlow<(), Option<usize>> {
        let later = find_valid_frame_after(data, offset, self.next_lsn - 1);
        let torn = !checksum_valid && matches!(later, Resync::NotFound);
        let salvage = self.recovery == RecoveryMode::SalvageLastSegment;
        if is_last && (torn || salvage) {
            let cut = TailCut {
                segment: summary.path.clone(),
                offset: offset as u64,
                bytes_discarded: nonzero_end(data).saturating_sub(offset) as u64,
                detail,
                salvaged: !torn,
            };
            if summary.status != SegmentStatus::Corrupt {
                summary.status = SegmentStatus::TornTail;
            }
            summary.end_offset = offset as u64;
            self.damage(Damage::TornTail(cut))?;
            return ControlFlow::Continue(None);
        }
        let detail = corruption_detail(detail, &later, checksum_valid, is_last);
        self.corruption(summary, offset, detail)?;
        match later {
            Resync::Found(frame) => {
                self.next_lsn = frame.lsn;
                ControlFlow::Continue(Some(frame.offset))
            }
            Resync::NotFound | Resync::GaveUp { .. } => ControlFlow::Continue(None),
        }
    }
}

/// `detail` of an invalid frame that is not a torn tail, completed with why it is not.
fn corruption_detail(
    mut detail: String,
    later: &Resync<'_>,
    checksum_valid: bool,
    is_last: bool,
) -> String {
    match later {
        Resync::Found(frame) => detail.push_str(&format!(
            "; a valid record (lsn {}) follows at offset {}, so this is not a torn tail",
            frame.lsn, frame.offset
        )),
        Resync::GaveUp { offset } => detail.push_str(&format!(
            "; the search for valid records after it gave up at offset {offset} (too many candidate frames), so it cannot be treated as a torn tail"
        )),
        Resync::NotFound if checksum_valid => {
            detail.push_str("; a complete record with the wrong lsn is not a torn write");
        }
        Resync::NotFound => {}
    }
    if !is_last {
        detail.push_str(
            "; this is not the last segment, so all of it was synced before the next was created",
        );
    }
    detail
}
