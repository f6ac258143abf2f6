//! The metrics as a node_exporter textfile (`[metrics] textfile`), the convention for cron
//! jobs: written at the start of a run, every `textfile_interval_s` during it, and at its end
//! whatever the outcome.
//!
//! **A reader never sees a partial file**: the text is written to a temporary file in the same
//! directory (named `.NAME.PID.tmp`, which the collector ignores: it reads only `*.prom`),
//! synced, and renamed over the file; the directory is synced after. The file is mode 0644
//! whatever the umask: node_exporter runs as its own user and must read it, and it holds no
//! secret (counts, times, table names; no server, user or password).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::metrics::Metrics;

/// The file's mode: readable by node_exporter's user, written only by ours.
pub const TEXTFILE_MODE: u32 = 0o644;

/// The temporary file `path` is written through.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "metrics".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Replaces `path` with `text` atomically (temporary file, fsync, rename, directory fsync).
/// On failure the temporary file is removed and `path` is left as it was.
pub fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let temp = temp_path(path);
    let written = write_synced(&temp, text).and_then(|()| fs::rename(&temp, path));
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

fn write_synced(temp: &Path, text: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(TEXTFILE_MODE)
        .open(temp)?;
    // The umask may have taken bits off the mode given at creation.
    file.set_permissions(Permissions::from_mode(TEXTFILE_MODE))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// The textfile of a run: written at the start ([`Textfile::start`], where a failure refuses
/// the run before anything is done), every interval by a background task, and at the end
/// ([`Textfile::finish`]).
pub struct Textfile {
    /// The file.
    path: PathBuf,
    /// The metrics it shows.
    metrics: Arc<Metrics>,
    /// The task rewriting it every interval.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Textfile {
    /// Writes the file once, then every `interval` from a task of the current runtime. An
    /// error of the first write is returned (the path is wrong: nothing was started); later
    /// failures are logged and change nothing.
    pub fn start(path: PathBuf, metrics: Arc<Metrics>, interval: Duration) -> io::Result<Textfile> {
        write_atomically(&path, &metrics.render_classic())?;
        let task = tokio::spawn(rewrite_every(path.clone(), metrics.clone(), interval));
        Ok(Textfile {
            path,
            metrics,
            task: Some(task),
        })
    }

    /// Stops the periodic task and writes the file one last time.
    pub fn finish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        write_or_warn(&self.path, &self.metrics);
    }
}

impl Drop for Textfile {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn write_or_warn(path: &Path, metrics: &Metrics) {
    if let Err(error) = write_atomically(path, &metrics.render_classic()) {
        tracing::warn!(
            "cannot write the metrics file {}: {error}; the run goes on",
            path.display()
        );
    }
}

async fn rewrite_every(path: PathBuf, metrics: Arc<Metrics>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // The first tick is immediate; the file was just written.
    loop {
        ticks.tick().await;
        write_or_warn(&path, &metrics);
    }
}
