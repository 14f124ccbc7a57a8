//! macOS software from property lists under a root (a live `/` or an
//! offline image): application bundles, installer receipts, launchd jobs,
//! kernel and system extensions, and the host facts.
//!
//! The image is untrusted data, so: no symlink is followed (an absolute
//! link in an image points at the scanning host), only regular files are
//! opened (a FIFO would block), every plist is capped in size and checked
//! for nesting depth and, for binary plists, for shared-object blow-up
//! before it is parsed (the `plist` crate builds and drops values
//! recursively and expands shared objects), and one damaged plist is
//! skipped and counted while the others are still read.

use super::SourceError;
use muster_catalog::{HostFacts, Item, ItemKind, Presence};
use plist::{Dictionary, Value};
use std::collections::{HashMap, HashSet};
use std::fs::FileType;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The largest plist read; real ones are a few KiB, and a bigger one is
/// more likely a mistake or an attack than a bundle description.
pub const MAX_PLIST_BYTES: u64 = 4 << 20;

/// The deepest nesting of arrays and dictionaries accepted. Real plists
/// nest a handful of levels; the limit keeps recursive drops shallow.
const MAX_DEPTH: usize = 128;

/// The most values a binary plist may expand to; shared objects can make
/// a small file expand exponentially.
const MAX_NODES: u64 = 200_000;

use super::{Partial as Scan, Tally};

/// Like [`read`], also counting the skipped plists. Fails only when
/// something was there to read and nothing at all could be read, which
/// means the source as a whole is unreadable (permissions, a broken image).
pub fn scan(root: &Path) -> Result<Scan, SourceError> {
    let mut w = Walker {
        root,
        t: Tally::default(),
    };
    w.applications();
    w.receipts();
    w.launchd_jobs();
    w.kexts();
    w.system_extensions();
    w.t.finish()
}

/// The host facts of a macOS root. Best effort: a missing or damaged plist
/// leaves its fields empty, as the inventory is still worth sending.
pub fn facts(root: &Path) -> HostFacts {
    let mut f = HostFacts {
        platform: "macos".to_string(),
        ..HostFacts::default()
    };
    if let Some(Value::Dictionary(d)) =
        load_rel(root, "System/Library/CoreServices/SystemVersion.plist")
    {
        f.os_name = string(&d, "ProductName").unwrap_or("macOS").to_string();
        f.os_version = string(&d, "ProductVersion").unwrap_or_default().to_string();
    }
    if let Some(Value::Dictionary(d)) = load_rel(
        root,
        "Library/Preferences/SystemConfiguration/preferences.plist",
    ) {
        let system = dict(&d, "System");
        let names = system.and_then(|s| dict(s, "System"));
        let host_names = system
            .and_then(|s| dict(s, "Network"))
            .and_then(|n| dict(n, "HostNames"));
        f.hostname = names
            .and_then(|n| string(n, "ComputerName").or_else(|| string(n, "HostName")))
            .or_else(|| host_names.and_then(|h| string(h, "LocalHostName")))
            .unwrap_or_default()
            .to_string();
    }
    f
}

/// Loads a plist at a fixed path below the root, `None` on any problem.
fn load_rel(root: &Path, rel: &str) -> Option<Value> {
    let (path, t) = resolve(root, rel).ok()??;
    if !t.is_file() {
        return None;
    }
    load(&path).ok()
}

/// The state of one scan.
struct Walker<'a> {
    root: &'a Path,
    t: Tally,
}

/// What is in a bundle's `Info.plist`.
enum Bundle {
    /// No Info.plist: still a bundle that is there.
    NoInfo,
    /// The plist's top-level dictionary, and its path from the root.
    Info(Dictionary, String),
    /// Damaged or unreadable; already counted.
    Skipped,
}

