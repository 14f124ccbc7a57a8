//! Trusted root certificates under a root (a live `/` or an offline image):
//! the system trust store's PEM bundles and folders, and the NSS databases
//! (`cert9.db`) of Firefox profiles and `~/.pki/nssdb`, where security
//! products that inspect TLS add their own root.
//!
//! The image is untrusted data, so: a symlink is followed only where the
//! trust store is built of them (the entries of `etc/ssl/certs` and
//! `etc/pki/tls/certs`), and then resolved inside the image with a bounded
//! number of links, never on the scanning host; elsewhere symlinks are
//! skipped. Every file is capped in size, folders in depth and entries, and
//! one damaged file is skipped and counted while the others are still read.
//! A certificate seen in several files is reported once, where first seen.

use super::SourceError;
use super::browser::{MAX_DIR_ENTRIES, MAX_FILE_BYTES, read_capped, shown};
use muster_catalog::{Item, ItemKind, Presence};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::FileType;
use std::path::{Path, PathBuf};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Folders whose entries are read, resolving the symlinks they are made of
/// (Debian links `etc/ssl/certs/*.pem` into `usr/share/ca-certificates`,
/// RHEL links `etc/pki/tls/certs/ca-bundle.crt` into `etc/pki/ca-trust`).
const LINKED: &[&str] = &["etc/ssl/certs", "etc/pki/tls/certs"];

/// Folders read recursively, without following symlinks.
const TREES: &[&str] = &[
    "etc/pki/ca-trust/source/anchors",
    "usr/local/share/ca-certificates",
    "usr/share/ca-certificates",
];

/// Single bundles outside those folders (macOS, Alpine, Arch, SUSE).
const BUNDLES: &[&str] = &["etc/ssl/cert.pem", "etc/ssl/ca-bundle.pem"];

/// How deep a tree is walked; real ones are one or two levels.
const MAX_DEPTH: usize = 8;

/// The most files looked at in one scan.
const MAX_FILES: usize = 50_000;

/// The most PEM blocks taken from one file; a full bundle has a few hundred.
const MAX_BLOCKS: usize = 20_000;

/// The most certificates one scan reports, and rows read from one NSS db.
const MAX_CERTS: usize = 100_000;

use super::{Partial as Scan, Tally};

/// The trusted root certificates under `root`.
#[cfg(test)]
fn read(root: &Path) -> Result<Vec<Item>, SourceError> {
    scan(root).map(|s| s.items)
}

/// Like [`read`], also counting the skipped files. Fails only when
/// something was there to read and nothing at all could be read.
pub fn scan(root: &Path) -> Result<Scan, SourceError> {
    let mut w = Walker {
        root,
        resolver: super::fsroot::Resolver::new(root),
        seen: HashSet::new(),
        read_paths: HashSet::new(),
        t: Tally::default(),
        files: 0,
    };
    for rel in LINKED {
        w.linked_folder(rel);
    }
    for rel in TREES {
        if let Some(dir) = w.resolver.resolve(rel).filter(|p| p.is_dir()) {
            w.tree(&dir, 0);
        }
    }
    for rel in BUNDLES {
        if let Some(file) = w.resolver.resolve(rel) {
            let shown = shown(root, &root.join(rel));
            w.file(&file, &shown);
        }
    }
    w.nss_databases();
    w.t.finish()
}

struct Walker<'a> {
    root: &'a Path,
    resolver: super::fsroot::Resolver<'a>,
    /// SHA-256 of the DER of every certificate reported.
    seen: HashSet<[u8; 32]>,
    /// Files already read (resolved paths).
    read_paths: HashSet<PathBuf>,
    t: Tally,
    files: usize,
}

/// One folder entry, symlinks included (as themselves).
struct Entry {
    name: OsString,
    path: PathBuf,
    kind: FileType,
}

