//! Browser extensions in every user profile under a root (a live `/` or an
//! offline image of Linux, macOS or Windows): Chromium-family browsers
//! (Chrome, Chromium, Edge, Brave) from their unpacked
//! `Extensions/<id>/<version>/manifest.json`, and Firefox from each
//! profile's `extensions.json`.
//!
//! The image is untrusted data, so: no symlink below the fixed top folders
//! is followed (an absolute link in an image points at the scanning host),
//! only regular files are opened (a FIFO would block), every file is capped
//! in size and every folder listing in entries, and one damaged file is
//! skipped and counted while the others are still read. Folder names are
//! matched without regard to case, as Windows and macOS volumes do.

use super::SourceError;
use muster_catalog::{Item, ItemKind, Presence};
use serde_json::Value;
use std::ffi::OsString;
use std::fs::FileType;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest file read; manifests and `extensions.json` are KiB to a few
/// MiB, and a bigger one is more likely a mistake or an attack.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// The most entries taken from one folder listing, so a folder with
/// millions of entries cannot stall the scan or exhaust memory.
pub(crate) const MAX_DIR_ENTRIES: usize = 10_000;

/// The most items one scan reports; far above any real host.
const MAX_ITEMS: usize = 200_000;

/// Chromium-family browsers: the `browser` attribute and the folder (under
/// a home) holding the profiles, for Linux, macOS and Windows.
const CHROMIUM: &[(&str, &[&str])] = &[
    ("chrome", &[".config", "google-chrome"]),
    ("chromium", &[".config", "chromium"]),
    ("edge", &[".config", "microsoft-edge"]),
    ("brave", &[".config", "BraveSoftware", "Brave-Browser"]),
    (
        "chrome",
        &["Library", "Application Support", "Google", "Chrome"],
    ),
    ("chromium", &["Library", "Application Support", "Chromium"]),
    (
        "edge",
        &["Library", "Application Support", "Microsoft Edge"],
    ),
    (
        "brave",
        &[
            "Library",
            "Application Support",
            "BraveSoftware",
            "Brave-Browser",
        ],
    ),
    (
        "chrome",
        &["AppData", "Local", "Google", "Chrome", "User Data"],
    ),
    ("chromium", &["AppData", "Local", "Chromium", "User Data"]),
    (
        "edge",
        &["AppData", "Local", "Microsoft", "Edge", "User Data"],
    ),
    (
        "brave",
        &[
            "AppData",
            "Local",
            "BraveSoftware",
            "Brave-Browser",
            "User Data",
        ],
    ),
];

/// Folders (under a home) holding Firefox profiles, one per subfolder.
const FIREFOX: &[&[&str]] = &[
    &[".mozilla", "firefox"],
    // Ubuntu's snap keeps its own home.
    &["snap", "firefox", "common", ".mozilla", "firefox"],
    &["Library", "Application Support", "Firefox", "Profiles"],
    &["AppData", "Roaming", "Mozilla", "Firefox", "Profiles"],
];

use super::{Partial as Scan, Tally};

/// The browser extensions of every user under `root`.
#[cfg(test)]
fn read(root: &Path) -> Result<Vec<Item>, SourceError> {
    scan(root).map(|s| s.items)
}

/// Like [`read`], also counting the skipped files. Fails only when
/// something was there to read and nothing at all could be read, which
/// means the source as a whole is unreadable (permissions, a broken image).
pub fn scan(root: &Path) -> Result<Scan, SourceError> {
    let mut w = Walker {
        root,
        t: Tally::default(),
    };
    for home in homes(root) {
        for (browser, parts) in CHROMIUM {
            if let Some(base) = find_dir_ci(&home.dir, parts) {
                w.chromium(browser, &home.user, &base);
            }
        }
        for parts in FIREFOX {
            if let Some(base) = find_dir_ci(&home.dir, parts) {
                w.firefox(&home.user, &base);
            }
        }
    }
    w.t.finish()
}

