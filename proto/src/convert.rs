//! Wire <-> domain conversions. Everything that arrives from the network is
//! validated here, so the collector never sees a half-valid item.

use crate::v1;
use muster_catalog::{
    Category, Detection, Evidence, HostFacts, Item, ItemKind, Presence, Section, State,
};

/// Longest name, version or source accepted in an item, in bytes.
const MAX_FIELD: usize = 4096;

/// Why a section or detection from the wire was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSection(pub String);

/// A domain item as a wire item.
pub fn item_to_wire(it: &Item) -> v1::Item {
    v1::Item {
        kind: it.kind.as_str().to_string(),
        name: it.name.clone(),
        version: it.version.clone(),
        path: it.path.clone(),
        presence: it.presence.as_str().to_string(),
        source: it.source.clone(),
        attrs: it
            .attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// A wire item as a domain item, refusing unknown kinds, empty names and
/// oversized fields.
pub fn item_from_wire(it: v1::Item) -> Result<Item, InvalidSection> {
    let kind = ItemKind::parse(&it.kind)
        .ok_or_else(|| InvalidSection(format!("unknown item kind {:?}", it.kind)))?;
    let presence = Presence::parse(&it.presence).ok_or_else(|| {
        InvalidSection(format!(
            "item {:?}: unknown presence {:?}",
            it.name, it.presence
        ))
    })?;
    if it.name.is_empty() {
        return Err(InvalidSection(format!(
            "a {} item has an empty name",
            it.kind
        )));
    }
    for (what, v) in [
        ("name", &it.name),
        ("version", &it.version),
        ("path", &it.path),
        ("source", &it.source),
    ] {
        if v.len() > MAX_FIELD {
            return Err(InvalidSection(format!(
                "item {:?}: {what} is {} bytes, more than {MAX_FIELD}",
                truncate(&it.name),
                v.len()
            )));
        }
    }
    if it.attrs.len() > 32
        || it
            .attrs
            .iter()
            .any(|(k, v)| k.len() > 64 || v.len() > MAX_FIELD)
    {
        return Err(InvalidSection(format!(
            "item {:?}: too many or too long attributes",
            truncate(&it.name)
        )));
    }
    Ok(Item {
        kind,
        name: it.name,
        version: it.version,
        path: it.path,
        presence,
        source: it.source,
        attrs: it.attrs.into_iter().collect(),
    })
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A named section with its digest, as sent on the wire.
pub fn section_to_wire(name: &str, s: &Section) -> v1::Section {
    v1::Section {
        name: name.to_string(),
        digest: s.digest(),
        items: s.items.iter().map(item_to_wire).collect(),
    }
}

/// A wire section as a domain section; its digest must match its content.
pub fn section_from_wire(s: v1::Section) -> Result<(String, Section), InvalidSection> {
    if s.name.is_empty() || s.name.len() > 64 {
        return Err(InvalidSection(format!(
            "bad section name {:?}",
            truncate(&s.name)
        )));
    }
    let mut items = Vec::with_capacity(s.items.len());
    for it in s.items {
        items.push(
            item_from_wire(it)
                .map_err(|e| InvalidSection(format!("section {:?}: {}", s.name, e.0)))?,
        );
    }
    let mut section = Section { items };
    section.normalise();
    let digest = section.digest();
    if digest != s.digest {
        return Err(InvalidSection(format!(
            "section {:?}: digest {:?} does not match its content ({digest})",
            s.name,
            truncate(&s.digest)
        )));
    }
    Ok((s.name, section))
}

/// A domain detection as a wire detection.
pub fn detection_to_wire(d: &Detection) -> v1::Detection {
    v1::Detection {
        product_id: d.product_id.clone(),
        vendor: d.vendor.clone(),
        product: d.product.clone(),
        category: d.category.as_str().to_string(),
        state: d.state.as_str().to_string(),
        version: d.version.clone(),
        evidence: d
            .evidence
            .iter()
            .map(|e| v1::Evidence {
                kind: e.kind.clone(),
                value: e.value.clone(),
                matched: e.matched.clone(),
                location: e.location.clone(),
                state: e.state.as_str().to_string(),
            })
            .collect(),
    }
}

/// A wire detection as a domain detection.
pub fn detection_from_wire(d: v1::Detection) -> Result<Detection, InvalidSection> {
    let state = |s: &str| {
        State::parse(s).ok_or_else(|| InvalidSection(format!("unknown detection state {s:?}")))
    };
    let category = Category::parse(&d.category)
        .ok_or_else(|| InvalidSection(format!("unknown category {:?}", d.category)))?;
    let mut evidence = Vec::with_capacity(d.evidence.len());
    for e in d.evidence {
        evidence.push(Evidence {
            state: state(&e.state)?,
            kind: e.kind,
            value: e.value,
            matched: e.matched,
            location: e.location,
        });
    }
    Ok(Detection {
        state: state(&d.state)?,
        product_id: d.product_id,
        vendor: d.vendor,
        product: d.product,
        category,
        version: d.version,
        evidence,
    })
}

/// Domain host facts as wire facts.
pub fn facts_to_wire(f: &HostFacts) -> v1::HostFacts {
    v1::HostFacts {
        hostname: f.hostname.clone(),
        os_name: f.os_name.clone(),
        os_version: f.os_version.clone(),
        kernel: f.kernel.clone(),
        arch: f.arch.clone(),
        ips: f.ips.clone(),
        agent_version: f.agent_version.clone(),
        platform: f.platform.clone(),
        hardware_id: f.hardware_id.clone(),
    }
}

/// Wire host facts as domain facts; oversized fields are refused.
pub fn facts_from_wire(f: v1::HostFacts) -> Result<HostFacts, InvalidSection> {
    for (what, v) in [
        ("hostname", &f.hostname),
        ("os_name", &f.os_name),
        ("os_version", &f.os_version),
        ("kernel", &f.kernel),
        ("arch", &f.arch),
        ("platform", &f.platform),
        ("hardware_id", &f.hardware_id),
    ] {
        if v.len() > 256 {
            return Err(InvalidSection(format!(
                "host fact {what} is longer than 256 bytes"
            )));
        }
    }
    if f.ips.len() > 256 || f.ips.iter().any(|ip| ip.len() > 64) {
        return Err(InvalidSection("too many or too long IP addresses".into()));
    }
    Ok(HostFacts {
        hostname: f.hostname,
        os_name: f.os_name,
        os_version: f.os_version,
        kernel: f.kernel,
        arch: f.arch,
        ips: f.ips,
        agent_version: f.agent_version,
        platform: f.platform,
        hardware_id: f.hardware_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_round_trips_and_a_wrong_digest_is_refused() {
        let s = Section {
            items: vec![Item {
                kind: ItemKind::Package,
                name: "kesl".into(),
                version: "11".into(),
                path: String::new(),
                presence: Presence::Present,
                source: "/var/lib/dpkg/status".into(),
                attrs: Default::default(),
            }],
        };
        let wire = section_to_wire("packages", &s);
        let (name, back) = section_from_wire(wire.clone()).unwrap();
        assert_eq!(name, "packages");
        assert_eq!(back, s);

        let mut bad = wire.clone();
        bad.items[0].version = "12".into();
        let e = section_from_wire(bad).unwrap_err();
        assert!(e.0.contains("does not match"), "{e}");

        let mut bad = wire;
        bad.items[0].kind = "toaster".into();
        let e = section_from_wire(bad).unwrap_err();
        assert!(e.0.contains("toaster"), "{e}");
    }
}
