//! `muster import`: air-gapped hosts from snapshots.

use anyhow::{Context, Result};
use muster_proto::v1::{self, operator_client::OperatorClient};
use muster_proto::{facts_to_wire, section_to_wire};
use std::path::Path;
use tonic::transport::Channel;

/// Sends a snapshot written by `muster-agent collect` to the collector. The
/// file is checked here first, so a damaged one or one of another format
/// version is refused before anything is sent.
pub async fn import(c: &mut OperatorClient<Channel>, path: &Path) -> Result<()> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read the snapshot {}", path.display()))?
        .len();
    anyhow::ensure!(
        len <= muster_catalog::snapshot::MAX_SNAPSHOT,
        "{}: {len} bytes is larger than a snapshot can be",
        path.display()
    );
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the snapshot {}", path.display()))?;
    let snap = muster_catalog::snapshot::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(
        !snap.host.hostname.trim().is_empty(),
        "{}: the snapshot names no hostname, so it cannot be matched to a host",
        path.display()
    );
    let r = c
        .import_snapshot(v1::ImportRequest {
            facts: Some(facts_to_wire(&snap.host)),
            sections: snap
                .inventory
                .sections
                .iter()
                .map(|(name, s)| section_to_wire(name, s))
                .collect(),
            collected_at: snap.collected_at,
        })
        .await
        .map_err(super::refused)?
        .into_inner();
    println!(
        "{} host {} ({}) from {}: {} product(s) detected",
        if r.created { "imported new" } else { "updated" },
        r.host_id,
        snap.host.hostname,
        path.display(),
        r.detections
    );
    if !snap.errors.is_empty() {
        println!(
            "note: {} source(s) could not be read when the snapshot was taken (muster-agent scan --snapshot {} lists them)",
            snap.errors.len(),
            path.display()
        );
    }
    Ok(())
}
