//! Payload formats for SIEM export: ArcSight CEF, IBM QRadar LEEF 2.0, Elastic
//! Common Schema (ECS 8.x) JSON and OCSF 1.3.0 JSON, plus RFC 5424 syslog
//! wrapping and RFC 5425/6587 octet-counting framing.
//!
//! Every renderer is pure: the same [`SiemEvent`] always gives the same bytes,
//! keys come in a fixed order, and absent values (empty strings, no product,
//! no verdict) are left out rather than sent empty. No output contains a raw
//! CR or LF, so every payload is one line.
//!
//! # CEF
//!
//! `CEF:0|Muster|Muster|<version>|<kind>|<message>|<severity 0-10>|<extension>`
//!
//! Header fields escape `\` as `\\` and `|` as `\|`; each CR or LF becomes a
//! space. Extension values escape `\` as `\\`, `=` as `\=`, LF as `\n` and CR
//! as `\r`; pipes are left alone. Pairs are separated by one space.
//!
//! | key | value |
//! |-----|-------|
//! | `rt` | event time, ms since the epoch |
//! | `externalId` | event id (the SIEM deduplicates on it) |
//! | `act` | event kind (`detected`, `removed`, ...) |
//! | `cat` | product category (`antivirus`, `edr`, ...) |
//! | `msg` | the message |
//! | `deviceExternalId` | agent id of the host |
//! | `dvchost` | host name |
//! | `dvc` | first IPv4 address of the host |
//! | `c6a1` (`hostIPv6`) | first IPv6 address of the host |
//! | `cn1` (`seq`) | outbox sequence number |
//! | `cs1` (`productId`) | catalog id of the product |
//! | `cs2` (`productName`) | product name |
//! | `cs3` (`productVendor`) | product vendor |
//! | `cs4` (`productVersion`) | product version |
//! | `cs5` (`state`) | product state now |
//! | `cs6` (`verdict`) | campaign verdict |
//! | `flexString1` (`campaign`) | campaign name |
//! | `MusterMusterPolicy` | the campaign's policy |
//! | `deviceCustomDate1` (`campaignDeadline`) | deadline, ms since the epoch |
//! | `cn2` (`overdue`) | 1 when the deadline passed, else 0 (only with a verdict) |
//! | `MusterMusterPreviousState` | state before a `state_changed` |
//! | `flexString2` (`evidence`) | `kind:value@location; ...`, at most 1000 chars |
//! | `MusterMusterObserver` | the collector that wrote the event |
//!
//! Labels (`cs1Label=productId`, ...) follow their field. Keys that have no
//! CEF dictionary entry use the `VendornameProductnameKey` form the CEF guide
//! prescribes for custom extensions.
//!
//! # LEEF
//!
//! `LEEF:2.0|Muster|Muster|<version>|<kind>|x09|<attributes>`
//!
//! Attributes are separated by a tab, declared as `x09` in the delimiter field
//! (the hex form, so the header stays printable). LEEF itself defines no
//! escaping, so Muster defines it: header fields are escaped as in CEF; in a
//! value `\` becomes `\\`, tab `\t`, LF `\n` and CR `\r`, so the only raw tab
//! in the attributes is the delimiter. `=` and `|` are not escaped: keys never
//! contain `=` and a value runs from the first `=` of its attribute to the next
//! tab.
//!
//! Attributes, in order: `devTime` (RFC 3339 UTC) with `devTimeFormat`
//! `yyyy-MM-dd'T'HH:mm:ssX`, `sev` (1-10), `cat` (product category), `src`
//! (first IPv4, else first IPv6), then the custom keys `externalId`, `seq`,
//! `msg`, `hostId`, `hostName`, `ips` (comma-separated), `osName`,
//! `osVersion`, `platform`, `arch`, `agentVersion`, `productId`,
//! `productVendor`, `productName`, `productVersion`, `state`,
//! `previousState`, `verdict`, `campaign`, `policy`, `deadline` (RFC 3339),
//! `overdue`, `evidence` (as in CEF) and `observer`.
//!
//! # ECS
//!
//! Nested ECS 8.x document: `@timestamp`, `message`, `ecs.version`, `event`,
//! `host`, `package` (with a product), `observer`, `agent`, `rule` (with a
//! verdict, `name` = campaign, `ruleset` = policy) and Muster's own fields
//! under `muster`. `event.kind` is `alert` when a campaign verdict is
//! `banned` or `missing_required`, or the kind is `campaign_missed` (the
//! events a policy wants acted on), else `event`. `event.category` is
//! `package` with a product, else `host`; `event.type` is `installation`
//! (detected), `deletion` (removed), `change` (state_changed) or `info`.
//! Muster stamps an event when it records it, so `event.created` equals
//! `@timestamp`. Only strings that parse as IP addresses go to `host.ip`.
//!
//! # OCSF
//!
//! Class Software Inventory Info (5020, Discovery) of OCSF 1.3.0; see
//! `docs/siem.md` for the choice and the activity mapping. Inventory kinds use
//! activity 2 (Collect); host lifecycle kinds (`enrolled`, `stale`,
//! `revoked`, `test`, ...) use 99 (Other) with the kind as `activity_name`,
//! and their required `package` is the Muster agent itself. Fields OCSF has
//! no place for go under `unmapped.muster`.
//!
//! # Syslog
//!
//! [`rfc5424`] wraps any payload in an RFC 5424 message with the structured
//! data element `muster@32473`, and [`octet_frame`] frames it for TCP/TLS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::rfc3339_checked as rfc3339;
use serde_json::{Value, json};