impl Walker<'_> {
    fn fail(&mut self, e: SourceError) {
        self.t.remember(e);
    }

    /// The entries of a folder at `rel` below the root, sorted by name, with
    /// their own (not followed) types; empty when it is absent.
    fn list(&mut self, rel: &str) -> Vec<(String, FileType)> {
        let path = match resolve(self.root, rel) {
            Ok(Some((p, t))) if t.is_dir() => p,
            Ok(_) => return Vec::new(),
            Err(e) => {
                self.fail(SourceError::read(&self.root.join(rel), e));
                return Vec::new();
            }
        };
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) => {
                self.fail(SourceError::read(&path, e));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.fail(SourceError::read(&path, e));
                    continue;
                }
            };
            // DirEntry::file_type does not follow symlinks.
            let (Ok(t), Ok(name)) = (entry.file_type(), entry.file_name().into_string()) else {
                // A name that is not UTF-8 cannot be reported as a path.
                continue;
            };
            out.push((name, t));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Loads a regular file at `rel`, counting failures. `Ok(None)` when absent.
    fn plist(&mut self, rel: &str) -> Option<Result<Value, ()>> {
        let path = match resolve(self.root, rel) {
            Ok(Some((p, t))) if t.is_file() => p,
            Ok(Some((p, _))) => {
                // A symlink or a special file where a plist should be.
                self.t.skipped += 1;
                self.fail(SourceError::invalid(&p, "not a regular file"));
                return Some(Err(()));
            }
            Ok(None) => return None,
            Err(e) => {
                self.t.skipped += 1;
                self.fail(SourceError::read(&self.root.join(rel), e));
                return Some(Err(()));
            }
        };
        match load(&path) {
            Ok(v) => {
                self.t.read_ok += 1;
                Some(Ok(v))
            }
            Err(e) => {
                self.t.skipped += 1;
                self.fail(e);
                Some(Err(()))
            }
        }
    }

    /// Loads a plist that should be a dictionary; `None` when absent,
    /// damaged or of another shape (not counted: a valid plist of another
    /// kind, like `InstallHistory.plist` among receipts, is not damage).
    fn dict_plist(&mut self, rel: &str) -> Option<Dictionary> {
        match self.plist(rel)? {
            Ok(Value::Dictionary(d)) => Some(d),
            _ => None,
        }
    }

    /// Reads a bundle's `Contents/Info.plist` (or a flat `Info.plist`, as
    /// in old and iOS-style bundles).
    fn bundle(&mut self, rel: &str) -> Bundle {
        for info in ["Contents/Info.plist", "Info.plist"] {
            match self.plist(&format!("{rel}/{info}")) {
                None => continue,
                Some(Ok(Value::Dictionary(d))) => return Bundle::Info(d, format!("/{rel}/{info}")),
                Some(Ok(_)) => {
                    // Parsed, but not a dictionary: not a usable Info.plist.
                    self.t.skipped += 1;
                    return Bundle::Skipped;
                }
                Some(Err(())) => return Bundle::Skipped,
            }
        }
        Bundle::NoInfo
    }

    /// `Applications/*.app` and `Applications/*/*.app`.
    fn applications(&mut self) {
        for (name, t) in self.list("Applications") {
            if !t.is_dir() {
                continue; // symlinked .app folders are skipped on purpose
            }
            let rel = format!("Applications/{name}");
            if name.ends_with(".app") {
                self.application(&rel, &name);
                continue;
            }
            // One level of subfolders, such as Applications/Utilities.
            for (inner, t) in self.list(&rel) {
                if t.is_dir() && inner.ends_with(".app") {
                    self.application(&format!("{rel}/{inner}"), &inner);
                }
            }
        }
    }

    fn application(&mut self, rel: &str, folder: &str) {
        let path = format!("/{rel}");
        let folder_name = folder.strip_suffix(".app").unwrap_or(folder);
        let (info, source) = match self.bundle(rel) {
            Bundle::Skipped => return,
            Bundle::NoInfo => {
                // Still an application that is there (e.g. an iOS app
                // wrapped for Apple silicon keeps its plist deeper down).
                self.t.read_ok += 1;
                self.t.items.push(
                    Item::new(ItemKind::Package, folder_name, Presence::Present, &path)
                        .path(&path)
                        .attr("manager", "macos-app"),
                );
                return;
            }
            Bundle::Info(d, source) => (d, source),
        };
        let version = bundle_version(&info);
        let bundle_id = string(&info, "CFBundleIdentifier").unwrap_or_default();
        let name = string(&info, "CFBundleName").unwrap_or(folder_name);
        self.t.items.push(
            Item::new(ItemKind::Package, name, Presence::Present, &source)
                .version(version)
                .path(&path)
                .attr("manager", "macos-app")
                .attr("bundle_id", bundle_id)
                .attr(
                    "display_name",
                    string(&info, "CFBundleDisplayName").unwrap_or_default(),
                ),
        );
        if !bundle_id.is_empty() {
            self.t.items.push(
                Item::new(ItemKind::BundleId, bundle_id, Presence::Present, &source)
                    .version(version)
                    .path(&path)
                    .attr("kind", "app"),
            );
        }
    }

    /// Installer receipts. On a real system `/var` is a symlink to
    /// `private/var`, which is not followed, so both spellings are tried.
    fn receipts(&mut self) {
        let dirs = [
            "private/var/db/receipts",
            "var/db/receipts",
            "Library/Receipts",
        ];
        for (rel, d) in self.plists_in(&dirs) {
            let Some(id) = string(&d, "PackageIdentifier") else {
                continue;
            };
            self.t.items.push(
                Item::new(ItemKind::Package, id, Presence::Present, format!("/{rel}"))
                    .version(string(&d, "PackageVersion").unwrap_or_default())
                    .attr("manager", "macos-receipt")
                    .attr(
                        "install_prefix",
                        string(&d, "InstallPrefixPath").unwrap_or_default(),
                    ),
            );
        }
    }

    /// The dictionary plists directly in each of `dirs`, with their paths
    /// from the root; damaged ones are counted and left out.
    fn plists_in(&mut self, dirs: &[&str]) -> Vec<(String, Dictionary)> {
        let mut out = Vec::new();
        for dir in dirs {
            for (name, t) in self.list(dir) {
                if !name.ends_with(".plist") || t.is_dir() {
                    continue;
                }
                let rel = format!("{dir}/{name}");
                if let Some(d) = self.dict_plist(&rel) {
                    out.push((rel, d));
                }
            }
        }
        out
    }

    /// launchd job definitions, by label.
    fn launchd_jobs(&mut self) {
        let dirs = [
            "Library/LaunchDaemons",
            "Library/LaunchAgents",
            "System/Library/LaunchDaemons",
        ];
        for (rel, d) in self.plists_in(&dirs) {
            let Some(label) = string(&d, "Label") else {
                continue; // launchd refuses a job without a label
            };
            let program = string(&d, "Program").or_else(|| {
                d.get("ProgramArguments")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(Value::as_string)
            });
            let path = format!("/{rel}");
            self.t.items.push(
                Item::new(ItemKind::LaunchdLabel, label, Presence::Present, &path)
                    .path(&path)
                    .attr("program", program.unwrap_or_default()),
            );
        }
    }

    /// Kernel extensions, by bundle id.
    fn kexts(&mut self) {
        for dir in ["Library/Extensions", "System/Library/Extensions"] {
            for (name, t) in self.list(dir) {
                if t.is_dir() && name.ends_with(".kext") {
                    self.extension(&format!("{dir}/{name}"), "kext");
                }
            }
        }
    }

    /// System extensions: `Library/SystemExtensions/<uuid>/<id>.systemextension`,
    /// also one level up for safety.
    fn system_extensions(&mut self) {
        let dir = "Library/SystemExtensions";
        for (name, t) in self.list(dir) {
            if !t.is_dir() {
                continue;
            }
            let rel = format!("{dir}/{name}");
            if name.ends_with(".systemextension") {
                self.extension(&rel, "system-extension");
                continue;
            }
            for (inner, t) in self.list(&rel) {
                if t.is_dir() && inner.ends_with(".systemextension") {
                    self.extension(&format!("{rel}/{inner}"), "system-extension");
                }
            }
        }
    }

    fn extension(&mut self, rel: &str, kind: &str) {
        let Bundle::Info(info, source) = self.bundle(rel) else {
            return; // without Info.plist there is no bundle id to report
        };
        let Some(id) = string(&info, "CFBundleIdentifier") else {
            return;
        };
        let path = format!("/{rel}");
        self.t.items.push(
            Item::new(ItemKind::BundleId, id, Presence::Present, source)
                .version(bundle_version(&info))
                .path(&path)
                .attr("kind", kind),
        );
    }
}

