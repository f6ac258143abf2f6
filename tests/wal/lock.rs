//! Lock: a second writer on the same directory, in this process or another, is refused with a
//! message naming the holder's pid; the lock is released when the writer is dropped.

use std::process::Command;

use archiver::wal::WalError;

use super::{open, small};

#[test]
fn a_second_writer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut w, _, _) = open(&dir, small(4096)).unwrap();
    w.append(1, b"held").unwrap();
    w.sync().unwrap();

    // In-process: flock is per open file description, so a second open must be refused too.
    let err = open(&dir, small(4096)).unwrap_err();
    let pid = std::process::id();
    match &err {
        WalError::Locked { pid: Some(p), .. } => assert_eq!(*p, pid),
        other => panic!("expected Locked, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "another archiver process (pid {pid}) holds the WAL lock on {}",
            dir.display()
        )),
        "{message}"
    );

    // Another process.
    let out = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(["debug", "wal-append", "--wal-dir"])
        .arg(&dir)
        .args([
            "--records",
            "1",
            "--payload-bytes",
            "10",
            "--segment-bytes",
            "4096",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("(pid {pid}) holds the WAL lock")),
        "{stderr}"
    );

    // Readers need no lock.
    assert_eq!(super::read_all(&dir).unwrap().len(), 1);

    // Dropping the writer releases the lock.
    drop(w);
    let (_, _, seen) = open(&dir, small(4096)).unwrap();
    assert_eq!(seen.len(), 1);
}

/// Regression (issue 6): `wal::power_loss` failed with "another archiver process (pid N) holds
/// the WAL lock", N being the test process itself. Another test thread had forked a child at
/// that moment; between fork and exec the child holds a copy of the lock file's open file
/// description, which is what `flock` locks, so closing our descriptor did not release the
/// lock. The writer now unlocks explicitly. The child's `pre_exec` sleep widens the window
/// from microseconds to a second, so this fails every time without the fix.
#[test]
fn a_child_forked_while_the_lock_is_held_does_not_keep_it() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut w, _, _) = open(&dir, small(4096)).unwrap();
    w.append(1, b"held").unwrap();
    w.sync().unwrap();
    let mut child = Command::new("true");
    // SAFETY: the closure runs in the forked child before exec and only sleeps
    // (async-signal-safe: nanosleep).
    unsafe {
        child.pre_exec(|| {
            std::thread::sleep(std::time::Duration::from_millis(1_500));
            Ok(())
        });
    }
    let spawned = std::thread::spawn(move || child.status().unwrap());
    // Let the fork happen: the child now sits in pre_exec with the lock's description.
    std::thread::sleep(std::time::Duration::from_millis(300));
    w.close().unwrap();
    let reopened = open(&dir, small(4096));
    assert!(reopened.is_ok(), "reopen after close: {:?}", reopened.err());
    let (w, _, seen) = reopened.unwrap();
    assert_eq!(seen.len(), 1);
    drop(w);
    // The same through drop instead of close.
    let (w, _, _) = open(&dir, small(4096)).unwrap();
    drop(w);
    assert!(open(&dir, small(4096)).is_ok(), "reopen after drop");
    assert!(spawned.join().unwrap().success());
}
