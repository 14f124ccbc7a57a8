//! Snap packages: the `.snap` files of `var/lib/snapd/snaps` (named
//! `<name>_<revision>.snap`), with the version from the mounted
//! `snap/<name>/<revision>/meta/snap.yaml` where the image has it.

use super::SourceError;
use muster_catalog::{Item, ItemKind, Presence};
use std::collections::BTreeMap;
use std::path::Path;

/// The folder of installed snap files, relative to the root.
pub const SNAPS: &str = "var/lib/snapd/snaps";

/// `name_revision.snap` -> (name, revision). Snap names have no `_`.
pub fn parse_file_name(file: &str) -> Option<(&str, &str)> {
    let stem = file.strip_suffix(".snap")?;
    let (name, rev) = stem.rsplit_once('_')?;
    (!name.is_empty() && !rev.is_empty() && !name.contains('_')).then_some((name, rev))
}

fn version_of(root: &Path, name: &str, rev: &str) -> String {
    let rel = format!("snap/{name}/{rev}/meta/snap.yaml");
    let Ok(Some(bytes)) = super::fsroot::read(root, &rel) else {
        return String::new();
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .find_map(|l| l.strip_prefix("version:"))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
        .unwrap_or_default()
}

/// The snaps under `root`; the highest revision of each is reported.
pub fn read(root: &Path) -> Result<Vec<Item>, SourceError> {
    let Some(dir) = super::fsroot::resolve(root, SNAPS) else {
        return Ok(Vec::new());
    };
    let rd = std::fs::read_dir(&dir).map_err(|e| SourceError::read(&dir, e))?;
    let mut latest: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for e in rd.flatten().take(10_000) {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some((name, rev)) = parse_file_name(&file) else {
            continue;
        };
        // Local installs have revisions like x1; order them after store ones.
        let order = rev.trim_start_matches('x').parse::<u64>().unwrap_or(0);
        let entry = latest.entry(name.to_string()).or_insert((0, String::new()));
        if entry.1.is_empty() || order >= entry.0 {
            *entry = (order, rev.to_string());
        }
    }
    Ok(latest
        .into_iter()
        .map(|(name, (_, rev))| {
            let version = version_of(root, &name, &rev);
            Item::new(
                ItemKind::Package,
                name.as_str(),
                Presence::Present,
                format!("/{SNAPS}"),
            )
            .version(version)
            .path(format!("/{SNAPS}/{name}_{rev}.snap"))
            .attr("manager", "snap")
            .attr("revision", rev)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snap_file_names() {
        assert_eq!(
            parse_file_name("core22_1380.snap"),
            Some(("core22", "1380"))
        );
        assert_eq!(
            parse_file_name("falcon-sensor_x1.snap"),
            Some(("falcon-sensor", "x1"))
        );
        assert_eq!(parse_file_name("bad.snap"), None);
        assert_eq!(parse_file_name("a_b_c.snap"), None);
        assert_eq!(parse_file_name("core22_1380.snap.partial"), None);
    }

    #[test]
    fn the_latest_revision_with_its_version() {
        let root = std::env::temp_dir().join(format!("muster-snap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join(SNAPS)).unwrap();
        for f in ["firefox_4000.snap", "firefox_4100.snap", "core22_1380.snap"] {
            std::fs::write(root.join(SNAPS).join(f), b"").unwrap();
        }
        std::fs::create_dir_all(root.join("snap/firefox/4100/meta")).unwrap();
        std::fs::write(
            root.join("snap/firefox/4100/meta/snap.yaml"),
            "name: firefox\nversion: '120.0'\n",
        )
        .unwrap();
        let items = read(&root).unwrap();
        assert_eq!(items.len(), 2);
        let ff = items.iter().find(|i| i.name == "firefox").unwrap();
        assert_eq!(ff.version, "120.0");
        assert_eq!(ff.attrs["revision"], "4100");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
