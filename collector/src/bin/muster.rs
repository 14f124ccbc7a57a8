//! `muster`: the operator's command line. Reads the fleet from a collector
//! over mutual TLS with an operator certificate.

#[path = "muster/campaign_cmd.rs"]
mod campaign_cmd;
#[path = "muster/catalog_cmd.rs"]
mod catalog_cmd;
#[path = "muster/fleet_cmd.rs"]
mod fleet_cmd;
#[path = "muster/siem_cmd.rs"]
mod siem_cmd;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use muster_collector::api::views::{host_detail_json, host_json, summary_json};
use muster_proto::channel::connect;
use muster_proto::v1::{self, operator_client::OperatorClient};
use serde::Deserialize;
use std::path::PathBuf;

const ENV_HELP: &str = "Connection settings, first found wins: the flags; the environment \
(MUSTER_COLLECTOR, MUSTER_IDENTITY); a profile file (--profile or MUSTER_PROFILE, else \
~/.config/muster/profile.toml) holding:\n  collector = \"https://muster.example.org:8443\"\n  identity = \"/home/me/.muster/operator\"\n\
The identity folder holds cert.pem, key.pem and ca.pem (the collector's DIR/operator).\n\n\
Example:\n  muster --collector https://localhost:8443 --identity /var/lib/muster/operator hosts --format json";

#[derive(Parser)]
#[command(name = "muster", version, about = "Query a Muster collector: the fleet, one host, the summary", after_help = ENV_HELP)]
struct Cli {
    /// The collector, https://NAME:PORT
    #[arg(long, env = "MUSTER_COLLECTOR", global = true)]
    collector: Option<String>,
    /// Folder with the operator's cert.pem, key.pem and ca.pem
    #[arg(long, env = "MUSTER_IDENTITY", global = true)]
    identity: Option<PathBuf>,
    /// Profile file with `collector` and `identity`
    #[arg(long, env = "MUSTER_PROFILE", global = true)]
    profile: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum Cmd {
    /// List hosts with their OS, last check-in and detections; filters combine
    #[command(
        after_help = "Example:\n  muster hosts --format csv > hosts.csv\n  muster hosts --vendor kaspersky --state remnant\n  muster hosts --violates bod-17-01 --os windows --format json\n  muster hosts --stale --name web"
    )]
    #[command(args_conflicts_with_subcommands = true)]
    Hosts {
        /// table for people; json or csv for machines
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        filter: HostFilterArgs,
        #[command(subcommand)]
        action: Option<HostsCmd>,
    },
    /// Show one host: facts, inventory sections, detections with evidence
    #[command(
        after_help = "Example:\n  muster host 0b6c3f0e-8f1e-4c4e-9d0a-3f0c2b1a7e55 --format json"
    )]
    Host {
        /// The host id (from `muster hosts`)
        id: String,
        /// table or json
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Check and browse the product catalog (local: no collector needed)
    Catalog {
        #[command(subcommand)]
        cmd: catalog_cmd::CatalogCmd,
    },
    /// Import a snapshot of an air-gapped host (written by `muster-agent collect`)
    #[command(
        after_help = "Example:\n  muster-agent collect --root /mnt/disk --out ws042.json   (on the offline side)\n  muster import ws042.json"
    )]
    Import {
        /// The snapshot file
        file: PathBuf,
    },
    /// Replace the asset list (a CMDB export as CSV) used by `muster coverage`
    Assets {
        #[command(subcommand)]
        cmd: AssetsCmd,
    },
    /// Assets without an agent, agents not in the asset list, stale hosts
    #[command(after_help = "Example:\n  muster coverage --format json")]
    Coverage {
        /// table for people; json or csv for machines
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Ban campaigns (BOD 17-01 and the like): start, status, report
    Campaign {
        #[command(subcommand)]
        cmd: campaign_cmd::CampaignCmd,
    },
    /// The SIEM exporters: their state, and a test event
    Siem {
        #[command(subcommand)]
        cmd: siem_cmd::SiemCmd,
    },
    /// The fleet at a glance: hosts, reporting, stale, products, banned
    #[command(after_help = "Example:\n  muster summary --format json")]
    Summary {
        /// table or json
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum HostsCmd {
    /// Revoke a host: its reports are refused from now on; its state and history stay
    #[command(after_help = "Example:\n  muster hosts revoke 0b6c3f0e-8f1e-4c4e-9d0a-3f0c2b1a7e55")]
    Revoke {
        /// The host id (from `muster hosts`)
        id: String,
    },
}

#[derive(Subcommand)]
enum AssetsCmd {
    /// Read a CSV with a header row; all or nothing: any problem and nothing changes
    #[command(
        after_help = "Example:\n  muster assets import cmdb.csv --hostname-column \"Computer Name\" --owner-column Owner"
    )]
    Import {
        /// The CSV file (`,` or `;` separated, UTF-8)
        file: PathBuf,
        #[command(flatten)]
        columns: fleet_cmd::ColumnArgs,
    },
}