/// A user's home folder in the image.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    /// The user name (the folder's name).
    pub user: String,
    /// The folder.
    pub dir: PathBuf,
}

/// Every home under `root`: `home/*` and `root` (Linux), `Users/*` (macOS
/// and Windows). The top folders are resolved inside the image (macOS and
/// some Linux systems link them); below them nothing symlinked is entered.
pub(crate) fn homes(root: &Path) -> Vec<Home> {
    let mut out = Vec::new();
    let add_children = |dir: &Path, out: &mut Vec<Home>| {
        for e in list_dir(dir) {
            if e.kind.is_dir() {
                out.push(Home {
                    user: e.name.to_string_lossy().into_owned(),
                    dir: e.path,
                });
            }
        }
    };
    if let Some(home) = super::fsroot::resolve(root, "home").filter(|p| p.is_dir()) {
        add_children(&home, &mut out);
    }
    if let Some(dir) = super::fsroot::resolve(root, "root").filter(|p| p.is_dir()) {
        out.push(Home {
            user: "root".into(),
            dir,
        });
    }
    if let Some(users) = find_dir_ci(root, &["Users"]) {
        add_children(&users, &mut out);
    }
    out
}

/// Every Firefox profile folder under `root`, with its user.
pub(crate) fn firefox_profiles(root: &Path) -> Vec<(Home, PathBuf)> {
    let mut out = Vec::new();
    for home in homes(root) {
        for parts in FIREFOX {
            let Some(base) = find_dir_ci(&home.dir, parts) else {
                continue;
            };
            for e in list_dir(&base) {
                if e.kind.is_dir() {
                    out.push((home.clone(), e.path));
                }
            }
        }
    }
    out
}

struct Walker<'a> {
    root: &'a Path,
    t: Tally,
}

