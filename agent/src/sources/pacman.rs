//! Arch Linux packages from `var/lib/pacman/local/*/desc` under a root.
//!
//! Each installed package has a folder `name-version-release` holding a
//! `desc` file of sections: a `%NAME%` header line, then one value per line
//! up to a blank line.

use super::SourceError;
use muster_catalog::{Item, ItemKind, Presence};
use std::path::Path;

/// The local database folder, relative to the root.
pub const LOCAL: &str = "var/lib/pacman/local";

/// Reads the packages under `root`; no pacman database is no packages.
pub fn read(root: &Path) -> Result<Vec<Item>, SourceError> {
    // Resolved inside the image: a link may not lead out of it.
    let Some(dir) = super::fsroot::resolve(root, LOCAL) else {
        return Ok(Vec::new());
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SourceError::read(&dir, e)),
    };
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SourceError::read(&dir, e))?;
        // pacman never makes these symlinks; following one could leave the
        // root of an offline image and read the scanning host's files.
        match entry.file_type() {
            Ok(t) if t.is_dir() => folders.push(entry.file_name()),
            _ => {}
        }
    }
    // Sorted so the output does not depend on the file system's order.
    folders.sort();
    let mut out = Vec::new();
    for folder in folders {
        let desc = dir.join(&folder).join("desc");
        let bytes = match std::fs::read(&desc) {
            Ok(b) => b,
            // A folder without desc is a half-removed package (pacman warns
            // and goes on); the others are still worth reporting.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // Any other error (permissions) would hit every package alike.
            Err(e) => return Err(SourceError::read(&desc, e)),
        };
        let source = format!("/{LOCAL}/{}/desc", folder.to_string_lossy());
        out.extend(parse_desc(&String::from_utf8_lossy(&bytes), &source));
    }
    Ok(out)
}

