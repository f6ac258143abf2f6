//! The filesystem seam of the WAL writer: every write, sync, allocation and directory change
//! the writer makes goes through [`WalFs`] / [`WalFile`], so tests can inject failures
//! ([`FaultyFs`]) and show that one failed write or sync poisons the writer.
//!
//! Reads do not go through the seam: the reader opens files read-only with `std` and memmap2.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Directory-level operations the writer needs.
pub trait WalFs: Send + Sync {
    /// Opens an existing segment for reading and writing.
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Creates a new segment file; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing nothing (the writer only renames to a name that does
    /// not exist). Atomic: after a crash the file has one name or the other.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable (fsync on the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One open segment file.
pub trait WalFile: Send {
    /// Writes all of `buf` at `offset` (positional write).
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes written data durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes written data and all metadata durable (fsync).
    fn sync_all(&mut self) -> io::Result<()>;
    /// Makes the file `len` bytes long with allocated blocks that read as zeros.
    fn allocate(&mut self, len: u64) -> io::Result<()>;
    /// A handle that makes the data written so far durable from another thread (an fdatasync
    /// of a duplicate of the descriptor), while this file takes more writes: what lets the
    /// writer go on appending during a sync (`WalWriter::begin_sync`). `None`: this file syncs
    /// only through [`WalFile::sync_data`] (the fault-injection files), and a begun sync
    /// runs at once.
    fn data_syncer(&self) -> Option<io::Result<DataSyncer>> {
        None
    }
}

/// An fdatasync to run on another thread: see [`WalFile::data_syncer`].
pub type DataSyncer = Box<dyn FnOnce() -> io::Result<()> + Send>;

/// Benchmark only (cargo feature `sync-delay`): a WAL sync made to cost what it costs on a
/// slower disk. `tools/bench --sync-delay-ms` sets [`sync_delay::ENV`].
#[cfg(feature = "sync-delay")]
pub mod sync_delay {
    use std::sync::OnceLock;
    use std::time::Duration;

    /// Milliseconds every segment sync sleeps before it syncs.
    pub const ENV: &str = "ARCHIVER_BENCH_SYNC_DELAY_MS";

    /// Sleeps the delay the environment asks for, read once (none when unset or not a number).
    pub fn sleep() {
        static DELAY: OnceLock<Option<Duration>> = OnceLock::new();
        let delay = DELAY.get_or_init(|| {
            let ms: f64 = std::env::var(ENV).ok()?.parse().ok()?;
            (ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
        });
        if let Some(delay) = delay {
            std::thread::sleep(*delay);
        }
    }
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile(File);

impl WalFs for RealFs {
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(super::format::FILE_MODE)
            .open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl WalFile for RealFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn data_syncer(&self) -> Option<io::Result<DataSyncer>> {
        Some(self.0.try_clone().map(|file| {
            Box::new(move || {
                #[cfg(feature = "sync-delay")]
                sync_delay::sleep();
                file.sync_data()
            }) as DataSyncer
        }))
    }

    fn sync_data(&mut self) -> io::Result<()> {
        #[cfg(feature = "sync-delay")]
        sync_delay::sleep();
        self.0.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        #[cfg(feature = "sync-delay")]
        sync_delay::sleep();
        self.0.sync_all()
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let len_off = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        // SAFETY: plain syscall on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::posix_fallocate(self.0.as_raw_fd(), 0, len_off) };
        match rc {
            0 => Ok(()),
            // Filesystems without fallocate: a sparse file also reads as zeros.
            libc::EOPNOTSUPP | libc::EINVAL => self.0.set_len(len),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Which operation [`FaultyFs`] counts and fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `write_all_at` on a segment.
    Write,
    /// `sync_data` / `sync_all` on a segment, or `sync_dir`.
    Sync,
    /// `create_new` of a file.
    Create,
    /// `rename` of a file.
    Rename,
    /// `remove_file`.
    Remove,
}

impl FaultKind {
    /// Every kind, in the order of the counters.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Write,
        FaultKind::Sync,
        FaultKind::Create,
        FaultKind::Rename,
        FaultKind::Remove,
    ];

    fn index(self) -> usize {
        match self {
            FaultKind::Write => 0,
            FaultKind::Sync => 1,
            FaultKind::Create => 2,
            FaultKind::Rename => 3,
            FaultKind::Remove => 4,
        }
    }
}

/// A test filesystem: the real one, except that one chosen future operation of each kind fails
/// with an I/O error ([`FaultyFs::fail_nth`]) before doing anything. Operations after it succeed
/// again, as a flaky disk's would; the writer must refuse them anyway. Clones share their state.
#[derive(Debug, Clone, Default)]
pub struct FaultyFs {
    state: Arc<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Operations attempted so far, by [`FaultKind::index`].
    counts: [AtomicU64; 5],
    /// Fail the operation whose 1-based count equals this (0 = none), by kind.
    fail_at: [AtomicU64; 5],
}

impl FaultyFs {
    /// A filesystem that fails nothing until told to.
    pub fn new() -> FaultyFs {
        FaultyFs::default()
    }

    /// Makes the `n`th (1-based) operation of `kind` from now on fail.
    pub fn fail_nth(&self, kind: FaultKind, n: u64) {
        let (count, target) = self.counters(kind);
        target.store(count.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }

    /// Operations of `kind` attempted so far.
    pub fn attempts(&self, kind: FaultKind) -> u64 {
        self.counters(kind).0.load(Ordering::SeqCst)
    }

    fn counters(&self, kind: FaultKind) -> (&AtomicU64, &AtomicU64) {
        let i = kind.index();
        (&self.state.counts[i], &self.state.fail_at[i])
    }

    fn check(&self, kind: FaultKind) -> io::Result<()> {
        let (count, target) = self.counters(kind);
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        if n == target.load(Ordering::SeqCst) {
            return Err(io::Error::other(format!("injected {kind:?} failure #{n}")));
        }
        Ok(())
    }
}

struct FaultyFile {
    inner: Box<dyn WalFile>,
    fs: FaultyFs,
}

impl WalFs for FaultyFs {
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        Ok(Box::new(FaultyFile {
            inner: RealFs.open_rw(path)?,
            fs: self.clone(),
        }))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        self.check(FaultKind::Create)?;
        Ok(Box::new(FaultyFile {
            inner: RealFs.create_new(path)?,
            fs: self.clone(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(FaultKind::Remove)?;
        RealFs.remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(FaultKind::Rename)?;
        RealFs.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(FaultKind::Sync)?;
        RealFs.sync_dir(dir)
    }
}

impl WalFile for FaultyFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.fs.check(FaultKind::Write)?;
        self.inner.write_all_at(buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.fs.check(FaultKind::Sync)?;
        self.inner.sync_data()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.fs.check(FaultKind::Sync)?;
        self.inner.sync_all()
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        self.inner.allocate(len)
    }
}
