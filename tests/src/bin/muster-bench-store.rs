//! Group commit against one transaction per check-in, through the store's
//! own API (`Store::checkin`, the path every agent's report takes), with no
//! network in the way: the store's write rate is all that is measured.
//!
//!   cargo run --release -p muster-tests --bin muster-bench-store -- \
//!       [--hosts 2000] [--duration 10] [--concurrency 512] [--json]
//!
//! N hosts are enrolled and send one full inventory each (`fleetgen`'s:
//! 100 packages and 20 units). Then, for `--duration` seconds each, as many
//! unchanged check-ins (digests only) as `--concurrency` callers can get
//! stored, first with one transaction per check-in, then with group
//! commit. SQLite (`synchronous = FULL`: every commit is synced) always;
//! PostgreSQL too when MUSTER_TEST_POSTGRES_URL is set.

use muster_catalog::{Catalog, Inventory};
use muster_collector::pki::Issued;
use muster_collector::store::{CheckIn, CheckInOutcome, Database, Store};
use muster_tests::PgDatabase;
use muster_tests::fleetgen::{inventory, package_names};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Figures {
    backend: &'static str,
    hosts: usize,
    single_per_second: f64,
    group_per_second: f64,
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn issued(id: &str) -> Result<Issued, String> {
    Ok(Issued {
        cert_pem: String::new(),
        key_pem: String::new(),
        serial: format!("serial-{id}"),
        ca: "bench".into(),
    })
}

fn now() -> i64 {
    muster_collector::store::now()
}

/// A host's check-in: its whole inventory, or digests only.
fn report(i: usize, sequence: u64, names: &[String], full: bool) -> CheckIn {
    let (facts, sections) = inventory(i, names);
    CheckIn {
        sequence,
        facts,
        digests: sections
            .iter()
            .map(|(n, s)| (n.clone(), s.digest()))
            .collect(),
        sections: if full { sections } else { BTreeMap::new() },
        agent_detections: Vec::new(),
        catalog_version: String::new(),
        scanned_at: now(),
    }
}

/// Enrolls `n` hosts and stores each one's first, full report.
async fn populate(
    store: &Store,
    n: usize,
    names: &[String],
    catalog: &Arc<Catalog>,
) -> Vec<String> {
    store
        .create_token("bench", now() + 86_400, n as u32)
        .await
        .expect("create a token");
    let mut ids = Vec::with_capacity(n);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (store, names, catalog) = (store.clone(), names.to_vec(), catalog.clone());
        tasks.spawn(async move {
            let (facts, _) = inventory(i, &names);
            let (id, _) = store.enroll("bench", &facts, issued).await.expect("enroll");
            let c = Arc::new(report(i, 1, &names, true));
            let outcome = store
                .checkin(&id, c, &catalog.digest.clone(), move |inv: &Inventory| {
                    muster_catalog::evaluate(inv, &catalog)
                })
                .await
                .expect("first check-in");
            assert!(
                matches!(outcome, CheckInOutcome::Accepted { .. }),
                "{outcome:?}"
            );
            (i, id)
        });
        if tasks.len() >= 64 {
            ids.push(tasks.join_next().await.expect("task").expect("enroll"));
        }
        if (i + 1) % 1000 == 0 {
            eprintln!("  {} of {n} hosts enrolled", i + 1);
        }
    }
    while let Some(r) = tasks.join_next().await {
        ids.push(r.expect("enroll"));
    }
    ids.sort();
    ids.into_iter().map(|(_, id)| id).collect()
}