/// The entries of `dir`, sorted, at most [`MAX_DIR_ENTRIES`].
fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = rd
        .flatten()
        .take(MAX_DIR_ENTRIES)
        .filter_map(|e| {
            Some(Entry {
                kind: e.file_type().ok()?,
                name: e.file_name(),
                path: e.path(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A file name a certificate store uses: `.pem`, `.crt`, `.cer`, `.der`.
/// (OpenSSL's hash links `1234abcd.0` duplicate the `.pem` files.)
fn is_cert_name(name: &OsString) -> bool {
    let n = name.to_string_lossy().to_ascii_lowercase();
    [".pem", ".crt", ".cer", ".der"]
        .iter()
        .any(|ext| n.ends_with(ext))
}

impl Walker<'_> {
    fn skip(&mut self, e: SourceError) {
        self.t.skip(e);
    }

    /// The certificate files directly in `rel`, symlinks resolved inside
    /// the image.
    fn linked_folder(&mut self, rel: &str) {
        let Some(dir) = self.resolver.resolve(rel).filter(|p| p.is_dir()) else {
            return;
        };
        for e in entries(&dir) {
            if !is_cert_name(&e.name) {
                continue;
            }
            let shown = format!("/{rel}/{}", e.name.to_string_lossy());
            let target = if e.kind.is_symlink() {
                // The link's own path within the image, resolved there: an
                // absolute target starts again at the image's root, `..`
                // stops at it, and link chains are bounded.
                let inner = Path::new(rel).join(&e.name);
                match self.resolver.resolve(&inner) {
                    Some(t) => t,
                    None => continue, // dangling or looping: nothing to read
                }
            } else {
                e.path
            };
            self.file(&target, &shown);
        }
    }

    /// Every certificate file below `dir`, no symlink followed.
    fn tree(&mut self, dir: &Path, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        for e in entries(dir) {
            if e.kind.is_dir() {
                self.tree(&e.path, depth + 1);
            } else if e.kind.is_file() && is_cert_name(&e.name) {
                let shown = shown(self.root, &e.path);
                self.file(&e.path, &shown);
            }
        }
    }

    /// One PEM or DER file (already resolved inside the image).
    fn file(&mut self, path: &Path, shown: &str) {
        if self.files >= MAX_FILES {
            return;
        }
        // Debian's etc/ssl/certs holds each root under its name and its
        // hash, both links to one file: read each file once.
        if !self.read_paths.insert(path.to_path_buf()) {
            return;
        }
        self.files += 1;
        let bytes = match read_capped(path) {
            Ok(b) => b,
            Err(e) => return self.skip(SourceError::invalid(Path::new(shown), e.reason)),
        };
        let seen = &self.seen;
        let parsed = parse_file_with(&bytes, |der| {
            !seen.contains(&<[u8; 32]>::from(Sha256::digest(der)))
        });
        if parsed.damaged > 0 {
            self.skip(SourceError::invalid(
                Path::new(shown),
                format!("{} damaged certificate(s)", parsed.damaged),
            ));
        }
        if !parsed.certs.is_empty() {
            self.t.read_ok += 1;
        }
        for c in parsed.certs {
            self.add(c, shown, "system", "");
        }
    }

    fn add(&mut self, c: Cert, shown: &str, store: &str, user: &str) {
        if self.t.items.len() >= MAX_CERTS || !self.seen.insert(c.sha256) {
            return;
        }
        let name = if c.common_name.is_empty() {
            c.subject.clone()
        } else {
            c.common_name
        };
        let item = Item::new(ItemKind::RootCertificate, name, Presence::Present, shown)
            .path(shown)
            .attr("subject", c.subject)
            .attr("issuer", c.issuer)
            .attr("sha256", hex::encode(c.sha256))
            .attr("not_after", c.not_after)
            .attr("store", store)
            .attr("user", user);
        self.t.items.push(item);
    }

    /// The NSS databases: each Firefox profile's, each user's shared
    /// `~/.pki/nssdb` (Chrome on Linux), and the system's `etc/pki/nssdb`.
    fn nss_databases(&mut self) {
        let mut dbs: Vec<(PathBuf, String)> = Vec::new();
        for (home, profile) in super::browser::firefox_profiles(self.root) {
            dbs.push((profile.join("cert9.db"), home.user));
        }
        for home in super::browser::homes(self.root) {
            if let Some(d) = super::browser::find_dir_ci(&home.dir, &[".pki", "nssdb"]) {
                dbs.push((d.join("cert9.db"), home.user));
            }
        }
        if let Some(d) = super::fsroot::resolve(self.root, "etc/pki/nssdb") {
            dbs.push((d.join("cert9.db"), String::new()));
        }
        for (db, user) in dbs {
            // Only a regular file: a link could point out of the image.
            if !std::fs::symlink_metadata(&db).is_ok_and(|m| m.is_file()) {
                continue;
            }
            let shown = shown(self.root, &db);
            match nss_certs(&db) {
                Ok(ders) => {
                    self.t.read_ok += 1;
                    for der in ders {
                        // Rows that are not certificates (keys, trust
                        // settings) do not parse; they are not damage.
                        if let Some(c) = parse_der(&der) {
                            self.add(c, &shown, "nss", &user);
                        }
                    }
                }
                Err(e) => self.skip(SourceError::invalid(Path::new(&shown), e)),
            }
        }
    }
}

/// The `CKA_VALUE` blobs of an NSS `cert9.db` (column `a11` of table
/// `nssPublic`), the database opened read-only and immutable: no journal
/// or lock file is made or read, so an image is never written to.
fn nss_certs(db: &Path) -> Result<Vec<Vec<u8>>, String> {
    use rusqlite::{Connection, OpenFlags, types::ValueRef};
    let len = std::fs::symlink_metadata(db)
        .map_err(|e| e.to_string())?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(format!("{len} bytes is too large to read"));
    }
    let conn = Connection::open_with_flags(
        format!("file:{}?mode=ro&immutable=1", uri_path(db)),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    // The schema is the image's: no functions of it may run, and the table
    // must be a plain table (a view could make the query arbitrarily slow).
    conn.execute_batch("PRAGMA trusted_schema = OFF;")
        .map_err(|e| e.to_string())?;
    let plain: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'nssPublic' \
             AND sql NOT LIKE 'CREATE VIRTUAL%'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    if plain != 1 {
        return Err("no nssPublic table".into());
    }
    let mut stmt = conn
        .prepare("SELECT a11 FROM nssPublic WHERE a11 IS NOT NULL LIMIT ?1")
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([MAX_CERTS as i64], |r| {
            Ok(match r.get_ref(0)? {
                ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
                _ => Vec::new(),
            })
        })
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// `path` percent-encoded for an SQLite `file:` URI (`?`, `#` and `%` in
/// a file name would otherwise change its meaning).
fn uri_path(path: &Path) -> String {
    let bytes = path.as_os_str().as_encoded_bytes();
    let mut s = String::new();
    if cfg!(windows) {
        s.push('/'); // file:/C:/... on Windows
    }
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' | b'~' => {
                s.push(b as char)
            }
            b'\\' if cfg!(windows) => s.push('/'),
            b':' if cfg!(windows) => s.push(':'),
            _ => s.push_str(&format!("%{b:02X}")),
        }
    }
    s
}

/// The facts of one certificate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cert {
    pub sha256: [u8; 32],
    pub common_name: String,
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
}

/// The certificates of one file, and how many of its blocks were damaged.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub certs: Vec<Cert>,
    pub damaged: usize,
}

