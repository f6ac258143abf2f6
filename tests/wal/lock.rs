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
