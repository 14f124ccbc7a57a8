//! `muster campaign`: a ban with dates (BOD 17-01 and the like), its status
//! and its report.

use anyhow::{Context, Result};
use clap::Subcommand;
use muster_collector::campaign::{self, CampaignStatus};
use muster_proto::v1::{self, operator_client::OperatorClient};
use std::path::PathBuf;
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum CampaignCmd {
    /// Start a campaign: a policy with an issue date and deadlines
    #[command(
        after_help = "Example:\n  muster campaign start bod-17-01 --policy bod-17-01\n  muster campaign start drop-acme --policy acme-ban --identify-by 2026-12-15 --remove-by 2027-01-31"
    )]
    Start {
        /// The campaign's name
        name: String,
        /// The policy (from `muster catalog list`) naming the banned products
        #[arg(long)]
        policy: String,
        /// YYYY-MM-DD [default: the policy's date, else today]
        #[arg(long)]
        issued: Option<String>,
        /// YYYY-MM-DD [default: the policy's date, else issued + 30 days]
        #[arg(long)]
        identify_by: Option<String>,
        /// YYYY-MM-DD [default: the policy's date, else issued + 90 days]
        #[arg(long)]
        remove_by: Option<String>,
    },
    /// Where a campaign stands: affected, cleared, overdue and unknown hosts
    #[command(
        after_help = "Example:\n  muster campaign status bod-17-01\n  muster campaign status bod-17-01 --format json | jq '.overdue[].hostname'"
    )]
    Status {
        /// The campaign (a policy with dates, such as bod-17-01, is one without starting it)
        name: String,
        /// table for people; json or csv for machines
        #[arg(long, value_enum, default_value = "table")]
        format: super::Format,
    },
    /// Write a self-contained HTML report (for an auditor, or a 30-day status report)
    #[command(
        after_help = "Example:\n  muster campaign report bod-17-01 --out bod-17-01-report.html"
    )]
    Report {
        /// The campaign
        name: String,
        /// The HTML file to write
        #[arg(long)]
        out: PathBuf,
    },
}

async fn status(c: &mut OperatorClient<Channel>, name: &str) -> Result<(CampaignStatus, String)> {
    let doc = c
        .get_campaign_status(v1::CampaignStatusRequest { name: name.into() })
        .await
        .map_err(super::refused)?
        .into_inner();
    let s = serde_json::from_str(&doc.json).context("the collector sent a damaged status")?;
    Ok((s, doc.catalog_version))
}

pub async fn run(c: &mut OperatorClient<Channel>, cmd: CampaignCmd) -> Result<()> {
    match cmd {
        CampaignCmd::Start {
            name,
            policy,
            issued,
            identify_by,
            remove_by,
        } => {
            let r = c
                .start_campaign(v1::StartCampaignRequest {
                    name,
                    policy,
                    issued: issued.unwrap_or_default(),
                    identify_by: identify_by.unwrap_or_default(),
                    remove_by: remove_by.unwrap_or_default(),
                })
                .await
                .map_err(super::refused)?
                .into_inner();
            println!(
                "campaign {} started: policy {}, issued {}, identify by {}, remove by {}",
                r.name, r.policy, r.issued, r.identify_by, r.remove_by
            );
        }
        CampaignCmd::Status { name, format } => {
            let (s, _) = status(c, &name).await?;
            print_status(&s, format)?;
        }
        CampaignCmd::Report { name, out } => {
            let (s, catalog) = status(c, &name).await?;
            let html = campaign::render_html(&s, &catalog);
            std::fs::write(&out, html)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "report written to {} ({} affected, {} overdue, {} cleared, {} unknown)",
                out.display(),
                s.counts.affected,
                s.counts.overdue,
                s.counts.cleared,
                s.counts.unknown
            );
        }
    }
    Ok(())
}

fn print_status(s: &CampaignStatus, format: super::Format) -> Result<()> {
    match format {
        super::Format::Json => println!("{}", serde_json::to_string_pretty(s)?),
        super::Format::Csv => {
            println!("list,id,hostname,os,state,since_or_cleared");
            for h in &s.affected {
                let list = if s.overdue.iter().any(|o| o.id == h.id) {
                    "overdue"
                } else {
                    "affected"
                };
                println!(
                    "{list},{},{},{},{},{}",
                    h.id,
                    super::csv_field(&h.hostname),
                    super::csv_field(&h.os),
                    h.state,
                    h.since
                );
            }
            for h in &s.cleared {
                println!(
                    "cleared,{},{},{},cleared,{}",
                    h.id,
                    super::csv_field(&h.hostname),
                    super::csv_field(&h.os),
                    h.cleared_at
                );
            }
            for h in &s.unknown {
                println!(
                    "unknown,{},{},{},{},",
                    h.id,
                    super::csv_field(&h.hostname),
                    super::csv_field(&h.os),
                    serde_json::to_value(h.state)?.as_str().unwrap_or_default()
                );
            }
        }
        super::Format::Table => {
            let c = &s.campaign;
            println!(
                "campaign {} (policy {}): issued {}, identify by {}, remove by {} — phase: {}",
                c.name,
                c.policy,
                c.issued_date,
                c.identify_by_date,
                c.remove_by_date,
                serde_json::to_value(s.phase)?.as_str().unwrap_or_default()
            );
            let n = &s.counts;
            println!(
                "{} host(s): {} affected ({} running, {} installed, {} remnant), {} overdue, {} cleared, {} unknown",
                n.hosts,
                n.affected,
                n.running,
                n.installed,
                n.remnant,
                n.overdue,
                n.cleared,
                n.unknown
            );
            let mut t = super::table();
            t.set_header(["list", "hostname", "state", "products", "since / cleared"]);
            for h in &s.affected {
                let overdue = s.overdue.iter().any(|o| o.id == h.id);
                t.add_row([
                    if overdue { "OVERDUE" } else { "affected" }.to_string(),
                    h.hostname.clone(),
                    h.state.clone(),
                    h.products
                        .iter()
                        .map(|p| format!("{} ({})", p.product_id, p.state))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    h.since.clone(),
                ]);
            }
            for h in &s.cleared {
                t.add_row([
                    "cleared".to_string(),
                    h.hostname.clone(),
                    "cleared".to_string(),
                    String::new(),
                    h.cleared_at.clone(),
                ]);
            }
            for h in &s.unknown {
                t.add_row([
                    "unknown".to_string(),
                    h.hostname.clone(),
                    serde_json::to_value(h.state)?
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    String::new(),
                    String::new(),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}
