//! The collector killed mid-flight keeps every acknowledged check-in, and
//! stops cleanly on SIGTERM.

use muster_tests::*;
use sqlx::Connection;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn sigkill_during_check_ins_loses_no_acknowledged_report() {
    let mut c = Collector::start();
    let agents = 6;
    let mut states = Vec::new();
    for i in 0..agents {
        let state = c.dir.join(&format!("agent-{i}"));
        c.enroll(&state);
        let root = c.dir.join(&format!("img-{i}"));
        let pkgs: Vec<String> = (0..300).map(|p| format!("pkg-{i}-{p}")).collect();
        let list: Vec<(&str, &str, &str)> = pkgs
            .iter()
            .map(|n| (n.as_str(), "1", "install ok installed"))
            .collect();
        linux_image(&root, &format!("crash-{i}"), &list, &[]);
        states.push((state, root));
    }
    // Each agent checks in over and over, changing its inventory every time
    // so every check-in writes; the collector is killed in the middle.
    let mut children = Vec::new();
    for (i, (state, root)) in states.iter().enumerate() {
        let script = format!(
            "for n in $(seq 1 40); do echo \"Package: churn-$n\nStatus: install ok installed\nVersion: $n\n\" >> {root}/var/lib/dpkg/status; {bin} run --once --state-dir {state} --root {root} 2>/dev/null || true; done",
            root = root.display(),
            state = state.display(),
            bin = bin_dir().join("muster-agent").display(),
        );
        let _ = i;
        children.push(
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    // Let some check-ins land, then kill -9.
    let acked = || {
        states
            .iter()
            .map(|(s, _)| {
                std::fs::read(s.join("state.json"))
                    .ok()
                    .map(|_| agent_progress(s)["acked_sequence"].as_u64().unwrap())
                    .unwrap_or(0)
            })
            .sum::<u64>()
    };
    wait_for(Duration::from_secs(60), || (acked() >= 12).then_some(()))
        .expect("no check-ins landed");
    c.kill();
    for mut ch in children {
        ch.wait().unwrap();
    }

    // The database is consistent...
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = c.data().join("muster.db");
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(check, "ok");
        // ...and holds every report an agent saw acknowledged.
        for (state, _) in &states {
            let id = std::fs::read_to_string(state.join("agent.toml")).unwrap();
            let id = id
                .lines()
                .find_map(|l| l.strip_prefix("agent_id = "))
                .unwrap()
                .trim_matches('"')
                .to_string();
            let acked = agent_progress(state)["acked_sequence"].as_i64().unwrap();
            let stored: i64 = sqlx::query_scalar("SELECT last_sequence FROM hosts WHERE id = $1")
                .bind(&id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert!(
                stored >= acked,
                "host {id}: agent saw {acked} acknowledged, collector has {stored}"
            );
            let logged: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM checkins WHERE host_id = $1 AND sequence <= $2",
            )
            .bind(&id)
            .bind(acked)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            let sent_first: i64 =
                sqlx::query_scalar("SELECT MIN(sequence) FROM checkins WHERE host_id = $1")
                    .bind(&id)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap_or(1);
            assert_eq!(
                logged,
                acked - sent_first + 1,
                "host {id}: acknowledged check-ins missing from the log"
            );
        }
        conn.close().await.unwrap();
    });

    // It restarts, and every agent catches up, the spool drained.
    c.restart();
    for (state, root) in &states {
        ok(cmd("muster-agent")
            .args(["run", "--once", "--state-dir"])
            .arg(state)
            .arg("--root")
            .arg(root));
        assert_eq!(std::fs::read_dir(state.join("spool")).unwrap().count(), 0);
    }
    let hosts = c.hosts();
    assert_eq!(hosts.len(), agents);
    for (state, _) in &states {
        let acked = agent_progress(state)["acked_sequence"].as_u64().unwrap();
        let id = std::fs::read_to_string(state.join("agent.toml")).unwrap();
        let h = hosts
            .iter()
            .find(|h| id.contains(h["id"].as_str().unwrap()))
            .unwrap();
        assert_eq!(h["sequence"].as_u64().unwrap(), acked);
    }
}

#[test]
fn sigterm_stops_cleanly_and_closes_the_database() {
    let mut c = Collector::start();
    let state = c.dir.join("agent");
    c.enroll(&state);
    let status = c.terminate();
    assert!(status.success(), "exit status {status}");
    let log = c.log();
    assert!(
        log.contains("shutdown requested") && log.contains("database closed"),
        "{log}"
    );
    // Closed cleanly: the write-ahead log was checkpointed away.
    assert!(
        !c.data().join("muster.db-wal").exists()
            || std::fs::metadata(c.data().join("muster.db-wal"))
                .unwrap()
                .len()
                == 0
    );
}

#[test]
fn json_logs_and_an_agent_service_loop_that_stops_on_sigterm() {
    let c = Collector::start_with_config("log_format = \"json\"");
    let state = c.dir.join("agent");
    c.enroll(&state);
    let root = c.dir.join("img");
    linux_image(
        &root,
        "looping",
        &[("kesl", "12", "install ok installed")],
        &[],
    );
    // Without --once the agent keeps running at the collector's interval.
    let mut agent = agent_run(&state, &root, &[], Stdio::null());
    let reported = wait_for(Duration::from_secs(30), || {
        let h = c.hosts();
        (h[0]["sequence"] == 1).then_some(())
    });
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(agent.id().to_string())
        .status();
    let status = agent.wait().unwrap();
    assert!(reported.is_some(), "the looping agent never checked in");
    assert!(status.success(), "agent exit status {status}");

    // Every log line is a JSON object with a message and fields.
    let log = c.log();
    let mut accepted = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["fields"]["message"] == "check-in accepted" {
            assert!(v["fields"]["host"].is_string());
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1, "{log}");
}