/// The user-facing version of a bundle, else its build number.
fn bundle_version(d: &Dictionary) -> &str {
    string(d, "CFBundleShortVersionString")
        .or_else(|| string(d, "CFBundleVersion"))
        .unwrap_or_default()
}

/// A non-empty string value, trimmed.
fn string<'a>(d: &'a Dictionary, key: &str) -> Option<&'a str> {
    d.get(key)
        .and_then(Value::as_string)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn dict<'a>(d: &'a Dictionary, key: &str) -> Option<&'a Dictionary> {
    d.get(key).and_then(Value::as_dictionary)
}

/// Walks `rel` (slash-separated) below `root` without following symlinks:
/// `Ok(None)` when a component is missing, is a symlink, or is not a folder
/// where one is needed; else the path and the type of the last component.
fn resolve(root: &Path, rel: &str) -> io::Result<Option<(PathBuf, FileType)>> {
    let mut path = root.to_path_buf();
    let mut last = None;
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        if last.is_some_and(|t: FileType| !t.is_dir()) {
            return Ok(None);
        }
        if part == ".." || part == "." {
            return Ok(None); // names come from folder listings; never expected
        }
        path.push(part);
        let t = match std::fs::symlink_metadata(&path) {
            Ok(m) => m.file_type(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Ok(None),
            Err(e) => return Err(e),
        };
        if t.is_symlink() {
            return Ok(None);
        }
        last = Some(t);
    }
    Ok(last.map(|t| (path, t)))
}

