//! Files and folders that the catalog names (install folders, leftovers),
//! checked under a root. Only paths the catalog asks about are looked at.

use muster_catalog::{Catalog, Item, ItemKind, MatchMode, Presence};
use std::path::Path;

/// One item per catalog path that exists under `root`.
pub fn read(root: &Path, catalog: &Catalog) -> Vec<Item> {
    let mut out = Vec::new();
    for ind in catalog.products.iter().flat_map(|p| &p.indicators) {
        if ind.kind != ItemKind::FilePath || ind.mode == MatchMode::Glob {
            continue;
        }
        let rel = ind.value.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == "..") {
            continue;
        }
        if std::fs::symlink_metadata(root.join(rel)).is_ok() {
            out.push(Item {
                kind: ItemKind::FilePath,
                name: ind.value.clone(),
                version: String::new(),
                path: ind.value.clone(),
                presence: Presence::Present,
                source: "filesystem".into(),
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
        let items = read(&root, &Catalog::builtin());
        let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["/opt/kaspersky/kesl"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
