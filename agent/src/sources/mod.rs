//! Inventory sources. Each reads files under a root (`/` for the live host,
//! any other folder for an offline image); only processes need the live system.

pub mod apk;
pub mod browser;
pub mod certs;
pub mod dpkg;
pub mod fsroot;
pub mod hive;
pub mod hivefile;
pub mod macos;
pub mod modules;
pub mod pacman;
pub mod paths;
pub mod processes;
pub mod rpm;
pub mod snap;
pub mod system;
pub mod systemd;

use hive::Hive;
use muster_catalog::{Catalog, Inventory, Item, Platform, Section};
use std::path::{Path, PathBuf};

/// A source could not read what it needs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot read {path}: {reason}")]
pub struct SourceError {
    /// The file or folder.
    pub path: PathBuf,
    /// Why, with advice where there is some.
    pub reason: String,
}

impl SourceError {
    /// An error reading `path`, with advice when it is a permission problem.
    pub fn read(path: &Path, source: std::io::Error) -> Self {
        let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
            " (run as root or give the agent CAP_DAC_READ_SEARCH)"
        } else {
            ""
        };
        SourceError {
            path: path.to_path_buf(),
            reason: format!("{source}{hint}"),
        }
    }

    /// A file that was read but is not what it should be.
    pub fn invalid(path: &Path, reason: impl std::fmt::Display) -> Self {
        SourceError {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// A file of the shared real-data fixtures (`../shared/fixtures` beside the
/// checkout); `None`, saying so, in a clone that has none.
#[cfg(test)]
pub(crate) fn fixture(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipped: fixture {} is absent (a clone without ../shared)",
            p.display()
        );
        None
    }
}

/// What a source that reads many files found, with the number of files it
/// had to skip (damaged or unreadable) while reading the others.
#[derive(Debug, Default)]
pub struct Partial {
    /// The items read.
    pub items: Vec<Item>,
    /// Files present but not readable or not parsable.
    pub skipped: usize,
}

/// The bookkeeping of a source that reads many files: what it found, the
/// files it had to skip, and the first error, reported only when nothing at
/// all could be read (then the source as a whole is unreadable).
#[derive(Debug, Default)]
pub struct Tally {
    /// Items found so far.
    pub items: Vec<Item>,
    /// Files present but not readable or not parsable.
    pub skipped: usize,
    /// Files read; any at all means the source is readable.
    pub read_ok: usize,
    first_error: Option<SourceError>,
}

impl Tally {
    /// Counts a file that could not be read and remembers the error.
    pub fn skip(&mut self, e: SourceError) {
        self.skipped += 1;
        self.remember(e);
    }

