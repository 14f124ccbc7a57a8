//! The catalog's data model, how vendor and policy files are read into it,
//! and the index the engine matches with.

use crate::glob::{Glob, GlobError};
use crate::inventory::{ItemKind, Platform};
use crate::policy::Policy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use toml::Spanned;

/// What a product is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Antivirus / anti-malware.
    Antivirus,
    /// Endpoint detection and response.
    Edr,
    /// Host intrusion detection.
    Hids,
    /// Host firewall.
    Firewall,
    /// Vulnerability scanner agent.
    VulnerabilityAgent,
    /// Data loss prevention.
    Dlp,
    /// VPN client.
    Vpn,
    /// Password manager.
    PasswordManager,
    /// Parental control.
    ParentalControl,
    /// Management agents and anything else.
    Other,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 10] = [
        Category::Antivirus,
        Category::Edr,
        Category::Hids,
        Category::Firewall,
        Category::VulnerabilityAgent,
        Category::Dlp,
        Category::Vpn,
        Category::PasswordManager,
        Category::ParentalControl,
        Category::Other,
    ];

    /// The data-file name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Antivirus => "antivirus",
            Category::Edr => "edr",
            Category::Hids => "hids",
            Category::Firewall => "firewall",
            Category::VulnerabilityAgent => "vulnerability-agent",
            Category::Dlp => "dlp",
            Category::Vpn => "vpn",
            Category::PasswordManager => "password-manager",
            Category::ParentalControl => "parental-control",
            Category::Other => "other",
        }
    }

    /// Parses the data-file name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The state a detection proves, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Only leftovers remain: an uninstall that did not finish.
    Remnant,
    /// A package or registration is present.
    Installed,
    /// A process, loaded driver/module or active service is seen.
    Running,
}

impl State {
    /// The wire and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Remnant => "remnant",
            State::Installed => "installed",
            State::Running => "running",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "remnant" => Some(State::Remnant),
            "installed" => Some(State::Installed),
            "running" => Some(State::Running),
            _ => None,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an indicator's value is compared with an inventory item's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchMode {
    /// Byte for byte.
    Exact,
    /// Equal without regard to ASCII case (and, for Windows paths and
    /// registry keys, without regard to `/` or `\`).
    CaseInsensitive,
    /// A glob (`*`, `?`, `[...]`, see [`crate::glob`]); case-insensitive on Windows.
    Glob,
}

impl MatchMode {
    /// The data-file name.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchMode::Exact => "exact",
            MatchMode::CaseInsensitive => "case-insensitive",
            MatchMode::Glob => "glob",
        }
    }
}

/// One fact that betrays a product.
#[derive(Debug, Clone, Serialize)]
pub struct Indicator {
    /// What kind of inventory item it matches.
    pub kind: ItemKind,
    /// The name to match.
    pub value: String,
    /// How to match: given, or case-insensitive on Windows and exact elsewhere.
    #[serde(rename = "match")]
    pub mode: MatchMode,
    /// The strongest state this indicator can prove.
    pub proves: State,
    /// The platform the fact holds on.
    pub platform: Platform,
    /// The public source of the fact.
    pub source: String,
}

