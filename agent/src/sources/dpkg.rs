//! Debian packages from `var/lib/dpkg/status` under a root.
//!
//! The `Status` field decides presence: `config-files` is a package removed
//! but not purged (a remnant), `not-installed` is no package at all.

use super::SourceError;
use muster_catalog::{Item, ItemKind, Presence};
use std::path::Path;

/// The status database, relative to the root.
pub const STATUS: &str = "var/lib/dpkg/status";

/// Reads the packages under `root`; no dpkg database is no packages.
pub fn read(root: &Path) -> Result<Vec<Item>, SourceError> {
    let Some(bytes) = super::fsroot::read(root, STATUS)? else {
        return Ok(Vec::new());
    };
    Ok(parse(
        &String::from_utf8_lossy(&bytes),
        &format!("/{STATUS}"),
    ))
}

/// Parses a dpkg status file. Never fails: a paragraph without a package
/// name or with an unknown status is skipped, so one damaged entry cannot
/// hide the others.
pub fn parse(text: &str, source: &str) -> Vec<Item> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let mut name = None;
        let mut version = "";
        let mut status = None;
        let mut arch = "";
        for line in para.lines() {
            if line.starts_with([' ', '\t']) {
                continue; // continuation of a multi-line field
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "Package" => name = Some(value),
                "Version" => version = value,
                "Status" => status = Some(value),
                "Architecture" => arch = value,
                _ => {}
            }
        }
        let (Some(name), Some(status)) = (name, status) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let Some(presence) = presence(status) else {
            continue;
        };
        out.push(
            Item::new(ItemKind::Package, name, presence, source)
                .version(version)
                .attr("manager", "dpkg")
                .attr(
                    "status",
                    status.split_whitespace().nth(2).unwrap_or_default(),
                )
                .attr("arch", arch),
        );
    }
    out
}

/// The presence a `Status: want flag state` line means; `None` when the
/// package is not on the system.
fn presence(status: &str) -> Option<Presence> {
    match status.split_whitespace().nth(2)? {
        "not-installed" => None,
        "config-files" => Some(Presence::Leftover),
        "installed" | "half-installed" | "unpacked" | "half-configured" | "triggers-awaited"
        | "triggers-pending" => Some(Presence::Present),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "Package: kesl\nStatus: install ok installed\nPriority: optional\nVersion: 11.1.0-3013\nDescription: Kaspersky\n multi-line\n Status: deinstall ok config-files\n\nPackage: klnagent64\nStatus: deinstall ok config-files\nVersion: 14.0.0-4490\n\nPackage: gone\nStatus: purge ok not-installed\n\nStatus: install ok installed\n";

    #[test]
    fn status_decides_presence() {
        let items = parse(SAMPLE, "/var/lib/dpkg/status");
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0].name, "kesl");
        assert_eq!(items[0].version, "11.1.0-3013");
        assert_eq!(items[0].presence, Presence::Present);
        assert_eq!(items[1].name, "klnagent64");
        assert_eq!(items[1].presence, Presence::Leftover);
    }

    #[test]
    fn reads_the_shared_fixture_when_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/dpkg");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!(
                "skipped: {} is absent (a clone without ../shared)",
                dir.display()
            );
            return;
        };
        let mut seen = 0;
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_file() {
                continue;
            }
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            if !text.contains("Package:") {
                continue;
            }
            let items = parse(&text, "fixture");
            let paragraphs =
                text.matches("\nPackage: ").count() + usize::from(text.starts_with("Package: "));
            assert!(!items.is_empty(), "{}: no packages", p.display());
            assert!(items.len() <= paragraphs, "{}", p.display());
            seen += 1;
        }
        assert!(seen > 0, "no dpkg status file in {}", dir.display());
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,400}") {
            let _ = parse(&s, "x");
        }

        #[test]
        fn every_well_formed_paragraph_is_read(
            pkgs in proptest::collection::btree_map("[a-z0-9][a-z0-9+.-]{0,20}", "[0-9][0-9a-z.:~+-]{0,10}", 0..20)
        ) {
            let text: String = pkgs.iter()
                .map(|(n, v)| format!("Package: {n}\nStatus: install ok installed\nVersion: {v}\n\n"))
                .collect();
            let items = parse(&text, "x");
            prop_assert_eq!(items.len(), pkgs.len());
            for it in &items {
                prop_assert_eq!(pkgs.get(&it.name), Some(&it.version));
            }
        }
    }
}