    /// Remembers the first error, without counting a skipped file.
    pub fn remember(&mut self, e: SourceError) {
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    /// What was read, or the first error when nothing was.
    pub fn finish(self) -> Result<Partial, SourceError> {
        match self.first_error {
            Some(e) if self.read_ok == 0 => Err(e),
            _ => Ok(Partial {
                items: self.items,
                skipped: self.skipped,
            }),
        }
    }
}

pub use muster_catalog::snapshot::ScanError;

/// What a scan found.
pub struct Scan {
    /// The inventory, one section per source that could be read.
    pub inventory: Inventory,
    /// The facts of the system scanned (the image's own, for an image).
    pub facts: muster_catalog::HostFacts,
    /// Sources that could not be read.
    pub errors: Vec<ScanError>,
}

/// Takes the inventory of the system under `root`, after telling which
/// system it is. A source that fails is reported in the errors and its
/// section left out (never sent empty: an empty section would read as
/// "everything removed").
pub fn scan(root: &Path, live: bool, catalog: &Catalog) -> Scan {
    scan_with(root, live, &|| catalog)
}

/// [`scan`], asking for the catalog only when a source needs it (the paths
/// and registry keys it names come last), so that it can be loaded on
/// another thread meanwhile.
pub fn scan_with<'c>(root: &Path, live: bool, catalog: &dyn Fn() -> &'c Catalog) -> Scan {
    let platform = system::detect(root);
    let mut inv = Inventory {
        platform: Some(platform),
        ..Inventory::default()
    };
    let mut errors = Vec::new();
    // Partial failures: the source was read, less what is named.
    let mut partial = Vec::new();
    let mut add = |name: &str, source: &str, items: Result<Vec<Item>, SourceError>| match items {
        // A source with nothing to report adds no section: the collector
        // then drops what it held, which is the truth.
        Ok(items) if items.is_empty() => {}
        Ok(items) => {
            let mut s = Section { items };
            s.normalise();
            inv.sections.insert(name.to_string(), s);
        }
        Err(e) => errors.push(ScanError {
            source: source.to_string(),
            reason: e.to_string(),
            partial: false,
        }),
    };
    let facts = match platform {
        Platform::Windows => {
            // A running Windows holds its hives open: the live host's are
            // saved with `reg save` first, then read like an image's.
            let saved = (live && cfg!(windows))
                .then(|| hive::Saved::save(&std::env::temp_dir(), hive::reg_save));
            let open = |name| match &saved {
                None => Hive::open(root, name).transpose(),
                Some(Ok(saved)) => Hive::open_file(&saved.path(name)).map(Some),
                Some(Err(e)) => Err(e.clone()),
            };
            let system = open("SYSTEM");
            let software = open("SOFTWARE");
            let (system, software) = (
                system
                    .map_err(|e| add("services", "registry SYSTEM", Err(e)))
                    .ok()
                    .flatten(),
                software
                    .map_err(|e| add("packages", "registry SOFTWARE", Err(e)))
                    .ok()
                    .flatten(),
            );
            if let Some(h) = &system {
                add(
                    "services",
                    "registry SYSTEM",
                    hive::guarded(h, hive::services),
                );
            }
            if let Some(h) = &software {
                add(
                    "packages",
                    "registry SOFTWARE",
                    hive::guarded(h, hive::uninstall),
                );
                add(
                    "security_center",
                    "registry SOFTWARE",
                    hive::guarded(h, hive::security_center),
                );
                add(
                    "registry_certificates",
                    "registry SOFTWARE",
                    hive::guarded(h, hive::certificates),
                );
            }
            // Per-user installs live in each user's own hive.
            for (user, h) in hive::users(root) {
                let source = format!("registry NTUSER.DAT of {user}");
                let items = h.and_then(|h| hive::guarded(&h, |h| hive::user_uninstall(h, &user)));
                add(&format!("user:{user}"), &source, items);
            }
            add(
                "registry",
                "registry",
                Ok(hive::catalog_keys(
                    catalog(),
                    system.as_ref(),
                    software.as_ref(),
                )),
            );
            add(
                "files",
                "paths",
                Ok(paths::read(root, catalog(), Platform::Windows)),
            );
            hive::facts(system.as_ref(), software.as_ref())
        }
        Platform::Linux | Platform::Macos => {
            if platform == Platform::Linux {
                // Each package manager is its own section, so one that
                // cannot be read does not hide the others.
                add("packages", "dpkg", dpkg::read(root));
                add("apk", "apk", apk::read(root));
                add("pacman", "pacman", pacman::read(root));
                add("rpm", "rpm", rpm::read(root));
                add("snap", "snap", snap::read(root));
                add("services", "systemd", systemd::read(root));
                let mut mods = modules::installed(root);
                if live && let Ok(m) = &mut mods {
                    m.extend(modules::loaded());
                }
                add("modules", "kernel modules", mods);
            }
            add("files", "paths", Ok(paths::read(root, catalog(), platform)));
            if live {
                add("processes", "processes", Ok(processes::read()));
            }
            if platform == Platform::Macos {
                macos::facts(root)
            } else {
                crate::facts::collect(root, live, platform)
            }
        }
    };
    // Every system: browser extensions of every profile, trusted roots.
    let mut many = |name: &str, source: &str, read: Result<Partial, SourceError>| match read {
        Ok(p) => {
            if p.skipped > 0 {
                partial.push(ScanError {
                    source: source.into(),
                    reason: format!("{} damaged or unreadable files skipped", p.skipped),
                    partial: true,
                });
            }
            add(name, source, Ok(p.items));
        }
        Err(e) => add(name, source, Err(e)),
    };
    if platform == Platform::Macos {
        many("packages", "macos", macos::scan(root));
    }
    // Every system: browser extensions of every profile, trusted roots.
    many(
        "browser_extensions",
        "browser extensions",
        browser::scan(root),
    );
    many("certificates", "certificates", certs::scan(root));
    errors.extend(partial);
    Scan {
        inventory: inv,
        facts,
        errors,
    }
}