use super::event::{EvidenceRef, ProductRef, SiemEvent, Verdict};

/// Vendor name in every header.
pub const VENDOR: &str = "Muster";
/// Product name in every header.
pub const PRODUCT: &str = "Muster";
/// Product version in every header: the crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// OCSF schema version the OCSF payload follows.
const OCSF_VERSION: &str = "1.3.0";
/// ECS version the ECS payload follows.
const ECS_VERSION: &str = "8.11.0";
/// Enterprise number in the SD-ID. 32473 is the number RFC 5424 (and RFC
/// 5612) set aside for documentation; Muster has none of its own and the
/// SD-ID only has to be stable, so this is fixed on purpose and no operator
/// setting changes it.
const SD_PEN: u32 = 32473;
/// Longest evidence summary, in characters.
const EVIDENCE_MAX: usize = 1000;
/// OCSF class Software Inventory Info.
const OCSF_CLASS_UID: i64 = 5020;

/// Payload formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ArcSight Common Event Format, revision 25.
    Cef,
    /// IBM QRadar Log Event Extended Format 2.0.
    Leef,
    /// Elastic Common Schema 8.x JSON.
    Ecs,
    /// Open Cybersecurity Schema Framework 1.3.0 JSON.
    Ocsf,
}

impl Format {
    /// Parses `cef`, `leef`, `ecs` or `ocsf` (any case, surrounding blanks
    /// ignored).
    pub fn parse(s: &str) -> Result<Format, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cef" => Ok(Format::Cef),
            "leef" => Ok(Format::Leef),
            "ecs" => Ok(Format::Ecs),
            "ocsf" => Ok(Format::Ocsf),
            _ => Err(format!(
                "unknown SIEM format {s:?}: expected one of cef, leef, ecs, ocsf"
            )),
        }
    }

    /// The name [`Format::parse`] accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Cef => "cef",
            Format::Leef => "leef",
            Format::Ecs => "ecs",
            Format::Ocsf => "ocsf",
        }
    }

    /// Renders `e` as one line (no newline inside or at the end); JSON
    /// formats are compact.
    pub fn render(self, e: &SiemEvent) -> String {
        match self {
            Format::Cef => cef(e),
            Format::Leef => leef(e),
            Format::Ecs => ecs(e).to_string(),
            Format::Ocsf => ocsf(e).to_string(),
        }
    }
}

