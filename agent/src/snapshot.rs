//! Snapshots: an inventory written to one JSON document, for air-gapped
//! hosts (`muster-agent collect`), read back by `muster-agent scan
//! --snapshot` and the collector's import. The format is documented in
//! `docs/snapshot.md`; `inventory` is authoritative, the other arrays are
//! views of it for people and other tools.

use anyhow::{Context, Result, bail};
pub use muster_catalog::snapshot::{FORMAT_VERSION, MAX_SNAPSHOT, ScanError, Snapshot};
use muster_catalog::{HostFacts, Inventory, Item, ItemKind};
use serde_json::{Value, json};
use std::path::Path;

fn entry(it: &Item) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("name".into(), json!(it.name));
    if !it.version.is_empty() {
        m.insert("version".into(), json!(it.version));
    }
    if !it.path.is_empty() {
        m.insert("path".into(), json!(it.path));
    }
    m.insert("presence".into(), json!(it.presence.as_str()));
    m.insert("source".into(), json!(it.source));
    for (k, v) in &it.attrs {
        m.entry(k.clone()).or_insert_with(|| json!(v));
    }
    m
}

/// The snapshot document.
pub fn to_json(
    facts: &HostFacts,
    inv: &Inventory,
    errors: &[ScanError],
    collected_at: i64,
) -> Value {
    let mut packages = Vec::new();
    let mut services = Vec::new();
    let mut processes = Vec::new();
    let mut modules = Vec::new();
    let mut files = Vec::new();
    let mut extensions = Vec::new();
    let mut certificates = Vec::new();
    let mut other = Vec::new();
    for it in inv.items() {
        let mut e = entry(it);
        match it.kind {
            ItemKind::Package | ItemKind::UninstallDisplayName => {
                e.entry("manager").or_insert_with(|| json!("unknown"));
                packages.push(e)
            }
            ItemKind::Service => {
                e.entry("kind").or_insert_with(|| json!("service"));
                e.entry("display_name").or_insert_with(|| json!(""));
                e.entry("start").or_insert_with(|| json!(""));
                services.push(e)
            }
            ItemKind::Process => processes.push(e),
            ItemKind::KernelModule => modules.push(e),
            ItemKind::FilePath => files.push(e),
            ItemKind::BrowserExtension => extensions.push(e),
            ItemKind::RootCertificate => certificates.push(e),
            // Drivers are listed in `services` by their service key;
            // units by their service name.
            ItemKind::Driver | ItemKind::SystemdUnit => {}
            _ => {
                e.insert("kind".into(), json!(it.kind.as_str()));
                other.push(e)
            }
        }
    }
    json!({
        "format_version": FORMAT_VERSION,
        "generator": format!("muster-agent {}", env!("CARGO_PKG_VERSION")),
        "collected_at": collected_at,
        "host": {
            "hostname": facts.hostname,
            "os": facts.os_name,
            "os_version": facts.os_version,
            "platform": facts.platform,
            "kernel": facts.kernel,
            "arch": facts.arch,
            "ips": facts.ips,
            "agent_version": facts.agent_version,
            // The same facts under the names the rest of Muster uses.
            "os_name": facts.os_name,
        },
        "packages": packages,
        "services": services,
        "processes": processes,
        "kernel_modules": modules,
        "files": files,
        "browser_extensions": extensions,
        "certificates": certificates,
        "other": other,
        "errors": errors,
        "inventory": inv,
    })
}

/// Writes a snapshot atomically (temp file, fsync, rename).
pub fn write(path: &Path, doc: &Value) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(doc)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a snapshot, refusing other format versions and damaged files
/// with an error that names the file and what is wrong.
pub fn read(path: &Path) -> Result<Snapshot> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read the snapshot {}", path.display()))?
        .len();
    if len > MAX_SNAPSHOT {
        bail!(
            "{}: {len} bytes is larger than a snapshot can be ({MAX_SNAPSHOT})",
            path.display()
        );
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the snapshot {}", path.display()))?;
    muster_catalog::snapshot::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_catalog::{Presence, Section};

    #[test]
    fn a_snapshot_round_trips_and_bad_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("muster-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut inv = Inventory::default();
        inv.sections.insert(
            "packages".into(),
            Section {
                items: vec![
                    Item::new(
                        ItemKind::Package,
                        "kesl",
                        Presence::Leftover,
                        "/var/lib/dpkg/status",
                    )
                    .version("11")
                    .attr("manager", "dpkg")
                    .attr("status", "config-files"),
                ],
            },
        );
        let facts = HostFacts {
            hostname: "h".into(),
            ..HostFacts::default()
        };
        let doc = to_json(&facts, &inv, &[], 7);
        assert_eq!(doc["packages"][0]["manager"], "dpkg");
        assert_eq!(doc["packages"][0]["status"], "config-files");
        let p = dir.join("s.json");
        write(&p, &doc).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back.inventory, inv);
        assert_eq!(back.host.hostname, "h");
        assert_eq!(back.collected_at, 7);

        let mut other = doc.clone();
        other["format_version"] = json!(99);
        std::fs::write(&p, other.to_string()).unwrap();
        assert!(
            read(&p)
                .unwrap_err()
                .to_string()
                .contains("format version 99")
        );
        std::fs::write(&p, &doc.to_string()[..50]).unwrap();
        assert!(format!("{:#}", read(&p).unwrap_err()).contains("not valid JSON"));
        std::fs::write(&p, r#"{"format_version": 1, "host": 3}"#).unwrap();
        assert!(
            read(&p)
                .unwrap_err()
                .to_string()
                .contains("damaged snapshot")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
