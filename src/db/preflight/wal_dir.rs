//! Whether the job's WAL directory can be written, checked without writing anything, so that a
//! refused job or a dry run leaves no trace.

use std::path::Path;

/// Whether the job's WAL directory is (or can be created as) a writable directory. Checks
/// permissions without writing anything, so that a refused job or a dry run leaves no trace.
pub fn wal_dir_findings(dir: &Path) -> Option<String> {
    let shown = dir.display();
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
            _ => return None,
        }
    }
    if !existing.is_dir() {
        return Some(if existing == dir {
            format!("[job] wal_dir {shown} exists but is not a directory; point wal_dir at a directory (it is created if missing)")
        } else {
            format!(
                "[job] wal_dir {shown} cannot be created: {} is not a directory",
                existing.display()
            )
        });
    }
    if let Some(why) = unwritable(existing) {
        return Some(if existing == dir {
            format!("[job] wal_dir {shown} is not writable ({why}); fix its permissions or choose another directory")
        } else {
            format!(
                "[job] wal_dir {shown} cannot be created: {} is not writable ({why})",
                existing.display()
            )
        });
    }
    None
}

/// Why the directory cannot be written, if it cannot: permissions for this process
/// (`access(2)`), or a read-only file system (`statvfs(2)`), which root's permissions ignore.
fn unwritable(dir: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid NUL-terminated string for the duration of both calls, and
    // `stat` is a plain C struct the call fills in.
    unsafe {
        if libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) != 0 {
            return Some(std::io::Error::last_os_error().to_string());
        }
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) == 0 && stat.f_flag & libc::ST_RDONLY != 0 {
            return Some("read-only file system".to_string());
        }
    }
    None
}