// ---------------------------------------------------------------- helpers

fn millis(secs: i64) -> i64 {
    secs.saturating_mul(1000)
}

/// The host's addresses that parse as IP addresses, in order.
fn valid_ips(e: &SiemEvent) -> Vec<IpAddr> {
    e.host
        .ips
        .iter()
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn first_v4(ips: &[IpAddr]) -> Option<Ipv4Addr> {
    ips.iter().find_map(|ip| match ip {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    })
}

fn first_v6(ips: &[IpAddr]) -> Option<Ipv6Addr> {
    ips.iter().find_map(|ip| match ip {
        IpAddr::V6(v6) => Some(*v6),
        IpAddr::V4(_) => None,
    })
}

fn opt_string<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// `kind:value@location; ...`, cut to [`EVIDENCE_MAX`] characters (ending in
/// `...` when cut).
fn evidence_summary(evidence: &[EvidenceRef]) -> String {
    let full = evidence
        .iter()
        .map(|ev| {
            let mut item = format!("{}:{}", ev.kind, ev.value);
            if !ev.location.is_empty() {
                item.push('@');
                item.push_str(&ev.location);
            }
            item
        })
        .collect::<Vec<_>>()
        .join("; ");
    if full.chars().count() <= EVIDENCE_MAX {
        return full;
    }
    let mut cut: String = full.chars().take(EVIDENCE_MAX - 3).collect();
    cut.push_str("...");
    cut
}

/// Escapes a CEF or LEEF header field.
fn header_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a CEF extension value.
fn cef_value_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a LEEF attribute value (tab is the delimiter).
fn leef_value_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Key/value pairs in insertion order; empty values are dropped.
#[derive(Default)]
struct Pairs(Vec<(&'static str, String)>);

impl Pairs {
    fn add(&mut self, key: &'static str, value: impl Into<String>) {
        let value = value.into();
        if !value.is_empty() {
            self.0.push((key, value));
        }
    }

    /// A CEF custom field and its label, both only when `value` is set.
    fn labeled(
        &mut self,
        key: &'static str,
        label_key: &'static str,
        label: &str,
        value: impl Into<String>,
    ) {
        let value = value.into();
        if !value.is_empty() {
            self.0.push((key, value));
            self.0.push((label_key, label.to_string()));
        }
    }

    fn join(self, sep: &str, escape: fn(&str) -> String) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={}", escape(v)))
            .collect::<Vec<_>>()
            .join(sep)
    }
}

/// Drops nulls, empty strings, empty arrays and empty objects, recursively.
fn prune(v: Value) -> Value {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        }
    }
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| !empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).filter(|v| !empty(v)).collect()),
        v => v,
    }
}

fn evidence_json(evidence: &[EvidenceRef]) -> Value {
    evidence
        .iter()
        .map(|ev| {
            json!({
                "kind": ev.kind, "value": ev.value, "matched": ev.matched,
                "location": ev.location, "state": ev.state,
            })
        })
        .collect()
}

fn verdict_json(e: &SiemEvent) -> Value {
    e.verdict.as_ref().map_or(Value::Null, |v| {
        json!({
            "verdict": v.verdict, "campaign": v.campaign, "policy": v.policy,
            "deadline": v.deadline.and_then(rfc3339), "overdue": v.overdue,
        })
    })
}

// ---------------------------------------------------------------- CEF

