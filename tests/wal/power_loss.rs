//! Simulated power loss: a filesystem double keeps written bytes apart from durable ones (a
//! write reaches the real file only when its file is synced). At a random moment it "loses
//! power": a random in-order prefix of the unsynced writes survives, the last one torn at a
//! random byte, and an unsynced segment creation may lose its allocation. Recovery must then open
//! the log and hold every acknowledged record, exactly, and nothing that was never appended. This
//! checks the writer's sync discipline (seal before roll-over, header synced before records)
//! beyond what `kill -9` can, since a killed process keeps its page cache.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use archiver::wal::fs::{WalFile, WalFs};
use archiver::wal::{WalError, WalWriter};

use super::{open, small, Rec, Rng};

struct SimState {
    /// Decides what survives the power loss.
    rng: Rng,
    /// Power is lost during the sync (file or directory) after this many more succeed.
    syncs_left: u64,
    /// Writes not yet synced, in the order they were made: (file, offset, bytes).
    pending: Vec<(PathBuf, u64, Vec<u8>)>,
    /// Files created whose metadata (size) was not yet synced.
    unsynced_files: HashSet<PathBuf>,
    /// Power is lost: every operation fails.
    crashed: bool,
}

#[derive(Clone)]
struct SimFs(Arc<Mutex<SimState>>);

struct SimFile {
    path: PathBuf,
    fs: SimFs,
}

fn dead() -> io::Error {
    io::Error::other("power lost")
}

fn apply(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

impl SimFs {
    fn new(seed: u64, syncs_left: u64) -> SimFs {
        SimFs(Arc::new(Mutex::new(SimState {
            rng: Rng::new(seed),
            syncs_left,
            pending: Vec::new(),
            unsynced_files: HashSet::new(),
            crashed: false,
        })))
    }

    fn alive(&self) -> io::Result<std::sync::MutexGuard<'_, SimState>> {
        let state = self.0.lock().unwrap();
        if state.crashed {
            return Err(dead());
        }
        Ok(state)
    }

    /// Like `alive`, for a sync: loses power instead when the countdown runs out.
    fn syncing(&self) -> io::Result<std::sync::MutexGuard<'_, SimState>> {
        let mut state = self.alive()?;
        if state.syncs_left == 0 {
            state.crash();
            return Err(dead());
        }
        state.syncs_left -= 1;
        Ok(state)
    }

    fn crash(&self) {
        self.0.lock().unwrap().crash();
    }
}