/// Reads and parses one plist file, capped at [`MAX_PLIST_BYTES`].
fn load(path: &Path) -> Result<Value, SourceError> {
    let file = std::fs::File::open(path).map_err(|e| SourceError::read(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_PLIST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SourceError::read(path, e))?;
    if bytes.len() as u64 > MAX_PLIST_BYTES {
        return Err(SourceError::invalid(
            path,
            format!("plist larger than {MAX_PLIST_BYTES} bytes"),
        ));
    }
    parse(&bytes).map_err(|e| SourceError::invalid(path, e))
}

/// Parses an XML or binary plist after checking it cannot exhaust the
/// stack or memory.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    if bytes.starts_with(b"bplist00") {
        check_binary(bytes)?;
        Value::from_reader(io::Cursor::new(bytes)).map_err(|e| e.to_string())
    } else {
        // XML only: the crate's fallback to the old ASCII format is not
        // used by anything read here and is not depth-checked.
        check_xml_depth(bytes)?;
        Value::from_reader_xml(bytes).map_err(|e| e.to_string())
    }
}

/// Rejects XML nested deeper than [`MAX_DEPTH`] elements. The scan errs on
/// the deep side: comments, CDATA and processing instructions are skipped,
/// a close tag counts only when it matches, and a tag with quotes never
/// counts as self-closing.
fn check_xml_depth(b: &[u8]) -> Result<(), String> {
    let mut open: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    while let Some(p) = find(b, i, b"<") {
        let rest = &b[p..];
        let skip_to = |end: &[u8], from: usize| find(b, from, end).map(|e| e + end.len());
        let next = if rest.starts_with(b"<!--") {
            skip_to(b"-->", p + 4)
        } else if rest.starts_with(b"<![CDATA[") {
            skip_to(b"]]>", p + 9)
        } else if rest.starts_with(b"<?") {
            skip_to(b"?>", p + 2)
        } else if rest.starts_with(b"<!") {
            skip_to(b">", p + 2)
        } else {
            let Some(end) = find(b, p + 1, b">") else {
                break;
            };
            let tag = &b[p + 1..end];
            if let Some(name) = tag.strip_prefix(b"/") {
                if open.last().is_some_and(|top| *top == name.trim_ascii()) {
                    open.pop();
                }
            } else {
                let quoted = tag.contains(&b'"') || tag.contains(&b'\'');
                if quoted || !tag.ends_with(b"/") {
                    let name = tag
                        .split(|c| c.is_ascii_whitespace() || *c == b'/')
                        .next()
                        .unwrap_or_default();
                    open.push(name);
                    if open.len() > MAX_DEPTH {
                        return Err(format!("plist nested deeper than {MAX_DEPTH} levels"));
                    }
                }
            }
            Some(end + 1)
        };
        let Some(next) = next else {
            break; // unterminated: the parser reports it
        };
        i = next;
    }
    Ok(())
}