impl Walker<'_> {
    /// Records a file that could not be read or parsed, keeping the first
    /// error to report should nothing at all be readable.
    fn skip(&mut self, e: SourceError) {
        self.t.skip(e);
    }

    fn push(&mut self, item: Item) {
        if self.t.items.len() < MAX_ITEMS {
            self.t.items.push(item);
        }
    }

    /// The extensions of every profile of one Chromium-family browser.
    fn chromium(&mut self, browser: &str, user: &str, base: &Path) {
        for profile in list_dir(base) {
            let name = profile.name.to_string_lossy();
            // Only real profiles: `User Data` also holds caches and crash
            // reports, and the guest and system profiles have no extensions.
            let is_profile = name.eq_ignore_ascii_case("Default")
                || name
                    .get(..8)
                    .is_some_and(|p| p.eq_ignore_ascii_case("Profile "));
            if !profile.kind.is_dir() || !is_profile {
                continue;
            }
            let Some(exts) = find_dir_ci(&profile.path, &["Extensions"]) else {
                continue;
            };
            for ext in list_dir(&exts) {
                let id = ext.name.to_string_lossy().to_ascii_lowercase();
                // Chrome ids are 32 letters a-p; anything else (`Temp`,
                // stray files) is not an installed extension.
                if !ext.kind.is_dir() || !is_chrome_id(&id) {
                    continue;
                }
                for ver in list_dir(&ext.path) {
                    if ver.kind.is_dir() {
                        self.chrome_version(browser, user, &name, &id, &ver);
                    }
                }
            }
        }
    }

    /// One `Extensions/<id>/<version>` folder.
    fn chrome_version(&mut self, browser: &str, user: &str, profile: &str, id: &str, ver: &Entry) {
        let Some(manifest) = find_file_ci(&ver.path, "manifest.json") else {
            return;
        };
        let shown = shown(self.root, &manifest);
        let m = match read_capped(&manifest)
            .and_then(|b| parse_chrome_manifest(&b).map_err(|e| SourceError::invalid(&manifest, e)))
        {
            Ok(m) => m,
            Err(e) => return self.skip(e),
        };
        self.t.read_ok += 1;
        let version = if m.version.is_empty() {
            // The folder is `<version>_<n>`; the suffix counts reinstalls.
            let folder = ver.name.to_string_lossy();
            folder
                .rsplit_once('_')
                .map_or(folder.as_ref(), |(v, _)| v)
                .to_string()
        } else {
            m.version.clone()
        };
        let display = match message_key(&m.name) {
            Some(key) => self.chrome_message(&ver.path, &m.default_locale, key),
            None => m.name.clone(),
        };
        let item = Item::new(ItemKind::BrowserExtension, id, Presence::Present, &shown)
            .version(version)
            .path(&shown)
            .attr("browser", browser)
            .attr("user", user)
            .attr("profile", profile)
            .attr("display_name", display);
        self.push(item);
    }

    /// Resolves a `__MSG_key__` name from `_locales/<locale>/messages.json`,
    /// the manifest's default locale first, then English; empty when none
    /// has it.
    fn chrome_message(&mut self, ext_dir: &Path, default_locale: &str, key: &str) -> String {
        let mut locales = vec![default_locale, "en", "en_US"];
        locales.dedup();
        for locale in locales {
            // The locale comes from the file: one plain folder name only,
            // so it cannot walk elsewhere in the image.
            if !is_plain_component(locale) {
                continue;
            }
            let Some(file) = find_dir_ci(ext_dir, &["_locales", locale])
                .and_then(|d| find_file_ci(&d, "messages.json"))
            else {
                continue;
            };
            match read_capped(&file) {
                Ok(b) => match lookup_message(&b, key) {
                    Ok(Some(m)) => return m,
                    Ok(None) => {}
                    Err(e) => self.skip(SourceError::invalid(&file, e)),
                },
                Err(e) => self.skip(e),
            }
        }
        String::new()
    }

    /// The add-ons of every profile under a Firefox profiles folder.
    fn firefox(&mut self, user: &str, base: &Path) {
        for profile in list_dir(base) {
            if !profile.kind.is_dir() {
                continue;
            }
            let Some(file) = find_file_ci(&profile.path, "extensions.json") else {
                continue;
            };
            let shown = shown(self.root, &file);
            let addons = match read_capped(&file)
                .and_then(|b| parse_firefox(&b).map_err(|e| SourceError::invalid(&file, e)))
            {
                Ok(a) => a,
                Err(e) => {
                    self.skip(e);
                    continue;
                }
            };
            self.t.read_ok += 1;
            let profile_name = profile.name.to_string_lossy();
            for a in addons {
                let presence = if a.user_disabled || !a.active {
                    Presence::Leftover
                } else {
                    Presence::Present
                };
                let item = Item::new(ItemKind::BrowserExtension, a.id, presence, &shown)
                    .version(a.version)
                    .path(&shown)
                    .attr("browser", "firefox")
                    .attr("user", user)
                    .attr("profile", profile_name.as_ref())
                    .attr("display_name", a.name)
                    .attr("location", a.location)
                    .attr("type", a.kind);
                self.push(item);
            }
        }
    }
}

/// The fields of a Chrome `manifest.json` the inventory uses.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ChromeManifest {
    pub name: String,
    pub version: String,
    pub default_locale: String,
}

/// Parses a Chrome manifest; only a JSON object is accepted, missing or
/// mistyped fields are left empty.
pub(crate) fn parse_chrome_manifest(bytes: &[u8]) -> Result<ChromeManifest, String> {
    let v: Value = serde_json::from_slice(strip_bom(bytes)).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("manifest is not a JSON object")?;
    let s = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(ChromeManifest {
        name: s("name"),
        version: s("version"),
        default_locale: s("default_locale"),
    })
}

/// The key of a `__MSG_key__` name, `None` for a plain name.
fn message_key(name: &str) -> Option<&str> {
    name.strip_prefix("__MSG_")?
        .strip_suffix("__")
        .filter(|k| !k.is_empty())
}

