//! SIEM export: the events of the outbox, made whole (host, product,
//! campaign verdict, evidence), rendered as CEF, LEEF, ECS or OCSF, and
//! delivered at-least-once by the exporters of the config file.
//!
//! - [`event`]: what an exporter sends, and [`build`] to make it from a
//!   stored event.
//! - [`format`]: the payload formats and the RFC 5424 syslog envelope.
//! - [`export`]: the exporters' configuration, their transports, and the
//!   delivery loop with its cursor, lease, backoff and retention.
//! - [`sweep`]: the periodic checks that add events of their own (hosts
//!   gone stale, campaign deadlines missed).

pub mod event;
pub mod export;
pub mod format;
pub mod sweep;

pub use event::{EvidenceRef, HostRef, ProductRef, SiemEvent, Verdict};

use crate::campaign::Campaign;
use crate::store::OutboxEvent;
use muster_catalog::{Catalog, Platform};

/// What [`build`] needs besides the event.
pub struct Context<'a> {
    /// The collector's catalog (products, policies).
    pub catalog: &'a Catalog,
    /// The campaigns, oldest first: the first whose policy names a
    /// product gives its verdict.
    pub campaigns: &'a [Campaign],
    /// This collector's hostname.
    pub observer: &'a str,
    /// Now, Unix seconds (for a campaign's `overdue`).
    pub now: i64,
}

/// The hostname of this machine, for the events' `observer`.
pub fn observer() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "muster-collector".to_string())
}

/// The whole event for the SIEM.
pub fn build(o: &OutboxEvent, cx: &Context) -> SiemEvent {
    let e = &o.event;
    let h = &o.host;
    let host = HostRef {
        id: e.host_id.clone(),
        hostname: h.hostname.clone(),
        ips: h.ips.clone(),
        os_name: h.os_name.clone(),
        os_version: h.os_version.clone(),
        platform: h.platform.clone(),
        arch: h.arch.clone(),
        agent_version: h.agent_version.clone(),
    };
    let product = match (&e.detection, e.product_id.as_str()) {
        (Some(d), _) => Some(ProductRef {
            id: d.product_id.clone(),
            vendor: d.vendor.clone(),
            name: d.product.clone(),
            category: d.category.as_str().to_string(),
            version: d.version.clone(),
        }),
        (None, "") => None,
        (None, id) => Some(match cx.catalog.product(id) {
            Some(p) => ProductRef {
                id: p.id.clone(),
                vendor: p.vendor.clone(),
                name: p.name.clone(),
                category: p.category.as_str().to_string(),
                version: e.version.clone(),
            },
            // A product since taken out of the catalog: its id is all
            // there is.
            None => ProductRef {
                id: id.to_string(),
                name: id.to_string(),
                version: e.version.clone(),
                ..ProductRef::default()
            },
        }),
    };
    let verdict = product
        .as_ref()
        .and_then(|p| verdict(cx, e, p, Platform::parse(&h.platform)));
    let evidence = e
        .detection
        .iter()
        .flat_map(|d| &d.evidence)
        .map(|ev| EvidenceRef {
            kind: ev.kind.clone(),
            value: ev.value.clone(),
            matched: ev.matched.clone(),
            location: ev.location.clone(),
            state: ev.state.as_str().to_string(),
        })
        .collect();
    let severity = severity(&e.kind, &e.state, verdict.as_ref());
    SiemEvent {
        id: e.id.clone(),
        seq: o.cursor.seq,
        time: e.at,
        message: message(&e.kind, e, &host, product.as_ref()),
        kind: e.kind.clone(),
        severity,
        host,
        product,
        state: e.state.clone(),
        previous_state: e.previous_state.clone(),
        verdict,
        evidence,
        observer: cx.observer.to_string(),
    }
}

/// The verdict of the campaign that names the product: the event's own
/// campaign for `campaign_missed`, else the oldest campaign whose policy
/// bans or requires it; with no such campaign, the first policy of the
/// catalog that bans it (as `muster hosts` shows it), without a deadline.
fn verdict(
    cx: &Context,
    e: &crate::store::Event,
    p: &ProductRef,
    platform: Option<Platform>,
) -> Option<Verdict> {
    campaign_verdict(cx, e, p, platform).or_else(|| {
        if !e.campaign.is_empty() {
            return None;
        }
        let policy = cx.catalog.policies.iter().find(|policy| {
            policy.rule_for(&p.vendor, &p.id, &p.category, platform) == Some("banned")
        })?;
        Some(Verdict {
            campaign: String::new(),
            policy: policy.id.clone(),
            verdict: if e.kind == "removed" {
                "removed"
            } else {
                "banned"
            }
            .to_string(),
            deadline: None,
            overdue: false,
        })
    })
}

