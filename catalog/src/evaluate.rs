//! The detection engine: inventory + catalog -> detections with evidence.

use crate::inventory::{Inventory, Item, Presence};
use crate::model::{Catalog, Category, Indicator, MatchMode, Product, State};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One indicator that matched, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Evidence {
    /// The indicator's kind, e.g. `package`.
    pub indicator_kind: String,
    /// The indicator's value, e.g. `kesl`.
    pub indicator_value: String,
    /// The inventory item it matched (name, and path where known).
    pub matched: String,
    /// Where that item was read.
    pub source: String,
    /// The state this piece of evidence proves.
    pub state: State,
}

/// A product found on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    /// The product's id.
    pub product_id: String,
    /// Vendor name.
    pub vendor: String,
    /// Product name.
    pub product: String,
    /// Category.
    pub category: Category,
    /// The strongest state its evidence proves.
    pub state: State,
    /// The version, from the first matching package that has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Every indicator that matched.
    pub evidence: Vec<Evidence>,
}

fn cap(presence: Presence) -> State {
    match presence {
        Presence::Active => State::Running,
        Presence::Present => State::Installed,
        Presence::Leftover => State::Remnant,
    }
}

fn matches(ind: &Indicator, glob: Option<&globset::GlobMatcher>, name: &str) -> bool {
    match ind.mode {
        MatchMode::Exact => ind.value == name,
        MatchMode::CaseInsensitive => ind.value.eq_ignore_ascii_case(name),
        MatchMode::Glob => glob.is_some_and(|g| g.is_match(name)),
    }
}

/// Finds every catalog product in the inventory.
///
/// An item proves at most what its indicator says, and never more than its
/// own presence allows: a package removed but not purged is a remnant even
/// when a package indicator could prove `installed`.
pub fn evaluate(inv: &Inventory, catalog: &Catalog) -> Vec<Detection> {
    // Index once by (kind, lowercase name): exact and case-insensitive
    // indicators then cost one lookup; globs scan their kind only.
    let mut by_name: HashMap<(crate::ItemKind, String), Vec<&Item>> = HashMap::new();
    let mut by_kind: HashMap<crate::ItemKind, Vec<&Item>> = HashMap::new();
    for it in inv.items() {
        by_name
            .entry((it.kind, it.name.to_ascii_lowercase()))
            .or_default()
            .push(it);
        by_kind.entry(it.kind).or_default().push(it);
    }
    let mut out = Vec::new();
    for p in &catalog.products {
        if let Some(d) = evaluate_product(p, &by_name, &by_kind) {
            out.push(d);
        }
    }
    out
}

fn evaluate_product(
    p: &Product,
    by_name: &HashMap<(crate::ItemKind, String), Vec<&Item>>,
    by_kind: &HashMap<crate::ItemKind, Vec<&Item>>,
) -> Option<Detection> {
    let mut evidence = Vec::new();
    let mut version = String::new();
    for ind in &p.indicators {
        let glob = (ind.mode == MatchMode::Glob)
            .then(|| {
                globset::Glob::new(&ind.value)
                    .ok()
                    .map(|g| g.compile_matcher())
            })
            .flatten();
        let candidates: &[&Item] = match ind.mode {
            MatchMode::Glob => by_kind.get(&ind.kind).map(Vec::as_slice).unwrap_or(&[]),
            _ => by_name
                .get(&(ind.kind, ind.value.to_ascii_lowercase()))
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        };
        for it in candidates {
            if !matches(ind, glob.as_ref(), &it.name) {
                continue;
            }
            if version.is_empty() && it.presence != Presence::Leftover {
                version = it.version.clone();
            }
            let matched = if it.path.is_empty() {
                it.name.clone()
            } else {
                format!("{} ({})", it.name, it.path)
            };
            evidence.push(Evidence {
                indicator_kind: ind.kind.as_str().to_string(),
                indicator_value: ind.value.clone(),
                matched,
                source: it.source.clone(),
                state: ind.proves.min(cap(it.presence)),
            });
        }
    }
    let state = evidence.iter().map(|e| e.state).max()?;
    evidence.sort();
    evidence.dedup();
    Some(Detection {
        product_id: p.id.clone(),
        vendor: p.vendor.clone(),
        product: p.name.clone(),
        category: p.category,
        state,
        version,
        evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{ItemKind, Section};

    fn item(kind: ItemKind, name: &str, presence: Presence) -> Item {
        Item {
            kind,
            name: name.into(),
            version: "11.1.0".into(),
            path: String::new(),
            presence,
            source: "test".into(),
        }
    }

    fn inv(items: Vec<Item>) -> Inventory {
        let mut inv = Inventory::default();
        inv.sections.insert("all".into(), Section { items });
        inv
    }

    #[test]
    fn running_beats_installed_and_evidence_is_listed() {
        let c = Catalog::builtin();
        let d = evaluate(
            &inv(vec![
                item(ItemKind::Package, "kesl", Presence::Present),
                item(ItemKind::Process, "kesl", Presence::Active),
            ]),
            &c,
        );
        let kesl = d
            .iter()
            .find(|d| d.product_id == "kaspersky.endpoint-security-linux")
            .expect("kesl detected");
        assert_eq!(kesl.state, State::Running);
        assert_eq!(kesl.version, "11.1.0");
        assert_eq!(kesl.vendor, "Kaspersky");
        assert!(kesl.evidence.iter().any(|e| e.indicator_kind == "package"));
        assert!(kesl.evidence.iter().any(|e| e.indicator_kind == "process"));
    }

    #[test]
    fn a_removed_but_not_purged_package_is_a_remnant() {
        let c = Catalog::builtin();
        let d = evaluate(
            &inv(vec![item(ItemKind::Package, "kesl", Presence::Leftover)]),
            &c,
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].state, State::Remnant);
    }

    #[test]
    fn nothing_matches_an_unrelated_inventory() {
        let c = Catalog::builtin();
        let d = evaluate(
            &inv(vec![
                item(ItemKind::Package, "bash", Presence::Present),
                item(ItemKind::Process, "keslx", Presence::Active),
                item(ItemKind::Service, "kesl", Presence::Present),
            ]),
            &c,
        );
        // "kesl" as a service name is an indicator; "keslx" as a process is not.
        assert!(
            d.iter()
                .all(|d| d.evidence.iter().all(|e| e.matched != "keslx"))
        );
    }
}