/// Unchanged check-ins for `duration` from `concurrency` callers, each
/// with its own share of the hosts; check-ins stored per second.
async fn measure(
    store: &Store,
    ids: &[String],
    names: &[String],
    concurrency: usize,
    duration: Duration,
    first_sequence: u64,
) -> f64 {
    let catalog_digest = "bench";
    let stored = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency.min(ids.len()) {
        let mine: Vec<(usize, String)> = ids
            .iter()
            .enumerate()
            .skip(w)
            .step_by(concurrency)
            .map(|(i, id)| (i, id.clone()))
            .collect();
        let reports: Vec<Arc<CheckIn>> = mine
            .iter()
            .map(|(i, _)| Arc::new(report(*i, 0, names, false)))
            .collect();
        let (store, stored) = (store.clone(), stored.clone());
        tasks.spawn(async move {
            let mut sequence = first_sequence;
            while start.elapsed() < duration {
                sequence += 1;
                for ((_, id), base) in mine.iter().zip(&reports) {
                    let c = Arc::new(CheckIn {
                        sequence,
                        ..(**base).clone()
                    });
                    let outcome = store
                        .checkin(id, c, catalog_digest, |_: &Inventory| Vec::new())
                        .await
                        .expect("check-in");
                    assert!(
                        matches!(outcome, CheckInOutcome::Accepted { .. }),
                        "{outcome:?}"
                    );
                    stored.fetch_add(1, Ordering::Relaxed);
                    if start.elapsed() >= duration {
                        break;
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("caller");
    }
    stored.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn bench(
    backend: &'static str,
    db: Database,
    n: usize,
    concurrency: usize,
    duration: Duration,
) -> Figures {
    let names = package_names();
    let catalog = Arc::new(Catalog::builtin());
    let store = Store::open(&db, true).await.expect("open the store");
    eprintln!("{backend}: enrolling {n} hosts");
    let ids = populate(&store, n, &names, &catalog).await;
    eprintln!("{backend}: one transaction per check-in, {duration:?}");
    let single = store.clone().without_group_commit();
    let single_per_second = measure(&single, &ids, &names, concurrency, duration, 1).await;
    eprintln!("{backend}: group commit, {duration:?}");
    let group_per_second = measure(&store, &ids, &names, concurrency, duration, 1_000_000).await;
    store.close().await;
    Figures {
        backend,
        hosts: n,
        single_per_second,
        group_per_second,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "{}",
            include_str!("muster-bench-store.rs")
                .lines()
                .take(13)
                .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
                .collect::<Vec<_>>()
                .join("\n")
        );
        return;
    }
    let n: usize = arg(&args, "--hosts", 2000);
    let concurrency: usize = arg(&args, "--concurrency", 512);
    let duration = Duration::from_secs(arg(&args, "--duration", 10));
    let json = args.iter().any(|a| a == "--json");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile_dir();
    let mut figures = vec![rt.block_on(bench(
        "sqlite",
        Database::Sqlite(dir.join("muster.db")),
        n,
        concurrency,
        duration,
    ))];
    if let Some(pg) = PgDatabase::create("benchstore") {
        figures.push(rt.block_on(bench(
            "postgres",
            Database::Postgres(pg.url.clone()),
            n,
            concurrency,
            duration,
        )));
    }
    let _ = std::fs::remove_dir_all(&dir);
    if json {
        let v: Vec<serde_json::Value> = figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "backend": f.backend,
                    "hosts": f.hosts,
                    "single_per_second": f.single_per_second.round(),
                    "group_per_second": f.group_per_second.round(),
                    "ratio": (f.group_per_second / f.single_per_second * 10.0).round() / 10.0,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return;
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header([
            "BACKEND",
            "HOSTS",
            "ONE TXN PER CHECK-IN /s",
            "GROUP COMMIT /s",
            "RATIO",
        ]);
    for f in &figures {
        table.add_row([
            f.backend.to_string(),
            f.hosts.to_string(),
            format!("{:.0}", f.single_per_second),
            format!("{:.0}", f.group_per_second),
            format!("{:.1}", f.group_per_second / f.single_per_second),
        ]);
    }
    println!("{table}");
}

/// A fresh folder under the system's temporary folder.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("muster-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    dir
}
