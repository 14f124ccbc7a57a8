//! The detection engine: inventory + catalog -> detections with evidence.

use crate::inventory::Platform;
use crate::inventory::{Inventory, Item, Presence};
use crate::model::{Catalog, Category, IndRef, Index, State, fold_into};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One indicator that matched, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Evidence {
    /// The indicator's kind, e.g. `package`.
    pub kind: String,
    /// The indicator's value, e.g. `kesl`.
    pub value: String,
    /// The inventory item it matched, by name.
    pub matched: String,
    /// Where: the source that read the item and its path (`dpkg
    /// /var/lib/dpkg/status`, `systemd /lib/systemd/system/kesl.service`).
    pub location: String,
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
    /// The version, from the first matching package or registration that has one.
    #[serde(default)]
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

fn location(it: &Item) -> String {
    match (it.source.is_empty(), it.path.is_empty()) {
        (_, true) => it.source.clone(),
        (true, false) => it.path.clone(),
        (false, false) if it.path == it.source => it.path.clone(),
        (false, false) => format!("{} {}", it.source, it.path),
    }
}

/// Finds every catalog product in the inventory.
///
/// Each item is looked up once in the catalog's index (exact names, folded
/// names, then the globs of its kind). An item proves at most what its
/// indicator says, and never more than its own presence allows: a package
/// removed but not purged is a remnant even when a package indicator could
/// prove `installed`. Indicators of another platform than the inventory's
/// are not used.
pub fn evaluate(inv: &Inventory, catalog: &Catalog) -> Vec<Detection> {
    let index = &catalog.index;
    let mut found: BTreeMap<u32, Vec<Evidence>> = BTreeMap::new();
    let mut versions: BTreeMap<u32, String> = BTreeMap::new();
    let mut folded = String::new();
    let mut hit = |r: IndRef, it: &Item, found: &mut BTreeMap<u32, Vec<Evidence>>| {
        let p = &catalog.products[r.product as usize];
        let ind = &p.indicators[r.indicator as usize];
        if !it.version.is_empty() && it.presence != Presence::Leftover {
            versions
                .entry(r.product)
                .or_insert_with(|| it.version.clone());
        }
        found.entry(r.product).or_default().push(Evidence {
            kind: ind.kind.as_str().to_string(),
            value: ind.value.clone(),
            matched: it.name.clone(),
            location: location(it),
            state: ind.proves.min(cap(it.presence)),
        });
    };
    let platforms: &[Platform] = match &inv.platform {
        Some(p) => std::slice::from_ref(p),
        None => &[Platform::Linux, Platform::Windows, Platform::Macos],
    };
    for it in inv.items() {
        for &platform in platforms {
            let slot = &index.by[Index::slot(platform, it.kind)];
            if let Some(refs) = slot.exact.get(it.name.as_str()) {
                for &r in refs {
                    hit(r, it, &mut found);
                }
            }
            if !slot.folded.is_empty() || slot.globs.iter().any(|g| g.1) {
                fold_into(it.kind, &it.name, &mut folded);
            }
            if let Some(refs) = slot.folded.get(folded.as_str()) {
                for &r in refs {
                    hit(r, it, &mut found);
                }
            }
            for (prefix, is_folded, glob, r) in &slot.globs {
                let name = if *is_folded {
                    folded.as_str()
                } else {
                    it.name.as_str()
                };
                if name.starts_with(prefix.as_str()) && glob.is_match(name) {
                    hit(*r, it, &mut found);
                }
            }
        }
    }
    found
        .into_iter()
        .map(|(pi, mut evidence)| {
            let p = &catalog.products[pi as usize];
            evidence.sort();
            evidence.dedup();
            Detection {
                product_id: p.id.clone(),
                vendor: p.vendor.clone(),
                product: p.name.clone(),
                category: p.category,
                state: evidence
                    .iter()
                    .map(|e| e.state)
                    .max()
                    .unwrap_or(State::Remnant),
                version: versions.remove(&pi).unwrap_or_default(),
                evidence,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{ItemKind, Platform, Section};

    fn item(kind: ItemKind, name: &str, presence: Presence) -> Item {
        Item {
            kind,
            name: name.into(),
            version: "11.1.0".into(),
            path: String::new(),
            presence,
            source: "test".into(),
            attrs: Default::default(),
        }
    }

    fn inv(items: Vec<Item>) -> Inventory {
        let mut inv = Inventory::default();
        inv.sections.insert("all".into(), Section { items });
        inv
    }

    fn catalog(extra: &str) -> Catalog {
        Catalog::from_files(&[("t.toml", extra)], &[], &[]).unwrap()
    }

    const WIN: &str = r#"vendor = "Acme"
[[products]]
id = "acme.av"
name = "Acme AV"
category = "antivirus"
platforms = ["windows", "linux"]
[[products.indicators]]
kind = "service"
value = "AcmeSvc"
platform = "windows"
proves = "installed"
source = "s"
[[products.indicators]]
kind = "file_path"
value = "C:\\Program Files\\Acme"
platform = "windows"
proves = "remnant"
source = "s"
[[products.indicators]]
kind = "uninstall_display_name"
value = "Acme Antivirus *"
match = "glob"
platform = "windows"
proves = "installed"
source = "s"
[[products.indicators]]
kind = "process"
value = "acmed"
platform = "linux"
proves = "running"
source = "s"
"#;

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
        assert!(
            kesl.evidence
                .iter()
                .any(|e| e.kind == "package" && e.matched == "kesl")
        );
        assert!(
            kesl.evidence
                .iter()
                .any(|e| e.kind == "process" && e.state == State::Running)
        );
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
        assert_eq!(
            d[0].version, "",
            "a remnant's version is not the installed version"
        );
    }

    #[test]
    fn look_alike_names_do_not_match() {
        let c = Catalog::builtin();
        let d = evaluate(
            &inv(vec![
                item(ItemKind::Package, "keslx", Presence::Present),
                item(ItemKind::Package, "KESL", Presence::Present),
                item(ItemKind::Package, "clamz", Presence::Present),
                item(ItemKind::Process, "kesl-", Presence::Active),
            ]),
            &c,
        );
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn windows_names_match_without_case_and_with_either_slash() {
        let c = catalog(WIN);
        let mut i = inv(vec![
            item(ItemKind::Service, "acmesvc", Presence::Present),
            item(
                ItemKind::FilePath,
                "c:/program files/ACME",
                Presence::Present,
            ),
            item(
                ItemKind::UninstallDisplayName,
                "ACME ANTIVIRUS 2024",
                Presence::Present,
            ),
        ]);
        i.platform = Some(Platform::Windows);
        let d = evaluate(&i, &c);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].evidence.len(), 3, "{:?}", d[0].evidence);
        assert_eq!(d[0].state, State::Installed);
        // Only the folder left: a remnant.
        let mut i = inv(vec![item(
            ItemKind::FilePath,
            "C:\\Program Files\\Acme",
            Presence::Present,
        )]);
        i.platform = Some(Platform::Windows);
        assert_eq!(evaluate(&i, &c)[0].state, State::Remnant);
    }

    /// A host moved from Kaspersky to UltraAV by the September 2024 update:
    /// UltraAV installed, Kaspersky's driver left behind.
    #[test]
    fn a_migrated_host_shows_ultraav_and_the_kaspersky_remnant() {
        let c = Catalog::builtin();
        let mut i = inv(vec![
            item(ItemKind::UninstallDisplayName, "UltraAV", Presence::Present),
            item(ItemKind::Driver, "KLIF.SYS", Presence::Leftover),
            item(
                ItemKind::UninstallDisplayName,
                "Ultra Tools",
                Presence::Present,
            ),
        ]);
        i.platform = Some(Platform::Windows);
        let d = evaluate(&i, &c);
        let ids: Vec<&str> = d.iter().map(|d| d.product_id.as_str()).collect();
        assert!(ids.contains(&"pango.ultraav"), "{ids:?}");
        assert!(!ids.contains(&"pango.ultravpn"), "{ids:?}");
        let kaspersky: Vec<_> = d.iter().filter(|d| d.vendor == "Kaspersky").collect();
        assert!(!kaspersky.is_empty(), "{ids:?}");
        assert!(
            kaspersky.iter().all(|d| d.state == State::Remnant),
            "{kaspersky:?}"
        );
    }

    #[test]
    fn indicators_of_another_platform_are_not_used() {
        let c = catalog(WIN);
        let mut i = inv(vec![item(ItemKind::Process, "acmed", Presence::Active)]);
        i.platform = Some(Platform::Windows);
        assert!(evaluate(&i, &c).is_empty());
        i.platform = Some(Platform::Linux);
        assert_eq!(evaluate(&i, &c)[0].state, State::Running);
    }
}