impl SimState {
    /// Loses power: keeps a random in-order prefix of the unsynced writes, the last one torn at a
    /// random byte; an unsynced file creation may lose its allocation.
    fn crash(&mut self) {
        if self.crashed {
            return;
        }
        self.crashed = true;
        let pending = std::mem::take(&mut self.pending);
        let keep = self.rng.below(pending.len() as u64 + 1) as usize;
        for (i, (path, offset, bytes)) in pending.iter().enumerate().take(keep + 1) {
            let n = if i < keep {
                bytes.len()
            } else {
                self.rng.below(bytes.len() as u64 + 1) as usize
            };
            apply(path, *offset, &bytes[..n]);
        }
        for path in std::mem::take(&mut self.unsynced_files) {
            if self.rng.below(3) == 0 {
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
        }
    }
}

impl WalFs for SimFs {
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        drop(self.alive()?);
        std::fs::metadata(path)?;
        Ok(Box::new(SimFile {
            path: path.to_path_buf(),
            fs: self.clone(),
        }))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let mut state = self.alive()?;
        OpenOptions::new().write(true).create_new(true).open(path)?;
        state.unsynced_files.insert(path.to_path_buf());
        Ok(Box::new(SimFile {
            path: path.to_path_buf(),
            fs: self.clone(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        drop(self.alive()?);
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        drop(self.alive()?);
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        self.syncing().map(|_| ())
    }
}

impl SimFile {
    fn sync(&mut self, metadata: bool) -> io::Result<()> {
        let mut state = self.fs.syncing()?;
        let pending = std::mem::take(&mut state.pending);
        for (path, offset, bytes) in pending {
            if path == self.path {
                apply(&path, offset, &bytes);
            } else {
                state.pending.push((path, offset, bytes));
            }
        }
        if metadata {
            state.unsynced_files.remove(&self.path);
        }
        Ok(())
    }
}

impl WalFile for SimFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.fs.alive()?;
        state
            .pending
            .push((self.path.clone(), offset, buf.to_vec()));
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.sync(false)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync(true)
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        drop(self.fs.alive()?);
        OpenOptions::new()
            .write(true)
            .open(&self.path)?
            .set_len(len)
    }
}

#[test]
fn power_loss_at_random_moments_keeps_every_acknowledged_record() {
    let seed = super::seed();
    eprintln!("power loss seed {seed} (ARCHIVER_TEST_SEED to replay)");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    // What the log holds as far as the test knows: records appended, and how many are durable.
    let mut model: Vec<Rec> = Vec::new();
    let mut acknowledged = 0usize;
    let mut cuts = 0;
    let mut crashes = 0;
    for round in 0..300 {
        let segment_bytes = 4096 + rng.below(8192);
        let fs = SimFs::new(rng.next(), rng.below(40));
        let opened = WalWriter::open_with_fs(
            &dir,
            small(segment_bytes),
            Arc::new(fs.clone()),
            &mut |_| Ok(()),
        );
        match opened {
            Ok((mut w, report)) => {
                cuts += usize::from(report.cut.is_some() || report.removed_segment.is_some());
                for _ in 0..rng.below(300) {
                    let len = rng.below(700) as usize;
                    let (t, payload) = (1 + rng.below(9) as u16, rng.bytes(len));
                    let lsn = match w.append(t, &payload) {
                        Ok(lsn) => lsn,
                        Err(WalError::Io { .. }) => break,
                        Err(e) => panic!("round {round}: {e}"),
                    };
                    assert_eq!(lsn as usize, model.len() + 1);
                    model.push((lsn, t, payload));
                    // A roll-over seals (syncs) the full segment.
                    acknowledged = acknowledged.max(w.durable_lsn() as usize);
                    if rng.below(4) == 0 {
                        match w.sync() {
                            Ok(()) => acknowledged = w.durable_lsn() as usize,
                            Err(WalError::Io { .. }) => break,
                            Err(e) => panic!("round {round}: {e}"),
                        }
                    }
                }
                crashes += 1;
                fs.crash();
                drop(w);
            }
            // Power lost during recovery itself (cutting a tail, creating segment 1).
            Err(WalError::Io { .. }) => {
                crashes += 1;
                fs.crash();
            }
            Err(e) => panic!("round {round}: {e}"),
        }

        // Check what survived: either by recovery with the real filesystem, or read-only, so
        // that the next round's simulated open does the recovery and may lose power during it.
        let seen = if rng.below(2) == 0 {
            let (w, report, seen) = open(&dir, small(segment_bytes))
                .unwrap_or_else(|e| panic!("round {round}: recovery failed after power loss: {e}"));
            cuts += usize::from(report.cut.is_some() || report.removed_segment.is_some());
            drop(w);
            seen
        } else {
            let mut seen = Vec::new();
            let report = archiver::wal::read_dir(&dir, &mut |r| {
                seen.push((r.lsn, r.record_type, r.payload.to_vec()));
                Ok(())
            })
            .unwrap_or_else(|e| panic!("round {round}: log unreadable after power loss: {e}"));
            cuts += usize::from(report.torn_tail.is_some() || report.torn_segment.is_some());
            seen
        };
        assert!(
            seen.len() >= acknowledged,
            "round {round}: {} records survived, {acknowledged} acknowledged",
            seen.len()
        );
        assert!(seen.len() <= model.len(), "round {round}: records invented");
        assert_eq!(seen[..], model[..seen.len()], "round {round}");
        model.truncate(seen.len());
        acknowledged = seen.len();
    }
    eprintln!(
        "{crashes} power losses, {} records survive, {cuts} recoveries cut a torn tail or segment",
        model.len()
    );
    assert!(cuts > 10, "too few torn tails to mean anything");
}