/// The message of `key` in a `messages.json` (keys compare without regard
/// to case, as Chrome does); `Ok(None)` when the file lacks it.
pub(crate) fn lookup_message(bytes: &[u8], key: &str) -> Result<Option<String>, String> {
    let v: Value = serde_json::from_slice(strip_bom(bytes)).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("messages.json is not a JSON object")?;
    Ok(obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, m)| m.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// One Firefox add-on from `extensions.json`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct FirefoxAddon {
    pub id: String,
    pub version: String,
    pub name: String,
    pub active: bool,
    pub user_disabled: bool,
    pub location: String,
    pub kind: String,
}

/// Parses `extensions.json`; add-ons without an id are left out, missing
/// flags read as Firefox's defaults (active, not disabled).
pub(crate) fn parse_firefox(bytes: &[u8]) -> Result<Vec<FirefoxAddon>, String> {
    let v: Value = serde_json::from_slice(strip_bom(bytes)).map_err(|e| e.to_string())?;
    let addons = v
        .get("addons")
        .and_then(Value::as_array)
        .ok_or("extensions.json has no addons array")?;
    let s = |a: &Value, k: &str| {
        a.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(addons
        .iter()
        .filter_map(|a| {
            let id = s(a, "id");
            if id.is_empty() {
                return None;
            }
            Some(FirefoxAddon {
                version: s(a, "version"),
                name: a
                    .get("defaultLocale")
                    .map(|l| s(l, "name"))
                    .unwrap_or_default(),
                active: a.get("active").and_then(Value::as_bool).unwrap_or(true),
                user_disabled: a
                    .get("userDisabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                location: s(a, "location"),
                kind: s(a, "type"),
                id,
            })
        })
        .collect())
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

fn is_chrome_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|c| (b'a'..=b'p').contains(&c))
}

/// A single, ordinary folder name: no separators, not `.` or `..`.
fn is_plain_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0'])
}

/// One entry of a folder listing; `kind` is the entry's own type, a
/// symlink is never taken for what it points at.
pub(crate) struct Entry {
    pub name: OsString,
    pub path: PathBuf,
    pub kind: FileType,
}

