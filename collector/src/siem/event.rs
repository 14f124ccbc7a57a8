//! What an exporter sends: one event of the outbox, with everything a SIEM
//! needs to act on it without asking Muster again.

use serde::{Deserialize, Serialize};

/// One event for the SIEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiemEvent {
    /// Stable unique id (a UUID): the SIEM deduplicates on it (delivery is
    /// at-least-once).
    pub id: String,
    /// Position in the outbox (increasing, with gaps).
    pub seq: i64,
    /// When it happened, Unix seconds.
    pub time: i64,
    /// What happened: `detected`, `state_changed`, `removed`, `enrolled`,
    /// `imported`, `stale`, `revoked`, `superseded`, `supersedes`,
    /// `campaign_missed`, or `test`.
    pub kind: String,
    /// 1 (informational) to 10 (very high), as CEF counts; see
    /// [`SiemEvent::severity_name`].
    pub severity: u8,
    /// One line for people, e.g. "Kaspersky Endpoint Security for Linux
    /// detected (running) on host-one".
    pub message: String,
    /// The host.
    pub host: HostRef,
    /// The product, for detection and campaign events.
    pub product: Option<ProductRef>,
    /// The product's state now: `running`, `installed`, `remnant` (for
    /// `removed`, the last state it had); empty when no product.
    pub state: String,
    /// The state before, for `state_changed`; else empty.
    pub previous_state: String,
    /// What a campaign's policy says about this product on this host, when
    /// a campaign applies.
    pub verdict: Option<Verdict>,
    /// Every indicator that matched, for detection events.
    pub evidence: Vec<EvidenceRef>,
    /// The collector that wrote the event (its hostname).
    pub observer: String,
}

/// The host of an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRef {
    /// Agent id (a UUID).
    pub id: String,
    /// Hostname as reported.
    pub hostname: String,
    /// IP addresses as reported (v4 and v6, no loopback).
    pub ips: Vec<String>,
    /// OS name, e.g. "Debian GNU/Linux".
    pub os_name: String,
    /// OS version, e.g. "12".
    pub os_version: String,
    /// `linux`, `windows` or `macos`.
    pub platform: String,
    /// e.g. `x86_64`.
    pub arch: String,
    /// The agent's version (empty for an imported snapshot).
    pub agent_version: String,
}

/// The product of an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRef {
    /// Catalog id, e.g. `kaspersky-endpoint-security-linux`.
    pub id: String,
    /// Vendor, e.g. "Kaspersky".
    pub vendor: String,
    /// Product name.
    pub name: String,
    /// Category, e.g. `antivirus`, `edr`, `vpn`.
    pub category: String,
    /// Version where known, else empty.
    pub version: String,
}

/// A campaign's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The campaign's name, e.g. "bod-17-01".
    pub campaign: String,
    /// The policy it enforces.
    pub policy: String,
    /// `banned` (the policy bans this product and it is present),
    /// `removed` (a banned product is gone), `missing_required`, or
    /// `allowed`.
    pub verdict: String,
    /// The campaign's deadline, Unix seconds, if it has one.
    pub deadline: Option<i64>,
    /// The deadline has passed and the host still has the product.
    pub overdue: bool,
}

/// One matched indicator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRef {
    /// Indicator kind, e.g. `package`, `service`, `driver`.
    pub kind: String,
    /// Indicator value, e.g. `kesl`.
    pub value: String,
    /// The inventory item it matched.
    pub matched: String,
    /// Where the item was read, e.g. "dpkg /var/lib/dpkg/status".
    pub location: String,
    /// The state this evidence proves.
    pub state: String,
}

impl SiemEvent {
    /// `info` (1-3), `low` (4-5), `medium` (6-7), `high` (8-9) or
    /// `critical` (10).
    pub fn severity_name(&self) -> &'static str {
        match self.severity {
            0..=3 => "info",
            4..=5 => "low",
            6..=7 => "medium",
            8..=9 => "high",
            _ => "critical",
        }
    }
}
