//! The data folder's lock file, `DIR/collector.lock`: how `restore` knows a
//! collector is serving the folder it would replace the database of.
//!
//! `serve` and `backup` hold a shared `flock` on the file for as long as
//! they run; `restore` needs it exclusive. Several collectors may serve one
//! folder (SQLite allows it; PostgreSQL replicas often share a copy of it),
//! and a backup may run beside them, but a restore runs alone. The kernel
//! drops the lock when the process ends, however it ends, so a crashed
//! collector never leaves a stale lock behind (a pid file would). The
//! file's text (the pid and command of its last holder) only makes the
//! error message useful; the lock is what counts.

use std::fs::{File, TryLockError};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it in a way that excludes us.
    #[error("{holder} is using {dir} (lock file {path})")]
    Busy {
        /// The data folder.
        dir: String,
        /// The lock file.
        path: String,
        /// Who holds it, from the file's text: `a collector (pid 1234)`.
        holder: String,
    },
    /// The file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A held lock on a data folder; released when dropped (or when the
/// process ends).
#[derive(Debug)]
pub struct DataLock {
    file: File,
    path: PathBuf,
}

/// Which process takes the lock, recorded in the file for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// `muster-collector serve` (shared).
    Serve,
    /// `muster-collector backup` (shared).
    Backup,
    /// `muster-collector restore` (exclusive).
    Restore,
}

impl Holder {
    fn word(self) -> &'static str {
        match self {
            Holder::Serve => "serve",
            Holder::Backup => "backup",
            Holder::Restore => "restore",
        }
    }
}

/// The lock file of the data folder `root`.
pub fn path(root: &Path) -> PathBuf {
    root.join("collector.lock")
}

impl DataLock {
    /// Takes the lock of the data folder `root` without waiting: shared
    /// for `serve` and `backup`, exclusive for `restore`.
    pub fn take(root: &Path, who: Holder) -> Result<DataLock, LockError> {
        let path = path(root);
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = open(root, &path).map_err(io)?;
        let tried = match who {
            Holder::Restore => file.try_lock(),
            Holder::Serve | Holder::Backup => file.try_lock_shared(),
        };
        match tried {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(LockError::Busy {
                    dir: root.display().to_string(),
                    path: path.display().to_string(),
                    holder: describe(&text),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut lock = DataLock { file, path };
        // A backup leaves the serving collector's pid in the file: the
        // message a restore gives then names the process to stop. Only a
        // help: a file we may not write is locked all the same.
        if who != Holder::Backup {
            let _ = lock.record(who);
        }
        Ok(lock)
    }

    fn record(&mut self, who: Holder) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        writeln!(self.file, "{} {}", std::process::id(), who.word())
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens the lock file, making it if needed. `flock` needs only a
/// descriptor, not write access: a file of another user (root ran a backup
/// first) is opened read-only. A file made by root is given to the folder's
/// owner, so the service's user can still write its pid there.
fn open(root: &Path, path: &Path) -> std::io::Result<File> {
    use std::io::ErrorKind;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let rw = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
    };
    match rw() {
        Ok(f) => return Ok(f),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => return File::open(path),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
    {
        Ok(f) => {
            let (dir, me) = (std::fs::metadata(root)?, f.metadata()?);
            if (dir.uid(), dir.gid()) != (me.uid(), me.gid()) {
                let _ = std::os::unix::fs::fchown(&f, Some(dir.uid()), Some(dir.gid()));
            }
            Ok(f)
        }
        // Made by another process meanwhile.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => rw().or_else(|_| File::open(path)),
        Err(e) => Err(e),
    }
}

/// `a collector (pid 1234)` from the text `1234 serve`.
fn describe(text: &str) -> String {
    let mut words = text.split_whitespace();
    let pid = words
        .next()
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()));
    let what = match words.next() {
        Some("serve") => "a running collector",
        Some("restore") => "a restore in progress",
        _ => "another muster-collector process",
    };
    match pid {
        Some(pid) => format!("{what} (pid {pid})"),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_and_backup_share_and_restore_excludes_them() {
        let dir = tempfile::tempdir().unwrap();
        let serving = DataLock::take(dir.path(), Holder::Serve).unwrap();
        let second = DataLock::take(dir.path(), Holder::Serve).unwrap();
        let backup = DataLock::take(dir.path(), Holder::Backup).unwrap();
        let err = DataLock::take(dir.path(), Holder::Restore).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("a running collector (pid {})", std::process::id())),
            "{msg}"
        );
        drop((serving, second, backup));
        let restoring = DataLock::take(dir.path(), Holder::Restore).unwrap();
        let err = DataLock::take(dir.path(), Holder::Serve).unwrap_err();
        assert!(err.to_string().contains("a restore in progress"), "{err}");
        drop(restoring);
        DataLock::take(dir.path(), Holder::Serve).unwrap();
    }

    #[test]
    fn holders_are_described_from_the_file() {
        assert_eq!(describe("12 serve\n"), "a running collector (pid 12)");
        assert_eq!(describe(""), "another muster-collector process");
        assert_eq!(describe("x restore"), "a restore in progress");
    }
}
