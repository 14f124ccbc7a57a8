//! SIEM export throughput: a backlog of events drained by a real collector
//! through one exporter at a time, timed from the collector's start to the
//! exporter's lag of 0 (`muster siem status`, polled every 100 ms). The
//! backlog is what N imported hosts write (`muster_tests::fleetgen`: one
//! `imported` event per host, one `detected` for the 5 % with a product).
//! Exporters: JSON-lines files (ECS, OCSF) and syslog over TCP (CEF, LEEF) to
//! a receiver in this process that reads and discards. SQLite always;
//! PostgreSQL too when MUSTER_TEST_POSTGRES_URL is set.
//!
//!   cargo run --release -p muster-tests --bin muster-bench-siem -- [--hosts N] [--json]

use muster_catalog::Catalog;
use muster_collector::store::Database;
use muster_tests::fleetgen::{load, package_names};
use muster_tests::*;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TCP receiver that reads and discards; its port.
fn discard() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0; 1 << 16];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

struct Run {
    backend: String,
    exporter: String,
    events: i64,
    seconds: f64,
}

/// Starts `c` with only `export` as its exporter (a name not used before,
/// so it starts at the beginning of the backlog) and times the drain.
fn drain(c: &mut Collector, name: &str, export: &str) -> (i64, f64) {
    c.kill();
    let cfg = c.data().join("collector.toml");
    let text = std::fs::read_to_string(&cfg).expect("config");
    let base = text
        .split("\n[[export]]")
        .next()
        .unwrap_or(&text)
        .to_string();
    std::fs::write(
        &cfg,
        format!("{base}\n[[export]]\nname = \"{name}\"\n{export}\n"),
    )
    .expect("write config");
    let t = Instant::now();
    c.restart();
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&c.muster(&["siem", "status", "--format", "json"]))
                .expect("status json");
        let e = v["exporters"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name).cloned())
            .unwrap_or_default();
        if e["delivered"].as_i64().unwrap_or(0) > 0 && e["lag_events"] == 0 {
            return (
                e["delivered"].as_i64().unwrap_or(0),
                t.elapsed().as_secs_f64(),
            );
        }
        if t.elapsed() > Duration::from_secs(1800) {
            panic!("{name} did not drain: {e}\n{}", c.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn bench(backend: &str, mut c: Collector, db: Database, n: usize) -> Vec<Run> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    c.kill();
    eprintln!("{backend}: storing {n} hosts");
    rt.block_on(load(
        &db,
        n,
        Arc::new(Catalog::builtin()),
        Arc::new(package_names()),
    ));
    let out = c.dir.join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let port = discard();
    let mut runs = Vec::new();
    for (label, export) in [
        (
            "file ecs",
            format!(
                "kind = \"file\"\nformat = \"ecs\"\naddress = {:?}",
                out.join("ecs.jsonl").display().to_string()
            ),
        ),
        (
            "file ocsf",
            format!(
                "kind = \"file\"\nformat = \"ocsf\"\naddress = {:?}",
                out.join("ocsf.jsonl").display().to_string()
            ),
        ),
        (
            "syslog tcp cef",
            format!("kind = \"syslog\"\nformat = \"cef\"\naddress = \"tcp://127.0.0.1:{port}\""),
        ),
        (
            "syslog tcp leef",
            format!("kind = \"syslog\"\nformat = \"leef\"\naddress = \"tcp://127.0.0.1:{port}\""),
        ),
        (
            "file ecs batch 1000",
            format!(
                "kind = \"file\"\nformat = \"ecs\"\nbatch = 1000\naddress = {:?}",
                out.join("ecs-1000.jsonl").display().to_string()
            ),
        ),
    ] {
        let name = format!("bench-{}", label.replace(' ', "-"));
        eprintln!("{backend}: draining through {label}");
        let (events, seconds) = drain(&mut c, &name, &export);
        runs.push(Run {
            backend: backend.into(),
            exporter: label.into(),
            events,
            seconds,
        });
    }
    runs
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--hosts")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let json = args.iter().any(|a| a == "--json");
    let mut runs = Vec::new();
    let c = Collector::start();
    let db = Database::Sqlite(c.data().join("muster.db"));
    runs.extend(bench("sqlite", c, db, n));
    if let Some(pg) = PgDatabase::create("bench_siem") {
        let c = Collector::start_postgres(&pg.url);
        let db = Database::Postgres(pg.url.clone());
        runs.extend(bench("postgres", c, db, n));
    }
    let mut stdout = std::io::stdout();
    if json {
        let v: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                serde_json::json!({"backend": r.backend, "exporter": r.exporter, "events": r.events,
                    "seconds": r.seconds, "events_per_second": r.events as f64 / r.seconds})
            })
            .collect();
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&v).expect("json")
        );
        return;
    }
    let _ = writeln!(
        stdout,
        "{:<9} {:<20} {:>8} {:>9} {:>10}",
        "backend", "exporter", "events", "seconds", "events/s"
    );
    for r in &runs {
        let _ = writeln!(
            stdout,
            "{:<9} {:<20} {:>8} {:>9.1} {:>10.0}",
            r.backend,
            r.exporter,
            r.events,
            r.seconds,
            r.events as f64 / r.seconds
        );
    }
    let _ = writeln!(
        stdout,
        "(seconds: from the collector's start to the exporter's lag of 0, start-up included)"
    );
}