/// A product and the indicators that recognise it.
#[derive(Debug, Clone, Serialize)]
pub struct Product {
    /// Stable id, `vendor.product`, e.g. `kaspersky.endpoint-security-linux`.
    pub id: String,
    /// Vendor name.
    pub vendor: String,
    /// The product's name as the vendor writes it.
    pub name: String,
    /// What it is for.
    pub category: Category,
    /// Where it runs.
    pub platforms: Vec<Platform>,
    /// The facts that recognise it.
    pub indicators: Vec<Indicator>,
    /// The file (and line) it was read from.
    pub defined_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVendorFile {
    vendor: String,
    #[serde(default)]
    products: Vec<Spanned<RawProduct>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProduct {
    id: String,
    name: String,
    category: Category,
    platforms: Vec<Platform>,
    #[serde(default)]
    indicators: Vec<Spanned<RawIndicator>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndicator {
    kind: ItemKind,
    value: String,
    #[serde(default, rename = "match")]
    mode: Option<MatchMode>,
    proves: State,
    platform: Platform,
    #[serde(default)]
    source: String,
}

/// A problem in a catalog file; every problem is reported, not only the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct LoadError {
    /// The file's name.
    pub file: String,
    /// The line (1-based; 0 when the whole file is concerned).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// All problems found while loading a catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid catalog:\n  {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
pub struct LoadErrors(pub Vec<LoadError>);

/// Where an indicator sits in the catalog.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndRef {
    pub product: u32,
    pub indicator: u32,
}

/// The indicators of one kind on one platform, ready to match.
#[derive(Debug, Clone, Default)]
pub(crate) struct KindIndex {
    /// By exact value.
    pub exact: rustc_hash::FxHashMap<String, Vec<IndRef>>,
    /// By folded value (see [`fold_into`]).
    pub folded: rustc_hash::FxHashMap<String, Vec<IndRef>>,
    /// Globs, each with the literal text it must start with (folded when
    /// the glob is case-insensitive), checked before the glob itself.
    pub globs: Vec<(String, bool, Glob, IndRef)>,
}

/// Indicators by platform and kind, built once per catalog, so an inventory
/// is matched item by item with one array index and a hash lookup or two.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    pub by: Vec<KindIndex>,
}

impl Index {
    pub fn slot(platform: Platform, kind: ItemKind) -> usize {
        platform as usize * ItemKind::ALL.len() + kind as usize
    }
}

/// Case-folds a value for case-insensitive matching. Windows paths and
/// registry keys also ignore which slash separates their parts.
pub(crate) fn fold_into(kind: ItemKind, value: &str, out: &mut String) {
    out.clear();
    let slashes = matches!(kind, ItemKind::FilePath | ItemKind::RegistryKey);
    if value.is_ascii() {
        out.push_str(value);
        out.make_ascii_lowercase();
        if slashes && out.contains('/') {
            *out = out.replace('/', "\\");
        }
        return;
    }
    for c in value.chars() {
        if slashes && c == '/' {
            out.push('\\');
        } else {
            out.extend(c.to_lowercase());
        }
    }
}

/// The indicator's glob: on Windows compiled from the folded value (it is
/// matched against folded names), elsewhere as written, with `\` escapes.
fn glob_for(ind: &Indicator) -> Result<Glob, GlobError> {
    if ind.platform == Platform::Windows {
        let mut folded = String::new();
        fold_into(ind.kind, &ind.value, &mut folded);
        Glob::new(&folded, false)
    } else {
        Glob::new(&ind.value, true)
    }
}

/// The catalog: products, policies, a version, a content digest and the
/// matching index.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Products, sorted by id.
    pub products: Vec<Product>,
    /// Policies, sorted by id.
    pub policies: Vec<Policy>,
    /// `YYYY.MM.DD-<digest prefix>`-style version: changes whenever the content does.
    pub version: String,
    /// Lowercase hex SHA-256 over every file's name and content.
    pub digest: String,
    pub(crate) index: Index,
}

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

fn line_of(text: &str, offset: usize) -> usize {
    Lines::new(text).line(offset)
}

