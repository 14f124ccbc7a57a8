//! The collector's data directory and its config file.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where everything the collector keeps lives, under one folder.
#[derive(Debug, Clone)]
pub struct DataDir {
    /// The folder.
    pub root: PathBuf,
}

impl Config {
    /// The fleet database of the collector in `dir`.
    pub fn database(&self, dir: &DataDir) -> crate::store::Database {
        match &self.database {
            Some(url) => crate::store::Database::parse(url),
            None => crate::store::Database::Sqlite(dir.database()),
        }
    }
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }
    /// The CA certificate handed to agents (`--ca-cert`).
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    /// The CA private key.
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca-key.pem")
    }
    /// The TLS server certificate.
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.pem")
    }
    /// The TLS server key.
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server-key.pem")
    }
    /// The first operator's identity folder (cert.pem, key.pem, ca.pem).
    pub fn operator_dir(&self) -> PathBuf {
        self.root.join("operator")
    }
    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.root.join("collector.toml")
    }
    /// The SQLite database (when the config names no other).
    pub fn database(&self) -> PathBuf {
        self.root.join("muster.db")
    }
    /// The keys of the TLS session tickets ([`crate::tickets`]).
    pub fn ticket_keys(&self) -> PathBuf {
        self.root.join("ticket-keys")
    }
}

/// Parses `90s`, `30m`, `24h`, `7d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 30m, 24h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// The config file's contents. Unknown keys are an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: String,
    /// How often agents are asked to check in.
    pub checkin_interval: String,
    /// After how many missed intervals a host is stale.
    pub stale_after_intervals: u32,
    /// Largest check-in message accepted, in bytes.
    pub max_checkin_bytes: usize,
    /// Most items accepted in one inventory section.
    pub max_section_items: usize,
    /// Validity of agent certificates, in days.
    pub agent_certificate_days: i64,
    /// Most TLS connections served at once.
    pub max_connections: usize,
    /// Most check-ins admitted per second (0: no limit); those over it are
    /// told when to come back.
    pub max_checkins_per_second: u32,
    /// `human` or `json`.
    pub log_format: String,
    /// A folder of operator catalog files (vendor files, policies) used with
    /// the built-in catalog; a product there replaces the built-in one with
    /// the same id.
    pub catalog_dir: Option<PathBuf>,
    /// The fleet database: unset for the SQLite file `muster.db` in the
    /// data folder, or a `postgres://` URL (several collectors may share
    /// one PostgreSQL database).
    pub database: Option<String>,
    /// Campaigns started when the collector starts (those that exist
    /// already are left as they are).
    pub campaign: Vec<CampaignConfig>,
    /// SIEM exporters.
    pub export: Vec<ExportConfig>,
    /// How long an event waits in the outbox for an exporter that cannot
    /// deliver it; older ones are dropped, counted and logged.
    pub siem_retention: String,
    /// How long the log of acknowledged check-ins is kept; older entries
    /// are deleted by the sweep.
    pub checkin_history: String,
    /// Address of the Prometheus metrics endpoint (plain HTTP, `GET
    /// /metrics`); unset: none.
    pub metrics_listen: Option<String>,
    /// Address of the HTTP API (HTTPS, `/api/v1/`): unset for
    /// [`DEFAULT_HTTP_LISTEN`], `"off"` for none.
    pub http_listen: Option<String>,
}

/// Where the HTTP API listens when the config names no address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8444";

/// Where the HTTP API listens, if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpListen {
    /// Not served (`http_listen = "off"`).
    Off,
    /// [`DEFAULT_HTTP_LISTEN`], nobody asked for it: when the port is
    /// taken (another collector on this machine) the collector serves
    /// without the API and says so.
    Default(String),
    /// An address the config, the environment or `--http-listen` gave: it
    /// must be served.
    Given(String),
}

