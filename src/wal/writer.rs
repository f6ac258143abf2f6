//! [`WalWriter`]: the only code that writes a WAL directory. It holds the directory's exclusive
//! lock for its whole life, recovers the log on open (replaying every valid record to the
//! caller, cutting a torn tail, refusing corruption), buffers appends, and makes them durable
//! on [`WalWriter::sync`].
//!
//! **After any failed write or sync the writer is poisoned: every later call returns
//! [`WalError::Poisoned`].** After a failed fsync the kernel may have dropped the dirty pages
//! and cleared the error, so nothing the writer believes about the file can be trusted; the
//! process must restart and recover from what is on disk.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{
    encode_frame, first_segment_bytes, next_segment_bytes, payload_bytes_max, segment_file_name,
    SegmentHeader, FILE_MODE, FILE_MODE_DIR, FRAME_OVERHEAD_BYTES, HEADER_BYTES, LOCK_FILE_NAME,
    SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};
use super::fs::{RealFs, WalFile, WalFs};
use super::scan::{replay, Damage, DirScan, SegmentStatus, SegmentSummary};
use super::{BoxError, Lsn, Record, TailCut, WalError, WalOptions};

/// Buffered appends are written to the file once the buffer holds this many bytes.
const BUFFER_FLUSH_BYTES: usize = 256 << 10;
/// Zeros are written in chunks of this size when a torn tail is cut.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// What opening a log found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The directory held no segment: a new log was created.
    pub created: bool,
    /// Valid records replayed to the visitor.
    pub records: u64,
    /// Segments in the log after opening.
    pub segments: usize,
    /// The torn tail that was cut, if any.
    pub cut: Option<TailCut>,
    /// A torn (never completely created) last segment that was deleted, if any.
    pub removed_segment: Option<PathBuf>,
    /// Files of a compaction a crash interrupted before its switch (`*.seg.compact`), deleted:
    /// the log was complete without them.
    pub removed_compact: Vec<PathBuf>,
    /// Segments below the latest base segment, deleted: a compaction a crash interrupted after
    /// its switch, finished.
    pub removed_superseded: Vec<PathBuf>,
    /// LSN the log begins at: 1, or the first LSN of its base segment.
    pub start_lsn: Lsn,
    /// The log's id.
    pub log_id: u128,
    /// LSN the next append gets.
    pub next_lsn: Lsn,
}

/// The writer of one WAL directory. See the module doc.
pub struct WalWriter {
    /// Filesystem seam every write and sync goes through.
    pub(super) fs: Arc<dyn WalFs>,
    /// The WAL directory.
    pub(super) dir: PathBuf,
    /// The locked `LOCK` file; the lock is released when the writer is closed or dropped.
    _lock: DirLock,
    /// Size of new segments.
    pub(super) segment_bytes: u64,
    /// Largest payload accepted (fits an empty segment).
    payload_bytes_max: usize,
    /// The log's id, written into every segment header.
    pub(super) log_id: u128,
    /// Sequence number of the segment being appended to.
    pub(super) seq: u64,
    /// That segment's path (for error messages).
    pub(super) path: PathBuf,
    /// That segment, open for writing.
    pub(super) file: Box<dyn WalFile>,
    /// Its size: frames must end at or before it.
    pub(super) capacity: u64,
    /// File offset where `buf` starts.
    pub(super) write_offset: u64,
    /// Encoded frames not yet written.
    buf: Vec<u8>,
    /// LSN of the next append.
    pub(super) next_lsn: Lsn,
    /// Last LSN made durable (0 = none).
    pub(super) durable_lsn: Lsn,
    /// An earlier write or sync failed.
    pub(super) poisoned: bool,
}

/// Where a writer appends: its current segment and the offset in it.
struct Tail {
    /// The segment's sequence number.
    seq: u64,
    /// The segment file.
    path: PathBuf,
    /// The segment, open for writing.
    file: Box<dyn WalFile>,
    /// The segment's preallocated size in bytes.
    capacity: u64,
    /// Where the next frame goes.
    write_offset: u64,
}