/// ArcSight CEF line; see the module docs for the key mapping.
pub fn cef(e: &SiemEvent) -> String {
    let ips = valid_ips(e);
    let product = e.product.as_ref();
    let verdict = e.verdict.as_ref();
    let prod = |f: fn(&ProductRef) -> &String| product.map_or("", |p| f(p).as_str());
    let verd = |f: fn(&Verdict) -> &String| verdict.map_or("", |v| f(v).as_str());
    let mut p = Pairs::default();
    p.add("rt", millis(e.time).to_string());
    p.add("externalId", e.id.as_str());
    p.add("act", e.kind.as_str());
    p.add("cat", prod(|p| &p.category));
    p.add("msg", e.message.as_str());
    p.add("deviceExternalId", e.host.id.as_str());
    p.add("dvchost", e.host.hostname.as_str());
    p.add("dvc", opt_string(first_v4(&ips)));
    p.labeled("c6a1", "c6a1Label", "hostIPv6", opt_string(first_v6(&ips)));
    p.labeled("cn1", "cn1Label", "seq", e.seq.to_string());
    p.labeled("cs1", "cs1Label", "productId", prod(|p| &p.id));
    p.labeled("cs2", "cs2Label", "productName", prod(|p| &p.name));
    p.labeled("cs3", "cs3Label", "productVendor", prod(|p| &p.vendor));
    p.labeled("cs4", "cs4Label", "productVersion", prod(|p| &p.version));
    p.labeled("cs5", "cs5Label", "state", e.state.as_str());
    p.labeled("cs6", "cs6Label", "verdict", verd(|v| &v.verdict));
    let campaign = verd(|v| &v.campaign);
    p.labeled("flexString1", "flexString1Label", "campaign", campaign);
    p.add("MusterMusterPolicy", verd(|v| &v.policy));
    let deadline = opt_string(verdict.and_then(|v| v.deadline).map(millis));
    let (date_key, date_label) = ("deviceCustomDate1", "deviceCustomDate1Label");
    p.labeled(date_key, date_label, "campaignDeadline", deadline);
    let overdue = opt_string(verdict.map(|v| u8::from(v.overdue)));
    p.labeled("cn2", "cn2Label", "overdue", overdue);
    p.add("MusterMusterPreviousState", e.previous_state.as_str());
    let evidence = evidence_summary(&e.evidence);
    p.labeled("flexString2", "flexString2Label", "evidence", evidence);
    p.add("MusterMusterObserver", e.observer.as_str());
    format!(
        "CEF:0|{}|{}|{}|{}|{}|{}|{}",
        header_escape(VENDOR),
        header_escape(PRODUCT),
        header_escape(VERSION),
        header_escape(&e.kind),
        header_escape(&e.message),
        e.severity.min(10),
        p.join(" ", cef_value_escape)
    )
}

// ---------------------------------------------------------------- LEEF

/// LEEF 2.0 line with tab-delimited attributes; see the module docs.
pub fn leef(e: &SiemEvent) -> String {
    let ips = valid_ips(e);
    let product = e.product.as_ref();
    let verdict = e.verdict.as_ref();
    let prod = |f: fn(&ProductRef) -> &String| product.map_or("", |p| f(p).as_str());
    let verd = |f: fn(&Verdict) -> &String| verdict.map_or("", |v| f(v).as_str());
    let src = first_v4(&ips)
        .map(IpAddr::V4)
        .or_else(|| ips.first().copied());
    let ip_list: Vec<String> = ips.iter().map(ToString::to_string).collect();
    let h = &e.host;
    let mut p = Pairs::default();
    if let Some(t) = rfc3339(e.time) {
        p.add("devTime", t);
        p.add("devTimeFormat", "yyyy-MM-dd'T'HH:mm:ssX");
    }
    p.add("sev", e.severity.clamp(1, 10).to_string());
    p.add("cat", prod(|p| &p.category));
    p.add("src", opt_string(src));
    p.add("externalId", e.id.as_str());
    p.add("seq", e.seq.to_string());
    p.add("msg", e.message.as_str());
    p.add("hostId", h.id.as_str());
    p.add("hostName", h.hostname.as_str());
    p.add("ips", ip_list.join(","));
    p.add("osName", h.os_name.as_str());
    p.add("osVersion", h.os_version.as_str());
    p.add("platform", h.platform.as_str());
    p.add("arch", h.arch.as_str());
    p.add("agentVersion", h.agent_version.as_str());
    p.add("productId", prod(|p| &p.id));
    p.add("productVendor", prod(|p| &p.vendor));
    p.add("productName", prod(|p| &p.name));
    p.add("productVersion", prod(|p| &p.version));
    p.add("state", e.state.as_str());
    p.add("previousState", e.previous_state.as_str());
    p.add("verdict", verd(|v| &v.verdict));
    p.add("campaign", verd(|v| &v.campaign));
    p.add("policy", verd(|v| &v.policy));
    let deadline = verdict.and_then(|v| v.deadline).and_then(rfc3339);
    p.add("deadline", deadline.unwrap_or_default());
    p.add("overdue", opt_string(verdict.map(|v| v.overdue)));
    p.add("evidence", evidence_summary(&e.evidence));
    p.add("observer", e.observer.as_str());
    format!(
        "LEEF:2.0|{}|{}|{}|{}|x09|{}",
        header_escape(VENDOR),
        header_escape(PRODUCT),
        header_escape(VERSION),
        header_escape(&e.kind),
        p.join("\t", leef_value_escape)
    )
}

