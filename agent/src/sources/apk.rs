//! Alpine packages from `lib/apk/db/installed` under a root.
//!
//! The database is a list of paragraphs separated by blank lines, each line
//! a one-letter key, a colon and a value (`P:` name, `V:` version, `A:` arch,
//! `o:` origin). The last paragraph need not end with a blank line.

use super::SourceError;
use muster_catalog::{Item, ItemKind, Presence};
use std::path::Path;

/// The installed database, relative to the root.
pub const INSTALLED: &str = "lib/apk/db/installed";

/// Reads the packages under `root`; no apk database is no packages.
pub fn read(root: &Path) -> Result<Vec<Item>, SourceError> {
    let path = Path::new("/").join(INSTALLED);
    let Some(bytes) = super::fsroot::read(root, INSTALLED)? else {
        return Ok(Vec::new());
    };
    // A stray non-UTF-8 byte in a description must not hide the packages.
    let text = String::from_utf8_lossy(&bytes);
    if !looks_like_database(&text) {
        return Err(SourceError::invalid(
            &path,
            "not an apk database (no `P:` package line)",
        ));
    }
    Ok(parse(&text, &format!("/{INSTALLED}")))
}

/// True for an empty database (apk writes one when nothing is installed) or
/// one with at least one package line; anything else is a damaged or
/// foreign file, reported rather than taken for an empty system.
fn looks_like_database(text: &str) -> bool {
    text.trim().is_empty() || text.lines().any(|l| l.starts_with("P:"))
}

/// Parses an apk installed database. Never fails: a paragraph without a
/// package name is skipped, so one damaged entry cannot hide the others.
pub fn parse(text: &str, source: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let mut para = Paragraph::default();
    for line in text.lines() {
        // Files copied through Windows tools may carry CRLF line ends.
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            out.extend(para.take().into_item(source));
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "P" => para.name = value.to_string(),
            "V" => para.version = value.to_string(),
            "A" => para.arch = value.to_string(),
            "o" => para.origin = value.to_string(),
            _ => {}
        }
    }
    // The last paragraph has no blank line after it in most databases.
    out.extend(para.into_item(source));
    out
}

/// The fields of one paragraph that the inventory keeps.
#[derive(Default)]
struct Paragraph {
    name: String,
    version: String,
    arch: String,
    origin: String,
}

impl Paragraph {
    fn take(&mut self) -> Paragraph {
        std::mem::take(self)
    }

    fn into_item(self, source: &str) -> Option<Item> {
        if self.name.is_empty() {
            return None;
        }
        Some(
            Item::new(ItemKind::Package, self.name, Presence::Present, source)
                .version(self.version)
                .attr("manager", "apk")
                .attr("arch", self.arch)
                .attr("origin", self.origin),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A temporary root with `db` as its installed database.
    fn root_with(db: &[u8]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("temp dir");
        let path = root.path().join(INSTALLED);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&path, db).expect("write db");
        root
    }

    fn find<'a>(items: &'a [Item], name: &str) -> &'a Item {
        items
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("{name} not found in {items:?}"))
    }

    #[test]
    fn reads_the_scalibr_fixture() {
        let Some(db) = crate::sources::fixture("apk/osv-scalibr_installed") else {
            return;
        };
        let root = root_with(&std::fs::read(db).expect("fixture"));
        let items = read(root.path()).expect("readable");
        assert_eq!(items.len(), 15, "{items:?}");
        assert!(items.iter().all(|i| i.attrs["arch"] == "x86_64"));
        assert!(items.iter().all(|i| i.attrs["manager"] == "apk"));
        assert!(items.iter().all(|i| i.source == "/lib/apk/db/installed"));
        assert!(items.iter().all(|i| i.presence == Presence::Present));
        assert_eq!(find(&items, "musl").version, "1.2.4-r0");
        assert_eq!(find(&items, "apk-tools").version, "2.14.0-r0");
        // The record without a blank line after it is read too.
        let last = items.last().expect("items");
        assert!(!last.name.is_empty());
        let crypto = find(&items, "libcrypto3");
        assert_eq!(crypto.version, "3.1.0-r4");
        assert_eq!(crypto.attrs["origin"], "openssl");
        assert_eq!(find(&items, "ssl_client").attrs["origin"], "busybox");
        assert_eq!(
            find(&items, "ca-certificates-bundle").version,
            "20230506-r0"
        );
    }

    #[test]
    fn reads_the_syft_fixture_that_ends_in_a_blank_line() {
        let Some(db) = crate::sources::fixture("apk/syft_multiple-2_installed") else {
            return;
        };
        let root = root_with(&std::fs::read(db).expect("fixture"));
        let items = read(root.path()).expect("readable");
        assert_eq!(items.len(), 14, "{items:?}");
        assert_eq!(find(&items, "busybox").version, "1.35.0-r17");
        assert_eq!(find(&items, "libcrypto1.1").attrs["origin"], "openssl");
    }

    #[test]
    fn absent_database_is_no_packages() {
        let root = tempfile::tempdir().expect("temp dir");
        assert!(read(root.path()).expect("ok").is_empty());
    }

    #[test]
    fn empty_database_is_no_packages() {
        let root = root_with(b"");
        assert!(read(root.path()).expect("ok").is_empty());
    }

    #[test]
    fn foreign_or_unreadable_database_is_an_error() {
        let root = root_with(b"\x00\x01binary garbage\xff\n");
        assert!(read(root.path()).is_err());
        // A folder where the file should be cannot be read.
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join(INSTALLED)).expect("mkdir");
        assert!(read(root.path()).is_err());
    }

    #[test]
    fn crlf_and_nameless_paragraphs() {
        let text = "P:a\r\nV:1\r\n\r\nV:2\nA:x\n\n\n\nP:b\nV:3\no:c\n";
        let items = parse(text, "s");
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(
            (items[0].name.as_str(), items[0].version.as_str()),
            ("a", "1")
        );
        assert_eq!(items[1].attrs["origin"], "c");
        assert!(!items[1].attrs.contains_key("arch"));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,400}") {
            let _ = parse(&s, "x");
        }

        #[test]
        fn never_panics_on_line_shaped_text(
            lines in proptest::collection::vec("([PVAoCR]:)?[^\n]{0,20}", 0..30)
        ) {
            let text = lines.join("\n");
            let items = parse(&text, "x");
            prop_assert!(items.len() <= lines.len());
        }

        #[test]
        fn every_well_formed_paragraph_is_read(
            pkgs in proptest::collection::btree_map(
                "[a-z0-9][a-z0-9+._-]{0,20}",
                ("[0-9][0-9a-z._]{0,8}-r[0-9]{1,2}", "(x86_64|aarch64|noarch)", "[a-z0-9-]{0,10}"),
                0..20,
            ),
            trailing_blank in any::<bool>(),
        ) {
            let mut text: String = pkgs
                .iter()
                .map(|(n, (v, a, o))| {
                    format!("C:Q1abc=\nP:{n}\nV:{v}\nA:{a}\nS:1\no:{o}\nR:some/file\nZ:Q1x=\n\n")
                })
                .collect();
            if !trailing_blank {
                text.truncate(text.trim_end().len());
                text.push('\n');
            }
            let items = parse(&text, "x");
            prop_assert_eq!(items.len(), pkgs.len());
            for it in &items {
                let (v, a, o) = &pkgs[&it.name];
                prop_assert_eq!(&it.version, v);
                prop_assert_eq!(&it.attrs["arch"], a);
                prop_assert_eq!(it.attrs.get("origin").map(String::as_str).unwrap_or(""), o.as_str());
            }
        }
    }
}
