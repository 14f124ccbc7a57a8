//! How long `evaluate` takes on a large inventory against the full catalog.
//!
//!   cargo bench -p muster-catalog
//!
//! Inventory: 5 000 packages (real Debian names where ../shared is present),
//! 1 000 services and drivers, 500 processes and 2 000 files, with a handful
//! of real products among them so evidence is built too.

use muster_catalog::{Catalog, Inventory, Item, ItemKind, Platform, Presence, Section, evaluate};
use std::time::{Duration, Instant};

fn item(kind: ItemKind, name: String, presence: Presence) -> Item {
    Item {
        kind,
        name,
        version: "1.0".into(),
        path: String::new(),
        presence,
        source: "bench".into(),
        attrs: Default::default(),
    }
}

fn inventory(platform: Platform) -> Inventory {
    let debian = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/package-names/debian-bookworm.txt"
    ))
    .unwrap_or_default();
    let mut names: Vec<String> = debian
        .lines()
        .step_by(12)
        .take(4_990)
        .map(str::to_string)
        .collect();
    while names.len() < 4_990 {
        names.push(format!("package-{}", names.len()));
    }
    names.extend(
        [
            "kesl",
            "klnagent64",
            "clamav",
            "aide",
            "falcon-sensor",
            "mdatp",
            "osquery",
            "wazuh-agent",
            "rkhunter",
            "fail2ban",
        ]
        .map(String::from),
    );
    let mut sections = std::collections::BTreeMap::new();
    let mut s = |name: &str, items: Vec<Item>| {
        sections.insert(name.to_string(), Section { items });
    };
    s(
        "packages",
        names
            .into_iter()
            .map(|n| item(ItemKind::Package, n, Presence::Present))
            .collect(),
    );
    let mut services: Vec<Item> = (0..600)
        .map(|i| item(ItemKind::Service, format!("service{i}"), Presence::Present))
        .collect();
    services
        .extend((0..396).map(|i| item(ItemKind::Driver, format!("drv{i}.sys"), Presence::Present)));
    services.extend(
        ["WinDefend", "klif.sys", "CSFalconService", "SentinelAgent"]
            .map(|n| item(ItemKind::Service, n.into(), Presence::Present)),
    );
    s("services", services);
    let mut procs: Vec<Item> = (0..495)
        .map(|i| item(ItemKind::Process, format!("proc{i}"), Presence::Active))
        .collect();
    procs.extend(
        ["avp.exe", "MsMpEng.exe", "kesl", "falcond", "clamd"]
            .map(|n| item(ItemKind::Process, n.into(), Presence::Active)),
    );
    s("processes", procs);
    let mut files: Vec<Item> = (0..1995)
        .map(|i| {
            item(
                ItemKind::FilePath,
                format!("C:\\Program Files\\App{i}\\bin"),
                Presence::Present,
            )
        })
        .collect();
    files.extend(
        [
            "C:\\Program Files (x86)\\Kaspersky Lab",
            "/opt/kaspersky/kesl",
            "/var/ossec",
            "/opt/CrowdStrike",
            "C:\\Program Files\\Common Files\\AV",
        ]
        .map(|n| item(ItemKind::FilePath, n.into(), Presence::Present)),
    );
    s("files", files);
    Inventory {
        platform: Some(platform),
        sections,
    }
}

fn time<F: FnMut() -> usize>(mut f: F) -> (Duration, usize) {
    let mut runs = Vec::new();
    let mut found = 0;
    for _ in 0..200 {
        let t = Instant::now();
        found = std::hint::black_box(f());
        runs.push(t.elapsed());
    }
    runs.sort();
    (runs[runs.len() / 2], found)
}

fn main() {
    let t = Instant::now();
    let catalog = Catalog::builtin();
    let load = t.elapsed();
    let indicators: usize = catalog.products.iter().map(|p| p.indicators.len()).sum();
    println!(
        "catalog: {} vendors, {} products, {} indicators; loaded and indexed in {:.2} ms",
        catalog.vendors().len(),
        catalog.products.len(),
        indicators,
        load.as_secs_f64() * 1e3
    );
    for platform in [Platform::Linux, Platform::Windows] {
        let inv = inventory(platform);
        let items = inv.items().count();
        let (median, found) = time(|| evaluate(&inv, &catalog).len());
        println!(
            "evaluate {items} items ({}), full catalog: median {:.1} µs, {found} detections",
            platform.as_str(),
            median.as_secs_f64() * 1e6
        );
    }
}