// ---------------------------------------------------------------- ECS

/// ECS 8.x document (nested objects); see the module docs.
pub fn ecs(e: &SiemEvent) -> Value {
    let ts = rfc3339(e.time).unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
    let verdict = e.verdict.as_ref();
    let alert = e.kind == "campaign_missed"
        || verdict.is_some_and(|v| matches!(v.verdict.as_str(), "banned" | "missing_required"));
    let event_type = match e.kind.as_str() {
        "detected" => "installation",
        "removed" => "deletion",
        "state_changed" => "change",
        _ => "info",
    };
    let os_type = match e.host.platform.as_str() {
        p @ ("linux" | "windows" | "macos") => p,
        _ => "",
    };
    let ips: Vec<String> = valid_ips(e).iter().map(ToString::to_string).collect();
    prune(json!({
        "@timestamp": ts,
        "message": e.message,
        "ecs": { "version": ECS_VERSION },
        "event": {
            "kind": if alert { "alert" } else { "event" },
            "category": [if e.product.is_some() { "package" } else { "host" }],
            "type": [event_type],
            "action": e.kind,
            "id": e.id,
            "severity": e.severity,
            "sequence": e.seq,
            "dataset": "muster.events",
            "module": "muster",
            "created": ts,
        },
        "host": {
            "id": e.host.id,
            "name": e.host.hostname,
            "hostname": e.host.hostname,
            "ip": ips,
            "architecture": e.host.arch,
            "os": {
                "name": e.host.os_name,
                "version": e.host.os_version,
                "platform": e.host.platform,
                "type": os_type,
            },
        },
        "package": e.product.as_ref().map(|p| json!({ "name": p.name, "version": p.version })),
        "observer": {
            "hostname": e.observer,
            "vendor": VENDOR,
            "product": PRODUCT,
            "version": VERSION,
            "type": "inventory",
        },
        "agent": {
            "id": e.host.id,
            "version": e.host.agent_version,
            "type": "muster-agent",
        },
        "rule": verdict.map(|v| json!({ "name": v.campaign, "ruleset": v.policy })),
        "muster": {
            "product": e.product.as_ref().map(|p| json!({
                "id": p.id, "vendor": p.vendor, "name": p.name,
                "category": p.category, "version": p.version,
            })),
            "state": e.state,
            "previous_state": e.previous_state,
            "verdict": verdict_json(e),
            "evidence": evidence_json(&e.evidence),
        },
    }))
}

// ---------------------------------------------------------------- OCSF

/// OCSF `activity_id` and `activity_name` for an event kind.
fn ocsf_activity(kind: &str) -> (i64, &str) {
    match kind {
        "detected" | "state_changed" | "removed" | "imported" | "campaign_missed" => (2, "Collect"),
        other => (99, other),
    }
}