/// Parses a PEM file (any number of `CERTIFICATE` blocks; other blocks are
/// ignored) or, without a PEM header, one DER certificate.
#[cfg(test)]
pub(crate) fn parse_file(bytes: &[u8]) -> Parsed {
    parse_file_with(bytes, |_| true)
}

/// Like [`parse_file`], parsing only the certificates `wanted` accepts by
/// their DER bytes (parsing X.509 is the costly part; the same root often
/// stands in a bundle and in its own file).
pub(crate) fn parse_file_with(bytes: &[u8], mut wanted: impl FnMut(&[u8]) -> bool) -> Parsed {
    let mut p = Parsed::default();
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        if !wanted(bytes) {
            return p;
        }
        match parse_der(bytes) {
            Some(c) => p.certs.push(c),
            None => p.damaged += 1,
        }
        return p;
    }
    let mut rd: &[u8] = bytes;
    for _ in 0..MAX_BLOCKS {
        let before = rd.len();
        match rustls_pemfile::read_one(&mut rd) {
            Ok(None) => break,
            Ok(Some(rustls_pemfile::Item::X509Certificate(der))) if !wanted(&der) => {}
            Ok(Some(rustls_pemfile::Item::X509Certificate(der))) => match parse_der(&der) {
                Some(c) => p.certs.push(c),
                None => p.damaged += 1,
            },
            Ok(Some(_)) => {} // keys, CRLs: not certificates
            Err(_) => p.damaged += 1,
        }
        // A reader that stopped advancing would loop until MAX_BLOCKS.
        if rd.len() == before {
            break;
        }
    }
    p
}

