//! Installed rpm packages, read from the rpm database under a root without
//! rpm, librpm or Berkeley DB, and without writing anything (the root may be
//! a read-only image).
//!
//! rpm keeps one header blob per package in one of three backends: SQLite
//! (rpm >= 4.16), NDB (SUSE) and Berkeley DB hash (older systems). Each
//! backend module only finds the blobs; [`header`] reads the package fields.
//!
//! Damage policy: a database whose structure cannot be walked (bad magic,
//! a page or block pointer outside the file) is an error for the whole
//! source. A single header blob that does not parse is skipped, like a
//! damaged dpkg paragraph, so one bad record cannot hide the others; but
//! when no record parses at all the database is reported as damaged.

mod bdb;
mod header;
mod ndb;
mod sqlite;

use super::SourceError;
use muster_catalog::{Item, ItemKind, Presence};
use std::fmt::Display;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The storage format of an rpm database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Ndb,
    Bdb,
}

/// Where rpm keeps its database, relative to the root, in the order they
/// are tried: newer locations and formats first, because an upgraded
/// system can keep a stale old database next to the live one.
const DATABASES: [(&str, Backend); 5] = [
    ("usr/lib/sysimage/rpm/rpmdb.sqlite", Backend::Sqlite),
    ("var/lib/rpm/rpmdb.sqlite", Backend::Sqlite),
    ("usr/lib/sysimage/rpm/Packages.db", Backend::Ndb),
    ("var/lib/rpm/Packages.db", Backend::Ndb),
    ("var/lib/rpm/Packages", Backend::Bdb),
];

/// Reads the packages of the first rpm database found under `root`; no
/// database is no packages.
pub fn read(root: &Path) -> Result<Vec<Item>, SourceError> {
    for (rel, backend) in DATABASES {
        // Resolved inside the image: a link may not lead out of it.
        let Some(path) = super::fsroot::resolve(root, rel) else {
            continue;
        };
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => return read_database(&path, backend, &format!("/{rel}")),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SourceError::read(&path, e)),
        }
    }
    Ok(Vec::new())
}

/// Reads one database file; `source` is what the items name as their source.
fn read_database(path: &Path, backend: Backend, source: &str) -> Result<Vec<Item>, SourceError> {
    let mut packages = Packages::new(source);
    let walked = match backend {
        Backend::Sqlite => sqlite::read(path, &mut |blob| packages.add(blob)),
        Backend::Ndb | Backend::Bdb => {
            let mut file = Reader::open(path).map_err(|e| SourceError::read(path, e))?;
            let mut visit = |blob: &[u8]| packages.add(blob);
            if backend == Backend::Ndb {
                ndb::read(&mut file, &mut visit)
            } else {
                bdb::read(&mut file, &mut visit)
            }
        }
    };
    match walked {
        Ok(()) => packages
            .finish()
            .map_err(|reason| SourceError::invalid(path, reason)),
        Err(Fail::Io(e)) => Err(SourceError::read(path, e)),
        Err(Fail::Bad(reason)) => Err(SourceError::invalid(path, reason)),
    }
}

/// Collects items from header blobs, counting those that did not parse.
struct Packages<'a> {
    source: &'a str,
    items: Vec<Item>,
    skipped: usize,
    first_problem: Option<String>,
}

impl<'a> Packages<'a> {
    fn new(source: &'a str) -> Self {
        Packages {
            source,
            items: Vec::new(),
            skipped: 0,
            first_problem: None,
        }
    }

    /// Adds the package in `blob`. Never fails, so a backend can go on to
    /// the next record (see the damage policy at the top).
    fn add(&mut self, blob: &[u8]) -> Result<(), Fail> {
        match header::parse(blob) {
            Ok(p) => self.items.push(item(p, self.source)),
            Err(reason) => {
                self.skipped += 1;
                self.first_problem.get_or_insert(reason);
            }
        }
        Ok(())
    }

    /// The items, or why none could be read although records were there.
    fn finish(self) -> Result<Vec<Item>, String> {
        match self.first_problem {
            Some(problem) if self.items.is_empty() => Err(format!(
                "none of its {} package headers could be read; the first: {problem}",
                self.skipped
            )),
            _ => Ok(self.items),
        }
    }
}