/// OCSF `severity_id` and caption.
fn ocsf_severity(e: &SiemEvent) -> (i64, &'static str) {
    match e.severity_name() {
        "info" => (1, "Informational"),
        "low" => (2, "Low"),
        "medium" => (3, "Medium"),
        "high" => (4, "High"),
        _ => (5, "Critical"),
    }
}

/// OCSF `os` object, when anything is known of the OS.
fn ocsf_os(e: &SiemEvent) -> Value {
    let h = &e.host;
    if h.os_name.is_empty() && h.platform.is_empty() {
        return Value::Null;
    }
    let (type_id, caption) = match h.platform.as_str() {
        "windows" => (100, "Windows"),
        "linux" => (200, "Linux"),
        "macos" => (300, "macOS"),
        "" => (0, "Unknown"),
        other => (99, other),
    };
    let name = if h.os_name.is_empty() {
        caption
    } else {
        &h.os_name
    };
    json!({ "name": name, "type_id": type_id, "type": caption, "version": h.os_version })
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { s }
}

/// OCSF 1.3.0 Software Inventory Info (class 5020); see `OCSF.md`.
pub fn ocsf(e: &SiemEvent) -> Value {
    let (activity_id, activity_name) = ocsf_activity(&e.kind);
    let (severity_id, severity) = ocsf_severity(e);
    let ips = valid_ips(e);
    let package = match &e.product {
        Some(p) => json!({
            "name": or_unknown(&p.name),
            "version": or_unknown(&p.version),
            "vendor_name": p.vendor,
        }),
        None => json!({
            "name": "muster-agent",
            "version": or_unknown(&e.host.agent_version),
            "vendor_name": VENDOR,
        }),
    };
    let interfaces: Vec<Value> = ips
        .iter()
        .map(|ip| json!({ "ip": ip.to_string(), "type_id": 0, "type": "Unknown" }))
        .collect();
    prune(json!({
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": 5,
        "category_name": "Discovery",
        "class_uid": OCSF_CLASS_UID,
        "class_name": "Software Inventory Info",
        "type_uid": OCSF_CLASS_UID * 100 + activity_id,
        "type_name": format!(
            "Software Inventory Info: {}",
            if activity_id == 99 { "Other" } else { activity_name }
        ),
        "severity_id": severity_id,
        "severity": severity,
        "time": millis(e.time),
        "message": e.message,
        "metadata": {
            "version": OCSF_VERSION,
            "product": { "name": PRODUCT, "vendor_name": VENDOR, "version": VERSION },
            "uid": e.id,
            "sequence": e.seq,
            "event_code": e.kind,
        },
        "device": {
            "type_id": 0,
            "type": "Unknown",
            "uid": e.host.id,
            "hostname": e.host.hostname,
            "name": e.host.hostname,
            "ip": opt_string(ips.first()),
            "os": ocsf_os(e),
            "network_interfaces": interfaces,
            "agent_list": [{
                "name": "muster-agent",
                "uid": e.host.id,
                "version": e.host.agent_version,
                "vendor_name": VENDOR,
                "type_id": 99,
                "type": "Software Inventory",
            }],
        },
        "package": package,
        "product": e.product.as_ref().map(|p| json!({
            "uid": p.id,
            "name": p.name,
            "vendor_name": or_unknown(&p.vendor),
            "version": p.version,
        })),
        "unmapped": {
            "muster": {
                "kind": e.kind,
                "state": e.state,
                "previous_state": e.previous_state,
                "observer": e.observer,
                "host": {
                    "arch": e.host.arch,
                    "platform": e.host.platform,
                    "ips": e.host.ips,
                },
                "product": e.product.as_ref().map(|p| json!({ "category": p.category })),
                "verdict": verdict_json(e),
                "evidence": evidence_json(&e.evidence),
            },
        },
    }))
}

// ---------------------------------------------------------------- syslog