/// Line numbers of byte offsets in one text, the newlines found once (a
/// vendor file has hundreds of indicators; counting from the start for each
/// was most of the catalog's load time).
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Lines {
        Lines(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// The 1-based line holding byte `offset`.
    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

/// The line a TOML error points at, from its span.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> LoadError {
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
    LoadError {
        file: file.to_string(),
        line,
        message: e.message().trim().to_string(),
    }
}

/// What kind of catalog file a text is.
enum FileKind {
    Vendor,
    Policy,
}

fn file_kind(text: &str) -> Option<FileKind> {
    let table: toml::Table = toml::from_str(text).ok()?;
    if table.contains_key("vendor") {
        Some(FileKind::Vendor)
    } else if table.contains_key("ban") || table.contains_key("require") {
        Some(FileKind::Policy)
    } else {
        None
    }
}

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn builtin() -> Catalog {
        // The built-in files are checked by this crate's tests, so a failure
        // here is a build defect, not a user error.
        Catalog::load(
            BUILTIN_PRODUCTS,
            BUILTIN_POLICIES,
            &[],
            Some(BUILTIN_DIGEST),
        )
        .expect("the built-in catalog is valid")
    }

    /// The built-in catalog plus an operator's folder of TOML files (vendor
    /// files and policies). A product or policy in the folder replaces the
    /// built-in one with the same id.
    pub fn with_dir(dir: &Path) -> Result<Catalog, LoadErrors> {
        let (files, mut errors) = read_dir_files(dir);
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        match Catalog::load(
            BUILTIN_PRODUCTS,
            BUILTIN_POLICIES,
            &borrowed,
            Some(BUILTIN_DIGEST),
        ) {
            Ok(c) if errors.is_empty() => Ok(c),
            Ok(_) => Err(LoadErrors(errors)),
            Err(LoadErrors(more)) => {
                errors.extend(more);
                Err(LoadErrors(errors))
            }
        }
    }

    /// Reads a catalog: built-in vendor and policy files, then overrides
    /// (vendor or policy files, told apart by their keys). Every problem in
    /// every file is reported, with its file and line.
    pub fn from_files(
        products: &[(&str, &str)],
        policies: &[(&str, &str)],
        overrides: &[(&str, &str)],
    ) -> Result<Catalog, LoadErrors> {
        Catalog::load(products, policies, overrides, None)
    }

    /// `from_files`, given the digest of `products` and `policies` when it
    /// was computed at build time (hashing the built-in files at every start
    /// cost a fifth of the load time).
    fn load(
        products: &[(&str, &str)],
        policies: &[(&str, &str)],
        overrides: &[(&str, &str)],
        base_digest: Option<&str>,
    ) -> Result<Catalog, LoadErrors> {
        let mut errors = Vec::new();
        let base = match base_digest {
            Some(d) => d.to_string(),
            None => files_digest(products.iter().chain(policies)),
        };
        let digest = if overrides.is_empty() {
            base
        } else {
            let mut h = Sha256::new();
            h.update(base.as_bytes());
            h.update([0]);
            for (file, text) in overrides {
                h.update(file.as_bytes());
                h.update([0]);
                h.update(text.as_bytes());
                h.update([0]);
            }
            hex::encode(h.finalize())
        };
        let mut by_id: BTreeMap<String, Product> = BTreeMap::new();
        let mut pols: BTreeMap<String, Policy> = BTreeMap::new();
        let mut sources: Vec<(&str, &str, Option<FileKind>, bool)> = Vec::new();
        for (f, t) in products {
            sources.push((f, t, Some(FileKind::Vendor), false));
        }
        for (f, t) in policies {
            sources.push((f, t, Some(FileKind::Policy), false));
        }
        for (f, t) in overrides {
            sources.push((f, t, file_kind(t), true));
        }
        let mut override_ids: HashMap<String, String> = HashMap::new();
        for (file, text, kind, is_override) in sources {
            match kind {
                Some(FileKind::Vendor) => {
                    for p in read_vendor_file(file, text, &mut errors) {
                        if is_override {
                            if let Some(other) =
                                override_ids.insert(p.id.clone(), p.defined_at.clone())
                            {
                                errors.push(LoadError {
                                    file: file.to_string(),
                                    line: 0,
                                    message: format!(
                                        "product id {:?} is also defined at {other}",
                                        p.id
                                    ),
                                });
                            }
                        } else if let Some(other) = by_id.get(&p.id) {
                            errors.push(LoadError {
                                file: file.to_string(),
                                line: 0,
                                message: format!(
                                    "product id {:?} ({}) is also defined at {}",
                                    p.id, p.defined_at, other.defined_at
                                ),
                            });
                            continue;
                        }
                        by_id.insert(p.id.clone(), p);
                    }
                }
                Some(FileKind::Policy) => match Policy::parse(text) {
                    Ok(p) => {
                        if !is_override && pols.contains_key(&p.id) {
                            errors.push(LoadError {
                                file: file.to_string(),
                                line: 0,
                                message: format!("policy id {:?} is defined twice", p.id),
                            });
                        }
                        pols.insert(p.id.clone(), p);
                    }
                    Err(message) => errors.push(LoadError {
                        file: file.to_string(),
                        line: 0,
                        message,
                    }),
                },
                None => {
                    // Either it does not parse (say where) or it has neither key.
                    let err = match toml::from_str::<toml::Table>(text) {
                        Err(e) => toml_error(file, text, &e),
                        Ok(_) => LoadError {
                            file: file.to_string(),
                            line: 0,
                            message: "neither a vendor file (`vendor = ...`) nor a policy (`[[ban]]` or `[[require]]`)".into(),
                        },
                    };
                    errors.push(err);
                }
            }
        }
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        let products: Vec<Product> = by_id.into_values().collect();
        let index = build_index(&products);
        Ok(Catalog {
            version: format!("catalog-{}", &digest[..12]),
            digest,
            products,
            policies: pols.into_values().collect(),
            index,
        })
    }

    /// The product with this id.
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.products[i])
    }

    /// The policy with this id.
    pub fn policy(&self, id: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.id == id)
    }

    /// The ids of the policies that ban this product.
    pub fn banned_by(&self, product: &Product) -> Vec<String> {
        self.policies
            .iter()
            .filter(|p| p.bans(product))
            .map(|p| p.id.clone())
            .collect()
    }

    /// Distinct vendor names.
    pub fn vendors(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.products.iter().map(|p| p.vendor.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The digest of catalog files: SHA-256 over each file's name and text,
/// each followed by a zero byte. `build.rs` computes the same for the
/// built-in files.
fn files_digest<'a>(files: impl Iterator<Item = &'a (&'a str, &'a str)>) -> String {
    let mut h = Sha256::new();
    for (file, text) in files {
        h.update(file.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// Reads every catalog file of an operator's folder: the TOML files' names
/// and texts, and an error for every other file (but hidden files and
/// `*.md`) and every file that cannot be read.
pub fn read_dir_files(dir: &Path) -> (Vec<(String, String)>, Vec<LoadError>) {
    let err = |file: &Path, message: String| LoadError {
        file: file.display().to_string(),
        line: 0,
        message,
    };
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            let e = err(dir, format!("cannot read the catalog folder: {e}"));
            return (Vec::new(), vec![e]);
        }
    };
    let mut paths: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        if !name.ends_with(".toml") {
            errors.push(err(&p, "not a catalog file: only TOML (*.toml) is read; convert it to TOML or move it out of the folder".into()));
            continue;
        }
        match std::fs::read_to_string(&p) {
            Ok(t) => out.push((p.display().to_string(), t)),
            Err(e) => errors.push(err(&p, format!("cannot read: {e}"))),
        }
    }
    (out, errors)
}

fn read_vendor_file(file: &str, text: &str, errors: &mut Vec<LoadError>) -> Vec<Product> {
    let raw: RawVendorFile = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            errors.push(toml_error(file, text, &e));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    if raw.vendor.trim().is_empty() {
        errors.push(LoadError {
            file: file.into(),
            line: 1,
            message: "vendor is empty".into(),
        });
    }
    let lines = Lines::new(text);
    for sp in raw.products {
        let line = lines.line(sp.span().start);
        let rp = sp.into_inner();
        let mut err = |line: usize, message: String| {
            errors.push(LoadError {
                file: file.to_string(),
                line,
                message,
            })
        };
        let valid_id = rp.id.split('.').count() >= 2
            && rp.id.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            });
        if !valid_id {
            err(
                line,
                format!(
                    "product id {:?} must be `vendor.product` in lowercase letters, digits and dashes",
                    rp.id
                ),
            );
        }
        if rp.platforms.is_empty() {
            err(line, format!("product {:?} names no platform", rp.id));
        }
        if rp.indicators.is_empty() {
            err(line, format!("product {:?} has no indicators", rp.id));
        }
        let mut indicators = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for si in rp.indicators {
            let iline = lines.line(si.span().start);
            let ri = si.into_inner();
            let mode = ri.mode.unwrap_or(if ri.platform == Platform::Windows {
                MatchMode::CaseInsensitive
            } else {
                MatchMode::Exact
            });
            let ind = Indicator {
                kind: ri.kind,
                value: ri.value,
                mode,
                proves: ri.proves,
                platform: ri.platform,
                source: ri.source,
            };
            let what = || format!("product {:?}: {} {:?}", rp.id, ind.kind.as_str(), ind.value);
            if ind.value.trim().is_empty() {
                err(
                    iline,
                    format!(
                        "product {:?}: a {} indicator has an empty value",
                        rp.id,
                        ind.kind.as_str()
                    ),
                );
            }
            if ind.source.trim().is_empty() {
                err(
                    iline,
                    format!(
                        "{} names no source (every fact needs its public source)",
                        what()
                    ),
                );
            }
            if !rp.platforms.contains(&ind.platform) {
                err(
                    iline,
                    format!(
                        "{}: platform {} is not one of the product's platforms",
                        what(),
                        ind.platform.as_str()
                    ),
                );
            }
            if mode == MatchMode::Glob {
                if matches!(ind.kind, ItemKind::Package | ItemKind::Process) {
                    err(
                        iline,
                        format!(
                            "{}: globs are not allowed on package and process names (a name fragment is not a product)",
                            what()
                        ),
                    );
                } else if let Err(e) = glob_for(&ind) {
                    err(iline, format!("{}: bad glob: {e}", what()));
                }
            } else if ind.value.contains(['*', '?']) {
                err(
                    iline,
                    format!(
                        "{} looks like a glob but `match` is {}",
                        what(),
                        mode.as_str()
                    ),
                );
            }
            let mut key = String::new();
            if mode == MatchMode::Exact {
                key.push_str(&ind.value);
            } else {
                fold_into(ind.kind, &ind.value, &mut key);
            }
            if !seen.insert((ind.kind, ind.platform, key)) {
                err(iline, format!("{} is listed twice", what()));
            }
            indicators.push(ind);
        }
        out.push(Product {
            id: rp.id,
            vendor: raw.vendor.clone(),
            name: rp.name,
            category: rp.category,
            platforms: rp.platforms,
            indicators,
            defined_at: format!("{file}:{line}"),
        });
    }
    out
}

