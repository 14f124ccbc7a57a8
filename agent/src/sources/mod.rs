//! Inventory sources. Each reads files under a root (`/` for the live host,
//! any other folder for an offline image); only processes need the live system.

pub mod dpkg;
pub mod paths;
pub mod processes;
pub mod systemd;

use muster_catalog::{Catalog, Inventory, Section};
use std::path::{Path, PathBuf};

/// A source could not read what it needs.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}{hint}")]
pub struct SourceError {
    /// The file or folder.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
    hint: &'static str,
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
            source,
            hint,
        }
    }
}

/// A source that could not be read, as reported to the user.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanError {
    /// The source (`dpkg`, `systemd`, ...).
    pub source: String,
    /// Why, naming the path and what to do.
    pub reason: String,
}

/// Takes the inventory of the system under `root`. A source that fails is
/// reported in the errors and its section left out (never sent empty: an
/// empty section would read as "everything removed").
pub fn scan(root: &Path, live: bool, catalog: &Catalog) -> (Inventory, Vec<ScanError>) {
    let mut inv = Inventory {
        platform: Some(muster_catalog::Platform::Linux),
        ..Inventory::default()
    };
    let mut errors = Vec::new();
    let mut add =
        |name: &str, source: &str, items: Result<Vec<muster_catalog::Item>, SourceError>| {
            match items {
                Ok(items) => {
                    let mut s = Section { items };
                    s.normalise();
                    inv.sections.insert(name.to_string(), s);
                }
                Err(e) => errors.push(ScanError {
                    source: source.to_string(),
                    reason: e.to_string(),
                }),
            }
        };
    add("packages", "dpkg", dpkg::read(root));
    add("services", "systemd", systemd::read(root));
    add("files", "paths", Ok(paths::read(root, catalog)));
    if live {
        add("processes", "processes", Ok(processes::read()));
    }
    (inv, errors)
}