/// Syslog severity for a CEF-style 0-10 severity.
fn syslog_severity(severity: u8) -> u8 {
    match severity {
        10.. => 2,
        8 | 9 => 3,
        6 | 7 => 4,
        4 | 5 => 5,
        _ => 6,
    }
}

/// An RFC 5424 header field: PRINTUSASCII only (others become `_`), at most
/// `max` characters, `-` (NILVALUE) when empty.
fn header_field(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if out.is_empty() { "-".into() } else { out }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped; CR and LF become spaces.
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// RFC 5424 syslog message (no framing): `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`
///
/// PRI is `facility * 8 + severity` (facility above 23 counts as 23), the
/// syslog severity coming from `e.severity`: 10 crit, 8-9 err, 6-7 warning,
/// 4-5 notice, 0-3 info. TIMESTAMP is `e.time` in RFC 3339 UTC, HOSTNAME
/// and APP-NAME are `hostname` and `app_name` cut to the RFC 5424 charset and
/// lengths (255, 48), PROCID is `-` and MSGID the event kind (32). The SD
/// element is `[muster@32473 id=".." seq=".." host=".." product=".."]`. CR
/// and LF in `msg` become spaces, since many receivers split on LF; no BOM
/// is written.
pub fn rfc5424(e: &SiemEvent, facility: u8, app_name: &str, hostname: &str, msg: &str) -> String {
    let pri = u16::from(facility.min(23)) * 8 + u16::from(syslog_severity(e.severity));
    let timestamp = rfc3339(e.time).unwrap_or_else(|| "-".into());
    let product = e.product.as_ref().map_or("", |p| p.id.as_str());
    let seq = e.seq.to_string();
    let mut sd = format!("[muster@{SD_PEN}");
    for (name, value) in [
        ("id", e.id.as_str()),
        ("seq", &seq),
        ("host", &e.host.hostname),
        ("product", product),
    ] {
        if !value.is_empty() {
            sd.push_str(&format!(" {name}=\"{}\"", sd_escape(value)));
        }
    }
    sd.push(']');
    let mut out = format!(
        "<{pri}>1 {timestamp} {} {} - {} {sd}",
        header_field(hostname, 255),
        header_field(app_name, 48),
        header_field(&e.kind, 32),
    );
    if !msg.is_empty() {
        out.push(' ');
        out.extend(
            msg.chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        );
    }
    out
}

/// RFC 5425/6587 octet-counting frame: "LEN SP MSG" where LEN is the byte length of MSG.
pub fn octet_frame(msg: &str) -> Vec<u8> {
    format!("{} {msg}", msg.len()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::siem::event::HostRef;

    fn event() -> SiemEvent {
        SiemEvent {
            id: "id-1".into(),
            seq: 7,
            time: 1_795_946_400,
            kind: "detected".into(),
            severity: 8,
            message: "m".into(),
            host: HostRef::default(),
            product: None,
            state: String::new(),
            previous_state: String::new(),
            verdict: None,
            evidence: vec![],
            observer: String::new(),
        }
    }

    #[test]
    fn parse_and_names() {
        for f in [Format::Cef, Format::Leef, Format::Ecs, Format::Ocsf] {
            assert_eq!(Format::parse(f.as_str()), Ok(f));
        }
        assert_eq!(Format::parse(" CEF "), Ok(Format::Cef));
        let err = Format::parse("json").unwrap_err();
        assert!(
            err.contains("\"json\"") && err.contains("cef, leef, ecs, ocsf"),
            "{err}"
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(header_escape("a|b\\c\r\nd"), "a\\|b\\\\c  d");
        assert_eq!(cef_value_escape("a=b\\c\nd\re|f"), "a\\=b\\\\c\\nd\\re|f");
        assert_eq!(
            leef_value_escape("a\tb\\c\nd\re=f|"),
            "a\\tb\\\\c\\nd\\re=f|"
        );
        assert_eq!(sd_escape("a\"b\\c]d\ne"), "a\\\"b\\\\c\\]d e");
    }

    #[test]
    fn header_fields_are_printable_and_bounded() {
        assert_eq!(header_field("", 10), "-");
        assert_eq!(header_field("a b\tcé", 10), "a_b_c_");
        assert_eq!(header_field(&"x".repeat(300), 255).len(), 255);
    }

    #[test]
    fn syslog_severities() {
        let got: Vec<u8> = (0..=11).map(syslog_severity).collect();
        assert_eq!(got, [6, 6, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2]);
    }

    #[test]
    fn times() {
        assert_eq!(
            rfc3339(1_795_946_400).as_deref(),
            Some("2026-11-29T10:00:00Z")
        );
        assert_eq!(rfc3339(i64::MAX), None);
        assert_eq!(millis(i64::MAX), i64::MAX);
        let mut e = event();
        e.time = i64::MAX;
        assert!(rfc5424(&e, 1, "a", "h", "m").starts_with("<11>1 - h a - detected "));
    }

    #[test]
    fn evidence_is_bounded() {
        let ev = EvidenceRef {
            kind: "file".into(),
            value: "v".repeat(100),
            location: "l".into(),
            ..Default::default()
        };
        let short = evidence_summary(std::slice::from_ref(&ev));
        assert_eq!(short, format!("file:{}@l", "v".repeat(100)));
        let long = evidence_summary(&vec![ev; 20]);
        assert_eq!(long.chars().count(), EVIDENCE_MAX);
        assert!(long.ends_with("..."));
        let no_location = EvidenceRef {
            kind: "k".into(),
            value: "v".into(),
            ..Default::default()
        };
        assert_eq!(
            evidence_summary(&[no_location.clone(), no_location]),
            "k:v; k:v"
        );
    }

    #[test]
    fn prune_drops_empty_values_only() {
        let v = prune(
            json!({"a": "", "b": null, "c": [], "d": {"e": ""}, "f": 0, "g": false, "h": ["", "x"]}),
        );
        assert_eq!(v, json!({"f": 0, "g": false, "h": ["x"]}));
    }

    #[test]
    fn ecs_alert_kind() {
        let mut e = event();
        assert_eq!(ecs(&e)["event"]["kind"], "event");
        e.verdict = Some(Verdict {
            verdict: "banned".into(),
            ..Default::default()
        });
        assert_eq!(ecs(&e)["event"]["kind"], "alert");
        e.verdict = Some(Verdict {
            verdict: "allowed".into(),
            ..Default::default()
        });
        assert_eq!(ecs(&e)["event"]["kind"], "event");
        e.kind = "campaign_missed".into();
        assert_eq!(ecs(&e)["event"]["kind"], "alert");
    }

    #[test]
    fn ocsf_activities() {
        assert_eq!(ocsf_activity("detected"), (2, "Collect"));
        assert_eq!(ocsf_activity("enrolled"), (99, "enrolled"));
        let mut e = event();
        e.product = Some(ProductRef {
            name: "P".into(),
            ..Default::default()
        });
        let v = ocsf(&e);
        assert_eq!(v["package"]["version"], "unknown");
        assert_eq!(v["product"]["vendor_name"], "unknown");
    }

    #[test]
    fn invalid_ips_are_left_out() {
        let mut e = event();
        e.host.ips = vec!["not-an-ip".into(), "2001:db8::1".into(), "192.0.2.1".into()];
        let c = cef(&e);
        assert!(
            c.contains(" dvc=192.0.2.1 ") && c.contains("c6a1=2001:db8::1 "),
            "{c}"
        );
        assert!(leef(&e).contains("\tsrc=192.0.2.1\t"));
        assert_eq!(ecs(&e)["host"]["ip"], json!(["2001:db8::1", "192.0.2.1"]));
        assert_eq!(ocsf(&e)["device"]["ip"], "2001:db8::1");
    }
}
