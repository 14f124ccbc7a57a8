//! `muster-collector backup` and `restore`: a copy of the SQLite fleet
//! database taken while the collector serves, and putting one back.
//!
//! The copy is SQLite's `VACUUM INTO` on a read-only connection of its own:
//! one read transaction, so the file is the database as of one instant
//! (every acknowledged check-in before it, none after), written while
//! check-ins go on (WAL readers do not block the writer). SQLite's online
//! backup API is not reachable through sqlx without unsafe code, and
//! restarts from the beginning whenever another connection writes, so on a
//! busy collector it may never end; `VACUUM INTO` also leaves out free
//! pages. SQLite does not sync the file it writes: the copy is made under a
//! temporary name, synced, checked, and only then given its name.
//!
//! A restore never touches the file it is given: it copies it beside the
//! database, checks the copy (an SQLite file, whole, `integrity_check`, a
//! Muster schema no newer than this binary's), brings its schema up to
//! date, and only then moves the current database aside (`.before-restore`)
//! and the copy into its place, each by rename. It holds the data folder's
//! lock exclusively ([`crate::datalock`]), so it refuses while a collector
//! serves the folder, and no collector starts while it runs.

use crate::datalock::{DataLock, Holder, LockError};
use crate::store::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod restore;
pub use restore::{Restored, restore};

/// Why a backup or a restore did not happen. In every case the current
/// database is as it was.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The data folder's lock is held.
    #[error("{0}; {hint}", hint = busy_hint(.0))]
    Busy(LockError),
    /// The output file of a backup exists already.
    #[error("{0} exists; refusing to overwrite it (choose another --out, or remove it first)")]
    OutExists(PathBuf),
    /// A file that should be there is not.
    #[error("{path} does not exist{hint}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// What to do.
        hint: &'static str,
    },
    /// The file is not an SQLite database at all.
    #[error(
        "{0} is not an SQLite database (it does not begin with \"SQLite format 3\"); give a file made by muster-collector backup"
    )]
    NotSqlite(PathBuf),
    /// The file is shorter than its own header says.
    #[error(
        "{path} is truncated: {have} bytes where its header promises {want} (an interrupted copy?); use a complete backup"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        have: u64,
        /// The length its header gives.
        want: u64,
    },
    /// SQLite found the file damaged.
    #[error("{path} is damaged: {problems}; use another backup")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What `integrity_check` (or opening it) said.
        problems: String,
    },
    /// An SQLite database, but not a Muster collector's.
    #[error("{path} is an SQLite database but not a Muster collector's ({why})")]
    NotMuster {
        /// The file.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// A database of a newer collector than this one.
    #[error(
        "{path} has schema version {version}, newer than this muster-collector knows ({newest}): restore it with the version that made it, or upgrade this one first"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        version: i64,
        /// The newest this binary knows.
        newest: i64,
    },
    /// The file has a write-ahead log beside it: a live database, whose
    /// latest changes are in the log, not in the file.
    #[error(
        "{path} has a write-ahead log beside it ({wal}): it is a live database, not a backup, and its latest changes are not in the file; make a backup of it with muster-collector backup"
    )]
    LiveDatabase {
        /// The file.
        path: PathBuf,
        /// Its `-wal` file.
        wal: PathBuf,
    },
    /// An earlier restore's copy of the database is still there.
    #[error(
        "{0} exists from an earlier restore; move it somewhere safe (or delete it) and run restore again"
    )]
    BeforeRestoreExists(PathBuf),
    /// A file operation failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An SQLite operation failed.
    #[error("{what} {path}: {source}")]
    Sql {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// Why.
        source: sqlx::Error,
    },
    /// The restored database did not open as a store.
    #[error("the restored database does not open: {0}")]
    Store(#[from] StoreError),
}

fn busy_hint(e: &LockError) -> &'static str {
    match e {
        LockError::Busy { holder, .. } if holder.contains("restore") => {
            "wait for the restore to finish"
        }
        LockError::Busy { .. } => {
            "stop the collector first (systemctl stop muster-collector), then restore"
        }
        LockError::Io { .. } => "check the folder's owner and mode",
    }
}

impl From<LockError> for BackupError {
    fn from(e: LockError) -> Self {
        BackupError::Busy(e)
    }
}

/// What a backup file holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Hosts stored (every host, revoked and superseded ones included).
    pub hosts: u64,
    /// The schema version (the newest migration applied).
    pub schema_version: i64,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { what, path, source }
}