/// An `[[export]]` of the config file: one SIEM exporter. See
/// `docs/siem.md`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Unique name; names the exporter's cursor.
    pub name: String,
    /// `syslog`, `http` or `file`.
    pub kind: String,
    /// `tcp://`, `tls://` or `udp://HOST:PORT` (syslog), an `http(s)://`
    /// URL, or a file path.
    pub address: String,
    /// `cef`, `leef`, `ecs` or `ocsf` (default: `cef` for syslog, `ecs`
    /// otherwise).
    pub format: Option<String>,
    /// CA file trusted for `tls://` and `https://` (default: the system's).
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for receivers that ask for one.
    pub client_cert: Option<PathBuf>,
    /// Its key (PEM).
    pub client_key: Option<PathBuf>,
    /// Name the server certificate must carry (default: the address's host).
    pub server_name: Option<String>,
    /// Syslog facility by name (`audit`, `local0`...) or number; default
    /// `audit` (13).
    pub facility: Option<String>,
    /// Syslog APP-NAME; default `muster`.
    pub app_name: Option<String>,
    /// HTTP: `hec` (Splunk HTTP Event Collector) or `ndjson` (default).
    pub api: Option<String>,
    /// HTTP: the HEC token, or a bearer token for the webhook.
    pub token: Option<String>,
    /// HTTP: a file holding the token (instead of `token`).
    pub token_file: Option<PathBuf>,
    /// Most events per send (default 100).
    pub batch: Option<usize>,
    /// File: rotate past this size in bytes (default 100 MiB).
    pub max_bytes: Option<u64>,
    /// File: rotated files kept (default 5).
    pub keep: Option<u32>,
}

/// A `[[campaign]]` of the config file: what `muster campaign start` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    /// The campaign's name.
    pub name: String,
    /// The policy naming the banned products.
    pub policy: String,
    /// `YYYY-MM-DD`; default: the policy's date, else the day it starts.
    #[serde(default)]
    pub issued: String,
    /// `YYYY-MM-DD`; default: the policy's, else issued + 30 days.
    #[serde(default)]
    pub identify_by: String,
    /// `YYYY-MM-DD`; default: the policy's, else issued + 90 days.
    #[serde(default)]
    pub remove_by: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:8443".into(),
            checkin_interval: "1h".into(),
            stale_after_intervals: 3,
            max_checkin_bytes: 16 * 1024 * 1024,
            max_section_items: 100_000,
            agent_certificate_days: 30,
            max_connections: 10_000,
            max_checkins_per_second: 0,
            log_format: "human".into(),
            catalog_dir: None,
            database: None,
            campaign: Vec::new(),
            export: Vec::new(),
            siem_retention: "7d".into(),
            checkin_history: "90d".into(),
            metrics_listen: None,
            http_listen: None,
        }
    }
}

/// The file `init` writes: every key with its default, commented out.
pub const DEFAULT_CONFIG: &str = r#"# Muster collector configuration.
# Every key is optional; the values shown are the defaults. Unknown keys are
# an error. Environment variables override the file: MUSTER_LISTEN,
# MUSTER_CHECKIN_INTERVAL, MUSTER_LOG_FORMAT. Check with:
#   muster-collector config check --data-dir DIR

# Address the gRPC server (agents, operators, health) listens on.
# listen = "0.0.0.0:8443"

# How often agents check in (s, m, h, d). Agents add up to 10% jitter.
# checkin_interval = "1h"

# A host that has missed this many check-in intervals is stale.
# stale_after_intervals = 3

# Largest check-in accepted, in bytes, and most items in one section.
# max_checkin_bytes = 16777216
# max_section_items = 100000

# Validity of the certificates issued to agents, in days. Agents renew
# theirs (a new key each time) when two thirds of it have passed.
# agent_certificate_days = 30

# Most TLS connections served at once.
# max_connections = 10000

# Most check-ins admitted per second, with a second's worth of burst; 0 is
# no limit. Agents over it are answered RESOURCE_EXHAUSTED with a
# `retry-after` in seconds, the waits spread one slot apart, so a fleet
# returning together after an outage comes back in an even stream.
# max_checkins_per_second = 0

# The fleet database: the SQLite file muster.db in this folder, or a
# PostgreSQL URL shared by several collectors (MUSTER_DATABASE overrides).
# database = "postgres://muster@db.example.org/muster"

# Campaigns to start with the collector (existing ones are left alone); the
# same as `muster campaign start`. Dates default to the policy's, else the
# start day, +30 days, +90 days.
# [[campaign]]
# name = "drop-acme"
# policy = "acme-ban"
# identify_by = "2026-12-15"
# remove_by = "2027-01-31"

# SIEM exporters, any number; each has its own cursor in the database and
# gets every event at least once. kind: syslog (address tcp://, tls:// or
# udp://HOST:PORT; format cef, leef, ecs or ocsf), http (address an http://
# or https:// URL; api "hec" with a token, or "ndjson"), or file (a path;
# JSON lines rotated at max_bytes). See docs/siem.md for every key.
# [[export]]
# name = "soc"
# kind = "syslog"
# address = "tls://siem.example.org:6514"
# format = "cef"
# ca = "/etc/muster/siem-ca.pem"

# How long events wait for an exporter that cannot deliver them; older
# ones are dropped, counted and logged.
# siem_retention = "7d"