/// Parses one `desc` file; `None` when it names no package, so one damaged
/// entry cannot hide the others.
pub fn parse_desc(text: &str, source: &str) -> Option<Item> {
    let mut name = "";
    let mut version = "";
    let mut arch = "";
    let mut section: Option<&str> = None;
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            section = None;
            continue;
        }
        let header = line
            .strip_prefix('%')
            .and_then(|l| l.strip_suffix('%'))
            .filter(|h| !h.is_empty() && !h.contains('%'));
        if let Some(h) = header {
            section = Some(h);
            continue;
        }
        // Only the first value line counts: these sections hold one value.
        let slot = match section {
            Some("NAME") => &mut name,
            Some("VERSION") => &mut version,
            Some("ARCH") => &mut arch,
            _ => continue,
        };
        if slot.is_empty() {
            *slot = line.trim();
        }
    }
    if name.is_empty() {
        return None;
    }
    Some(
        Item::new(ItemKind::Package, name, Presence::Present, source)
            .version(version)
            .attr("manager", "pacman")
            .attr("arch", arch),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Copies a folder tree (files and folders only).
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read fixture dir").flatten() {
            let t = e.file_type().expect("file type");
            let dest = to.join(e.file_name());
            if t.is_dir() {
                copy_tree(&e.path(), &dest);
            } else if t.is_file() {
                std::fs::copy(e.path(), dest).expect("copy");
            }
        }
    }

    fn desc(name: &str, version: &str, arch: &str) -> String {
        format!(
            "%NAME%\n{name}\n\n%VERSION%\n{version}\n\n%BASE%\n{name}\n\n%DESC%\nA package\n\n%ARCH%\n{arch}\n\n%DEPENDS%\nglibc\nbash\n\n"
        )
    }

    #[test]
    fn reads_the_syft_fixture() {
        let Some(local) = crate::sources::fixture("pacman/syft_local") else {
            return;
        };
        let root = tempfile::tempdir().expect("temp dir");
        copy_tree(&local, &root.path().join(LOCAL));
        let items = read(root.path()).expect("readable");
        assert_eq!(items.len(), 1, "{items:?}");
        let p = &items[0];
        assert_eq!(p.name, "pacman");
        assert_eq!(p.version, "6.0.1-5");
        assert_eq!(p.presence, Presence::Present);
        assert_eq!(p.attrs["manager"], "pacman");
        assert_eq!(p.attrs["arch"], "x86_64");
        assert_eq!(p.source, "/var/lib/pacman/local/pacman-6.0.1-5/desc");
    }

    #[test]
    fn absent_database_is_no_packages() {
        let root = tempfile::tempdir().expect("temp dir");
        assert!(read(root.path()).expect("ok").is_empty());
    }

    #[test]
    fn damaged_entries_are_skipped_and_a_file_for_the_folder_is_an_error() {
        let root = tempfile::tempdir().expect("temp dir");
        let local = root.path().join(LOCAL);
        for (dir, text) in [
            ("a-1-1", desc("a", "1-1", "x86_64")),
            ("b-2-1", "garbage\n%VERSION%\n2-1\n".to_string()),
            ("c-3-1", desc("c", "3-1", "any")),
        ] {
            std::fs::create_dir_all(local.join(dir)).expect("mkdir");
            std::fs::write(local.join(dir).join("desc"), text).expect("write");
        }
        // No desc at all, and a stray file next to the package folders.
        std::fs::create_dir_all(local.join("d-4-1")).expect("mkdir");
        std::fs::write(local.join("ALPM_DB_VERSION"), "9\n").expect("write");
        let items = read(root.path()).expect("ok");
        let names: Vec<_> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(items[1].attrs["arch"], "any");

        let root = tempfile::tempdir().expect("temp dir");
        let local = root.path().join(LOCAL);
        std::fs::create_dir_all(local.parent().expect("parent")).expect("mkdir");
        std::fs::write(&local, "not a folder").expect("write");
        assert!(read(root.path()).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_package_folders_are_not_followed() {
        let outside = tempfile::tempdir().expect("temp dir");
        std::fs::write(outside.path().join("desc"), desc("evil", "1", "x")).expect("write");
        let root = tempfile::tempdir().expect("temp dir");
        let local = root.path().join(LOCAL);
        std::fs::create_dir_all(&local).expect("mkdir");
        std::os::unix::fs::symlink(outside.path(), local.join("evil-1")).expect("symlink");
        assert!(read(root.path()).expect("ok").is_empty());
    }

    #[test]
    fn crlf_and_first_value_only() {
        let text = "%NAME%\r\nfoo\r\nbar\r\n\r\n%VERSION%\r\n1.0-1\r\n";
        let it = parse_desc(text, "s").expect("item");
        assert_eq!((it.name.as_str(), it.version.as_str()), ("foo", "1.0-1"));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,400}") {
            let _ = parse_desc(&s, "x");
        }

        #[test]
        fn never_panics_on_section_shaped_text(
            lines in proptest::collection::vec("(%(NAME|VERSION|ARCH|DESC)%|%%|%|[^\n]{0,12})", 0..30)
        ) {
            let _ = parse_desc(&lines.join("\n"), "x");
        }

        #[test]
        fn every_well_formed_entry_is_read(
            pkgs in proptest::collection::btree_map(
                "[a-z0-9@_+][a-z0-9@._+-]{0,20}",
                ("[0-9][0-9a-z.:_+]{0,8}-[0-9]{1,2}", "(x86_64|aarch64|any)"),
                0..20,
            )
        ) {
            for (n, (v, a)) in &pkgs {
                let it = parse_desc(&desc(n, v, a), "x");
                prop_assert!(it.is_some(), "{} not read", n);
                let it = it.expect("checked");
                prop_assert_eq!(&it.name, n);
                prop_assert_eq!(&it.version, v);
                prop_assert_eq!(&it.attrs["arch"], a);
            }
        }
    }
}