/// `PATH` with `suffix` added to its file name (`muster.db` ->
/// `muster.db-wal`).
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// SQLite's own companions of a database file: its write-ahead log and
/// the log's shared-memory index.
const SIDECARS: [&str; 2] = ["-wal", "-shm"];

/// Copies the SQLite database `db` of the data folder `root` into the new
/// file `out`, consistent as of one instant, while collectors may be
/// serving. `progress` is called about once a second with the bytes
/// written so far.
pub async fn backup(
    root: &Path,
    db: &Path,
    out: &Path,
    progress: impl Fn(u64),
) -> Result<Summary, BackupError> {
    // Shared: beside serving collectors, but not during a restore.
    let _lock = DataLock::take(root, Holder::Backup)?;
    if out.exists() {
        return Err(BackupError::OutExists(out.to_path_buf()));
    }
    if !db.is_file() {
        return Err(BackupError::Missing {
            path: db.to_path_buf(),
            hint: " (is this the data folder of a collector on SQLite? run muster-collector init first)",
        });
    }
    let name = out.file_name().ok_or_else(|| BackupError::Io {
        what: "write to",
        path: out.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
    })?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let partial = dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_snapshot(db, &partial, out, &dir, progress).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

async fn write_snapshot(
    db: &Path,
    partial: &Path,
    out: &Path,
    dir: &Path,
    progress: impl Fn(u64),
) -> Result<Summary, BackupError> {
    let target = partial.to_str().ok_or_else(|| BackupError::Io {
        what: "write to",
        path: partial.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "SQLite needs a UTF-8 path",
        ),
    })?;
    // An empty file of our own, mode 0600 (the fleet's data), which
    // VACUUM INTO accepts as its target.
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(partial)
            .map_err(io("create", partial))?;
    }
    let sql = |what| {
        let path = db.to_path_buf();
        move |source| BackupError::Sql { what, path, source }
    };
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(sql("cannot open"))?;
    {
        let vacuum = sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&mut conn);
        tokio::pin!(vacuum);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                done = &mut vacuum => {
                    done.map_err(sql("cannot copy"))?;
                    break;
                }
                _ = tick.tick() => {
                    progress(std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0));
                }
            }
        }
    }
    let _ = conn.close().await;
    // SQLite does not sync what VACUUM INTO writes.
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", partial))?;
    let mut summary = inspect(partial, Check::Quick).await?;
    // A link fails if `out` appeared meanwhile: never overwritten.
    match std::fs::hard_link(partial, out) {
        Ok(()) => {
            let _ = std::fs::remove_file(partial);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(BackupError::OutExists(out.to_path_buf()));
        }
        // A file system without hard links.
        Err(_) if !out.exists() => {
            std::fs::rename(partial, out).map_err(io("rename", partial))?;
        }
        Err(_) => return Err(BackupError::OutExists(out.to_path_buf())),
    }
    sync_dir(dir)?;
    summary.path = out.to_path_buf();
    Ok(summary)
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", dir))
}

/// How thoroughly [`inspect`] checks a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `PRAGMA quick_check`: every page and record, not index contents
    /// (what a backup just written needs).
    Quick,
    /// `PRAGMA integrity_check`: also every index against its table.
    Full,
}

/// Checks that `file` is a whole Muster SQLite database of a schema this
/// binary knows, and says what it holds. The file is only read.
pub async fn inspect(file: &Path, check: Check) -> Result<Summary, BackupError> {
    let bytes = check_header(file)?;
    let damaged = |e: sqlx::Error| BackupError::Damaged {
        path: file.to_path_buf(),
        problems: e.to_string(),
    };
    // Immutable: SQLite takes no lock and looks for no log, so nothing
    // beside the file is created or read.
    let mut conn = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .immutable(true)
        .connect()
        .await
        .map_err(damaged)?;
    let result = inspect_open(&mut conn, file, bytes, check).await;
    let _ = conn.close().await;
    result
}

