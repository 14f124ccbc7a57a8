//! The JSON form of what operators read: one definition shared by the
//! `muster` command line (`--format json`) and the HTTP API, so a script
//! reads the same document from either. `docs/api.md` and the OpenAPI
//! document (`openapi.json`) describe it.

use muster_catalog::{Catalog, Product};
use muster_proto::v1;
use serde_json::{Value, json};

/// Unix seconds as RFC 3339; 0 or less (never) as `null`.
pub fn time_json(t: i64) -> Value {
    if t <= 0 {
        Value::Null
    } else {
        Value::String(crate::rfc3339(t))
    }
}

/// A detection; with its evidence (where each indicator matched) when asked.
pub fn detection_json(d: &v1::Detection, with_evidence: bool) -> Value {
    let mut v = json!({
        "product_id": d.product_id, "vendor": d.vendor, "product": d.product,
        "category": d.category, "state": d.state, "version": d.version,
    });
    if with_evidence {
        v["evidence"] = d
            .evidence
            .iter()
            .map(|e| {
                json!({
                    "kind": e.kind, "value": e.value,
                    "matched": e.matched, "location": e.location, "state": e.state,
                })
            })
            .collect();
    }
    v
}

/// A host as listed (`muster hosts`).
pub fn host_json(h: &v1::HostSummary) -> Value {
    json!({
        "id": h.id, "hostname": h.hostname, "os": h.os,
        "last_checkin": time_json(h.last_checkin), "enrolled_at": time_json(h.enrolled_at),
        "sequence": h.sequence, "stale": h.stale, "banned": h.banned,
        "revoked_at": (h.revoked_at != 0).then(|| time_json(h.revoked_at)),
        "superseded_by": (!h.superseded_by.is_empty()).then_some(&h.superseded_by),
        "superseded_at": (h.superseded_at != 0).then(|| time_json(h.superseded_at)),
        "detections": h.detections.iter().map(|d| detection_json(d, false)).collect::<Vec<_>>(),
    })
}

/// One host in full (`muster host ID`): facts, inventory sections,
/// detections with evidence (removed ones too), the agent's own
/// detections and the timeline.
pub fn host_detail_json(d: &v1::HostDetail) -> Value {
    let h = d.host.clone().unwrap_or_default();
    let f = d.facts.clone().unwrap_or_default();
    let mut v = host_json(&h);
    v["facts"] = json!({"hostname": f.hostname, "os_name": f.os_name, "os_version": f.os_version,
        "kernel": f.kernel, "arch": f.arch, "ips": f.ips, "agent_version": f.agent_version,
        "hardware_id": f.hardware_id});
    v["certificate_serial"] = json!(d.certificate_serial);
    v["sections"] = d
        .sections
        .iter()
        .map(|s| json!({"name": s.name, "digest": s.digest, "items": s.items, "updated_at": time_json(s.updated_at)}))
        .collect();
    v["detections"] = d
        .detections
        .iter()
        .map(|r| {
            let mut x = detection_json(&r.detection.clone().unwrap_or_default(), true);
            x["first_seen"] = time_json(r.first_seen);
            x["last_seen"] = time_json(r.last_seen);
            x["removed_at"] = time_json(r.removed_at);
            x["banned_by"] = json!(r.banned_by);
            x
        })
        .collect();
    v["timeline"] = d
        .timeline
        .iter()
        .map(|e| {
            json!({"id": e.id, "at": time_json(e.at), "kind": e.kind, "product_id": e.product_id,
                "vendor": e.vendor, "product": e.product, "category": e.category, "state": e.state,
                "previous_state": e.previous_state, "version": e.version,
                "related_host": (!e.related_host.is_empty()).then_some(&e.related_host)})
        })
        .collect();
    v["agent_detections"] = d
        .agent_detections
        .iter()
        .map(|x| detection_json(x, false))
        .collect();
    v
}

/// The fleet summary (`muster summary`).
pub fn summary_json(s: &v1::FleetSummary) -> Value {
    json!({
        "hosts": s.hosts, "reporting": s.reporting, "stale": s.stale, "never_reported": s.never_reported,
        "hosts_with_banned": s.hosts_with_banned, "catalog_version": s.catalog_version,
        "imported": s.imported, "pending_reevaluation": s.pending_reevaluation,
        "products": s.products.iter().map(|p| json!({"product_id": p.product_id, "vendor": p.vendor,
            "product": p.product, "category": p.category, "hosts": p.hosts, "banned": p.banned})).collect::<Vec<_>>(),
    })
}

/// A catalog product as listed (`muster catalog list`).
pub fn catalog_product_json(c: &Catalog, p: &Product) -> Value {
    json!({
        "id": p.id, "vendor": p.vendor, "name": p.name,
        "category": p.category.as_str(),
        "platforms": p.platforms.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        "indicators": p.indicators.len(),
        "banned_by": c.banned_by(p),
    })
}

/// The catalog's products (`muster catalog list --format json`).
pub fn catalog_json<'a>(c: &Catalog, products: impl IntoIterator<Item = &'a Product>) -> Value {
    let items: Vec<Value> = products
        .into_iter()
        .map(|p| catalog_product_json(c, p))
        .collect();
    json!({"catalog_version": c.version, "digest": c.digest, "products": items})
}

/// The catalog's policies, each rule described in words.
pub fn policies_json(c: &Catalog) -> Value {
    let items: Vec<Value> = c
        .policies
        .iter()
        .map(|p| {
            json!({
                "id": p.id, "name": p.name, "issued": p.issued,
                "identify_by": p.identify_by, "remove_by": p.remove_by, "source": p.source,
                "ban": p.ban.iter().map(|s| s.describe()).collect::<Vec<_>>(),
                "require": p.require.iter().map(|s| s.describe()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"catalog_version": c.version, "policies": items})
}