fn build_index(products: &[Product]) -> Index {
    let mut index = Index {
        by: vec![KindIndex::default(); 3 * ItemKind::ALL.len()],
    };
    let mut key = String::new();
    for (pi, p) in products.iter().enumerate() {
        for (ii, ind) in p.indicators.iter().enumerate() {
            let r = IndRef {
                product: pi as u32,
                indicator: ii as u32,
            };
            let slot = &mut index.by[Index::slot(ind.platform, ind.kind)];
            match ind.mode {
                MatchMode::Exact => slot.exact.entry(ind.value.clone()).or_default().push(r),
                MatchMode::CaseInsensitive => {
                    fold_into(ind.kind, &ind.value, &mut key);
                    slot.folded.entry(key.clone()).or_default().push(r)
                }
                MatchMode::Glob => {
                    // Validated at load; a glob that fails here cannot happen.
                    if let Ok(g) = glob_for(ind) {
                        let folded = ind.platform == Platform::Windows;
                        slot.globs.push((g.literal_prefix(), folded, g, r));
                    }
                }
            }
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each vendor file stands on its own: it parses, every indicator names
    /// a source, and no indicator is listed twice (from_files checks both).
    #[test]
    fn every_builtin_vendor_file_is_valid_alone() {
        assert!(
            BUILTIN_PRODUCTS.len() >= 60,
            "{} vendor files",
            BUILTIN_PRODUCTS.len()
        );
        for (file, text) in BUILTIN_PRODUCTS {
            let c = Catalog::from_files(&[(file, text)], &[], &[])
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(!c.products.is_empty(), "{file} has no product");
            let vendor = &c.products[0].vendor;
            for p in &c.products {
                assert_eq!(&p.vendor, vendor);
                assert!(p.indicators.iter().all(|i| !i.source.trim().is_empty()));
            }
        }
    }

    /// The digest build.rs computes for the built-in files is the one the
    /// run-time code computes for the same files.
    #[test]
    fn build_time_digest_matches() {
        let runtime = Catalog::from_files(BUILTIN_PRODUCTS, BUILTIN_POLICIES, &[]).unwrap();
        assert_eq!(runtime.digest, BUILTIN_DIGEST);
        assert_eq!(Catalog::builtin().digest, BUILTIN_DIGEST);
        let extra = [("x.toml", "vendor = \"X\"\n")];
        let dir = Catalog::load(
            BUILTIN_PRODUCTS,
            BUILTIN_POLICIES,
            &extra,
            Some(BUILTIN_DIGEST),
        );
        let plain = Catalog::from_files(BUILTIN_PRODUCTS, BUILTIN_POLICIES, &extra);
        assert_eq!(dir.unwrap().digest, plain.unwrap().digest);
    }

    #[test]
    fn builtin_catalog_loads() {
        let c = Catalog::builtin();
        assert!(c.product("kaspersky.endpoint-security-linux").is_some());
        assert!(c.product("clamav.clamav").is_some());
        assert!(c.policies.iter().any(|p| p.id == "bod-17-01"));
        assert!(c.version.starts_with("catalog-"));
    }

    const BAD: &str = r#"vendor = "X"

[[products]]
id = "Bad Id"
name = "x"
category = "antivirus"
platforms = ["linux"]

[[products.indicators]]
kind = "package"
value = ""
platform = "linux"
proves = "installed"

[[products.indicators]]
kind = "process"
value = "x*"
match = "glob"
platform = "windows"
proves = "running"
source = "s"
"#;

    #[test]
    fn every_problem_is_reported_with_file_and_line() {
        let unknown = "vendor = \"Y\"\nfrobnicate = 1\n";
        let kind = "vendor = \"Z\"\n[[products]]\nid = \"z.z\"\nname = \"z\"\ncategory = \"antivirus\"\nplatforms = [\"linux\"]\n[[products.indicators]]\nkind = \"toaster\"\nvalue = \"z\"\nplatform = \"linux\"\nproves = \"installed\"\nsource = \"s\"\n";
        let err = Catalog::from_files(
            &[("a.toml", BAD), ("b.toml", unknown), ("c.toml", kind)],
            &[],
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        for want in [
            "a.toml:3: product id \"Bad Id\"",
            "a.toml:9: product \"Bad Id\": a package indicator has an empty value",
            "names no source",
            "a.toml:15:",
            "globs are not allowed",
            "platform windows is not one of the product's platforms",
            "b.toml:2:",
            "frobnicate",
            "c.toml:8:",
            "toaster",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }

    #[test]
    fn duplicate_ids_name_both_places_and_overrides_replace() {
        let one = "vendor = \"V\"\n[[products]]\nid = \"v.p\"\nname = \"P\"\ncategory = \"antivirus\"\nplatforms = [\"linux\"]\n[[products.indicators]]\nkind = \"package\"\nvalue = \"vp\"\nplatform = \"linux\"\nproves = \"installed\"\nsource = \"s\"\n";
        let err = Catalog::from_files(&[("a.toml", one), ("b.toml", one)], &[], &[]).unwrap_err();
        assert!(
            err.to_string().contains("also defined at a.toml:2"),
            "{err}"
        );
        let renamed = one.replace("name = \"P\"", "name = \"Q\"");
        let c = Catalog::from_files(&[("a.toml", one)], &[], &[("local.toml", &renamed)]).unwrap();
        assert_eq!(c.product("v.p").unwrap().name, "Q");
        let err = Catalog::from_files(&[], &[], &[("x.toml", "nothing = 1\n")]).unwrap_err();
        assert!(
            err.to_string().contains("x.toml:0: neither a vendor file"),
            "{err}"
        );
    }
}
