//! Measures the foundation's figures on this machine, against real
//! processes: agent scan time and peak memory, and check-in round trips
//! (full inventory, and digests only) to a real collector over mutual TLS.
//!
//!   cargo run --release -p muster-tests --bin muster-bench [-- --json]

use muster_catalog::{Item, ItemKind, Presence, Section};
use muster_proto::channel::connect;
use muster_proto::v1::{self, agent_client::AgentClient};
use muster_tests::*;
use std::time::{Duration, Instant};

fn percentiles(mut v: Vec<Duration>) -> serde_json::Value {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    serde_json::json!({"n": v.len(), "p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "max": p(1.0)})
}

fn item(kind: ItemKind, name: &str, presence: Presence) -> Item {
    Item {
        kind,
        name: name.to_string(),
        version: "1.0-1".into(),
        path: String::new(),
        presence,
        source: "bench".into(),
        attrs: Default::default(),
    }
}

/// A realistic inventory: 2 000 real Debian package names where the shared
/// fixture is present (generated names otherwise), 250 services, 150 processes.
fn inventory() -> Vec<v1::Section> {
    let names: Vec<String> =
        std::fs::read_to_string("../shared/fixtures/package-names/debian-bookworm.txt")
            .or_else(|_| {
                std::fs::read_to_string("../../shared/fixtures/package-names/debian-bookworm.txt")
            })
            .map(|t| t.lines().take(2000).map(str::to_string).collect())
            .unwrap_or_else(|_| (0..2000).map(|i| format!("package-{i}")).collect());
    let mk = |name: &str, items: Vec<Item>| {
        let mut s = Section { items };
        s.normalise();
        muster_proto::section_to_wire(name, &s)
    };
    vec![
        mk(
            "packages",
            names
                .iter()
                .map(|n| item(ItemKind::Package, n, Presence::Present))
                .collect(),
        ),
        mk(
            "services",
            (0..250)
                .map(|i| item(ItemKind::Service, &format!("svc-{i}"), Presence::Present))
                .collect(),
        ),
        mk(
            "processes",
            (0..150)
                .map(|i| item(ItemKind::Process, &format!("proc-{i}"), Presence::Active))
                .collect(),
        ),
    ]
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let json_out = std::env::args().any(|a| a == "--json");
    let mut report = serde_json::Map::new();
    // Build (or find) the binaries before anything is timed.
    bin_dir();

    // 1. Agent scan of this host: wall time and peak RSS, as the agent reports them.
    let mut times = Vec::new();
    let mut peaks = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let out = run(cmd("muster-agent")
            .args(["scan", "--format", "json"])
            .env("MUSTER_STATS", "1"));
        times.push(t.elapsed());
        let err = String::from_utf8_lossy(&out.stderr);
        if let Some(kb) = err
            .split("peak_rss=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse::<u64>().ok())
        {
            peaks.push(kb);
        }
    }
    peaks.sort();
    report.insert("agent_scan_process_ms".into(), percentiles(times));
    report.insert(
        "agent_scan_peak_rss_kib_max".into(),
        serde_json::json!(peaks.last()),
    );

    // 2. Check-in round trips against a real collector.
    let c = Collector::start();
    let state = c.dir.join("agent");
    c.enroll(&state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (full, unchanged) = rt.block_on(async {
        let read = |f: &str| std::fs::read_to_string(state.join(f)).unwrap();
        let ch = connect(
            &c.url(),
            &read("ca.pem"),
            Some((read("cert.pem"), read("key.pem"))),
        )
        .await
        .unwrap();
        let mut a = AgentClient::new(ch);
        let sections = inventory();
        let mut seq = 0;
        let mut full = Vec::new();
        for i in 0..60 {
            // Every round changes the packages section, so each one is stored and evaluated.
            let mut s = sections.clone();
            s[0].items[0].version = format!("{i}");
            let mut sec = Section {
                items: s[0]
                    .items
                    .iter()
                    .cloned()
                    .map(|w| muster_proto::item_from_wire(w).unwrap())
                    .collect(),
            };
            sec.normalise();
            s[0] = muster_proto::section_to_wire("packages", &sec);
            seq += 1;
            let req = v1::CheckInRequest {
                sequence: seq,
                facts: Some(v1::HostFacts {
                    hostname: "bench".into(),
                    ..Default::default()
                }),
                digests: s
                    .iter()
                    .map(|x| v1::SectionDigest {
                        name: x.name.clone(),
                        digest: x.digest.clone(),
                    })
                    .collect(),
                sections: s,
                ..Default::default()
            };
            let t = Instant::now();
            let r = a.check_in(req).await.unwrap().into_inner();
            full.push(t.elapsed());
            assert_eq!(r.acknowledged_sequence, seq);
        }
        let digests: Vec<v1::SectionDigest> = {
            let r = a
                .check_in(v1::CheckInRequest {
                    sequence: seq + 1,
                    digests: sections
                        .iter()
                        .map(|x| v1::SectionDigest {
                            name: x.name.clone(),
                            digest: x.digest.clone(),
                        })
                        .collect(),
                    sections: sections.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            seq += 1;
            assert_eq!(r.acknowledged_sequence, seq);
            sections
                .iter()
                .map(|x| v1::SectionDigest {
                    name: x.name.clone(),
                    digest: x.digest.clone(),
                })
                .collect()
        };
        let mut unchanged = Vec::new();
        for _ in 0..200 {
            seq += 1;
            let t = Instant::now();
            let r = a
                .check_in(v1::CheckInRequest {
                    sequence: seq,
                    digests: digests.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            unchanged.push(t.elapsed());
            assert_eq!(r.acknowledged_sequence, seq);
        }
        (full, unchanged)
    });
    report.insert("checkin_full_2400_items_ms".into(), percentiles(full));
    report.insert("checkin_digests_only_ms".into(), percentiles(unchanged));

    // 3. The whole agent round: scan this host, spool, connect (TLS handshake), check in.
    let mut whole = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        ok(cmd("muster-agent")
            .args(["run", "--once", "--state-dir"])
            .arg(&state));
        whole.push(t.elapsed());
    }
    report.insert("agent_run_once_process_ms".into(), percentiles(whole));

    let v = serde_json::Value::Object(report);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
        return;
    }
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>5}",
        "measure (ms)", "p50", "p90", "p99", "max", "n"
    );
    for (k, x) in v.as_object().unwrap() {
        if x.is_object() {
            println!(
                "{:<34} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>5}",
                k,
                x["p50"].as_f64().unwrap(),
                x["p90"].as_f64().unwrap(),
                x["p99"].as_f64().unwrap(),
                x["max"].as_f64().unwrap(),
                x["n"]
            );
        } else {
            println!("{k:<34} {x}");
        }
    }
}
