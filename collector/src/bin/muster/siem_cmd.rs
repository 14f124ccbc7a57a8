//! `muster siem`: the SIEM exporters' state, and a test event.

use anyhow::{Context, Result};
use clap::Subcommand;
use muster_proto::v1::{self, operator_client::OperatorClient};
use tonic::transport::Channel;

#[derive(Subcommand)]
pub enum SiemCmd {
    /// Each exporter: where it sends, events waiting (lag), last delivery, last error
    #[command(
        after_help = "Example:\n  muster siem status\n  muster siem status --format json | jq '.exporters[] | select(.state != \"ok\")'"
    )]
    Status {
        /// table for people; json for machines
        #[arg(long, value_enum, default_value = "table")]
        format: super::Format,
    },
    /// Send a test event (kind "test") through one exporter now, outside the outbox
    #[command(after_help = "Example:\n  muster siem test soc")]
    Test {
        /// The exporter's name, from the collector's config
        name: String,
    },
}

pub async fn run(c: &mut OperatorClient<Channel>, cmd: SiemCmd) -> Result<()> {
    match cmd {
        SiemCmd::Status { format } => {
            let doc = c
                .get_siem_status(v1::SiemStatusRequest {})
                .await
                .map_err(super::refused)?
                .into_inner();
            if format != super::Format::Table {
                println!("{}", doc.json);
                return Ok(());
            }
            let v: serde_json::Value =
                serde_json::from_str(&doc.json).context("the collector sent invalid JSON")?;
            let exporters = v["exporters"].as_array().cloned().unwrap_or_default();
            if exporters.is_empty() {
                println!("no exporter is configured ([[export]] in the collector's config)");
                return Ok(());
            }
            let mut t = super::table();
            t.set_header([
                "exporter",
                "kind",
                "address",
                "format",
                "state",
                "waiting",
                "oldest",
                "delivered",
                "dropped",
                "last sent",
                "last error",
            ]);
            let s = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".into(),
                other => other.to_string(),
            };
            for e in &exporters {
                let age = e["lag_seconds"].as_i64().unwrap_or(0);
                t.add_row([
                    s(&e["name"]),
                    s(&e["kind"]),
                    s(&e["address"]),
                    s(&e["format"]),
                    s(&e["state"]),
                    s(&e["lag_events"]),
                    if age > 0 {
                        format!("{age}s")
                    } else {
                        "-".into()
                    },
                    s(&e["delivered"]),
                    s(&e["dropped"]),
                    s(&e["last_sent_at"]),
                    s(&e["last_error"]),
                ]);
            }
            println!("{t}");
            println!("events wait at most {} for an exporter", s(&v["retention"]));
        }
        SiemCmd::Test { name } => {
            let r = c
                .test_exporter(v1::TestExporterRequest { name: name.clone() })
                .await
                .map_err(super::refused)?
                .into_inner();
            println!("test event {} sent through exporter {name}", r.event_id);
        }
    }
    Ok(())
}
