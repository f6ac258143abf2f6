//! The WAL directory and every file the writer creates are the owner's only: the log names
//! servers, tables, the predicate and key values.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use archiver::wal::{WalOptions, WalWriter};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_log_directory_and_its_files_are_the_owners_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("jobs").join("rewards");
    let options = WalOptions {
        segment_bytes: 8_192,
        ..WalOptions::default()
    };
    let (mut writer, _) = WalWriter::open(&dir, options, &mut |_| Ok(())).unwrap();
    for i in 0..100u64 {
        writer.append(1, &i.to_le_bytes().repeat(20)).unwrap();
    }
    writer.replace_with(&[(1, b"snapshot".to_vec())]).unwrap();
    writer.close().unwrap();
    assert_eq!(mode(&dir), 0o700, "the WAL directory");
    assert_eq!(mode(&tmp.path().join("jobs")), 0o700, "a parent it created");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files += 1;
    }
    assert!(files >= 2, "the LOCK file and a segment");
}