/// The first position of `needle` in `b` at or after `from`.
fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Checks a binary plist's object graph: every reference in range, no
/// cycle, nesting at most [`MAX_DEPTH`] and at most [`MAX_NODES`] values
/// once shared objects are expanded, as the parser would expand them.
fn check_binary(b: &[u8]) -> Result<(), String> {
    let bad = |what: &str| format!("damaged binary plist: {what}");
    let trailer_at = b
        .len()
        .checked_sub(32)
        .filter(|&t| t >= 8)
        .ok_or_else(|| bad("too short"))?;
    let t = &b[trailer_at..];
    let offset_size = usize::from(t[6]);
    let ref_size = usize::from(t[7]);
    if !(1..=8).contains(&offset_size) || !(1..=8).contains(&ref_size) {
        return Err(bad("bad integer sizes"));
    }
    let as_usize = |v: u64| usize::try_from(v).map_err(|_| bad("number out of range"));
    let count = as_usize(be(&t[8..16]))?;
    let top = as_usize(be(&t[16..24]))?;
    let table = as_usize(be(&t[24..32]))?;
    let table_end = count
        .checked_mul(offset_size)
        .and_then(|n| n.checked_add(table))
        .ok_or_else(|| bad("offset table out of range"))?;
    if table < 8 || table_end > trailer_at || top >= count {
        return Err(bad("offset table out of range"));
    }
    // The objects an object refers to (none for scalars).
    let children = |i: usize| -> Result<Vec<usize>, String> {
        let at = table + i * offset_size;
        let off = as_usize(be(&b[at..at + offset_size]))?;
        if off < 8 || off >= table {
            return Err(bad("object offset out of range"));
        }
        let marker = b[off];
        let per_entry = match marker >> 4 {
            0xA..=0xC => 1, // array, ordered set, set
            0xD => 2,       // dictionary: keys, then values
            _ => return Ok(Vec::new()),
        };
        let (n, start) = if marker & 0xF == 0xF {
            let int_marker = *b.get(off + 1).ok_or_else(|| bad("truncated"))?;
            let width = 1usize << (int_marker & 0xF);
            if int_marker >> 4 != 1 || width > 8 {
                return Err(bad("bad collection length"));
            }
            let digits = b
                .get(off + 2..off + 2 + width)
                .ok_or_else(|| bad("truncated"))?;
            (as_usize(be(digits))?, off + 2 + width)
        } else {
            (usize::from(marker & 0xF), off + 1)
        };
        let end = n
            .checked_mul(per_entry * ref_size)
            .and_then(|len| len.checked_add(start))
            .filter(|&e| e <= table)
            .ok_or_else(|| bad("collection out of range"))?;
        b[start..end]
            .chunks(ref_size)
            .map(|r| {
                let r = as_usize(be(r))?;
                if r < count {
                    Ok(r)
                } else {
                    Err(bad("reference out of range"))
                }
            })
            .collect()
    };

    struct Frame {
        obj: usize,
        kids: Vec<usize>,
        next: usize,
        depth: usize,
        nodes: u64,
    }
    // Depth and expanded size of every object already measured.
    let mut done: HashMap<usize, (usize, u64)> = HashMap::new();
    let mut on_path: HashSet<usize> = HashSet::from([top]);
    let mut stack = vec![Frame {
        obj: top,
        kids: children(top)?,
        next: 0,
        depth: 0,
        nodes: 1,
    }];
    let too_big = || format!("binary plist expands to more than {MAX_NODES} values");
    while let Some(f) = stack.last_mut() {
        if let Some(&k) = f.kids.get(f.next) {
            f.next += 1;
            if let Some(&(d, n)) = done.get(&k) {
                f.depth = f.depth.max(d);
                f.nodes = f.nodes.saturating_add(n);
                if f.nodes > MAX_NODES {
                    return Err(too_big());
                }
                continue;
            }
            if !on_path.insert(k) {
                return Err(bad("object contains itself"));
            }
            let kids = children(k)?;
            stack.push(Frame {
                obj: k,
                kids,
                next: 0,
                depth: 0,
                nodes: 1,
            });
            if stack.len() > MAX_DEPTH {
                return Err(format!("plist nested deeper than {MAX_DEPTH} levels"));
            }
            continue;
        }
        let Some(f) = stack.pop() else { break };
        on_path.remove(&f.obj);
        let depth = f.depth + 1;
        done.insert(f.obj, (depth, f.nodes));
        if let Some(parent) = stack.last_mut() {
            parent.depth = parent.depth.max(depth);
            parent.nodes = parent.nodes.saturating_add(f.nodes);
            if parent.nodes > MAX_NODES {
                return Err(too_big());
            }
        }
    }
    Ok(())
}

