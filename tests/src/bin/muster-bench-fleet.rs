//! The fleet at scale: N hosts (100 000 by default) written through the
//! store's API (`Store::import`, the path of `muster import`: one host and
//! its inventory per call, eight at a time), then the operator's questions
//! timed end to end against a real collector (`muster summary`, `muster
//! hosts --product`, `muster campaign status`), then the re-evaluation of
//! every stored inventory after a catalog change. SQLite always; PostgreSQL
//! too when MUSTER_TEST_POSTGRES_URL is set.
//!
//!   cargo run --release -p muster-tests --bin muster-bench-fleet -- [--hosts N] [--json]
//!
//! The fleet is `muster_tests::fleetgen`'s: 100 packages and 20 units per
//! host, 3 % with Kaspersky Endpoint Security for Linux, 2 % ClamAV.

use muster_catalog::Catalog;
use muster_collector::store::{Database, Store};
use muster_tests::fleetgen::{load, package_names};
use muster_tests::*;
use std::sync::Arc;
use std::time::Instant;

struct Figures {
    backend: String,
    hosts: usize,
    load_s: f64,
    summary_ms: f64,
    hosts_product_ms: f64,
    hosts_product_count: usize,
    campaign_ms: f64,
    reevaluate_s: f64,
}

/// Median wall time of three runs of `muster ARGS` against `c`, in ms,
/// and the last output.
fn timed(c: &Collector, args: &[&str]) -> (f64, String) {
    let mut runs = Vec::new();
    let mut out = String::new();
    for _ in 0..3 {
        let t = Instant::now();
        out = c.muster(args);
        runs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    runs.sort_by(f64::total_cmp);
    (runs[1], out)
}

async fn reevaluate(db: &Database, catalog: Arc<Catalog>) -> f64 {
    let store = Store::open(db, false).await.expect("open the store");
    let t = Instant::now();
    // Another digest: as if the catalog had just changed.
    let digest = format!("{}-changed", catalog.digest);
    // As the collector does it: two workers on PostgreSQL, one on SQLite.
    let workers = if matches!(db, Database::Postgres(_)) {
        2
    } else {
        1
    };
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (store, digest, catalog) = (store.clone(), digest.clone(), catalog.clone());
        tasks.push(tokio::spawn(async move {
            let mut after = String::new();
            loop {
                let b = store
                    .reevaluate(&digest, &after, 500, |inv| {
                        muster_catalog::evaluate(inv, &catalog)
                    })
                    .await
                    .expect("re-evaluate");
                if b.hosts == 0 {
                    return;
                }
                after = b.last;
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    store.close().await;
    t.elapsed().as_secs_f64()
}

fn bench(
    backend: &str,
    mut c: Collector,
    db: Database,
    n: usize,
    rt: &tokio::runtime::Runtime,
) -> Figures {
    let catalog = Arc::new(Catalog::builtin());
    let names = Arc::new(package_names());
    c.kill();
    eprintln!("{backend}: storing {n} hosts");
    let load_s = rt.block_on(load(&db, n, catalog.clone(), names));
    c.restart();
    let (summary_ms, _) = timed(&c, &["summary", "--format", "json"]);
    let (hosts_product_ms, out) = timed(
        &c,
        &[
            "hosts",
            "--product",
            "kaspersky.endpoint-security-linux",
            "--format",
            "json",
        ],
    );
    let hosts_product_count = serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .and_then(|v| v["hosts"].as_array().map(Vec::len))
        .unwrap_or(0);
    let (campaign_ms, _) = timed(&c, &["campaign", "status", "bod-17-01", "--format", "json"]);
    c.kill();
    eprintln!("{backend}: re-evaluating {n} inventories");
    let reevaluate_s = rt.block_on(reevaluate(&db, catalog.clone()));
    Figures {
        backend: backend.into(),
        hosts: n,
        load_s,
        summary_ms,
        hosts_product_ms,
        hosts_product_count,
        campaign_ms,
        reevaluate_s,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--hosts")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let json = args.iter().any(|a| a == "--json");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut figures = Vec::new();
    let c = Collector::start();
    let db = Database::Sqlite(c.data().join("muster.db"));
    figures.push(bench("sqlite", c, db, n, &rt));
    if let Some(pg) = PgDatabase::create("bench") {
        let c = Collector::start_postgres(&pg.url);
        let db = Database::Postgres(pg.url.clone());
        figures.push(bench("postgres", c, db, n, &rt));
    }
    if json {
        let v: Vec<serde_json::Value> = figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "backend": f.backend, "hosts": f.hosts, "load_seconds": f.load_s,
                    "summary_ms": f.summary_ms, "hosts_product_ms": f.hosts_product_ms,
                    "hosts_product_count": f.hosts_product_count, "campaign_status_ms": f.campaign_ms,
                    "reevaluate_seconds": f.reevaluate_s,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return;
    }
    println!(
        "{:<9} {:>8} {:>10} {:>11} {:>17} {:>16} {:>14}",
        "backend",
        "hosts",
        "load s",
        "summary ms",
        "hosts --product",
        "campaign status",
        "re-evaluate s"
    );
    for f in &figures {
        println!(
            "{:<9} {:>8} {:>10.1} {:>11.0} {:>10.0} ({:>4}) {:>16.0} {:>14.1}",
            f.backend,
            f.hosts,
            f.load_s,
            f.summary_ms,
            f.hosts_product_ms,
            f.hosts_product_count,
            f.campaign_ms,
            f.reevaluate_s
        );
    }
    println!("(ms: median of 3 runs of the muster command, process start and TLS included)");
}
