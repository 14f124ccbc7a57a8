//! Linux kernel modules: installed (`lib/modules/<release>/**/*.ko*` under
//! the root) and loaded (live hosts: `/proc/modules`, or `/sys/module` where
//! a sandbox hides `/proc/modules`).

use super::SourceError;
use muster_catalog::{Item, ItemKind, Presence};
use std::collections::BTreeMap;
use std::path::Path;

/// Most module files looked at per kernel release, and the deepest folder.
const MAX_FILES: usize = 50_000;
const MAX_DEPTH: usize = 8;

/// The module name of a file: `kav4fs_oas.ko.xz` -> `kav4fs_oas`; dashes
/// and underscores are the same to the kernel, so names use underscores.
pub fn module_name(file: &str) -> Option<String> {
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

fn walk(dir: &Path, depth: usize, out: &mut BTreeMap<String, String>, budget: &mut usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if *budget == 0 {
            return;
        }
        // Never follow links: a module tree is plain folders and files.
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() && depth < MAX_DEPTH {
            walk(&e.path(), depth + 1, out, budget);
        } else if ft.is_file()
            && let Some(name) = module_name(&e.file_name().to_string_lossy())
        {
            *budget -= 1;
            out.entry(name)
                .or_insert_with(|| e.path().display().to_string());
        }
    }
}

/// Installed modules of every kernel release under the root.
pub fn installed(root: &Path) -> Result<Vec<Item>, SourceError> {
    let mut out = Vec::new();
    for rel in ["lib/modules", "usr/lib/modules"] {
        let Some(dir) = super::fsroot::resolve(root, rel) else {
            continue;
        };
        let rd = std::fs::read_dir(&dir).map_err(|e| SourceError::read(&dir, e))?;
        for release in rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        {
            let mut found = BTreeMap::new();
            let mut budget = MAX_FILES;
            walk(&release.path(), 0, &mut found, &mut budget);
            let kernel = release.file_name().to_string_lossy().into_owned();
            for (name, path) in found {
                let shown = path
                    .strip_prefix(&root.display().to_string())
                    .unwrap_or(&path)
                    .to_string();
                out.push(
                    Item::new(
                        ItemKind::KernelModule,
                        name,
                        Presence::Present,
                        format!("/{rel}"),
                    )
                    .path(shown)
                    .attr("kernel", kernel.as_str()),
                );
            }
        }
    }
    Ok(out)
}

/// Loaded modules of the running kernel.
pub fn loaded() -> Vec<Item> {
    if let Ok(text) = std::fs::read_to_string("/proc/modules") {
        return text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|n| {
                Item::new(
                    ItemKind::KernelModule,
                    n.replace('-', "_"),
                    Presence::Active,
                    "/proc/modules",
                )
            })
            .collect();
    }
    // /sys/module also lists built-in modules; only those with a refcount
    // (loadable ones) are loaded modules.
    let Ok(rd) = std::fs::read_dir("/sys/module") else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.path().join("refcnt").exists())
        .map(|e| {
            Item::new(
                ItemKind::KernelModule,
                e.file_name().to_string_lossy().replace('-', "_"),
                Presence::Active,
                "/sys/module",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_file_names() {
        assert_eq!(module_name("kav4fs_oas.ko").unwrap(), "kav4fs_oas");
        assert_eq!(module_name("falcon-lsm.ko.xz").unwrap(), "falcon_lsm");
        assert_eq!(module_name("x.ko.zst").unwrap(), "x");
        assert!(module_name("modules.dep").is_none());
        assert!(module_name(".ko").is_none());
    }

    #[test]
    fn installed_modules_of_an_image() {
        let root = std::env::temp_dir().join(format!("muster-modules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let d = root.join("lib/modules/5.10.0-28-amd64/extra");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("redirfs.ko"), b"").unwrap();
        std::fs::write(d.join("modules.dep"), b"").unwrap();
        let items = installed(&root).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].name, "redirfs");
        assert_eq!(items[0].attrs["kernel"], "5.10.0-28-amd64");
        assert!(
            items[0].path.starts_with("/lib/modules/5.10.0-28-amd64/"),
            "{}",
            items[0].path
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn loaded_modules_come_from_proc_or_sys() {
        // Some sandboxes have neither; where there is one, names are normalised.
        for m in loaded() {
            assert!(!m.name.contains('-'), "{}", m.name);
            assert_eq!(m.presence, Presence::Active);
        }
    }
}