/// A big-endian unsigned integer of up to 8 bytes.
fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn put(root: &Path, rel: &str, bytes: &[u8]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }

    fn xml(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        v.to_writer_xml(&mut out).expect("xml");
        out
    }

    fn binary(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        v.to_writer_binary(&mut out).expect("binary");
        out
    }

    fn dict_of(pairs: &[(&str, Value)]) -> Value {
        Value::Dictionary(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn find<'a>(items: &'a [Item], kind: ItemKind, name: &str) -> &'a Item {
        items
            .iter()
            .find(|i| i.kind == kind && i.name == name)
            .unwrap_or_else(|| panic!("{kind:?} {name} not found in {items:#?}"))
    }

    const FIXTURES: [&str; 10] = [
        "osquery_test_binary.plist",
        "osquery_test_info.plist",
        "osquery_test_launchd.plist",
        "osv-scalibr_BinaryApp.plist",
        "osv-scalibr_ValidXML.plist",
        "plaso_InstallHistory.plist",
        "plaso_com.apple.SoftwareUpdate.plist",
        "rust-plist_binary.plist",
        "rust-plist_utf16_bplist.plist",
        "rust-plist_xml.plist",
    ];

    #[test]
    fn every_fixture_plist_passes_the_checks_and_parses() {
        for name in FIXTURES {
            let Some(p) = crate::sources::fixture(&format!("macos-plist/{name}")) else {
                return;
            };
            let bytes = std::fs::read(&p).expect("fixture");
            parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let Some(p) = crate::sources::fixture("macos-plist/rust-plist_utf16_bplist.plist") else {
            return;
        };
        let v = parse(&std::fs::read(p).expect("fixture")).expect("parses");
        let d = v.as_dictionary().expect("dict");
        assert_eq!(string(d, "name"), Some("★ or better"));
    }

    /// A macOS-shaped root built around the fixtures.
    fn image() -> Option<tempfile::TempDir> {
        let chrome = crate::sources::fixture("macos-plist/osv-scalibr_ValidXML.plist")?;
        let gmac = crate::sources::fixture("macos-plist/osv-scalibr_BinaryApp.plist")?;
        let booth = crate::sources::fixture("macos-plist/osquery_test_info.plist")?;
        let launchd = crate::sources::fixture("macos-plist/osquery_test_launchd.plist")?;
        let history = crate::sources::fixture("macos-plist/plaso_InstallHistory.plist")?;
        let read = |p: PathBuf| std::fs::read(p).expect("fixture");
        let root = tempfile::tempdir().expect("temp dir");
        let r = root.path();
        put(
            r,
            "Applications/Google Chrome.app/Contents/Info.plist",
            &read(chrome),
        );
        put(
            r,
            "Applications/Utilities/gMac.app/Contents/Info.plist",
            &read(gmac),
        );
        put(
            r,
            "Applications/Photo Booth.app/Contents/Info.plist",
            &read(booth),
        );
        put(
            r,
            "Applications/Broken.app/Contents/Info.plist",
            b"<?xml version=\"1.0\"?><plist><dict><key>x",
        );
        std::fs::create_dir_all(r.join("Applications/NoInfo.app")).expect("mkdir");
        put(
            r,
            "Library/LaunchDaemons/com.apple.mDNSResponder.plist",
            &read(launchd),
        );
        put(
            r,
            "Library/LaunchAgents/com.vendor.agent.plist",
            &binary(&dict_of(&[
                ("Label", "com.vendor.agent".into()),
                ("Program", "/Library/Vendor/agent".into()),
            ])),
        );
        put(r, "Library/Receipts/InstallHistory.plist", &read(history));
        put(
            r,
            "private/var/db/receipts/com.vmware.tools.plist",
            &xml(&dict_of(&[
                ("PackageIdentifier", "com.vmware.tools".into()),
                ("PackageVersion", "9.6.1".into()),
                ("InstallPrefixPath", "/".into()),
            ])),
        );
        put(
            r,
            "private/var/db/receipts/com.vmware.tools.bom",
            b"BOMStore",
        );
        put(
            r,
            "Library/Extensions/Foo.kext/Contents/Info.plist",
            &binary(&dict_of(&[
                ("CFBundleIdentifier", "com.foo.kext".into()),
                ("CFBundleVersion", "4.2".into()),
            ])),
        );
        put(
            r,
            "Library/SystemExtensions/0A1B-UUID/com.foo.ext.systemextension/Contents/Info.plist",
            &xml(&dict_of(&[
                ("CFBundleIdentifier", "com.foo.ext".into()),
                ("CFBundleShortVersionString", "1.0".into()),
            ])),
        );
        put(
            r,
            "System/Library/CoreServices/SystemVersion.plist",
            &xml(&dict_of(&[
                ("ProductName", "macOS".into()),
                ("ProductVersion", "14.5".into()),
            ])),
        );
        let system = dict_of(&[("ComputerName", "Ann's Mac".into())]);
        put(
            r,
            "Library/Preferences/SystemConfiguration/preferences.plist",
            &binary(&dict_of(&[("System", dict_of(&[("System", system)]))])),
        );
        #[cfg(unix)]
        {
            // As on a real system: var -> private/var, must not double the receipts.
            std::os::unix::fs::symlink("private/var", r.join("var")).expect("symlink");
            // A symlinked app is skipped, even one pointing inside the root.
            std::os::unix::fs::symlink(
                r.join("Applications/Google Chrome.app"),
                r.join("Applications/Link.app"),
            )
            .expect("symlink");
        }
        Some(root)
    }

    #[test]
    fn reads_a_macos_image() {
        let Some(root) = image() else {
            return;
        };
        let s = scan(root.path()).expect("readable");
        let items = &s.items;
        assert_eq!(s.skipped, 1, "only Broken.app: {items:#?}");

        // CFBundleName is "Chrome"; the display name is kept as an attribute.
        let chrome = find(items, ItemKind::Package, "Chrome");
        assert_eq!(chrome.attrs["display_name"], "Google Chrome");
        assert_eq!(chrome.version, "130.0.6723.69");
        assert_eq!(chrome.path, "/Applications/Google Chrome.app");
        assert_eq!(
            chrome.source,
            "/Applications/Google Chrome.app/Contents/Info.plist"
        );
        assert_eq!(chrome.attrs["manager"], "macos-app");
        assert_eq!(chrome.attrs["bundle_id"], "com.google.Chrome");
        let id = find(items, ItemKind::BundleId, "com.google.Chrome");
        assert_eq!(id.version, "130.0.6723.69");
        assert_eq!(id.path, "/Applications/Google Chrome.app");

        let gmac = find(items, ItemKind::BundleId, "com.google.corp.gMacInformation");
        assert_eq!(gmac.version, "202410231131");
        assert_eq!(gmac.path, "/Applications/Utilities/gMac.app");
        find(items, ItemKind::BundleId, "com.apple.PhotoBooth");
        let no_info = find(items, ItemKind::Package, "NoInfo");
        assert_eq!(no_info.path, "/Applications/NoInfo.app");
        assert!(
            !items
                .iter()
                .any(|i| i.path.contains("Link.app") || i.path.contains("Broken"))
        );
        // Chrome, gMac, Photo Booth (two items each) and NoInfo.
        let apps = items
            .iter()
            .filter(|i| i.path.starts_with("/Applications/"))
            .count();
        assert_eq!(apps, 7, "{items:#?}");

        let job = find(items, ItemKind::LaunchdLabel, "com.apple.mDNSResponder");
        assert_eq!(job.attrs["program"], "/usr/sbin/mDNSResponder");
        assert_eq!(
            job.path,
            "/Library/LaunchDaemons/com.apple.mDNSResponder.plist"
        );
        let agent = find(items, ItemKind::LaunchdLabel, "com.vendor.agent");
        assert_eq!(agent.attrs["program"], "/Library/Vendor/agent");

        let receipts: Vec<_> = items
            .iter()
            .filter(|i| i.attrs.get("manager").is_some_and(|m| m == "macos-receipt"))
            .collect();
        assert_eq!(receipts.len(), 1, "{receipts:#?}");
        assert_eq!(receipts[0].name, "com.vmware.tools");
        assert_eq!(receipts[0].version, "9.6.1");

        let kext = find(items, ItemKind::BundleId, "com.foo.kext");
        assert_eq!(
            (kext.version.as_str(), kext.attrs["kind"].as_str()),
            ("4.2", "kext")
        );
        assert_eq!(kext.path, "/Library/Extensions/Foo.kext");
        let ext = find(items, ItemKind::BundleId, "com.foo.ext");
        assert_eq!(ext.attrs["kind"], "system-extension");
        assert_eq!(ext.version, "1.0");
        assert!(items.iter().all(|i| i.presence == Presence::Present));
    }

    #[test]
    fn host_facts() {
        let Some(root) = image() else {
            return;
        };
        let f = facts(root.path());
        assert_eq!(f.os_name, "macOS");
        assert_eq!(f.os_version, "14.5");
        assert_eq!(f.hostname, "Ann's Mac");
        assert_eq!(f.platform, "macos");

        // HostName, then LocalHostName, stand in for ComputerName.
        let r = tempfile::tempdir().expect("temp dir");
        let net = dict_of(&[("HostNames", dict_of(&[("LocalHostName", "ann-mac".into())]))]);
        put(
            r.path(),
            "Library/Preferences/SystemConfiguration/preferences.plist",
            &xml(&dict_of(&[("System", dict_of(&[("Network", net)]))])),
        );
        let f = facts(r.path());
        assert_eq!((f.hostname.as_str(), f.os_name.as_str()), ("ann-mac", ""));
    }

    #[test]
    fn absent_is_nothing_and_wholly_damaged_is_an_error() {
        let r = tempfile::tempdir().expect("temp dir");
        assert!(scan(r.path()).expect("ok").items.is_empty());
        assert!(
            scan(&r.path().join("no-such-root"))
                .expect("ok")
                .items
                .is_empty()
        );

        put(
            r.path(),
            "Library/LaunchDaemons/a.plist",
            b"bplist00 damaged",
        );
        assert!(scan(r.path()).is_err());
        put(
            r.path(),
            "Library/LaunchDaemons/b.plist",
            &xml(&dict_of(&[("Label", "b".into())])),
        );
        let s = scan(r.path()).expect("one good plist makes the source readable");
        assert_eq!((s.items.len(), s.skipped), (1, 1));
    }

    #[test]
    fn oversized_plists_are_skipped() {
        let r = tempfile::tempdir().expect("temp dir");
        let mut big = xml(&dict_of(&[("Label", "big".into())]));
        big.resize(MAX_PLIST_BYTES as usize + 1, b' ');
        put(r.path(), "Library/LaunchDaemons/big.plist", &big);
        put(
            r.path(),
            "Library/LaunchDaemons/ok.plist",
            &xml(&dict_of(&[("Label", "ok".into())])),
        );
        let s = scan(r.path()).expect("ok");
        assert_eq!(s.skipped, 1);
        assert_eq!(s.items.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_root_are_not_followed() {
        let outside = tempfile::tempdir().expect("temp dir");
        put(
            outside.path(),
            "x.plist",
            &xml(&dict_of(&[("Label", "outside".into())])),
        );
        put(
            outside.path(),
            "Evil.app/Contents/Info.plist",
            &xml(&dict_of(&[("CFBundleIdentifier", "outside.app".into())])),
        );
        let r = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(r.path().join("Library")).expect("mkdir");
        std::fs::create_dir_all(r.path().join("Applications/Real.app/Contents")).expect("mkdir");
        use std::os::unix::fs::symlink as link;
        link(outside.path(), r.path().join("Library/LaunchDaemons")).expect("symlink");
        link(
            outside.path().join("Evil.app"),
            r.path().join("Applications/Evil.app"),
        )
        .expect("symlink");
        // A symlinked Info.plist inside a real bundle is not followed either.
        link(
            outside.path().join("Evil.app/Contents/Info.plist"),
            r.path().join("Applications/Real.app/Contents/Info.plist"),
        )
        .expect("symlink");
        let s = scan(r.path());
        let items = s.map(|s| s.items).unwrap_or_default();
        assert!(
            items.iter().all(|i| !i.name.contains("outside")),
            "{items:#?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_not_opened() {
        let r = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(r.path().join("Library/LaunchDaemons")).expect("mkdir");
        let fifo = r.path().join("Library/LaunchDaemons/fifo.plist");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: mkfifo is absent");
            return;
        }
        put(
            r.path(),
            "Library/LaunchDaemons/ok.plist",
            &xml(&dict_of(&[("Label", "ok".into())])),
        );
        let s = scan(r.path()).expect("ok");
        assert_eq!((s.items.len(), s.skipped), (1, 1));
    }

    #[test]
    fn deep_xml_is_rejected_without_overflowing() {
        let n = 300_000;
        let mut s = String::from("<?xml version=\"1.0\"?><plist version=\"1.0\">");
        s.push_str(&"<array>".repeat(n));
        s.push_str(&"</array>".repeat(n));
        s.push_str("</plist>");
        assert!(parse(s.as_bytes()).is_err());
        // Deep but within the limit, with comments and empty elements.
        let n = MAX_DEPTH - 2;
        let s = format!(
            "<?xml version=\"1.0\"?><!-- <array> --><plist version=\"1.0\">{}<array/><dict/>{}</plist>",
            "<array>".repeat(n),
            "</array>".repeat(n)
        );
        parse(s.as_bytes()).expect("within the limit");
    }

    /// A binary plist whose object `i` is an array of `refs(i)`, the last a `true`.
    fn bplist(count: usize, refs: impl Fn(usize) -> Vec<usize>) -> Vec<u8> {
        let mut b = b"bplist00".to_vec();
        let mut offsets = Vec::new();
        for i in 0..count {
            offsets.push(b.len());
            if i + 1 == count {
                b.push(0x09);
                continue;
            }
            let r = refs(i);
            b.extend([0xAF, 0x12]); // array, length as a 4-byte int
            b.extend((r.len() as u32).to_be_bytes());
            for x in r {
                b.extend((x as u32).to_be_bytes());
            }
        }
        let table = b.len();
        for o in offsets {
            b.extend((o as u32).to_be_bytes());
        }
        b.extend([0, 0, 0, 0, 0, 0, 4, 4]);
        for v in [count as u64, 0, table as u64] {
            b.extend(v.to_be_bytes());
        }
        b
    }

    #[test]
    fn hostile_binary_plists_are_rejected() {
        // A well-formed small chain is accepted, as the parser agrees.
        let ok = bplist(5, |i| vec![i + 1]);
        assert!(parse(&ok).is_ok(), "{:?}", parse(&ok));
        // Deep nesting.
        assert!(parse(&bplist(200_000, |i| vec![i + 1])).is_err());
        // Shared objects that expand to 2^60 values.
        assert!(parse(&bplist(61, |i| vec![i + 1, i + 1])).is_err());
        // A cycle, and a reference out of range.
        assert!(parse(&bplist(3, |_| vec![0])).is_err());
        assert!(parse(&bplist(3, |_| vec![7])).is_err());
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::Boolean),
            any::<i64>().prop_map(|i| Value::Integer(i.into())),
            "\\PC{0,12}".prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Data),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..6)
                    .prop_map(|m| Value::Dictionary(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
            let mut b = b"bplist00".to_vec();
            b.extend(&bytes);
            let _ = parse(&b);
        }

        #[test]
        fn real_plists_are_not_rejected(v in arb_value()) {
            prop_assert_eq!(parse(&binary(&v)).ok(), Some(v.clone()));
            prop_assert_eq!(parse(&xml(&v)).ok(), Some(v));
        }
    }
}
