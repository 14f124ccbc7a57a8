//! Files and folders that the catalog names (install folders, leftovers),
//! checked under a root. Only paths the catalog asks about are looked at.

use super::system::find_ci;
use muster_catalog::{Catalog, Item, ItemKind, MatchMode, Platform, Presence};
use std::path::Path;

/// One item per catalog path of `platform` (Linux or macOS) that exists
/// under `root`.
pub fn read(root: &Path, catalog: &Catalog, platform: Platform) -> Vec<Item> {
    let mut out = Vec::new();
    for ind in catalog.products.iter().flat_map(|p| &p.indicators) {
        if ind.kind != ItemKind::FilePath || ind.mode == MatchMode::Glob || ind.platform != platform
        {
            continue;
        }
        let rel = ind.value.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == "..") {
            continue;
        }
        if super::fsroot::resolve(root, rel).is_some() {
            out.push(Item {
                kind: ItemKind::FilePath,
                name: ind.value.clone(),
                version: String::new(),
                path: ind.value.clone(),
                presence: Presence::Present,
                source: "filesystem".into(),
                attrs: Default::default(),
            });
        }
    }
    out
}

/// One item per catalog Windows path (`C:\\Program Files\\...`) that exists
/// on the volume under `root`, folder names compared without regard to case.
pub fn read_windows(root: &Path, catalog: &Catalog) -> Vec<Item> {
    let mut out = Vec::new();
    for ind in catalog.products.iter().flat_map(|p| &p.indicators) {
        if ind.kind != ItemKind::FilePath
            || ind.mode == MatchMode::Glob
            || ind.platform != Platform::Windows
        {
            continue;
        }
        let v = ind.value.replace('/', "\\");
        // Drive letters all map to the volume's root.
        let rel = match v.as_bytes() {
            [_, b':', b'\\', ..] => &v[3..],
            _ => continue,
        };
        let parts: Vec<&str> = rel.split('\\').filter(|p| !p.is_empty()).collect();
        if parts.is_empty() || parts.contains(&"..") {
            continue;
        }
        if find_ci(root, &parts).is_some() {
            out.push(Item {
                kind: ItemKind::FilePath,
                name: ind.value.clone(),
                version: String::new(),
                path: ind.value.clone(),
                presence: Presence::Present,
                source: "filesystem".into(),
                attrs: Default::default(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_catalog_paths_under_the_root_only() {
        let root = std::env::temp_dir().join(format!("muster-paths-{}", std::process::id()));
        std::fs::create_dir_all(root.join("opt/kaspersky/kesl")).unwrap();
        let items = read(&root, &Catalog::builtin(), Platform::Linux);
        let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["/opt/kaspersky/kesl"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