/// One DER certificate, `None` when it is not one.
pub(crate) fn parse_der(der: &[u8]) -> Option<Cert> {
    let (rest, cert) = X509Certificate::from_der(der).ok()?;
    // Hash the certificate's own bytes, without anything after it.
    let own = der.get(..der.len().saturating_sub(rest.len()))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .find_map(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let t = cert.validity().not_after.to_datetime();
    Some(Cert {
        sha256: Sha256::digest(own).into(),
        common_name,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;

    fn copy_tree(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap().flatten() {
            let dest = to.join(e.file_name());
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                #[cfg(unix)]
                std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), &dest).unwrap();
            } else if t.is_dir() {
                copy_tree(&e.path(), &dest);
            } else {
                fs::copy(e.path(), &dest).unwrap();
            }
        }
    }

    fn self_signed(cn: &str) -> (String, Vec<u8>) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "AO Kaspersky Lab");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), cert.der().to_vec())
    }

    const KL: &str = "Kaspersky Anti-Virus Personal Root Certificate";

    #[test]
    fn the_hosts_store_and_an_added_root() {
        let root = tempfile::tempdir().unwrap();
        let host = Path::new("/etc/ssl/certs");
        let have_host = host.is_dir();
        if have_host {
            // The links into usr/share/ca-certificates are kept as links,
            // and their targets copied, as on a Debian image.
            copy_tree(host, &root.path().join("etc/ssl/certs"));
            let share = Path::new("/usr/share/ca-certificates");
            if share.is_dir() {
                copy_tree(share, &root.path().join("usr/share/ca-certificates"));
            }
        } else {
            eprintln!("skipped: this machine has no /etc/ssl/certs");
        }
        let (pem, der) = self_signed(KL);
        let dir = root
            .path()
            .join("usr/local/share/ca-certificates/kaspersky");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("kl-root.crt"), &pem).unwrap();
        // The same certificate as DER elsewhere is reported once.
        let anchors = root.path().join("etc/pki/ca-trust/source/anchors");
        fs::create_dir_all(&anchors).unwrap();
        fs::write(anchors.join("kl.der"), &der).unwrap();

        let s = scan(root.path()).unwrap();
        let kl: Vec<&Item> = s.items.iter().filter(|i| i.name == KL).collect();
        assert_eq!(kl.len(), 1, "reported once");
        let kl = kl[0];
        assert_eq!(kl.kind, ItemKind::RootCertificate);
        assert_eq!(kl.presence, Presence::Present);
        assert_eq!(
            kl.path, "/etc/pki/ca-trust/source/anchors/kl.der",
            "first seen (anchors are read before usr/local)"
        );
        assert_eq!(kl.attrs["sha256"], hex::encode(Sha256::digest(&der)));
        assert!(kl.attrs["subject"].contains(KL));
        assert!(kl.attrs["issuer"].contains("Kaspersky Lab"));
        assert!(kl.attrs["not_after"].ends_with('Z'));
        if have_host {
            let isrg = s.items.iter().find(|i| i.name == "ISRG Root X1");
            assert!(isrg.is_some(), "{} items", s.items.len());
            let isrg = isrg.unwrap();
            assert!(isrg.path.starts_with("/etc/ssl/certs/"), "{}", isrg.path);
            assert!(isrg.attrs["not_after"].starts_with("2035-06-04"));
            // One item per distinct certificate.
            let mut hashes: Vec<&String> = s.items.iter().map(|i| &i.attrs["sha256"]).collect();
            hashes.sort();
            hashes.dedup();
            assert_eq!(hashes.len(), s.items.len());
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_do_not_leave_the_image() {
        let outside = tempfile::tempdir().unwrap();
        let (pem, _) = self_signed("Host Only CA");
        let host_file = outside.path().join("host.pem");
        fs::write(&host_file, pem).unwrap();
        let root = tempfile::tempdir().unwrap();
        let certs = root.path().join("etc/ssl/certs");
        fs::create_dir_all(&certs).unwrap();
        let anchors = root.path().join("usr/local/share/ca-certificates");
        fs::create_dir_all(&anchors).unwrap();
        // Absolute and climbing links in the linked folder, any link in a tree.
        std::os::unix::fs::symlink(&host_file, certs.join("abs.pem")).unwrap();
        std::os::unix::fs::symlink(
            "../../../../../../../..".to_string() + host_file.to_str().unwrap(),
            certs.join("climb.pem"),
        )
        .unwrap();
        std::os::unix::fs::symlink("loop.pem", certs.join("loop.pem")).unwrap();
        std::os::unix::fs::symlink(&host_file, anchors.join("link.crt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), anchors.join("dir")).unwrap();
        assert!(read(root.path()).unwrap().is_empty());
    }

    #[test]
    fn damaged_files_are_counted_and_skipped() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("usr/local/share/ca-certificates");
        fs::create_dir_all(&dir).unwrap();
        let (pem, _) = self_signed("Good CA");
        fs::write(
            dir.join("a.crt"),
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        fs::write(dir.join("b.crt"), b"\x30\x03junk").unwrap();
        // A bundle with a damaged block still gives its good certificate.
        fs::write(
            dir.join("c.pem"),
            format!("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n{pem}"),
        )
        .unwrap();
        let s = scan(root.path()).unwrap();
        assert_eq!(s.items.len(), 1);
        assert_eq!(s.items[0].name, "Good CA");
        assert_eq!(s.skipped, 3);
        // Only damaged files: the source is an error.
        fs::remove_file(dir.join("c.pem")).unwrap();
        assert!(read(root.path()).is_err());
    }

    #[test]
    fn firefox_nss_database() {
        let root = tempfile::tempdir().unwrap();
        let profile = root
            .path()
            .join("home/ann/.mozilla/firefox/p.default-release");
        fs::create_dir_all(&profile).unwrap();
        let (_, der) = self_signed(KL);
        let db = profile.join("cert9.db");
        {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch("CREATE TABLE nssPublic (id PRIMARY KEY UNIQUE ON CONFLICT ABORT, a0, a1, a11, a81);")
                .unwrap();
            c.execute(
                "INSERT INTO nssPublic (id, a0, a11) VALUES (1, x'00000001', ?1)",
                [&der],
            )
            .unwrap();
            c.execute(
                "INSERT INTO nssPublic (id, a0, a11) VALUES (2, x'CE534353', x'0102')",
                [],
            )
            .unwrap();
        }
        let items = read(root.path()).unwrap();
        assert_eq!(items.len(), 1, "{items:#?}");
        assert_eq!(items[0].name, KL);
        assert_eq!(items[0].attrs["store"], "nss");
        assert_eq!(items[0].attrs["user"], "ann");
        assert_eq!(
            items[0].path,
            "/home/ann/.mozilla/firefox/p.default-release/cert9.db"
        );
        // A damaged database is skipped, not fatal to the others.
        fs::write(&db, b"SQLite format 3\0garbage").unwrap();
        assert!(read(root.path()).is_err());
    }

    #[test]
    fn uri_paths_are_escaped() {
        assert_eq!(uri_path(Path::new("/a b/c?d#e%f")), "/a%20b/c%3Fd%23e%25f");
    }

    proptest! {
        #[test]
        fn cert_reading_never_panics(b in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_file(&b);
            let _ = parse_der(&b);
        }

        #[test]
        fn pem_framing_never_panics(body in "[A-Za-z0-9+/=\n -]{0,400}", tail in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut f = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n").into_bytes();
            f.extend(tail);
            let _ = parse_file(&f);
        }

        #[test]
        fn damaged_certificates_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let (pem, der) = self_signed("Fuzz CA");
            for mut v in [der, pem.into_bytes()] {
                let i = pos.index(v.len());
                v[i] = byte;
                v.truncate(cut.index(v.len() + 1));
                let _ = parse_file(&v);
                let _ = parse_der(&v);
            }
        }
    }
}