/// Which hosts `muster hosts` lists.
#[derive(clap::Args)]
struct HostFilterArgs {
    /// Hosts where this product (catalog id) is found
    #[arg(long, value_name = "ID")]
    product: Option<String>,
    /// Hosts with a product of this vendor (any case)
    #[arg(long, value_name = "V")]
    vendor: Option<String>,
    /// Hosts with a product of this category (antivirus, edr, hids, ...)
    #[arg(long, value_name = "C")]
    category: Option<String>,
    /// Only detections in this state: running, installed or remnant
    #[arg(long, value_name = "S")]
    state: Option<String>,
    /// Text in the OS name or version (any case)
    #[arg(long)]
    os: Option<String>,
    /// Hosts failing this policy (banned product present, or a required one missing)
    #[arg(long, value_name = "POLICY")]
    violates: Option<String>,
    /// Only hosts that stopped reporting (see stale_after_intervals)
    #[arg(long)]
    stale: bool,
    /// Text in the hostname (any case)
    #[arg(long, value_name = "TEXT")]
    name: Option<String>,
    /// Also hosts replaced by a newer agent on the same machine (a
    /// re-imaged host's old agent); hidden otherwise
    #[arg(long)]
    include_superseded: bool,
}

impl HostFilterArgs {
    fn request(self) -> v1::ListHostsRequest {
        v1::ListHostsRequest {
            product: self.product.unwrap_or_default(),
            vendor: self.vendor.unwrap_or_default(),
            category: self.category.unwrap_or_default(),
            state: self.state.unwrap_or_default(),
            os: self.os.unwrap_or_default(),
            violates: self.violates.unwrap_or_default(),
            stale: self.stale,
            name: self.name.unwrap_or_default(),
            include_superseded: self.include_superseded,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Profile {
    collector: Option<String>,
    identity: Option<PathBuf>,
}

fn load_profile(path: Option<PathBuf>) -> Result<Profile> {
    let (path, explicit) = match path {
        Some(p) => (p, true),
        None => match std::env::var_os("HOME") {
            Some(h) => (PathBuf::from(h).join(".config/muster/profile.toml"), false),
            None => return Ok(Profile::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => toml::from_str(&t).with_context(|| format!("invalid profile {}", path.display())),
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => Ok(Profile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read the profile {}", path.display())),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    muster_collector::run_command(false, || run(cli))
}

async fn client(cli: &Cli) -> Result<OperatorClient<tonic::transport::Channel>> {
    let profile = load_profile(cli.profile.clone())?;
    let url = cli.collector.clone().or(profile.collector).context(
        "no collector given: use --collector https://NAME:PORT, MUSTER_COLLECTOR or a profile (see muster --help)",
    )?;
    let id = cli.identity.clone().or(profile.identity).context(
        "no operator identity given: use --identity DIR, MUSTER_IDENTITY or a profile (see muster --help)",
    )?;
    let read = |f: &str| {
        let p = id.join(f);
        std::fs::read_to_string(&p).with_context(|| {
            format!(
                "cannot read {} (the identity folder needs cert.pem, key.pem, ca.pem)",
                p.display()
            )
        })
    };
    let channel = connect(
        &url,
        &read("ca.pem")?,
        Some((read("cert.pem")?, read("key.pem")?)),
    )
    .await?;
    // A campaign's status over a large fleet is a large document (tens of
    // MB for 100 000 hosts); tonic's default limit is 4 MB.
    Ok(OperatorClient::new(channel).max_decoding_message_size(1 << 30))
}

fn refused(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the collector refused: {} ({:?})", s.message(), s.code())
}

fn time(t: i64) -> String {
    if t <= 0 {
        return "never".into();
    }
    muster_collector::rfc3339(t)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn table() -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t
}

fn detections_cell(h: &v1::HostSummary) -> String {
    h.detections
        .iter()
        .map(|d| format!("{} ({})", d.product_id, d.state))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn run(cli: Cli) -> Result<()> {
    if let Cmd::Catalog { cmd } = cli.cmd {
        // The catalog is local: no collector needed.
        return catalog_cmd::run(cmd);
    }
    let mut c = client(&cli).await?;
    match cli.cmd {
        Cmd::Catalog { .. } => unreachable!("handled above"),
        Cmd::Import { file } => fleet_cmd::import(&mut c, &file).await?,
        Cmd::Assets {
            cmd: AssetsCmd::Import { file, columns },
        } => fleet_cmd::import_assets(&mut c, &file, columns).await?,
        Cmd::Coverage { format } => fleet_cmd::coverage(&mut c, format).await?,
        Cmd::Campaign { cmd } => campaign_cmd::run(&mut c, cmd).await?,
        Cmd::Siem { cmd } => siem_cmd::run(&mut c, cmd).await?,
        Cmd::Hosts {
            action: Some(HostsCmd::Revoke { id }),
            ..
        } => {
            let r = c
                .revoke_host(v1::RevokeHostRequest { host_id: id })
                .await
                .map_err(refused)?
                .into_inner();
            println!(
                "host {} ({}) revoked: its reports are refused from now on",
                r.host_id, r.hostname
            );
        }
        Cmd::Hosts {
            format,
            filter,
            action: None,
        } => {
            let mut stream = c
                .list_hosts(filter.request())
                .await
                .map_err(refused)?
                .into_inner();
            let mut t = table();
            t.set_header([
                "id",
                "hostname",
                "os",
                "last check-in",
                "status",
                "detections",
            ]);
            let mut first = true;
            match format {
                Format::Json => print!("{{\"hosts\":["),
                Format::Csv => println!("id,hostname,os,last_checkin,stale,detections,banned"),
                Format::Table => {}
            }
            let mut n = 0;
            // Rows are printed as they arrive, so a large fleet streams.
            while let Some(h) = stream.message().await.map_err(refused)? {
                n += 1;
                match format {
                    Format::Json => {
                        if !first {
                            print!(",");
                        }
                        first = false;
                        print!("\n{}", host_json(&h));
                    }
                    Format::Csv => println!(
                        "{},{},{},{},{},{},{}",
                        csv_field(&h.id),
                        csv_field(&h.hostname),
                        csv_field(&h.os),
                        csv_field(&time(h.last_checkin)),
                        h.stale,
                        csv_field(
                            &h.detections
                                .iter()
                                .map(|d| format!("{}:{}", d.product_id, d.state))
                                .collect::<Vec<_>>()
                                .join(";")
                        ),
                        csv_field(&h.banned.join(";")),
                    ),
                    Format::Table => {
                        let status = if h.revoked_at != 0 {
                            "REVOKED"
                        } else if !h.superseded_by.is_empty() {
                            "SUPERSEDED"
                        } else if h.last_checkin == 0 {
                            "never reported"
                        } else if h.stale {
                            "STALE"
                        } else {
                            "ok"
                        };
                        let mut det = detections_cell(&h);
                        if !h.banned.is_empty() {
                            det.push_str("\nBANNED: ");
                            det.push_str(&h.banned.join(", "));
                        }
                        t.add_row([
                            h.id.clone(),
                            h.hostname.clone(),
                            h.os.clone(),
                            time(h.last_checkin),
                            status.to_string(),
                            det,
                        ]);
                    }
                }
            }
            match format {
                Format::Json => println!("\n]}}"),
                Format::Csv => {}
                Format::Table => println!("{t}\n{n} host(s)"),
            }
        }
        Cmd::Host { id, format } => {
            let d = c
                .get_host(v1::GetHostRequest { id })
                .await
                .map_err(refused)?
                .into_inner();
            if format != Format::Table {
                println!("{}", serde_json::to_string_pretty(&host_detail_json(&d))?);
                return Ok(());
            }
            let h = d.host.clone().unwrap_or_default();
            let f = d.facts.clone().unwrap_or_default();
            println!("host {} — {}", h.id, h.hostname);
            println!(
                "  os:            {} {} ({} {})",
                f.os_name, f.os_version, f.kernel, f.arch
            );
            println!("  addresses:     {}", f.ips.join(", "));
            if !f.hardware_id.is_empty() {
                println!("  hardware id:   {}", f.hardware_id);
            }
            println!(
                "  agent:         {} (certificate {})",
                f.agent_version, d.certificate_serial
            );
            println!("  enrolled:      {}", time(h.enrolled_at));
            if h.revoked_at != 0 {
                println!(
                    "  REVOKED:       {} (its reports are refused)",
                    time(h.revoked_at)
                );
            }
            if !h.superseded_by.is_empty() {
                println!(
                    "  SUPERSEDED:    {} by host {} (a newer agent on this machine; its reports are refused)",
                    time(h.superseded_at),
                    h.superseded_by
                );
            }
            println!(
                "  last check-in: {}{} (report #{})",
                time(h.last_checkin),
                if h.stale { " — STALE" } else { "" },
                h.sequence
            );
            let mut t = table();
            t.set_header(["inventory section", "items", "updated", "digest"]);
            for s in &d.sections {
                t.add_row([
                    s.name.clone(),
                    s.items.to_string(),
                    time(s.updated_at),
                    s.digest.chars().take(16).collect(),
                ]);
            }
            println!("{t}");
            if d.detections.is_empty() {
                println!("no security product of the catalog found");
            } else {
                print_detections(&d.detections);
            }
            if !d.timeline.is_empty() {
                print_timeline(&d.timeline);
            }
        }
        Cmd::Summary { format } => {
            let s = c
                .summary(v1::SummaryRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            if format != Format::Table {
                println!("{}", serde_json::to_string_pretty(&summary_json(&s))?);
                return Ok(());
            }
            println!(
                "hosts: {}   reporting: {}   stale: {}   never reported: {}",
                s.hosts, s.reporting, s.stale, s.never_reported
            );
            if s.imported > 0 {
                println!("imported from snapshots: {}", s.imported);
            }
            println!("hosts with a banned product: {}", s.hosts_with_banned);
            if s.pending_reevaluation > 0 {
                println!(
                    "catalog: {} (re-evaluating stored inventories: {} host(s) to go)",
                    s.catalog_version, s.pending_reevaluation
                );
            } else {
                println!("catalog: {}", s.catalog_version);
            }
            if !s.products.is_empty() {
                let mut t = table();
                t.set_header(["product", "vendor", "category", "hosts", "banned"]);
                for p in &s.products {
                    t.add_row([
                        format!("{}\n{}", p.product, p.product_id),
                        p.vendor.clone(),
                        p.category.clone(),
                        p.hosts.to_string(),
                        if p.banned {
                            "BANNED".into()
                        } else {
                            String::new()
                        },
                    ]);
                }
                println!("{t}");
            }
        }
    }
    Ok(())
}

/// The detections of one host, removed ones marked as such.
fn print_detections(detections: &[v1::DetectionRecord]) {
    let mut t = table();
    t.set_header([
        "product",
        "state",
        "version",
        "first seen",
        "banned by",
        "evidence",
    ]);
    for r in detections {
        let x = r.detection.clone().unwrap_or_default();
        let ev: Vec<String> = x
            .evidence
            .iter()
            .map(|e| format!("{} {} ({}) @ {}", e.kind, e.matched, e.state, e.location))
            .collect();
        let state = if r.removed_at > 0 {
            format!("removed {}\n(was {})", time(r.removed_at), x.state)
        } else {
            x.state
        };
        t.add_row([
            format!("{}\n{}", x.product, x.product_id),
            state,
            x.version,
            time(r.first_seen),
            r.banned_by.join(", "),
            ev.join("\n"),
        ]);
    }
    println!("{t}");
}

/// A host's timeline, oldest first.
fn print_timeline(events: &[v1::HostEvent]) {
    let mut t = table();
    t.set_header(["when", "event", "product", "state", "version"]);
    for e in events {
        let what = match e.kind.as_str() {
            "state_changed" => format!("{} → {}", e.previous_state, e.state),
            "removed" => format!("gone (was {})", e.state),
            "superseded" => format!("by host {}", e.related_host),
            "supersedes" => format!("host {}", e.related_host),
            "reappeared" => format!("after host {}", e.related_host),
            _ => e.state.clone(),
        };
        let product = if e.product_id.is_empty() {
            String::new()
        } else {
            format!("{}\n{}", e.product, e.product_id)
        };
        t.add_row([
            time(e.at),
            e.kind.replace('_', " "),
            product,
            what,
            e.version.clone(),
        ]);
    }
    println!("timeline:\n{t}");
}
