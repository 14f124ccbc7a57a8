//! The agent's state folder: its identity, settings, progress and spool of
//! reports not yet acknowledged.
//!
//! ```text
//! DIR/agent.toml     collector URL and agent id
//! DIR/ca.pem         the collector's CA
//! DIR/cert.pem       this agent's certificate
//! DIR/key.pem        its private key (0600; never leaves the host)
//! DIR/state.json     sequence numbers and the digests last acknowledged
//! DIR/spool/N.json   reports written before sending, removed once acknowledged
//! ```

use anyhow::{Context, Result};
use muster_catalog::{Detection, HostFacts, Inventory};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Most reports kept in the spool; older ones are superseded by newer full
/// inventories, so dropping the oldest loses no current fact.
pub const SPOOL_LIMIT: usize = 8;

/// `agent.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `https://NAME:PORT` of the collector.
    pub collector: String,
    /// The id the collector assigned (also in the certificate).
    pub agent_id: String,
    /// Other addresses of the same collector deployment, tried in turn
    /// when `collector` cannot be reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<String>,
}

impl AgentConfig {
    /// Every address, `collector` first.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.collector.as_str()).chain(self.fallback.iter().map(String::as_str))
    }
}

/// `state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// The sequence number the next report gets.
    pub next_sequence: u64,
    /// The last sequence the collector acknowledged.
    pub acked_sequence: u64,
    /// Digest of every section as of the last acknowledged report.
    pub acked_digests: BTreeMap<String, String>,
    /// Seconds between check-ins, as the collector last said.
    pub interval_seconds: u64,
}

/// One report: what is written to the spool and sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// This report's sequence number.
    pub sequence: u64,
    /// Unix seconds when the scan was taken.
    pub scanned_at: i64,
    /// Host facts.
    pub facts: HostFacts,
    /// The inventory.
    pub inventory: Inventory,
    /// The agent's own detections.
    pub detections: Vec<Detection>,
    /// The catalog version that found them.
    pub catalog_version: String,
}

/// Paths inside a state folder.
#[derive(Debug, Clone)]
pub struct StateDir(pub PathBuf);

/// Writes `bytes` to `path` atomically and durably (temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // Elsewhere (Windows) the file inherits the state folder's ACL.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Renames `from` to `to` and syncs the folder, so the rename survives a
/// power cut.
fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))?;
    if let Some(dir) = to.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

impl StateDir {
    /// `agent.toml`.
    pub fn config(&self) -> PathBuf {
        self.0.join("agent.toml")
    }
    /// The collector's CA.
    pub fn ca(&self) -> PathBuf {
        self.0.join("ca.pem")
    }
    /// This agent's certificate.
    pub fn cert(&self) -> PathBuf {
        self.0.join("cert.pem")
    }
    /// This agent's key.
    pub fn key(&self) -> PathBuf {
        self.0.join("key.pem")
    }
    fn progress_path(&self) -> PathBuf {
        self.0.join("state.json")
    }
    fn spool(&self) -> PathBuf {
        self.0.join("spool")
    }

    /// Replaces the agent's key and certificate with a renewed pair so that
    /// a crash at any point leaves a matching pair: both new files are
    /// written in full first, then the key and the certificate are renamed
    /// in turn; [`StateDir::recover_identity`] finishes a switch a crash
    /// interrupted.
    pub fn install_identity(&self, key_pem: &str, cert_pem: &str) -> Result<()> {
        write_atomic(&self.new_of(&self.key()), key_pem.as_bytes(), 0o600)?;
        write_atomic(&self.new_of(&self.cert()), cert_pem.as_bytes(), 0o644)?;
        self.recover_identity()
    }

    /// Finishes or undoes a key and certificate switch that a crash
    /// interrupted: with the new certificate written, the switch goes on
    /// (the collector has recorded it); with only the new key, it is
    /// dropped and the old pair stays.
    pub fn recover_identity(&self) -> Result<()> {
        let (new_key, new_cert) = (self.new_of(&self.key()), self.new_of(&self.cert()));
        if new_cert.exists() {
            if new_key.exists() {
                rename_durably(&new_key, &self.key())?;
            }
            rename_durably(&new_cert, &self.cert())?;
        } else if new_key.exists() {
            std::fs::remove_file(&new_key)
                .with_context(|| format!("cannot remove {}", new_key.display()))?;
        }
        Ok(())
    }

    fn new_of(&self, path: &Path) -> PathBuf {
        path.with_extension("new.pem")
    }