/// The inventory item of one package.
fn item(p: header::Package, source: &str) -> Item {
    let version = if p.release.is_empty() {
        p.version
    } else {
        format!("{}-{}", p.version, p.release)
    };
    Item::new(ItemKind::Package, p.name, Presence::Present, source)
        .version(version)
        .attr("manager", "rpm")
        .attr("release", p.release)
        .attr("epoch", p.epoch.map(|e| e.to_string()).unwrap_or_default())
        .attr("vendor", p.vendor)
        .attr("arch", p.arch)
}

/// Why a backend stopped: the file could not be read, or it is damaged.
#[derive(Debug)]
enum Fail {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io(e)
    }
}

/// A damaged-database failure with its reason.
fn bad(reason: impl Display) -> Fail {
    Fail::Bad(reason.to_string())
}

/// Random access to a database file (or, in tests, to bytes in memory)
/// with every read checked against the length, so a bad offset in the file
/// becomes a clear error rather than a short read or a huge allocation.
struct Reader<R> {
    inner: R,
    len: u64,
}

impl Reader<std::fs::File> {
    fn open(path: &Path) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Reader { inner: file, len })
    }
}

impl<R: Read + Seek> Reader<R> {
    #[cfg(test)]
    fn new(mut inner: R) -> io::Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        Ok(Reader { inner, len })
    }

    /// `len` bytes at `offset`; `what` names them in the error.
    fn at(&mut self, offset: u64, len: usize, what: &str) -> Result<Vec<u8>, Fail> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(bad(format!(
                "{what} ({len} bytes at offset {offset}) lies beyond the end of the file ({} bytes); the file is truncated or damaged",
                self.len
            )));
        }
        self.inner.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0; len];
        self.inner.read_exact(&mut buf)?;
        Ok(buf)
    }
}