# How long the log of every acknowledged check-in (host, sequence, time) is
# kept. Older entries are deleted; each host keeps its last check-in, and
# every change of a detection stays in the events.
# checkin_history = "90d"

# Prometheus metrics over plain HTTP (GET /metrics); off unless set.
# metrics_listen = "127.0.0.1:9464"

# The read-only HTTP API (HTTPS with the server certificate, /api/v1/; see
# docs/api.md), "off" for none (MUSTER_HTTP_LISTEN overrides). Callers
# authenticate with an operator token (muster-collector operator-token
# create) or an operator client certificate.
# http_listen = "127.0.0.1:8444"

# Log format: "human" or "json".
# log_format = "human"

# A folder of your own catalog files (TOML vendor files and policies), used
# with the built-in catalog; a product there replaces the built-in one with
# the same id. Check it with: muster catalog check DIR
# catalog_dir = "/etc/muster/catalog"
"#;

impl Config {
    /// Reads the config file (missing is fine: defaults), applies
    /// environment overrides and validates; every problem is reported at once.
    pub fn load(path: &Path) -> Result<Config> {
        let mut cfg: Config = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        cfg.apply_env(|k| std::env::var(k).ok());
        let problems = cfg.problems();
        if !problems.is_empty() {
            anyhow::bail!(
                "invalid config {}:\n  {}",
                path.display(),
                problems.join("\n  ")
            );
        }
        Ok(cfg)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("MUSTER_DATABASE") {
            self.database = Some(v);
        }
        if let Some(v) = get("MUSTER_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = get("MUSTER_CHECKIN_INTERVAL") {
            self.checkin_interval = v;
        }
        if let Some(v) = get("MUSTER_LOG_FORMAT") {
            self.log_format = v;
        }
        if let Some(v) = get("MUSTER_HTTP_LISTEN") {
            self.http_listen = Some(v);
        }
    }