impl std::fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalWriter")
            .field("dir", &self.dir)
            .field("seq", &self.seq)
            .field("next_lsn", &self.next_lsn)
            .field("durable_lsn", &self.durable_lsn)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl WalWriter {
    /// Takes the directory lock (error [`WalError::Locked`] naming the holder if busy), creates
    /// the directory and a new log (random log id) if it holds no segment, validates every
    /// segment, cuts a torn tail per the recovery rules (logging segment and offset via
    /// `tracing::warn`), and feeds every valid record, in LSN order, to `visit`. A visitor error
    /// aborts opening with [`WalError::Visitor`] (the record's LSN, segment file and offset), as
    /// it stops [`crate::wal::read_dir`]. On corruption nothing on disk is changed. On any error the visitor may
    /// have seen a prefix of the log: discard what it built.
    pub fn open(
        dir: &Path,
        options: WalOptions,
        visit: &mut dyn FnMut(&Record<'_>) -> Result<(), BoxError>,
    ) -> Result<(WalWriter, OpenReport), WalError> {
        WalWriter::open_with_fs(dir, options, Arc::new(RealFs), visit)
    }

    /// [`WalWriter::open`] through a given filesystem seam (tests inject failures with it).
    pub fn open_with_fs(
        dir: &Path,
        options: WalOptions,
        fs: Arc<dyn WalFs>,
        visit: &mut dyn FnMut(&Record<'_>) -> Result<(), BoxError>,
    ) -> Result<(WalWriter, OpenReport), WalError> {
        check_options(&options)?;
        create_dir(dir, fs.as_ref())?;
        let lock = lock_dir(dir)?;
        let scan = replay(dir, options.recovery, visit)?;

        let mut report = OpenReport {
            created: false,
            records: scan.records,
            segments: scan.segments.len(),
            cut: None,
            removed_segment: None,
            removed_compact: Vec::new(),
            removed_superseded: Vec::new(),
            start_lsn: scan.start_lsn,
            log_id: 0,
            next_lsn: scan.last_lsn + 1,
        };
        finish_compaction(fs.as_ref(), dir, &scan, &mut report)?;
        let mut segments: Vec<SegmentSummary> = scan
            .segments
            .into_iter()
            .filter(|s| s.status != SegmentStatus::Superseded)
            .collect();
        for damage in scan.damages {
            repair(fs.as_ref(), dir, damage, &mut segments, &mut report)?;
        }

        let writer = match segments.last() {
            None => {
                let log_id = new_log_id()?;
                report.created = true;
                WalWriter::create_log(dir, fs, lock, &options, log_id)?
            }
            Some(last) => {
                let log_id = scan.log_id.expect("a valid segment has a log id");
                WalWriter::resume_log(dir, fs, lock, &options, log_id, last, scan.last_lsn)?
            }
        };
        write_pid(&writer._lock.0, dir)?;
        report.segments = segments.len().max(1);
        report.log_id = writer.log_id;
        report.next_lsn = writer.next_lsn;
        Ok((writer, report))
    }

    /// The writer of an existing log, appending to its last segment `last` right after its
    /// last valid record, `last_lsn`.
    fn resume_log(
        dir: &Path,
        fs: Arc<dyn WalFs>,
        lock: DirLock,
        options: &WalOptions,
        log_id: u128,
        last: &SegmentSummary,
        last_lsn: Lsn,
    ) -> Result<WalWriter, WalError> {
        let file = fs
            .open_rw(&last.path)
            .map_err(WalError::io("open", &last.path))?;
        let tail = Tail {
            seq: last.seq,
            path: last.path.clone(),
            file,
            capacity: last.file_bytes,
            write_offset: last.end_offset,
        };
        Ok(WalWriter::at(
            dir, fs, lock, options, log_id, tail, last_lsn,
        ))
    }

    /// The writer of a new log: its first segment, created empty.
    fn create_log(
        dir: &Path,
        fs: Arc<dyn WalFs>,
        lock: DirLock,
        options: &WalOptions,
        log_id: u128,
    ) -> Result<WalWriter, WalError> {
        let path = dir.join(segment_file_name(1));
        let capacity = first_segment_bytes(options.segment_bytes);
        let header = SegmentHeader {
            seq: 1,
            first_lsn: 1,
            log_id,
            base: false,
        };
        let file = create_segment(fs.as_ref(), dir, &path, capacity, &header, &[])?;
        let tail = Tail {
            seq: 1,
            path,
            file,
            capacity,
            write_offset: HEADER_BYTES as u64,
        };
        Ok(WalWriter::at(dir, fs, lock, options, log_id, tail, 0))
    }

    /// A writer appending at `tail`, whose last record (0: none) is `last_lsn`, durable.
    fn at(
        dir: &Path,
        fs: Arc<dyn WalFs>,
        lock: DirLock,
        options: &WalOptions,
        log_id: u128,
        tail: Tail,
        last_lsn: Lsn,
    ) -> WalWriter {
        WalWriter {
            fs,
            dir: dir.to_path_buf(),
            _lock: lock,
            segment_bytes: options.segment_bytes,
            payload_bytes_max: payload_bytes_max(options.segment_bytes),
            log_id,
            seq: tail.seq,
            path: tail.path,
            file: tail.file,
            capacity: tail.capacity,
            write_offset: tail.write_offset,
            buf: Vec::with_capacity(BUFFER_FLUSH_BYTES + FRAME_OVERHEAD_BYTES),
            next_lsn: last_lsn + 1,
            durable_lsn: last_lsn,
            poisoned: false,
        }
    }

    /// Appends one record (buffered, not yet durable) and returns its LSN. Rolling over to a
    /// new segment happens here and syncs the full one.
    pub fn append(&mut self, record_type: u16, payload: &[u8]) -> Result<Lsn, WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        if record_type == 0 {
            return Err(WalError::InvalidRecord("record type 0 is reserved".into()));
        }
        if payload.len() > self.payload_bytes_max {
            return Err(WalError::InvalidRecord(format!(
                "payload of {} bytes is larger than the maximum of {} bytes",
                payload.len(),
                self.payload_bytes_max
            )));
        }
        let frame_bytes = (FRAME_OVERHEAD_BYTES + payload.len()) as u64;
        if self.write_offset + self.buf.len() as u64 + frame_bytes > self.capacity {
            self.poison_on_error(WalWriter::roll_over)?;
        }
        let lsn = self.next_lsn;
        encode_frame(&mut self.buf, record_type, lsn, payload);
        self.next_lsn += 1;
        if self.buf.len() >= BUFFER_FLUSH_BYTES {
            self.poison_on_error(WalWriter::flush)?;
        }
        Ok(lsn)
    }

    /// Writes everything buffered and makes it durable (fdatasync). After it returns `Ok`, every
    /// record appended so far survives a crash.
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        if self.durable_lsn + 1 == self.next_lsn {
            return Ok(());
        }
        self.poison_on_error(|w| {
            w.flush()?;
            w.file
                .sync_data()
                .map_err(WalError::io("fdatasync", &w.path))
        })?;
        self.durable_lsn = self.next_lsn - 1;
        Ok(())
    }

    /// Starts a sync that another thread can finish, so that appends go on meanwhile (group
    /// commit): writes everything buffered and returns the fdatasync still to run
    /// ([`PendingSync::run`]) for the records appended so far. Nothing becomes durable, as
    /// far as the writer says, until its outcome is handed to [`WalWriter::finish_sync`].
    /// A file without a [`WalFile::data_syncer`] syncs here, at once.
    pub fn begin_sync(&mut self) -> Result<PendingSync, WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        let target = self.next_lsn - 1;
        let path = self.path.clone();
        if self.durable_lsn >= target {
            return Ok(PendingSync {
                target,
                path,
                syncer: None,
            });
        }
        self.poison_on_error(WalWriter::flush)?;
        let syncer = match self.file.data_syncer() {
            Some(syncer) => Some(self.poison_on_error(|w| {
                syncer.map_err(WalError::io("duplicate the descriptor of", &w.path))
            })?),
            None => {
                self.poison_on_error(|w| {
                    w.file
                        .sync_data()
                        .map_err(WalError::io("fdatasync", &w.path))
                })?;
                self.durable_lsn = target;
                None
            }
        };
        Ok(PendingSync {
            target,
            path,
            syncer,
        })
    }

    /// Ends a sync begun by [`WalWriter::begin_sync`]: on success every record appended
    /// before it began is durable (the writer's durable LSN moves up to there); a failed
    /// fdatasync poisons the writer, as [`WalWriter::sync`]'s does.
    pub fn finish_sync(&mut self, outcome: SyncOutcome) -> Result<(), WalError> {
        if let Err(error) = outcome.result {
            self.poisoned = true;
            return Err(WalError::io("fdatasync", &outcome.path)(error));
        }
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        self.durable_lsn = self.durable_lsn.max(outcome.target);
        Ok(())
    }

    /// Syncs and closes the writer, releasing the lock.
    pub fn close(mut self) -> Result<(), WalError> {
        self.sync()
    }

    /// LSN the next append gets.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Last LSN known durable (0 = none).
    pub fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }

    /// The log's id.
    pub fn log_id(&self) -> u128 {
        self.log_id
    }

    /// Whether an earlier failure poisoned the writer.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn poison_on_error<T>(
        &mut self,
        f: impl FnOnce(&mut WalWriter) -> Result<T, WalError>,
    ) -> Result<T, WalError> {
        let result = f(self);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    pub(super) fn flush(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&self.buf, self.write_offset)
            .map_err(WalError::io("write", &self.path))?;
        self.write_offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Seals the current segment (everything in it durable) and starts the next one.
    fn roll_over(&mut self) -> Result<(), WalError> {
        self.flush()?;
        self.file
            .sync_data()
            .map_err(WalError::io("fdatasync", &self.path))?;
        self.durable_lsn = self.next_lsn - 1;
        let seq = self.seq + 1;
        let path = self.dir.join(segment_file_name(seq));
        let capacity = next_segment_bytes(self.capacity, self.segment_bytes);
        let header = SegmentHeader {
            seq,
            first_lsn: self.next_lsn,
            log_id: self.log_id,
            base: false,
        };
        let file = create_segment(self.fs.as_ref(), &self.dir, &path, capacity, &header, &[])?;
        self.seq = seq;
        self.path = path;
        self.file = file;
        self.capacity = capacity;
        self.write_offset = HEADER_BYTES as u64;
        Ok(())
    }
}

