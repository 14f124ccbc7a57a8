//! A synthetic fleet for the benchmarks: deterministic inventories drawn
//! from real package names, stored through the store's API.
//!
//! Inventories: 100 dpkg packages drawn from Debian bookworm's package names
//! and 20 systemd units per host; 3 % of hosts carry Kaspersky Endpoint
//! Security for Linux (a third of them only its remnant), 2 % ClamAV.

use muster_catalog::{Catalog, HostFacts, Item, ItemKind, Presence, Section};
use muster_collector::store::{Database, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// A small deterministic generator (xorshift), so every run stores the
/// same fleet.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `n` dpkg packages drawn from `names`.
pub fn packages(rng: &mut Rng, n: usize, names: &[String]) -> Vec<Item> {
    (0..n)
        .map(|_| {
            let name = &names[rng.below(names.len())];
            Item::new(ItemKind::Package, name.as_str(), Presence::Present, "dpkg")
                .version("1.0-1")
                .attr("manager", "dpkg")
        })
        .collect()
}

/// Sections of these items, normalised as an agent sends them.
pub fn sections<const N: usize>(parts: [(&str, Vec<Item>); N]) -> BTreeMap<String, Section> {
    parts
        .into_iter()
        .map(|(name, items)| {
            let mut s = Section { items };
            s.normalise();
            (name.to_string(), s)
        })
        .collect()
}

pub fn inventory(i: usize, names: &[String]) -> (HostFacts, BTreeMap<String, Section>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0x2545_f491));
    let mut packages = packages(&mut rng, 100, names);
    let roll = rng.below(100);
    if roll < 3 {
        let presence = if roll == 0 {
            Presence::Leftover
        } else {
            Presence::Present
        };
        packages.push(Item::new(ItemKind::Package, "kesl", presence, "dpkg").version("12.1.0"));
    } else if roll < 5 {
        packages
            .push(Item::new(ItemKind::Package, "clamav", Presence::Present, "dpkg").version("1.0"));
    }
    let units: Vec<Item> = (0..20)
        .map(|u| {
            Item::new(
                ItemKind::SystemdUnit,
                format!("svc-{}.service", (i + u * 7919) % 500),
                Presence::Present,
                "systemd",
            )
        })
        .collect();
    let sections = sections([("dpkg", packages), ("systemd", units)]);
    let facts = HostFacts {
        hostname: format!("host-{i:06}"),
        os_name: "Debian GNU/Linux".into(),
        os_version: "12".into(),
        platform: "linux".into(),
        ..HostFacts::default()
    };
    (facts, sections)
}

/// Debian bookworm's package names from `../shared/fixtures`, or made-up
/// names where the fixtures are absent.
pub fn package_names() -> Vec<String> {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/package-names/debian-bookworm.txt"
    ))
    .map(|t| t.lines().map(String::from).collect())
    .unwrap_or_else(|_| (0..60_000).map(|i| format!("package-{i}")).collect())
}

/// Stores hosts `0..n` through `Store::import`, eight at a time; the
/// seconds it took.
pub async fn load(db: &Database, n: usize, catalog: Arc<Catalog>, names: Arc<Vec<String>>) -> f64 {
    let store = Store::open(db, false).await.expect("open the store");
    let t = Instant::now();
    // Reported just now: the hosts are current, not stale.
    let loaded_at = muster_collector::store::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, catalog, names, next) =
            (store.clone(), catalog.clone(), names.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let (facts, sections) = inventory(i, &names);
                store
                    .import(&facts, sections, loaded_at, &catalog.digest, |inv| {
                        muster_catalog::evaluate(inv, &catalog)
                    })
                    .await
                    .expect("import");
                if (i + 1) % 10_000 == 0 {
                    eprintln!(
                        "  {} hosts stored ({:.0} s)",
                        i + 1,
                        t.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("loader");
    }
    store.close().await;
    t.elapsed().as_secs_f64()
}