    /// Where the HTTP API listens (validated by [`Config::load`]).
    pub fn http_listen(&self) -> HttpListen {
        match self.http_listen.as_deref().map(str::trim) {
            None => HttpListen::Default(DEFAULT_HTTP_LISTEN.to_string()),
            Some("off") => HttpListen::Off,
            Some(a) => HttpListen::Given(a.to_string()),
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!("listen = {:?} is not an ADDRESS:PORT", self.listen));
        }
        match parse_duration(&self.checkin_interval) {
            Ok(d) if d.as_secs() < 10 => p.push(format!(
                "checkin_interval = {:?} is shorter than 10s",
                self.checkin_interval
            )),
            Ok(_) => {}
            Err(e) => p.push(format!("checkin_interval: {e}")),
        }
        if self.stale_after_intervals == 0 {
            p.push("stale_after_intervals must be at least 1".into());
        }
        if self.max_checkin_bytes < 1024 {
            p.push("max_checkin_bytes must be at least 1024".into());
        }
        if self.max_section_items == 0 {
            p.push("max_section_items must be at least 1".into());
        }
        if !(1..=825).contains(&self.agent_certificate_days) {
            p.push("agent_certificate_days must be between 1 and 825".into());
        }
        if self.max_connections == 0 {
            p.push("max_connections must be at least 1".into());
        }
        if let Some(d) = &self.catalog_dir
            && let Err(e) = muster_catalog::Catalog::with_dir(d)
        {
            p.push(format!("catalog_dir {}: {e}", d.display()));
        }
        let mut names = std::collections::HashSet::new();
        for e in &self.export {
            if !names.insert(e.name.as_str()) {
                p.push(format!("export {:?} is defined twice", e.name));
            }
            if let Err(e) = crate::siem::export::Spec::from_config(e) {
                p.push(e);
            }
        }
        for (key, value, shortest) in [
            ("siem_retention", &self.siem_retention, "1h"),
            ("checkin_history", &self.checkin_history, "1d"),
        ] {
            let shortest_s = parse_duration(shortest).expect("a valid limit").as_secs();
            match parse_duration(value) {
                Ok(d) if d.as_secs() < shortest_s => {
                    p.push(format!("{key} = {value:?} is shorter than {shortest}"))
                }
                Ok(d) if d.as_secs() > 3650 * 86400 => {
                    p.push(format!("{key} = {value:?} is longer than 3650d"))
                }
                Ok(_) => {}
                Err(e) => p.push(format!("{key}: {e}")),
            }
        }
        if let Some(a) = &self.metrics_listen
            && a.parse::<std::net::SocketAddr>().is_err()
        {
            p.push(format!("metrics_listen = {a:?} is not an ADDRESS:PORT"));
        }
        if let HttpListen::Given(a) = self.http_listen()
            && a.parse::<std::net::SocketAddr>().is_err()
        {
            p.push(format!(
                "http_listen = {a:?} is not an ADDRESS:PORT (or \"off\")"
            ));
        }
        if !matches!(self.log_format.as_str(), "human" | "json") {
            p.push(format!(
                "log_format = {:?}: use \"human\" or \"json\"",
                self.log_format
            ));
        }
        p
    }

    /// The catalog: built in, plus `catalog_dir` when set.
    pub fn catalog(&self) -> Result<muster_catalog::Catalog> {
        match &self.catalog_dir {
            Some(d) => Ok(muster_catalog::Catalog::with_dir(d)?),
            None => Ok(muster_catalog::Catalog::builtin()),
        }
    }

    /// The exporters (validated by [`Config::load`]).
    pub fn exporters(&self) -> Result<Vec<crate::siem::export::Spec>, String> {
        self.export
            .iter()
            .map(crate::siem::export::Spec::from_config)
            .collect()
    }

    /// How long events wait for an exporter (validated by [`Config::load`]).
    pub fn siem_retention(&self) -> Duration {
        parse_duration(&self.siem_retention).unwrap_or(Duration::from_secs(7 * 86400))
    }

    /// How long the check-in log is kept (validated by [`Config::load`]).
    pub fn checkin_history(&self) -> Duration {
        parse_duration(&self.checkin_history).unwrap_or(Duration::from_secs(90 * 86400))
    }

    /// The check-in interval (validated by [`Config::load`]).
    pub fn interval(&self) -> Duration {
        parse_duration(&self.checkin_interval).unwrap_or(Duration::from_secs(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("1w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn the_default_file_parses_and_every_problem_is_reported() {
        let cfg: Config = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert!(cfg.problems().is_empty());
        let bad = Config {
            listen: "nowhere".into(),
            log_format: "xml".into(),
            stale_after_intervals: 0,
            ..Config::default()
        };
        let p = bad.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }

    #[test]
    fn exporters_are_checked_with_the_rest() {
        let cfg: Config = toml::from_str(
            r#"
            siem_retention = "5m"
            checkin_history = "12h"
            metrics_listen = "nowhere"
            [[export]]
            name = "soc"
            kind = "syslog"
            address = "tcp://siem:514"
            [[export]]
            name = "soc"
            kind = "file"
            address = "/var/log/muster.jsonl"
            [[export]]
            name = "web"
            kind = "http"
            address = "ftp://x"
            "#,
        )
        .unwrap();
        let p = cfg.problems();
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.contains("checkin_history = \"12h\" is shorter than 1d"))
        );
        assert!(
            p.iter()
                .any(|m| m.contains("export \"soc\" is defined twice"))
        );
        assert!(p.iter().any(|m| m.contains("export \"web\": address")));
        assert!(p.iter().any(|m| m.contains("siem_retention")));
        assert!(p.iter().any(|m| m.contains("metrics_listen")));
        assert!(
            toml::from_str::<Config>(
                "[[export]]\nname = \"x\"\nkind = \"file\"\naddress = \"f\"\nbogus = 1"
            )
            .is_err()
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut cfg = Config::default();
        cfg.apply_env(|k| (k == "MUSTER_LISTEN").then(|| "127.0.0.1:9".to_string()));
        assert_eq!(cfg.listen, "127.0.0.1:9");
        cfg.apply_env(|k| (k == "MUSTER_HTTP_LISTEN").then(|| "off".to_string()));
        assert_eq!(cfg.http_listen(), HttpListen::Off);
    }

    #[test]
    fn the_http_api_listens_by_default_and_can_be_turned_off() {
        let cfg = Config::default();
        assert_eq!(
            cfg.http_listen(),
            HttpListen::Default("127.0.0.1:8444".into())
        );
        let cfg: Config = toml::from_str("http_listen = \"0.0.0.0:443\"").unwrap();
        assert_eq!(cfg.http_listen(), HttpListen::Given("0.0.0.0:443".into()));
        assert!(cfg.problems().is_empty());
        let cfg: Config = toml::from_str("http_listen = \"off\"").unwrap();
        assert_eq!(cfg.http_listen(), HttpListen::Off);
        let cfg: Config = toml::from_str("http_listen = \"nowhere\"").unwrap();
        assert!(
            cfg.problems()[0].contains("http_listen"),
            "{:?}",
            cfg.problems()
        );
    }
}