/// A little-endian u32 at `at`, if the bytes are there.
fn le32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    /// A fixture under shared/fixtures/rpm.
    fn fixture(rel: &str) -> Option<PathBuf> {
        crate::sources::fixture(&format!("rpm/{rel}"))
    }

    const MARINER: &str = "go-rpmdb_cbl-mariner-2.0/rpmdb.sqlite";
    const FEDORA: &str = "osquery_fedora33-sqlite/rpmdb.sqlite";
    const SLE15: &str = "go-rpmdb_sle15-bci/Packages.db";
    const SLES: &str = "osquery_sles-ndb/Packages.db";
    const CENTOS6: &str = "osquery_centos6-bdb/Packages";
    const UBI8: &str = "go-rpmdb_libuuid-ubi8/Packages";
    const DIVE: &str = "syft_dive-bdb/Packages";
    const EPOCH: &str = "osv-scalibr_epoch-bdb/Packages";

    const ALL: [(&str, Backend); 8] = [
        (MARINER, Backend::Sqlite),
        (FEDORA, Backend::Sqlite),
        (SLE15, Backend::Ndb),
        (SLES, Backend::Ndb),
        (CENTOS6, Backend::Bdb),
        (UBI8, Backend::Bdb),
        (DIVE, Backend::Bdb),
        (EPOCH, Backend::Bdb),
    ];

    /// The items of a fixture, or `None` when it is absent.
    fn items_of(rel: &str, backend: Backend) -> Option<Vec<Item>> {
        let path = fixture(rel)?;
        Some(read_database(&path, backend, "/db").expect("fixture reads"))
    }

    fn find<'a>(items: &'a [Item], name: &str) -> &'a Item {
        items
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no package {name}"))
    }

    fn attr<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
        item.attrs.get(key).map(String::as_str)
    }

    /// Reads in-memory bytes with a file backend, as `read_database` would.
    fn parse_bytes(bytes: &[u8], backend: Backend) -> Result<Vec<Item>, String> {
        let mut file = Reader::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
        let mut packages = Packages::new("/db");
        let walked = match backend {
            Backend::Ndb => ndb::read(&mut file, &mut |b| packages.add(b)),
            _ => bdb::read(&mut file, &mut |b| packages.add(b)),
        };
        match walked {
            Ok(()) => packages.finish(),
            Err(Fail::Bad(r)) => Err(r),
            Err(Fail::Io(e)) => Err(e.to_string()),
        }
    }

    /// A fresh, empty folder under the system temp folder.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("muster-rpm-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn mariner_sqlite() {
        let Some(items) = items_of(MARINER, Backend::Sqlite) else {
            return;
        };
        assert_eq!(items.len(), 129);
        let bash = find(&items, "bash");
        assert_eq!(bash.version, "5.1.8-1.cm2");
        assert_eq!(bash.kind, ItemKind::Package);
        assert_eq!(bash.presence, Presence::Present);
        assert_eq!(bash.source, "/db");
        assert_eq!(attr(bash, "manager"), Some("rpm"));
        assert_eq!(attr(bash, "release"), Some("1.cm2"));
        assert_eq!(attr(bash, "arch"), Some("x86_64"));
        assert_eq!(attr(bash, "vendor"), Some("Microsoft Corporation"));
        assert_eq!(attr(bash, "epoch"), None);
        assert_eq!(find(&items, "mariner-release").attrs["arch"], "noarch");
        let mut with_epoch: Vec<&str> = items
            .iter()
            .filter(|i| attr(i, "epoch") == Some("1"))
            .map(|i| i.name.as_str())
            .collect();
        with_epoch.sort();
        assert_eq!(
            with_epoch,
            [
                "ca-certificates-base",
                "ca-certificates-shared",
                "ca-certificates-tools"
            ]
        );
    }

    #[test]
    fn fedora_sqlite() {
        let Some(items) = items_of(FEDORA, Backend::Sqlite) else {
            return;
        };
        assert_eq!(items.len(), 9);
        assert_eq!(find(&items, "rpm-libs").version, "4.16.0-1.fc33");
        assert_eq!(find(&items, "systemd-rpm-macros").version, "246.6-3.fc33");
        assert!(
            items
                .iter()
                .all(|i| attr(i, "vendor") == Some("Fedora Project"))
        );
    }

    #[test]
    fn sle15_ndb() {
        let Some(items) = items_of(SLE15, Backend::Ndb) else {
            return;
        };
        assert_eq!(items.len(), 35);
        let release = find(&items, "sles-release");
        assert_eq!(release.version, "15.3-55.4.1");
        assert_eq!(
            attr(release, "vendor"),
            Some("SUSE LLC <https://www.suse.com/>")
        );
        assert_eq!(find(&items, "bash").version, "4.4-19.6.1");
        assert_eq!(find(&items, "rpm-ndb").version, "4.14.3-40.1");
    }

    #[test]
    fn sles_ndb() {
        let Some(items) = items_of(SLES, Backend::Ndb) else {
            return;
        };
        let mut names: Vec<(&str, &str)> = items
            .iter()
            .map(|i| (i.name.as_str(), i.version.as_str()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ("binutils", "2.35.1-7.18.1"),
                ("ncurses-devel", "6.1-5.6.2"),
                ("zlib-devel", "1.2.11-3.21.1")
            ]
        );
    }

    #[test]
    fn centos6_bdb_with_overflow_pages() {
        let Some(items) = items_of(CENTOS6, Backend::Bdb) else {
            return;
        };
        assert_eq!(items.len(), 3);
        for name in ["rpm", "rpm-libs", "rpm-python"] {
            let p = find(&items, name);
            assert_eq!(p.version, "4.8.0-59.el6");
            assert_eq!(attr(p, "vendor"), Some("CentOS"));
            assert_eq!(attr(p, "arch"), Some("x86_64"));
        }
    }

    #[test]
    fn ubi8_bdb_header_spanning_many_overflow_pages() {
        let Some(items) = items_of(UBI8, Backend::Bdb) else {
            return;
        };
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].name, "libuuid");
        assert_eq!(items[0].version, "2.32.1-42.el8_8");
        assert_eq!(attr(&items[0], "vendor"), Some("Red Hat, Inc."));
    }

    #[test]
    fn dive_bdb_without_vendor() {
        let Some(items) = items_of(DIVE, Backend::Bdb) else {
            return;
        };
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].name, "dive");
        assert_eq!(items[0].version, "0.9.2-1");
        assert_eq!(attr(&items[0], "vendor"), None);
    }

    #[test]
    fn epoch_bdb() {
        let Some(items) = items_of(EPOCH, Backend::Bdb) else {
            return;
        };
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].name, "hello");
        assert_eq!(items[0].version, "0.0.1-rls");
        assert_eq!(attr(&items[0], "epoch"), Some("1"));
        assert_eq!(attr(&items[0], "vendor"), None);
    }

    /// Rewrites a little-endian hash database (meta, hash and overflow
    /// pages) as the same database written on a big-endian host.
    fn to_big_endian(le: &[u8], page_size: usize) -> Vec<u8> {
        let mut be = le.to_vec();
        let swap = |b: &mut [u8], at: usize, len: usize| b[at..at + len].reverse();
        let le16 = |at: usize| usize::from(u16::from_le_bytes([le[at], le[at + 1]]));
        for field in [12, 16, 20, 32] {
            swap(&mut be, field, 4);
        }
        for page in (page_size..le.len()).step_by(page_size) {
            let kind = le[page + 25];
            if !matches!(kind, 2 | 7 | 13) {
                continue;
            }
            for field in [8, 12, 16] {
                swap(&mut be, page + field, 4);
            }
            swap(&mut be, page + 20, 2);
            swap(&mut be, page + 22, 2);
            if kind == 7 {
                continue;
            }
            for i in 0..le16(page + 20) {
                let item = page + le16(page + 26 + 2 * i);
                swap(&mut be, page + 26 + 2 * i, 2);
                if le[item] == 3 {
                    swap(&mut be, item + 4, 4);
                    swap(&mut be, item + 8, 4);
                }
            }
        }
        be
    }

    #[test]
    fn big_endian_bdb() {
        for (rel, version) in [(DIVE, "0.9.2-1"), (UBI8, "2.32.1-42.el8_8")] {
            let Some(path) = fixture(rel) else { continue };
            let le = std::fs::read(path).expect("read");
            let items = parse_bytes(&to_big_endian(&le, 4096), Backend::Bdb).expect("big-endian");
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].version, version);
        }
    }

    #[test]
    fn read_picks_the_first_database_in_order() {
        let (Some(sqlite), Some(bdb)) = (fixture(FEDORA), fixture(DIVE)) else {
            return;
        };
        let root = temp_dir("order");
        assert!(read(&root).expect("empty root").is_empty());
        std::fs::create_dir_all(root.join("var/lib/rpm")).expect("mkdir");
        std::fs::copy(&bdb, root.join("var/lib/rpm/Packages")).expect("copy");
        let items = read(&root).expect("bdb");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].source, "/var/lib/rpm/Packages");
        std::fs::create_dir_all(root.join("usr/lib/sysimage/rpm")).expect("mkdir");
        let db = root.join("usr/lib/sysimage/rpm/rpmdb.sqlite");
        std::fs::copy(&sqlite, &db).expect("copy");
        let items = read(&root).expect("sqlite");
        assert_eq!(items.len(), 9);
        assert_eq!(items[0].source, "/usr/lib/sysimage/rpm/rpmdb.sqlite");
        // Immutable, read-only access leaves no journal files behind.
        let names: Vec<_> = std::fs::read_dir(db.parent().expect("parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["rpmdb.sqlite"]);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn sqlite_opens_paths_that_need_escaping() {
        let Some(sqlite) = fixture(FEDORA) else {
            return;
        };
        let root = temp_dir("esc");
        let dir = root.join("a b?c#d%e");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::copy(&sqlite, dir.join("rpmdb.sqlite")).expect("copy");
        let items = read_database(&dir.join("rpmdb.sqlite"), Backend::Sqlite, "/x").expect("reads");
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(items.len(), 9);
    }

    #[test]
    fn damaged_databases_are_invalid_with_a_reason() {
        let dir = temp_dir("damaged");
        let garbage = dir.join("garbage");
        std::fs::write(&garbage, vec![0x5a; 8192]).expect("write");
        for (backend, reason) in [
            (Backend::Sqlite, "SQLite"),
            (Backend::Ndb, "RpmP"),
            (Backend::Bdb, "magic"),
        ] {
            let e = read_database(&garbage, backend, "/x").expect_err("garbage");
            assert_eq!(e.path, garbage);
            assert!(e.reason.contains(reason), "{backend:?}: {}", e.reason);
        }
        if let Some(path) = fixture(UBI8) {
            // Page 2 holds the package's key and its H_OFFPAGE value (page 1
            // holds rpm's key-0 counter); point the value's chain past the file.
            let mut bytes = std::fs::read(path).expect("read");
            let page = 2 * 4096;
            let item = page + usize::from(u16::from_le_bytes([bytes[page + 28], bytes[page + 29]]));
            assert_eq!(bytes[item], 3, "H_OFFPAGE");
            bytes[item + 4..item + 8].copy_from_slice(&9999u32.to_le_bytes());
            let e = parse_bytes(&bytes, Backend::Bdb).expect_err("bad chain");
            assert!(e.contains("overflow chain breaks off at page 9999"), "{e}");
        }
        if let Some(path) = fixture(SLES) {
            let mut bytes = std::fs::read(path).expect("read");
            bytes[32..36].copy_from_slice(b"Slob");
            let e = parse_bytes(&bytes, Backend::Ndb).expect_err("bad slot");
            assert!(e.contains("no Slot magic"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn truncated_fixtures_never_panic() {
        let dir = temp_dir("truncated");
        for (rel, backend) in ALL {
            let Some(path) = fixture(rel) else { continue };
            let bytes = std::fs::read(path).expect("read");
            let half = &bytes[..bytes.len() / 2];
            let result = match backend {
                Backend::Sqlite => {
                    let copy = dir.join("rpmdb.sqlite");
                    std::fs::write(&copy, half).expect("write");
                    read_database(&copy, backend, "/x").map_err(|e| e.reason)
                }
                _ => parse_bytes(half, backend),
            };
            println!("{rel} cut in half: {:?}", result.map(|i| i.len()));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Fixture bytes for the mutation tests, read once; empty when absent.
    fn fixture_bytes(rel: &'static str) -> &'static [u8] {
        static CACHE: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
        let all = CACHE.get_or_init(|| {
            ALL.iter()
                .filter_map(|(r, _)| Some((*r, std::fs::read(fixture(r)?).ok()?)))
                .collect()
        });
        all.iter()
            .find(|(r, _)| *r == rel)
            .map(|(_, b)| b.as_slice())
            .unwrap_or(&[])
    }

    /// Overwrites bytes of `base` at the given (position, value) pairs.
    fn mutate(base: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
        let mut bytes = base.to_vec();
        if !bytes.is_empty() {
            let n = bytes.len();
            for &(at, v) in edits {
                bytes[at % n] = v;
            }
        }
        bytes
    }

    /// A Berkeley DB hash metadata page (512-byte pages) naming `pages` pages.
    fn bdb_meta(pages: u32) -> Vec<u8> {
        let mut meta = vec![0u8; 512];
        meta[12..16].copy_from_slice(&0x0006_1561u32.to_le_bytes());
        meta[16..20].copy_from_slice(&9u32.to_le_bytes());
        meta[20..24].copy_from_slice(&512u32.to_le_bytes());
        meta[25] = 8;
        meta[32..36].copy_from_slice(&(pages - 1).to_le_bytes());
        meta
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn bdb_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse_bytes(&bytes, Backend::Bdb);
        }

        #[test]
        fn bdb_never_panics_past_a_valid_meta_page(
            pages in prop::collection::vec(prop::collection::vec(any::<u8>(), 512), 1..8),
            hash_type in prop::sample::select(vec![2u8, 7, 13]),
        ) {
            let mut bytes = bdb_meta(pages.len() as u32 + 1);
            for mut page in pages {
                page[25] = hash_type;
                bytes.extend_from_slice(&page);
            }
            let _ = parse_bytes(&bytes, Backend::Bdb);
        }

        #[test]
        fn ndb_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse_bytes(&bytes, Backend::Ndb);
        }

        #[test]
        fn ndb_never_panics_past_a_valid_header(
            body in prop::collection::vec(any::<u8>(), 0..8192),
            slots in prop::collection::vec((1u32..5, 256u32..700, 0u32..300), 0..16),
        ) {
            let mut bytes = b"RpmP".to_vec();
            for v in [0u32, 1, 1, 5, 0, 0, 0] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            for (idx, off, cnt) in slots {
                bytes.extend_from_slice(b"Slot");
                for v in [idx, off, cnt] {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
            bytes.resize(4096, 0);
            bytes.extend_from_slice(&body);
            let _ = parse_bytes(&bytes, Backend::Ndb);
        }

        #[test]
        fn mutated_fixtures_never_panic(
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..16),
            which in 0usize..6,
        ) {
            // The file-backend fixtures (the SQLite ones are SQLite's concern).
            let (rel, backend) = ALL[2 + which];
            let _ = parse_bytes(&mutate(fixture_bytes(rel), &edits), backend);
        }
    }
}
