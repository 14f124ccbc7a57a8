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
        (k.to_string(), p.to_string(), prev.to_string(), now.to_string())
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