/// The entries of `dir` sorted by name (for a stable output), at most
/// [`MAX_DIR_ENTRIES`]; symlinks are left out, unreadable folders are empty.
pub(crate) fn list_dir(dir: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = rd
        .flatten()
        .take(MAX_DIR_ENTRIES)
        .filter_map(|e| {
            let kind = e.file_type().ok()?;
            (!kind.is_symlink()).then(|| Entry {
                name: e.file_name(),
                path: e.path(),
                kind,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The child of `dir` named `name` without regard to ASCII case (the exact
/// name first), that is not a symlink.
pub(crate) fn child_ci(dir: &Path, name: &str) -> Option<PathBuf> {
    let exact = dir.join(name);
    if std::fs::symlink_metadata(&exact).is_ok_and(|m| !m.file_type().is_symlink()) {
        return Some(exact);
    }
    let rd = std::fs::read_dir(dir).ok()?;
    rd.flatten()
        .take(MAX_DIR_ENTRIES)
        .find(|e| {
            e.file_name().to_string_lossy().eq_ignore_ascii_case(name)
                && e.file_type().is_ok_and(|t| !t.is_symlink())
        })
        .map(|e| e.path())
}

/// The folder `parts` below `dir`, each part matched without regard to case,
/// every step a real folder (no symlinks).
pub(crate) fn find_dir_ci(dir: &Path, parts: &[&str]) -> Option<PathBuf> {
    let mut cur = dir.to_path_buf();
    for part in parts {
        cur = child_ci(&cur, part)?;
    }
    std::fs::symlink_metadata(&cur)
        .is_ok_and(|m| m.is_dir())
        .then_some(cur)
}

/// The regular file `name` in `dir`, matched without regard to case.
pub(crate) fn find_file_ci(dir: &Path, name: &str) -> Option<PathBuf> {
    child_ci(dir, name).filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
}

/// Reads a regular file whole, refusing symlinks, special files (a FIFO
/// would block) and files over [`MAX_FILE_BYTES`]; the cap is also applied
/// while reading, as the file may grow after its size was checked.
pub(crate) fn read_capped(path: &Path) -> Result<Vec<u8>, SourceError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| SourceError::read(path, e))?;
    if !meta.is_file() {
        return Err(SourceError::invalid(path, "not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(SourceError::invalid(
            path,
            format!("{} bytes is too large to read", meta.len()),
        ));
    }
    let f = std::fs::File::open(path).map_err(|e| SourceError::read(path, e))?;
    // Sized from the stat: the file is read in one call, plus the one that
    // sees its end.
    let mut buf = Vec::with_capacity(meta.len() as usize + 1);
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| SourceError::read(path, e))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(SourceError::invalid(path, "file grew too large to read"));
    }
    Ok(buf)
}

/// `path` as the image sees it: relative to `root`, with a leading `/` and
/// `/` separators whatever the host's.
pub(crate) fn shown(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let mut s = String::new();
    for c in rel.components() {
        if let std::path::Component::Normal(c) = c {
            s.push('/');
            s.push_str(&c.to_string_lossy());
        }
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;

    const ID: &str = "aapbdbdomjkkjkaonfhkkikfgjllcleb";

    /// The fixture folder: next to the workspace when copied into
    /// /work/main/agent, else the shared copy.
    fn fixture() -> Option<PathBuf> {
        crate::sources::fixture(&format!(
            "browser/osv-scalibr_chrome-extension/{ID}/2.0.16_0"
        ))
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dest = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &dest);
            } else {
                fs::copy(e.path(), dest).unwrap();
            }
        }
    }

    /// Places the fixture extension under `rel` (the profile's
    /// `Extensions` folder) in a new root.
    fn root_with(rel: &str) -> Option<tempfile::TempDir> {
        let Some(src) = fixture() else {
            eprintln!("skipped: Chrome extension fixture is absent");
            return None;
        };
        let root = tempfile::tempdir().unwrap();
        copy_dir(&src, &root.path().join(rel).join(ID).join("2.0.16_0"));
        Some(root)
    }

    fn check_translate(items: &[Item], browser: &str, user: &str, path: &str) {
        assert_eq!(items.len(), 1, "{items:#?}");
        let it = &items[0];
        assert_eq!(it.kind, ItemKind::BrowserExtension);
        assert_eq!(it.name, ID);
        assert_eq!(it.version, "2.0.16");
        assert_eq!(it.presence, Presence::Present);
        assert_eq!(it.path, path);
        assert_eq!(it.attrs["browser"], browser);
        assert_eq!(it.attrs["user"], user);
        assert_eq!(it.attrs["display_name"], "Google Translate");
    }

    #[test]
    fn linux_chrome_profile() {
        let Some(root) = root_with("home/alice/.config/google-chrome/Profile 2/Extensions") else {
            return;
        };
        let items = read(root.path()).unwrap();
        check_translate(
            &items,
            "chrome",
            "alice",
            &format!(
                "/home/alice/.config/google-chrome/Profile 2/Extensions/{ID}/2.0.16_0/manifest.json"
            ),
        );
        assert_eq!(items[0].attrs["profile"], "Profile 2");
    }

    #[test]
    fn linux_root_brave() {
        let Some(root) = root_with("root/.config/BraveSoftware/Brave-Browser/Default/Extensions")
        else {
            return;
        };
        let items = read(root.path()).unwrap();
        check_translate(
            &items,
            "brave",
            "root",
            &format!(
                "/root/.config/BraveSoftware/Brave-Browser/Default/Extensions/{ID}/2.0.16_0/manifest.json"
            ),
        );
    }

    #[test]
    fn macos_edge() {
        let Some(root) =
            root_with("Users/bob/Library/Application Support/Microsoft Edge/Default/Extensions")
        else {
            return;
        };
        let items = read(root.path()).unwrap();
        check_translate(
            &items,
            "edge",
            "bob",
            &format!(
                "/Users/bob/Library/Application Support/Microsoft Edge/Default/Extensions/{ID}/2.0.16_0/manifest.json"
            ),
        );
    }

    #[test]
    fn windows_mixed_case_and_locale_fallback() {
        // Windows volumes keep whatever case the folders were made with.
        let Some(root) =
            root_with("users/Carol/APPDATA/local/google/CHROME/user data/default/extensions")
        else {
            return;
        };
        let ext = root
            .path()
            .join("users/Carol/APPDATA/local/google/CHROME/user data/default/extensions")
            .join(ID)
            .join("2.0.16_0");
        // The manifest names a locale that is absent: English is used.
        let m = fs::read_to_string(ext.join("manifest.json")).unwrap();
        fs::write(
            ext.join("MANIFEST.JSON.tmp"),
            m.replace(
                "\"default_locale\": \"en\"",
                "\"default_locale\": \"../../x\"",
            ),
        )
        .unwrap();
        fs::remove_file(ext.join("manifest.json")).unwrap();
        fs::rename(ext.join("MANIFEST.JSON.tmp"), ext.join("Manifest.json")).unwrap();
        let items = read(root.path()).unwrap();
        check_translate(
            &items,
            "chrome",
            "Carol",
            &format!(
                "/users/Carol/APPDATA/local/google/CHROME/user data/default/extensions/{ID}/2.0.16_0/Manifest.json"
            ),
        );
        assert_eq!(items[0].attrs["profile"], "default");
    }

    #[test]
    fn firefox_profiles_and_disabled_addons() {
        let root = tempfile::tempdir().unwrap();
        let json = r#"{"schemaVersion":36,"addons":[
            {"id":"uBlock0@raymondhill.net","version":"1.58.0","type":"extension",
             "defaultLocale":{"name":"uBlock Origin"},"active":true,"userDisabled":false,
             "location":"app-profile"},
            {"id":"light@kaspersky.com","version":"2.0","defaultLocale":{"name":"Kaspersky Protection"},
             "active":false,"userDisabled":true,"location":"app-profile"},
            {"version":"9"},
            {"id":42}
        ]}"#;
        for dir in [
            "home/dave/.mozilla/firefox/abcd.default-release",
            "Users/erin/Library/Application Support/Firefox/Profiles/x.default",
            "Users/Fay/AppData/Roaming/Mozilla/Firefox/Profiles/y.default",
        ] {
            let d = root.path().join(dir);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("extensions.json"), json).unwrap();
        }
        // A damaged file is skipped and counted; the others still count.
        let bad = root.path().join("home/gus/.mozilla/firefox/z.default");
        fs::create_dir_all(&bad).unwrap();
        fs::write(bad.join("extensions.json"), b"{\"addons\": [").unwrap();
        let s = scan(root.path()).unwrap();
        assert_eq!(s.skipped, 1);
        assert_eq!(s.items.len(), 6, "{:#?}", s.items);
        let ub = s
            .items
            .iter()
            .find(|i| i.name == "uBlock0@raymondhill.net" && i.attrs["user"] == "dave")
            .unwrap();
        assert_eq!(ub.version, "1.58.0");
        assert_eq!(ub.presence, Presence::Present);
        assert_eq!(ub.attrs["browser"], "firefox");
        assert_eq!(ub.attrs["profile"], "abcd.default-release");
        assert_eq!(ub.attrs["display_name"], "uBlock Origin");
        assert_eq!(
            ub.path,
            "/home/dave/.mozilla/firefox/abcd.default-release/extensions.json"
        );
        let kp = s
            .items
            .iter()
            .find(|i| i.name == "light@kaspersky.com" && i.attrs["user"] == "Fay")
            .unwrap();
        assert_eq!(kp.presence, Presence::Leftover);
        assert_eq!(kp.attrs["display_name"], "Kaspersky Protection");
    }

    #[test]
    fn only_damaged_is_an_error_and_nothing_is_empty() {
        let root = tempfile::tempdir().unwrap();
        assert!(read(root.path()).unwrap().is_empty());
        let d = root.path().join("home/h/.mozilla/firefox/p");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("extensions.json"), b"\xff\xfe garbage").unwrap();
        assert!(read(root.path()).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_followed() {
        let Some(outside) = root_with("elsewhere") else {
            return;
        };
        let root = tempfile::tempdir().unwrap();
        let ext = root
            .path()
            .join("home/ivy/.config/chromium/Default/Extensions");
        fs::create_dir_all(&ext).unwrap();
        // A link out of the image, at each level that is walked.
        std::os::unix::fs::symlink(outside.path().join("elsewhere").join(ID), ext.join(ID))
            .unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("elsewhere"),
            root.path().join("home/ivy/.config/chromium/Profile 1"),
        )
        .unwrap();
        assert!(read(root.path()).unwrap().is_empty());
    }

    #[test]
    fn parsers_on_edge_cases() {
        assert_eq!(message_key("__MSG_appName__"), Some("appName"));
        assert_eq!(message_key("__MSG___"), None);
        assert_eq!(message_key("Plain"), None);
        let msgs = br#"{"AppName":{"message":"X"},"other":{"message":1}}"#;
        assert_eq!(
            lookup_message(msgs, "appname").unwrap().as_deref(),
            Some("X")
        );
        assert_eq!(lookup_message(msgs, "other").unwrap(), None);
        assert!(lookup_message(b"[]", "a").is_err());
        assert!(parse_chrome_manifest(b"\"str\"").is_err());
        assert_eq!(
            parse_chrome_manifest(b"\xEF\xBB\xBF{\"name\":\"N\",\"version\":3}").unwrap(),
            ChromeManifest {
                name: "N".into(),
                ..Default::default()
            }
        );
        assert!(parse_firefox(b"{}").is_err());
        // Deep nesting is refused by serde_json's recursion limit, not a
        // stack overflow.
        let deep = "[".repeat(100_000);
        assert!(parse_firefox(deep.as_bytes()).is_err());
        assert!(parse_chrome_manifest(deep.as_bytes()).is_err());
    }

    /// JSON-shaped input, so the fuzzing reaches past the parser.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            "[a-zA-Z_ _]{0,12}".prop_map(|s| format!("{s:?}")),
        ];
        let keys = prop_oneof![
            Just("addons"),
            Just("id"),
            Just("version"),
            Just("name"),
            Just("active"),
            Just("userDisabled"),
            Just("defaultLocale"),
            Just("default_locale"),
            Just("message"),
            Just("location"),
            Just("__MSG_a__"),
            Just("a"),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|v| {
                    let f: Vec<String> = v.iter().map(|(k, x)| format!("{k:?}:{x}")).collect();
                    format!("{{{}}}", f.join(","))
                }),
            ]
        })
        .prop_map(String::into_bytes)
    }

    proptest! {
        #[test]
        fn chrome_parsers_never_panic(b in prop::collection::vec(any::<u8>(), 0..512), k in ".{0,8}") {
            let _ = parse_chrome_manifest(&b);
            let _ = lookup_message(&b, &k);
            let _ = message_key(&String::from_utf8_lossy(&b));
        }

        #[test]
        fn firefox_parser_never_panics(b in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_firefox(&b);
        }

        #[test]
        fn parsers_never_panic_on_json(b in jsonish()) {
            let _ = parse_chrome_manifest(&b);
            let _ = lookup_message(&b, "a");
            let _ = parse_firefox(&b);
        }
    }
}