/// Finishes or undoes a compaction a crash interrupted, once the log has been read without
/// corruption: deletes unfinished compaction files (before the switch: the log is complete
/// without them) and segments below the latest base segment (after the switch: they are
/// superseded), lowest seq first, then fsyncs the directory once.
fn finish_compaction(
    fs: &dyn WalFs,
    dir: &Path,
    scan: &DirScan,
    report: &mut OpenReport,
) -> Result<(), WalError> {
    for leftover in &scan.compact_leftovers {
        remove(fs, &leftover.path)?;
        report.removed_compact.push(leftover.path.clone());
    }
    for segment in &scan.segments {
        if segment.status == SegmentStatus::Superseded {
            remove(fs, &segment.path)?;
            report.removed_superseded.push(segment.path.clone());
        }
    }
    if report.removed_compact.is_empty() && report.removed_superseded.is_empty() {
        return Ok(());
    }
    fs.sync_dir(dir).map_err(WalError::io("fsync", dir))?;
    if !report.removed_compact.is_empty() {
        tracing::warn!(
            dir = %dir.display(),
            files = ?report.removed_compact,
            "removed the files of a WAL compaction a crash interrupted before its switch; the log is as it was before it"
        );
    }
    if !report.removed_superseded.is_empty() {
        tracing::warn!(
            dir = %dir.display(),
            segments = ?report.removed_superseded,
            "removed WAL segments superseded by a base segment, finishing a compaction a crash interrupted after its switch"
        );
    }
    Ok(())
}

