//! The load generator, on a small fleet: what it counts as accepted is in
//! the store, in every connection mode.

use muster_tests::*;
use std::collections::HashSet;
use std::process::Command;

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_muster-loadgen"))
}

/// (host id, sequence) of every stored check-in.
fn stored_checkins(c: &Collector) -> HashSet<(String, i64)> {
    let db = c.data().join("muster.db");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
            .await
            .unwrap();
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT host_id, sequence FROM checkins")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.into_iter().collect()
    })
}

/// The (agent id, sequence) pairs a run's `--record` file lists.
fn acknowledged(record: &std::path::Path) -> Vec<(String, i64)> {
    std::fs::read_to_string(record)
        .unwrap()
        .lines()
        .map(|l| {
            let (id, seq) = l.split_once(' ').unwrap();
            (id.to_string(), seq.parse().unwrap())
        })
        .collect()
}

#[test]
fn every_check_in_the_load_generator_counts_is_stored() {
    let metrics_port = free_port();
    let c = Collector::start_with_config(&format!("metrics_listen = \"127.0.0.1:{metrics_port}\""));
    let state = c.dir.join("fleet");
    // The first 60 with a token made on the collector, the rest with one
    // the load generator asks for with the operator identity.
    let token = c.token(60, "1h");
    let out = ok(loadgen()
        .args(["enroll", "--collector", &c.url(), "--identity"])
        .arg(c.data().join("operator"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--agents", "60", "--token", &token]));
    assert!(out.contains("60 agents enrolled"), "{out}");
    let out = ok(loadgen()
        .args(["enroll", "--collector", &c.url(), "--identity"])
        .arg(c.data().join("operator"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--agents", "100"]));
    assert!(
        out.contains("40 agents enrolled") && out.contains("holds 100"),
        "{out}"
    );
    // Enrolling again with the folder full does nothing.
    let again = ok(loadgen()
        .args(["enroll", "--collector", &c.url(), "--identity"])
        .arg(c.data().join("operator"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--agents", "100"]));
    assert!(again.contains("already holds 100"), "{again}");
    assert_eq!(c.hosts().len(), 100);

    let mut counted = Vec::new();
    for (mode, duration) in [("keepalive", "6s"), ("resume", "3s"), ("full", "3s")] {
        let record = c.dir.join(&format!("acked-{mode}.txt"));
        let out = ok(loadgen()
            .args(["run", "--collector", &c.url(), "--state-dir"])
            .arg(&state)
            .args(["--duration", duration, "--mode", mode, "--changed", "0.1"])
            .args(["--full", "0.05", "--concurrency", "16", "--format", "json"])
            .arg("--record")
            .arg(&record));
        let v: serde_json::Value = serde_json::from_str(&out).expect("json report");
        for key in ["accepted", "errors", "per_second"] {
            assert!(v[key].is_number(), "{key} missing: {v}");
        }
        for key in ["p50", "p90", "p99", "max"] {
            assert!(
                v["latency_ms"][key].is_number(),
                "latency {key} missing: {v}"
            );
        }
        let accepted = v["accepted"].as_u64().unwrap();
        assert!(accepted > 0, "{mode}: nothing accepted: {v}");
        assert_eq!(v["errors"], 0, "{mode}: {v}");
        let lines = acknowledged(&record);
        assert_eq!(lines.len() as u64, accepted, "{mode}");
        counted.extend(lines);
    }
    // The whole fleet at once, each agent once: every one is served.
    let record = c.dir.join("acked-once.txt");
    let out = ok(loadgen()
        .args(["run", "--collector", &c.url(), "--state-dir"])
        .arg(&state)
        .args(["--once", "--duration", "60s", "--mode", "full"])
        .args(["--concurrency", "50", "--format", "json", "--record"])
        .arg(&record));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(
        (&v["accepted"], &v["once"]["given_up"]),
        (&serde_json::json!(100), &serde_json::json!(0)),
        "{v}"
    );
    assert!(
        v["once"]["all_served_s"]
            .as_f64()
            .is_some_and(|s| s <= 60.0),
        "{v}"
    );
    let lines = acknowledged(&record);
    let agents: HashSet<&String> = lines.iter().map(|(id, _)| id).collect();
    assert_eq!((lines.len(), agents.len()), (100, 100), "each agent once");
    counted.extend(lines);

    // The fleet returning after a restart: each agent checks in once, the
    // collector is restarted (by a script, as an operator would), then each
    // agent checks in once more and resumes its TLS session with the ticket
    // from before.
    let script = c.dir.join("restart.sh");
    let log = c.dir.join("restarted.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nset -e\nkill {pid}\n\
             up() {{ (echo >/dev/tcp/127.0.0.1/{port}) 2>/dev/null; }}\n\
             for _ in $(seq 200); do up || break; sleep 0.1; done\n\
             {bin} serve --data-dir {data} --listen 127.0.0.1:{port} --http-listen off >{log} 2>&1 &\n\
             for _ in $(seq 200); do up && break; sleep 0.1; done\n\
             echo $!\n",
            pid = c.pid(),
            port = c.port,
            bin = bin_dir().join("muster-collector").display(),
            data = c.data().display(),
            log = log.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let record = c.dir.join("acked-restart.txt");
    let out = ok(loadgen()
        .args(["run", "--collector", &c.url(), "--state-dir"])
        .arg(&state)
        .args([
            "--once",
            "--duration",
            "60s",
            "--mode",
            "resume",
            "--restart",
        ])
        .arg(&script)
        .args(["--concurrency", "50", "--format", "json", "--record"])
        .arg(&record));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json report");
    let restarted = Restarted(
        v["collector"]["pid"]
            .as_u64()
            .expect("the new collector's pid"),
    );
    let m = scrape_metrics(metrics_port);
    assert_eq!(
        (&v["accepted"], &v["once"]["given_up"]),
        (&serde_json::json!(100), &serde_json::json!(0)),
        "{v}"
    );
    assert_eq!(
        (
            metric(&m, "muster_tls_handshakes_total{kind=\"resumed\"}"),
            metric(&m, "muster_tls_handshakes_total{kind=\"full\"}")
        ),
        (Some(100.0), Some(0.0)),
        "every agent resumed on the restarted collector: {m}"
    );
    counted.extend(acknowledged(&record));
    let stored = stored_checkins(&c);
    let missing: Vec<_> = counted.iter().filter(|k| !stored.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} counted check-ins are not stored, e.g. {:?}",
        missing.len(),
        counted.len(),
        missing.first()
    );
    // Each simulated host reports what its inventory holds: about 3 % of
    // them Kaspersky, found by the collector's own catalog.
    let summary: serde_json::Value =
        serde_json::from_str(&c.muster(&["summary", "--format", "json"])).unwrap();
    assert_eq!(summary["hosts"], 100);
    drop(restarted);
}

/// A collector the test's script started: stopped when dropped.
struct Restarted(u64);

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

#[test]
fn the_baselines_measure_handshakes_and_calls() {
    // In the resumption loop a handshake that did not resume is an error,
    // so no errors means every measured handshake resumed.
    for mode in ["handshake", "resumption", "echo"] {
        let out = ok(loadgen().args([
            "baseline",
            "--mode",
            mode,
            "--duration",
            "2s",
            "--concurrency",
            "4",
            "--format",
            "json",
        ]));
        let v: serde_json::Value = serde_json::from_str(&out).expect("json report");
        assert!(v["accepted"].as_u64().unwrap() > 0, "{mode}: {v}");
        assert_eq!(v["errors"], 0, "{mode}: {v}");
        assert!(
            v["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
            "{mode}: {v}"
        );
    }
}
