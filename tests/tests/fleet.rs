//! Fleet state and history on a real collector: a detection's life on a
//! host (found, left behind, gone, back) as the operator reads it.

use muster_tests::*;
use serde_json::Value;

/// Installs, half-removes, removes and reinstalls Kaspersky Endpoint
/// Security for Linux on an enrolled host; `muster host` tells the story.
#[test]
fn a_detections_life_is_the_hosts_timeline() {
    let c = Collector::start();
    let state = c.dir.join("agent");
    c.enroll(&state);
    let root = c.dir.join("img");
    let bash = ("bash", "5.2.15-2", "install ok installed");
    let report = |packages: &[(&str, &str, &str)]| {
        linux_image(&root, "kesl-host", packages, &[]);
        ok(cmd("muster-agent")
            .args(["run", "--once", "--state-dir"])
            .arg(&state)
            .arg("--root")
            .arg(&root));
    };
    let host = |id: &str| -> Value {
        serde_json::from_str(&c.muster(&["host", id, "--format", "json"])).expect("host json")
    };
    const KESL: &str = "kaspersky.endpoint-security-linux";

    report(&[bash, ("kesl", "12.1.0.1297", "install ok installed")]);
    let id = c.hosts()[0]["id"].as_str().unwrap().to_string();
    // Uninstalled without purge: the configuration stays, a remnant.
    report(&[bash, ("kesl", "12.1.0.1297", "deinstall ok config-files")]);
    let h = host(&id);
    let kesl = &h["detections"][0];
    assert_eq!(kesl["product_id"], KESL);
    assert_eq!(kesl["state"], "remnant");
    assert!(kesl["removed_at"].is_null(), "{kesl}");
    // Purged: gone from the fleet view, its last state kept on the host.
    report(&[bash]);
    assert_eq!(
        c.hosts()[0]["detections"].as_array().unwrap().len(),
        0,
        "a removed product is not listed as present"
    );
    let h = host(&id);
    let kesl = &h["detections"][0];
    assert_eq!(kesl["state"], "remnant", "the last known state stays");
    assert!(kesl["removed_at"].is_string(), "{kesl}");

    // Installed again.
    report(&[bash, ("kesl", "12.2.0.2412", "install ok installed")]);
    let h = host(&id);
    let kesl = &h["detections"][0];
    assert!(kesl["removed_at"].is_null(), "{kesl}");
    assert_eq!(kesl["version"], "12.2.0.2412");

    let timeline = h["timeline"].as_array().unwrap();
    let story: Vec<(String, String, String, String)> = timeline
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("kind"), s("product_id"), s("previous_state"), s("state"))
        })
        .collect();
    let ev = |k: &str, p: &str, prev: &str, now: &str| {
        (
            k.to_string(),
            p.to_string(),
            prev.to_string(),
            now.to_string(),
        )
    };
    assert_eq!(
        story,
        vec![
            ev("enrolled", "", "", ""),
            ev("detected", KESL, "", "installed"),
            ev("state_changed", KESL, "installed", "remnant"),
            ev("removed", KESL, "", "remnant"),
            ev("detected", KESL, "", "installed"),
        ]
    );
    assert_eq!(timeline[1]["version"], "12.1.0.1297");
    assert_eq!(timeline[4]["version"], "12.2.0.2412");
    assert_eq!(timeline[1]["vendor"], "Kaspersky");
    let ids: std::collections::BTreeSet<&str> =
        timeline.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), timeline.len(), "every event has its own id");
    assert!(timeline.iter().all(|e| e["at"].is_string()));

    // An unchanged report adds nothing to the timeline.
    report(&[bash, ("kesl", "12.2.0.2412", "install ok installed")]);
    assert_eq!(host(&id)["timeline"].as_array().unwrap().len(), 5);

    // The table shows the same story.
    let table = c.muster(&["host", &id]);
    assert!(table.contains("timeline:"), "{table}");
    assert!(table.contains("installed → remnant"), "{table}");
    assert!(table.contains("gone (was remnant)"), "{table}");
}

/// Two collectors on one PostgreSQL database, as behind a load balancer:
/// agents enroll at either and check in to either at random; nothing is
/// lost or duplicated, and the fleet reads the same from both.
#[test]
fn two_collectors_share_one_postgresql_database() {
    let Some(db) = PgDatabase::create("two") else {
        return;
    };
    let a = Collector::start_postgres(&db.url);
    let b = a.replica();
    let collectors = [&a, &b];
    // A token made at one collector works at the other: it is in the database.
    let token = a.token(6, "1h");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut coin = move || {
        // xorshift: a fixed, reproducible "random" choice of collector.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed & 1) as usize
    };
    let agents: Vec<(std::path::PathBuf, std::path::PathBuf)> = (0..6)
        .map(|i| {
            let state = a.dir.join(&format!("agent{i}"));
            let root = a.dir.join(&format!("img{i}"));
            collectors[i % 2].enroll_with(&token, &state);
            (state, root)
        })
        .collect();
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        for (i, (state, root)) in agents.iter().enumerate() {
            // Odd agents carry KESL in rounds 0 and 2, and its remnant in 1.
            let mut packages = vec![("bash", "5.2", "install ok installed")];
            if i % 2 == 1 {
                match round {
                    0 | 2 => packages.push(("kesl", "12.1", "install ok installed")),
                    1 => packages.push(("kesl", "12.1", "deinstall ok config-files")),
                    _ => {}
                }
            }
            linux_image(root, &format!("host{i}"), &packages, &[]);
            let to = collectors[coin()];
            point_agent_at(state, &to.url());
            ok(cmd("muster-agent")
                .args(["run", "--once", "--state-dir"])
                .arg(state)
                .arg("--root")
                .arg(root));
        }
    }
    let from_a = a.hosts();
    let from_b = b.hosts();
    assert_eq!(from_a.len(), 6);
    assert_eq!(from_a, from_b, "the fleet reads the same from both");
    for h in &from_a {
        let id = h["id"].as_str().unwrap();
        assert_eq!(h["sequence"], ROUNDS as u64, "every check-in stored: {h}");
        let ta: Value = serde_json::from_str(&a.muster(&["host", id, "--format", "json"])).unwrap();
        let tb: Value = serde_json::from_str(&b.muster(&["host", id, "--format", "json"])).unwrap();
        assert_eq!(ta["timeline"], tb["timeline"]);
        let kinds: Vec<&str> = ta["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        let odd = h["hostname"]
            .as_str()
            .unwrap()
            .trim_start_matches("host")
            .parse::<usize>()
            .unwrap()
            % 2
            == 1;
        // Installed, then a remnant, installed again, then gone.
        assert_eq!(
            kinds,
            if odd {
                vec![
                    "enrolled",
                    "detected",
                    "state_changed",
                    "state_changed",
                    "removed",
                ]
            } else {
                vec!["enrolled"]
            },
            "{h}"
        );
    }
}

/// Rewrites the collector URL an agent's state folder holds.
fn point_agent_at(state: &std::path::Path, url: &str) {
    let path = state.join("agent.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("collector") {
                format!("collector = {url:?}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, text + "\n").unwrap();
}