fn campaign_verdict(
    cx: &Context,
    e: &crate::store::Event,
    p: &ProductRef,
    platform: Option<Platform>,
) -> Option<Verdict> {
    cx.campaigns
        .iter()
        .filter(|c| e.campaign.is_empty() || c.name == e.campaign)
        .find_map(|c| {
            let policy = cx.catalog.policy(&c.policy)?;
            let rule = policy.rule_for(&p.vendor, &p.id, &p.category, platform)?;
            let gone = e.kind == "removed";
            let verdict = match (rule, gone) {
                ("banned", true) => "removed",
                ("banned", false) => "banned",
                ("required", true) => "missing_required",
                _ => "allowed",
            };
            Some(Verdict {
                campaign: c.name.clone(),
                policy: c.policy.clone(),
                verdict: verdict.to_string(),
                deadline: Some(c.remove_by),
                overdue: verdict == "banned" && cx.now > c.remove_by,
            })
        })
}

/// 1 (informational) to 10: a banned product present is high, a missed
/// deadline higher; good news and bookkeeping are low.
fn severity(kind: &str, state: &str, verdict: Option<&Verdict>) -> u8 {
    let banned = verdict.is_some_and(|v| v.verdict == "banned");
    match kind {
        "campaign_missed" => 9,
        "detected" | "state_changed" if banned && state == "remnant" => 6,
        "detected" | "state_changed" if banned => 8,
        "detected" | "state_changed" if verdict.is_some_and(|v| v.verdict == "allowed") => 3,
        "removed" if verdict.is_some_and(|v| v.verdict == "missing_required") => 7,
        "removed" if verdict.is_some() => 4,
        "revoked" => 6,
        "stale" => 5,
        "detected" | "state_changed" | "removed" => 3,
        "test" => 1,
        _ => 2,
    }
}

fn message(kind: &str, e: &crate::store::Event, h: &HostRef, p: Option<&ProductRef>) -> String {
    let product = p
        .map(
            |p| match p.vendor.is_empty() || p.name.starts_with(&p.vendor) {
                true => p.name.clone(),
                false => format!("{} {}", p.vendor, p.name),
            },
        )
        .unwrap_or_default();
    let host = if h.hostname.is_empty() {
        h.id.as_str()
    } else {
        h.hostname.as_str()
    };
    match kind {
        "detected" => format!("{product} detected ({}) on {host}", e.state),
        "state_changed" => format!("{product} on {host}: {} -> {}", e.previous_state, e.state),
        "removed" => format!("{product} no longer found on {host} (was {})", e.state),
        "enrolled" => format!("{host} enrolled"),
        "imported" => format!("{host} imported from a snapshot"),
        "stale" => format!("{host} stopped reporting (stale)"),
        "revoked" => format!("{host} revoked by an operator"),
        "superseded" => format!(
            "{host} superseded by host {}, a newer agent on the same machine",
            e.related_host
        ),
        "reappeared" => format!(
            "{host} reported again after host {} superseded it: two machines share this hostname",
            e.related_host
        ),
        "supersedes" => format!(
            "{host}: a new agent replaces host {} on the same machine",
            e.related_host
        ),
        "campaign_missed" => format!(
            "{host} missed the deadline of campaign {}: {product} still {}",
            e.campaign, e.state
        ),
        other => format!("{other} on {host}"),
    }
}

