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

/// Column choices of `muster assets import`.
#[derive(clap::Args)]
pub struct ColumnArgs {
    /// Header of the host name column [default: hostname]
    #[arg(long, value_name = "HEADER")]
    hostname_column: Option<String>,
    /// Header of the IP address column [default: ip, when present]
    #[arg(long, value_name = "HEADER")]
    ip_column: Option<String>,
    /// Header of the owner column [default: owner, when present]
    #[arg(long, value_name = "HEADER")]
    owner_column: Option<String>,
    /// Header of the business unit column [default: business_unit, when present]
    #[arg(long, value_name = "HEADER")]
    unit_column: Option<String>,
}

/// Reads and checks an asset CSV here, then replaces the collector's asset
/// list with it. Any problem anywhere in the file: every problem is listed
/// (line and column) and nothing is sent.
pub async fn import_assets(
    c: &mut OperatorClient<Channel>,
    path: &Path,
    cols: ColumnArgs,
) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let columns = muster_collector::assets::Columns {
        hostname: cols.hostname_column,
        ip: cols.ip_column,
        owner: cols.owner_column,
        business_unit: cols.unit_column,
    };
    let assets = muster_collector::assets::parse(&bytes, &columns).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!(
            "{} was not imported ({} problem(s); the asset list is unchanged):\n{}",
            path.display(),
            errors.len(),
            list.join("\n")
        )
    })?;
    let r = c
        .import_assets(v1::ImportAssetsRequest {
            assets: assets
                .iter()
                .map(|a| v1::AssetRecord {
                    hostname: a.hostname.clone(),
                    ip: a.ip.clone(),
                    owner: a.owner.clone(),
                    business_unit: a.business_unit.clone(),
                    line: a.line as u32,
                })
                .collect(),
        })
        .await
        .map_err(super::refused)?
        .into_inner();
    println!(
        "asset list replaced: {} asset(s) from {}",
        r.assets,
        path.display()
    );
    Ok(())
}

/// `muster coverage`: which assets run no agent, which agents are not in
/// the asset list, which hosts are stale.
pub async fn coverage(c: &mut OperatorClient<Channel>, format: super::Format) -> Result<()> {
    let doc = c
        .get_coverage(v1::CoverageRequest {})
        .await
        .map_err(super::refused)?
        .into_inner();
    let cov: muster_collector::assets::Coverage =
        serde_json::from_str(&doc.json).context("the collector sent a damaged coverage report")?;
    match format {
        super::Format::Json => println!("{}", serde_json::to_string_pretty(&cov)?),
        super::Format::Csv => {
            println!("kind,hostname,id,ip,owner,business_unit,last_checkin");
            for a in &cov.assets_without_agent {
                println!(
                    "no_agent,{},,{},{},{},",
                    super::csv_field(&a.hostname),
                    super::csv_field(&a.ip),
                    super::csv_field(&a.owner),
                    super::csv_field(&a.business_unit)
                );
            }
            for (kind, list) in [
                ("not_in_assets", &cov.agents_not_in_assets),
                ("stale", &cov.stale),
            ] {
                for a in list {
                    println!(
                        "{kind},{},{},,,,{}",
                        super::csv_field(&a.hostname),
                        a.id,
                        super::time(a.last_checkin.unwrap_or(0))
                    );
                }
            }
        }
        super::Format::Table => {
            println!(
                "{} asset(s), {} agent(s): {} covered ({:.1} %)",
                cov.assets, cov.agents, cov.covered, cov.percent_covered
            );
            let mut t = super::table();
            t.set_header(["", "hostname", "id", "owner / last check-in"]);
            for a in &cov.assets_without_agent {
                let who = [a.owner.as_str(), a.business_unit.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                t.add_row([
                    "NO AGENT".to_string(),
                    a.hostname.clone(),
                    String::new(),
                    who,
                ]);
            }
            for (kind, list) in [
                ("not in asset list", &cov.agents_not_in_assets),
                ("STALE", &cov.stale),
            ] {
                for a in list {
                    t.add_row([
                        kind.to_string(),
                        a.hostname.clone(),
                        a.id.clone(),
                        super::time(a.last_checkin.unwrap_or(0)),
                    ]);
                }
            }
            println!("{t}");
            if cov.assets == 0 {
                println!("no asset list yet: muster assets import FILE.csv");
            }
        }
    }
    Ok(())
}
