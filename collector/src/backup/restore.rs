//! `muster-collector restore`: a checked copy of a backup swapped in for the
//! database by rename (see the parent module).

use super::*;
use crate::store::{Database, Store};

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Restored {
    /// The backup as it was checked.
    pub from: Summary,
    /// The database replaced.
    pub database: PathBuf,
    /// Where the database it replaced now is (none if there was none).
    pub previous: Option<PathBuf>,
    /// The schema version after bringing it up to date.
    pub schema_version: i64,
}

/// Puts the backup `from` in place of the SQLite database `db` of the data
/// folder `root`, keeping the database it replaces as
/// `DB.before-restore`. Refuses while a collector serves the folder.
pub async fn restore(root: &Path, db: &Path, from: &Path) -> Result<Restored, BackupError> {
    let _lock = DataLock::take(root, Holder::Restore)?;
    if !from.exists() {
        return Err(BackupError::Missing {
            path: from.to_path_buf(),
            hint: " (give the file made by muster-collector backup --out)",
        });
    }
    let wal = suffixed(from, "-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(BackupError::LiveDatabase {
            path: from.to_path_buf(),
            wal,
        });
    }
    check_header(from)?;
    let before = suffixed(db, ".before-restore");
    for f in std::iter::once(before.clone()).chain(SIDECARS.map(|s| suffixed(&before, s))) {
        if f.exists() {
            return Err(BackupError::BeforeRestoreExists(f));
        }
    }
    let staging = suffixed(db, ".restoring");
    let clean = |staging: &Path| {
        for f in
            std::iter::once(staging.to_path_buf()).chain(SIDECARS.map(|s| suffixed(staging, s)))
        {
            let _ = std::fs::remove_file(f);
        }
    };
    // Left by a restore that was interrupted: ours, since we hold the lock.
    clean(&staging);
    let result = stage(root, db, from, &staging).await;
    let (summary, schema_version) = match result {
        Ok(r) => r,
        Err(e) => {
            clean(&staging);
            return Err(e);
        }
    };
    // The swap: each step a rename in one folder. The current database
    // goes aside with its log, so that copy stays whole.
    let previous = if db.exists() {
        for s in SIDECARS {
            let from = suffixed(db, s);
            if from.exists() {
                std::fs::rename(&from, suffixed(&before, s)).map_err(io("move aside", &from))?;
            }
        }
        std::fs::rename(db, &before).map_err(io("move aside", db))?;
        Some(before)
    } else {
        None
    };
    std::fs::rename(&staging, db).map_err(io("move into place", &staging))?;
    sync_dir(db.parent().unwrap_or(root))?;
    Ok(Restored {
        from: Summary {
            path: from.to_path_buf(),
            ..summary
        },
        database: db.to_path_buf(),
        previous,
        schema_version,
    })
}

/// Copies `from` to `staging`, gives it the database's owner, checks it,
/// and brings its schema to this binary's: what it holds, and its schema
/// version now.
async fn stage(
    root: &Path,
    db: &Path,
    from: &Path,
    staging: &Path,
) -> Result<(Summary, i64), BackupError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::copy(from, staging).map_err(io("copy the backup to", staging))?;
    // The owner and mode of the database it replaces (else of the folder,
    // mode 0600): a restore run as root must leave a file the service's
    // user can write.
    let (uid, gid, mode) = match std::fs::metadata(db) {
        Ok(m) => (m.uid(), m.gid(), m.mode() & 0o777),
        Err(_) => {
            let m = std::fs::metadata(root).map_err(io("read", root))?;
            (m.uid(), m.gid(), 0o600)
        }
    };
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(mode))
        .map_err(io("set the mode of", staging))?;
    let m = std::fs::metadata(staging).map_err(io("read", staging))?;
    if (m.uid(), m.gid()) != (uid, gid) {
        std::os::unix::fs::chown(staging, Some(uid), Some(gid)).map_err(|e| BackupError::Io {
            what: "give the restored database to its owner (run restore as root or as the collector's user):",
            path: staging.to_path_buf(),
            source: e,
        })?;
    }
    std::fs::File::open(staging)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", staging))?;
    let summary = inspect(staging, Check::Full)
        .await
        .map_err(|e| rename_in(e, staging, from))?;
    // Older backups are migrated here, on the copy, before anything is
    // replaced; opening also checks the applied steps are this binary's.
    let store = Store::open(&Database::Sqlite(staging.to_path_buf()), false).await?;
    let version = store.schema_version().await;
    store.close().await;
    let version = version?;
    if let Some(wal) = SIDECARS
        .iter()
        .map(|s| suffixed(staging, s))
        .find(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
    {
        return Err(BackupError::Io {
            what: "finish writing",
            path: staging.to_path_buf(),
            source: std::io::Error::other(format!("{} was left behind", wal.display())),
        });
    }
    Ok((summary, version))
}

/// An error about the staged copy, told about the file the user gave.
fn rename_in(e: BackupError, staging: &Path, from: &Path) -> BackupError {
    let fix = |p: PathBuf| if p == staging { from.to_path_buf() } else { p };
    match e {
        BackupError::Damaged { path, problems } => BackupError::Damaged {
            path: fix(path),
            problems,
        },
        BackupError::NotMuster { path, why } => BackupError::NotMuster {
            path: fix(path),
            why,
        },
        BackupError::TooNew {
            path,
            version,
            newest,
        } => BackupError::TooNew {
            path: fix(path),
            version,
            newest,
        },
        BackupError::Truncated { path, have, want } => BackupError::Truncated {
            path: fix(path),
            have,
            want,
        },
        BackupError::NotSqlite(path) => BackupError::NotSqlite(fix(path)),
        other => other,
    }
}
