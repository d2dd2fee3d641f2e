//! The free-space guard: writes stop while the data directory's filesystem has less than
//! a reserve free, and start again by themselves once there is room.
//!
//! RocksDB, once a write-ahead-log append fails for lack of space, refuses every later
//! write until it is reopened. So fctrace refuses first: the writer asks this guard
//! before each group commit, and answers "disk full" (503 + `Retry-After`) while free
//! space is under the reserve, leaving RocksDB room for its flushes and compactions.
//! Reads never ask. One `statvfs` per group commit costs about a microsecond; caching
//! it would let a quickly filled disk reach RocksDB.
//!
//! What this cannot prevent: another process taking the last bytes between the check and
//! the write. RocksDB then stays read-only until fctrace restarts (reads go on working).
//!
//! Also here: whether the filesystem takes `O_DIRECT` writes ([`direct_writes_work`]).

use std::path::PathBuf;

pub(super) struct DiskGuard {
    path: PathBuf,
    min_free: u64,
}

impl DiskGuard {
    pub(super) fn new(path: PathBuf, min_free: u64) -> Self {
        DiskGuard { path, min_free }
    }

    /// Free bytes for unprivileged writers, or `None` when the filesystem cannot say.
    fn free_now(&self) -> Option<u64> {
        let st = rustix::fs::statvfs(&self.path).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// `Err(message)` while free space is under the reserve.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.min_free == 0 {
            return Ok(());
        }
        // a filesystem that does not report space is not refused for it
        let free = self.free_now().unwrap_or(u64::MAX);
        if free < self.min_free {
            return Err(format!(
                "{free} bytes free under {}, below the {}-byte reserve (--min-free-disk-bytes); writes resume when space is freed",
                self.path.display(),
                self.min_free
            ));
        }
        Ok(())
    }
}

/// Whether files in `dir` can be written with `O_DIRECT`. tmpfs and some other
/// filesystems refuse it, and RocksDB set to write that way would fail its first flush
/// rather than its open, so the store asks before it opens.
pub(super) fn direct_writes_work(dir: &std::path::Path) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(".direct-io-probe");
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)?;
        // O_DIRECT needs a buffer aligned to the device's block: 4 KiB covers them.
        let buf = vec![0u8; 8192];
        let off = buf.as_ptr().align_offset(4096);
        let block = buf.get(off..off + 4096).ok_or(std::io::ErrorKind::Other)?;
        f.write_all(block)
    })()
    .is_ok();
    let _ = std::fs::remove_file(&probe);
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_cannot_hold_the_probe_says_no_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!direct_writes_work(&dir.path().join("missing")));
        // Wherever it can, the probe file goes again.
        direct_writes_work(dir.path());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
