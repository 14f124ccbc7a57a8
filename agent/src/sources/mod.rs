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

/// Takes the inventory of the system under `root`. A source that fails
/// fails the scan: a section silently left empty would read as "removed".
pub fn scan(root: &Path, live: bool, catalog: &Catalog) -> Result<Inventory, SourceError> {
    let mut inv = Inventory::default();
    let mut add = |name: &str, items| {
        let mut s = Section { items };
        s.normalise();
        inv.sections.insert(name.to_string(), s);
    };
    add("packages", dpkg::read(root)?);
    add("services", systemd::read(root)?);
    add("files", paths::read(root, catalog));
    if live {
        add("processes", processes::read());
    }
    Ok(inv)
}