/// A test event for exporter `name` (`muster siem test`): it names no real
/// host, and its kind is `test`.
pub fn test_event(name: &str, observer: &str, now: i64) -> SiemEvent {
    SiemEvent {
        id: uuid::Uuid::new_v4().to_string(),
        seq: 0,
        time: now,
        kind: "test".into(),
        severity: 1,
        message: format!("Muster test event for exporter {name}"),
        host: HostRef {
            id: "00000000-0000-0000-0000-000000000000".into(),
            hostname: observer.to_string(),
            ..HostRef::default()
        },
        product: None,
        state: String::new(),
        previous_state: String::new(),
        verdict: None,
        evidence: Vec::new(),
        observer: observer.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Cursor, Event};
    use muster_catalog::{Catalog, HostFacts, Inventory, Item, ItemKind, Presence, Section};

    fn kesl(state: Presence) -> muster_catalog::Detection {
        let mut inv = Inventory {
            platform: Some(Platform::Linux),
            ..Inventory::default()
        };
        inv.sections.insert(
            "dpkg".into(),
            Section {
                items: vec![Item::new(ItemKind::Package, "kesl", state, "dpkg").version("12.1")],
            },
        );
        let found = muster_catalog::evaluate(&inv, &Catalog::builtin());
        assert_eq!(found.len(), 1);
        found.into_iter().next().unwrap()
    }

    fn stored(kind: &str, d: Option<muster_catalog::Detection>, campaign: &str) -> OutboxEvent {
        let mut event = Event::new("h1", 1_800_000_000, kind);
        if let Some(d) = d {
            event = Event::about("h1", 1_800_000_000, kind, &d);
        }
        event.campaign = campaign.to_string();
        OutboxEvent {
            cursor: Cursor { xact: 0, seq: 7 },
            recorded_at: 1_800_000_000,
            event,
            host: HostFacts {
                hostname: "ws-042".into(),
                platform: "linux".into(),
                ips: vec!["192.0.2.7".into()],
                ..HostFacts::default()
            },
        }
    }

    fn campaign(remove_by: i64) -> Campaign {
        Campaign {
            name: "drop-kaspersky".into(),
            policy: "bod-17-01".into(),
            issued: 0,
            identify_by: 0,
            remove_by,
        }
    }

    #[test]
    fn a_banned_product_is_high_and_names_its_campaign() {
        let catalog = Catalog::builtin();
        let campaigns = [campaign(1_900_000_000)];
        let cx = Context {
            catalog: &catalog,
            campaigns: &campaigns,
            observer: "collector-1",
            now: 1_800_000_000,
        };
        let e = build(&stored("detected", Some(kesl(Presence::Present)), ""), &cx);
        assert_eq!(e.seq, 7);
        assert_eq!(e.severity, 8);
        assert_eq!(e.host.hostname, "ws-042");
        assert_eq!(e.product.as_ref().unwrap().vendor, "Kaspersky");
        let v = e.verdict.as_ref().unwrap();
        assert_eq!(
            (v.campaign.as_str(), v.verdict.as_str(), v.overdue),
            ("drop-kaspersky", "banned", false)
        );
        assert_eq!(v.deadline, Some(1_900_000_000));
        assert_eq!(e.evidence[0].value, "kesl");
        assert!(
            e.message.contains("detected (installed) on ws-042"),
            "{}",
            e.message
        );

        // Past the deadline: overdue; a remnant is less severe; removal is
        // good news.
        let late = Context {
            now: 1_950_000_000,
            ..cx
        };
        assert!(
            build(
                &stored("detected", Some(kesl(Presence::Present)), ""),
                &late
            )
            .verdict
            .unwrap()
            .overdue
        );
        assert_eq!(
            build(
                &stored("state_changed", Some(kesl(Presence::Leftover)), ""),
                &cx
            )
            .severity,
            6
        );
        let gone = build(&stored("removed", Some(kesl(Presence::Present)), ""), &cx);
        assert_eq!(
            (gone.severity, gone.verdict.unwrap().verdict.as_str()),
            (4, "removed")
        );
        let missed = build(
            &stored(
                "campaign_missed",
                Some(kesl(Presence::Present)),
                "drop-kaspersky",
            ),
            &late,
        );
        assert_eq!(missed.severity, 9);
        assert!(
            missed
                .message
                .contains("missed the deadline of campaign drop-kaspersky")
        );
    }

    #[test]
    fn without_a_campaign_the_catalog_policy_still_says_banned() {
        let catalog = Catalog::builtin();
        let cx = Context {
            catalog: &catalog,
            campaigns: &[],
            observer: "collector-1",
            now: 0,
        };
        let e = build(&stored("detected", Some(kesl(Presence::Present)), ""), &cx);
        let v = e.verdict.unwrap();
        assert_eq!(
            (v.campaign.as_str(), v.policy.as_str(), v.verdict.as_str()),
            ("", "bod-17-01", "banned")
        );
        assert_eq!(v.deadline, None);
        // A host event has no product and no verdict.
        let e = build(&stored("stale", None, ""), &cx);
        assert!(e.product.is_none() && e.verdict.is_none());
        assert_eq!(
            (e.severity, e.message.as_str()),
            (5, "ws-042 stopped reporting (stale)")
        );
        // A removed product known only by its id is looked up in the catalog.
        let mut o = stored("removed", None, "");
        o.event.product_id = "kaspersky.endpoint-security-linux".into();
        let e = build(&o, &cx);
        assert_eq!(e.product.unwrap().vendor, "Kaspersky");
    }
}