async fn inspect_open(
    conn: &mut SqliteConnection,
    file: &Path,
    bytes: u64,
    check: Check,
) -> Result<Summary, BackupError> {
    let damaged = |e: sqlx::Error| BackupError::Damaged {
        path: file.to_path_buf(),
        problems: e.to_string(),
    };
    let pragma = match check {
        Check::Quick => "PRAGMA quick_check(10)",
        Check::Full => "PRAGMA integrity_check(10)",
    };
    let problems: Vec<String> = sqlx::query_scalar(pragma)
        .fetch_all(&mut *conn)
        .await
        .map_err(damaged)?;
    if problems != ["ok"] {
        return Err(BackupError::Damaged {
            path: file.to_path_buf(),
            problems: problems.join("; "),
        });
    }
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *conn)
            .await
            .map_err(damaged)?;
    for needed in ["_sqlx_migrations", "hosts"] {
        if !tables.iter().any(|t| t == needed) {
            return Err(BackupError::NotMuster {
                path: file.to_path_buf(),
                why: format!("it has no {needed} table"),
            });
        }
    }
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&mut *conn)
        .await
        .map_err(damaged)?;
    let version = version.unwrap_or(0);
    let newest = crate::store::newest_sqlite_schema();
    if version > newest {
        return Err(BackupError::TooNew {
            path: file.to_path_buf(),
            version,
            newest,
        });
    }
    let hosts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hosts")
        .fetch_one(&mut *conn)
        .await
        .map_err(damaged)?;
    Ok(Summary {
        path: file.to_path_buf(),
        bytes,
        hosts: hosts as u64,
        schema_version: version,
    })
}

/// Reads the 100-byte header: the magic string, and the length the header
/// promises, when it can be trusted. Returns the file's length.
fn check_header(file: &Path) -> Result<u64, BackupError> {
    use std::io::Read;
    let mut f = std::fs::File::open(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BackupError::Missing {
            path: file.to_path_buf(),
            hint: "",
        },
        _ => io("read", file)(e),
    })?;
    let len = f.metadata().map_err(io("read", file))?.len();
    let mut header = Vec::with_capacity(100);
    (&mut f)
        .take(100)
        .read_to_end(&mut header)
        .map_err(io("read", file))?;
    const MAGIC: &[u8] = b"SQLite format 3\0";
    if !header.starts_with(MAGIC) {
        // The start of the magic string but not all of it: a cut file.
        if !header.is_empty() && MAGIC.starts_with(&header) {
            return Err(BackupError::Truncated {
                path: file.to_path_buf(),
                have: len,
                want: 100,
            });
        }
        return Err(BackupError::NotSqlite(file.to_path_buf()));
    }
    if header.len() < 100 {
        return Err(BackupError::Truncated {
            path: file.to_path_buf(),
            have: len,
            want: 100,
        });
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    // The page count at 28 is valid when the "version-valid-for" number
    // at 92 equals the change counter at 24 (every SQLite since 3.7.0).
    let pages = u64::from(be32(28));
    let valid = be32(92) == be32(24) && pages > 0;
    if valid && len < pages * page_size {
        return Err(BackupError::Truncated {
            path: file.to_path_buf(),
            have: len,
            want: pages * page_size,
        });
    }
    if page_size >= 512 && len % page_size != 0 {
        return Err(BackupError::Truncated {
            path: file.to_path_buf(),
            have: len,
            want: len.div_ceil(page_size) * page_size,
        });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_tells_other_files_and_cut_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"PK\x03\x04 a zip file").unwrap();
        assert!(matches!(check_header(&p), Err(BackupError::NotSqlite(_))));
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(check_header(&p), Err(BackupError::NotSqlite(_))));
        std::fs::write(&p, b"SQLite for").unwrap();
        assert!(matches!(
            check_header(&p),
            Err(BackupError::Truncated { want: 100, .. })
        ));
        // A header saying 3 pages of 4096 bytes, valid, with one page.
        let mut h = vec![0u8; 4096];
        h[..16].copy_from_slice(b"SQLite format 3\0");
        h[16..18].copy_from_slice(&4096u16.to_be_bytes());
        h[24..28].copy_from_slice(&7u32.to_be_bytes());
        h[28..32].copy_from_slice(&3u32.to_be_bytes());
        h[92..96].copy_from_slice(&7u32.to_be_bytes());
        std::fs::write(&p, &h).unwrap();
        let e = check_header(&p).unwrap_err();
        assert!(
            e.to_string()
                .contains("4096 bytes where its header promises 12288"),
            "{e}"
        );
        h.extend_from_slice(&[0; 8192]);
        std::fs::write(&p, &h).unwrap();
        assert_eq!(check_header(&p).unwrap(), 12288);
        // Cut inside a page, the page count not to be trusted (an old
        // writer): the length is not a whole number of pages.
        h[92..96].copy_from_slice(&6u32.to_be_bytes());
        std::fs::write(&p, &h[..4096 + 100]).unwrap();
        assert!(matches!(
            check_header(&p),
            Err(BackupError::Truncated { want: 8192, .. })
        ));
    }

    #[test]
    fn sidecars_are_named_as_sqlite_names_them() {
        assert_eq!(
            suffixed(Path::new("/d/muster.db"), "-wal"),
            Path::new("/d/muster.db-wal")
        );
    }
}
