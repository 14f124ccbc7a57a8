//! Files and folders that the catalog names (install folders, leftovers),
//! checked under a root. Only paths the catalog asks about are looked at.

use super::system::find_ci;
use muster_catalog::{Catalog, Item, ItemKind, MatchMode, Platform, Presence};
use std::path::Path;

/// One item per catalog path of `platform` that exists under `root`.
/// Windows paths (`C:\\Program Files\\...`, any drive letter) are looked up
/// on the volume without regard to case; others as they are.
pub fn read(root: &Path, catalog: &Catalog, platform: Platform) -> Vec<Item> {
    // Many catalog paths share their first folders (`/opt`, `/Library/...`):
    // each is looked at once.
    let resolver = super::fsroot::Resolver::new(root);
    catalog
        .products
        .iter()
        .flat_map(|p| &p.indicators)
        .filter(|ind| {
            ind.kind == ItemKind::FilePath
                && ind.mode != MatchMode::Glob
                && ind.platform == platform
        })
        .filter(|ind| match platform {
            Platform::Windows => exists_on_volume(root, &ind.value),
            Platform::Linux | Platform::Macos => exists(&resolver, &ind.value),
        })
        .map(|ind| {
            Item::new(
                ItemKind::FilePath,
                ind.value.as_str(),
                Presence::Present,
                "filesystem",
            )
            .path(ind.value.as_str())
        })
        .collect()
}

fn exists(resolver: &super::fsroot::Resolver, value: &str) -> bool {
    let rel = value.trim_start_matches('/');
    !rel.is_empty() && !rel.split('/').any(|c| c == "..") && resolver.resolve(rel).is_some()
}

fn exists_on_volume(root: &Path, value: &str) -> bool {
    let v = value.replace('/', "\\");
    // Drive letters all map to the volume's root.
    let rel = match v.as_bytes() {
        [_, b':', b'\\', ..] => &v[3..],
        _ => return false,
    };
    let parts: Vec<&str> = rel.split('\\').filter(|p| !p.is_empty()).collect();
    !parts.is_empty() && !parts.contains(&"..") && find_ci(root, &parts).is_some()
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