/// Removes one file through the seam.
pub(super) fn remove(fs: &dyn WalFs, path: &Path) -> Result<(), WalError> {
    fs.remove_file(path).map_err(WalError::io("remove", path))
}

/// Carries out what recovery decided about one damage of the last segment: zeros a torn tail,
/// or deletes a segment whose creation a crash interrupted (and drops it from `segments`).
fn repair(
    fs: &dyn WalFs,
    dir: &Path,
    damage: Damage,
    segments: &mut Vec<SegmentSummary>,
    report: &mut OpenReport,
) -> Result<(), WalError> {
    match damage {
        Damage::TornTail(cut) => {
            cut_tail(fs, &cut)?;
            report.cut = Some(cut);
        }
        Damage::TornCreation { segment, detail } => {
            fs.remove_file(&segment)
                .map_err(WalError::io("remove", &segment))?;
            fs.sync_dir(dir).map_err(WalError::io("fsync", dir))?;
            tracing::warn!(
                segment = %segment.display(),
                "removed a WAL segment whose creation a crash interrupted ({detail}); it held no records"
            );
            segments.pop();
            report.removed_segment = Some(segment);
        }
        Damage::Corruption { .. } => unreachable!("replay returns corruption as an error"),
    }
    Ok(())
}

fn check_options(options: &WalOptions) -> Result<(), WalError> {
    let b = options.segment_bytes;
    if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&b) {
        return Err(WalError::InvalidOptions(format!(
            "segment size {b} bytes is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

fn create_dir(dir: &Path, fs: &dyn WalFs) -> Result<(), WalError> {
    if dir.is_dir() {
        return Ok(());
    }
    // Owner-only: the log names servers, tables, the predicate and key values.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(FILE_MODE_DIR)
        .create(dir)
        .map_err(WalError::io("create directory", dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs.sync_dir(parent).map_err(WalError::io("fsync", parent))?;
    }
    Ok(())
}

/// The held lock on `DIR/LOCK`, **unlocked explicitly when dropped**. A `flock` belongs to the
/// open file description, not to our descriptor: a child that another thread forks holds a copy
/// of that description from `fork` until its `exec` closes it (the file is `O_CLOEXEC`), so
/// closing our descriptor alone can leave the lock held, by the child, in that window, and the
/// next open in this process finds its own lock taken (the flaky `wal::power_loss` of issue 6).
/// `LOCK_UN` releases the lock on the description whoever else still holds a copy of it. The
/// product spawns no child while it holds the lock; hooks that do must keep this in mind: the
/// child never holds the lock past its `exec`, but it does between `fork` and `exec`.
struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        // Nothing to do about a failure here: closing the file follows, and the kernel drops
        // the lock with the last reference to the description.
        let _ = self.0.unlock();
    }
}

/// Takes the exclusive lock on `DIR/LOCK`.
fn lock_dir(dir: &Path) -> Result<DirLock, WalError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(WalError::io("open", &path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = (&file).read_to_string(&mut text);
            return Err(WalError::Locked {
                dir: dir.to_path_buf(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(TryLockError::Error(e)) => return Err(WalError::io("lock", &path)(e)),
    }
    Ok(DirLock(file))
}

/// Writes our pid into the lock file, for the refusal message another process prints. Done only
/// after recovery succeeded, so a refused open changes no byte in the directory. Informational,
/// so not synced.
fn write_pid(mut file: &File, dir: &Path) -> Result<(), WalError> {
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(pid.as_bytes()))
        .map_err(WalError::io("write", &dir.join(LOCK_FILE_NAME)))
}

fn new_log_id() -> Result<u128, WalError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| WalError::Io {
        op: "generate a log id for",
        path: PathBuf::from("the new log"),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(u128::from_le_bytes(bytes))
}

/// Creates a segment file at `path`: allocate `segment_bytes` (zeros), header, `frames` (encoded
/// records, empty for a roll-over), fsync the file, fsync the directory. A crash anywhere in
/// here during a roll-over leaves a last segment whose header is incomplete and whose body is
/// zeros, which recovery deletes; a compaction writes under a `.compact` name, which recovery
/// deletes whatever its state.
pub(super) fn create_segment(
    fs: &dyn WalFs,
    dir: &Path,
    path: &Path,
    segment_bytes: u64,
    header: &SegmentHeader,
    frames: &[u8],
) -> Result<Box<dyn WalFile>, WalError> {
    let mut file = fs.create_new(path).map_err(WalError::io("create", path))?;
    file.allocate(segment_bytes)
        .map_err(WalError::io("allocate", path))?;
    file.write_all_at(&header.encode(), 0)
        .map_err(WalError::io("write", path))?;
    if !frames.is_empty() {
        file.write_all_at(frames, HEADER_BYTES as u64)
            .map_err(WalError::io("write", path))?;
    }
    file.sync_all().map_err(WalError::io("fsync", path))?;
    fs.sync_dir(dir).map_err(WalError::io("fsync", dir))?;
    Ok(file)
}

/// Zeros the last segment from the cut to its last non-zero byte and syncs it.
fn cut_tail(fs: &dyn WalFs, cut: &TailCut) -> Result<(), WalError> {
    let path = &cut.segment;
    let mut file = fs.open_rw(path).map_err(WalError::io("open", path))?;
    let chunk_bytes = usize::try_from(cut.bytes_discarded)
        .map_or(ZERO_CHUNK_BYTES, |bytes| bytes.min(ZERO_CHUNK_BYTES));
    let zeros = vec![0u8; chunk_bytes];
    let mut at = cut.offset;
    let end = cut.offset + cut.bytes_discarded;
    while at < end {
        let n = usize::try_from(end - at).map_or(zeros.len(), |left| left.min(zeros.len()));
        file.write_all_at(&zeros[..n], at)
            .map_err(WalError::io("write", path))?;
        at += n as u64;
    }
    file.sync_data().map_err(WalError::io("fdatasync", path))?;
    tracing::warn!(
        segment = %path.display(),
        offset = cut.offset,
        bytes_discarded = cut.bytes_discarded,
        salvaged = cut.salvaged,
        "cut the WAL's torn tail: {}",
        cut.detail
    );
    Ok(())
}

/// A sync begun by [`WalWriter::begin_sync`]: [`PendingSync::run`] it (it blocks) on any
/// thread, then hand the outcome to [`WalWriter::finish_sync`].
pub struct PendingSync {
    /// The last LSN it makes durable.
    target: Lsn,
    /// The segment it syncs (for the error message).
    path: PathBuf,
    /// The fdatasync to run; `None`: nothing to do (done already, or nothing new).
    syncer: Option<crate::wal::fs::DataSyncer>,
}

impl PendingSync {
    /// Runs the fdatasync (blocking).
    pub fn run(self) -> SyncOutcome {
        let started = std::time::Instant::now();
        let result = match self.syncer {
            Some(syncer) => syncer(),
            None => Ok(()),
        };
        SyncOutcome {
            target: self.target,
            path: self.path,
            result,
            took: started.elapsed(),
        }
    }

    /// Whether it has an fdatasync to run (else [`PendingSync::run`] returns at once).
    pub fn has_work(&self) -> bool {
        self.syncer.is_some()
    }
}

/// What a [`PendingSync`] did, for [`WalWriter::finish_sync`].
pub struct SyncOutcome {
    target: Lsn,
    path: PathBuf,
    result: std::io::Result<()>,
    took: std::time::Duration,
}

impl SyncOutcome {
    /// How long the fdatasync took.
    pub fn took(&self) -> std::time::Duration {
        self.took
    }
}