    /// Reads `agent.toml`; a folder without one was never enrolled.
    pub fn load_config(&self) -> Result<AgentConfig> {
        let path = self.config();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (is {} an enrolled agent's state folder? run muster-agent enroll first)",
                path.display(),
                self.0.display()
            )
        })?;
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))
    }

    /// Reads `state.json` (defaults when absent).
    pub fn load_progress(&self) -> Result<Progress> {
        let path = self.progress_path();
        match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).with_context(|| format!("invalid {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress {
                next_sequence: 1,
                ..Progress::default()
            }),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes `state.json` durably.
    pub fn save_progress(&self, p: &Progress) -> Result<()> {
        write_atomic(&self.progress_path(), &serde_json::to_vec_pretty(p)?, 0o600)
    }

    /// Writes a report to the spool (durably) before it is sent, and drops
    /// the oldest beyond [`SPOOL_LIMIT`].
    pub fn spool_report(&self, r: &Report) -> Result<()> {
        let dir = self.spool();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        write_atomic(
            &dir.join(format!("{:020}.json", r.sequence)),
            &serde_json::to_vec(r)?,
            0o600,
        )?;
        let pending = self.pending_files()?;
        if pending.len() > SPOOL_LIMIT {
            for (seq, path) in &pending[..pending.len() - SPOOL_LIMIT] {
                tracing::warn!(
                    sequence = seq,
                    "spool full; dropping the oldest unsent report"
                );
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(())
    }

    fn pending_files(&self) -> Result<Vec<(u64, PathBuf)>> {
        let dir = self.spool();
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(seq) = name
                .strip_suffix(".json")
                .and_then(|s| s.parse::<u64>().ok())
            {
                out.push((seq, e.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Reports waiting to be sent, oldest first. A damaged file is moved
    /// aside with a log line, never a crash.
    pub fn pending(&self) -> Result<Vec<Report>> {
        let mut out = Vec::new();
        for (_, path) in self.pending_files()? {
            match std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<Report>(&b)?))
            {
                Ok(r) => out.push(r),
                Err(e) => {
                    let aside = path.with_extension("corrupt");
                    tracing::warn!(file = %path.display(), error = %e, "damaged spool file moved aside");
                    let _ = std::fs::rename(&path, aside);
                }
            }
        }
        Ok(out)
    }

    /// Removes an acknowledged report from the spool.
    pub fn remove_pending(&self, sequence: u64) -> Result<()> {
        let path = self.spool().join(format!("{sequence:020}.json"));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64) -> Report {
        Report {
            sequence: seq,
            scanned_at: 0,
            facts: HostFacts::default(),
            inventory: Inventory::default(),
            detections: vec![],
            catalog_version: String::new(),
        }
    }

    #[test]
    fn a_switch_of_identity_interrupted_anywhere_leaves_a_matching_pair() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir(tmp.path().to_path_buf());
        let pair = |d: &StateDir| {
            (
                std::fs::read_to_string(d.key()).unwrap(),
                std::fs::read_to_string(d.cert()).unwrap(),
            )
        };
        let reset = || {
            for f in ["key.pem", "cert.pem", "key.new.pem", "cert.new.pem"] {
                let _ = std::fs::remove_file(tmp.path().join(f));
            }
            std::fs::write(dir.key(), "old key").unwrap();
            std::fs::write(dir.cert(), "old cert").unwrap();
        };
        let new = || ("new key".to_string(), "new cert".to_string());
        let old = || ("old key".to_string(), "old cert".to_string());
        // The whole switch.
        reset();
        dir.install_identity("new key", "new cert").unwrap();
        assert_eq!(pair(&dir), new());
        assert!(!dir.new_of(&dir.key()).exists() && !dir.new_of(&dir.cert()).exists());
        // Crashed after writing the new key only: the old pair stays.
        reset();
        std::fs::write(dir.new_of(&dir.key()), "new key").unwrap();
        dir.recover_identity().unwrap();
        assert_eq!(pair(&dir), old());
        // Crashed with both new files written: the switch goes on.
        reset();
        std::fs::write(dir.new_of(&dir.key()), "new key").unwrap();
        std::fs::write(dir.new_of(&dir.cert()), "new cert").unwrap();
        dir.recover_identity().unwrap();
        assert_eq!(pair(&dir), new());
        // Crashed between the two renames: the certificate follows the key.
        reset();
        std::fs::write(dir.key(), "new key").unwrap();
        std::fs::write(dir.new_of(&dir.cert()), "new cert").unwrap();
        dir.recover_identity().unwrap();
        assert_eq!(pair(&dir), new());
        // Nothing interrupted: nothing changes.
        reset();
        dir.recover_identity().unwrap();
        assert_eq!(pair(&dir), old());
    }

    #[test]
    fn spool_is_ordered_bounded_and_survives_a_damaged_file() {
        let dir =
            StateDir(std::env::temp_dir().join(format!("muster-spool-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&dir.0);
        for seq in 1..=(SPOOL_LIMIT as u64 + 3) {
            dir.spool_report(&report(seq)).unwrap();
        }
        let seqs: Vec<u64> = dir.pending().unwrap().iter().map(|r| r.sequence).collect();
        assert_eq!(seqs, (4..=SPOOL_LIMIT as u64 + 3).collect::<Vec<_>>());
        std::fs::write(dir.spool().join(format!("{:020}.json", 100)), b"{not json").unwrap();
        assert_eq!(dir.pending().unwrap().len(), SPOOL_LIMIT);
        assert!(dir.spool().join(format!("{:020}.corrupt", 100)).exists());
        dir.remove_pending(4).unwrap();
        assert_eq!(dir.pending().unwrap()[0].sequence, 5);
        std::fs::remove_dir_all(&dir.0).unwrap();
    }
}
