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

/// An air-gapped fleet through a ban: snapshots imported, filtered, a BOD
/// 17-01 campaign read and reported, coverage against an asset list, bad
/// input refused without changing anything.
#[test]
fn snapshots_campaign_and_coverage() {
    let c = Collector::start();
    let snap = |name: &str, packages: &[(&str, &str, &str)]| {
        let root = c.dir.join(&format!("img-{name}-{}", packages.len()));
        linux_image(&root, name, packages, &[]);
        let out = c.dir.join(&format!("{name}-{}.json", packages.len()));
        ok(cmd("muster-agent")
            .args(["collect", "--root"])
            .arg(&root)
            .arg("--out")
            .arg(&out));
        out
    };
    let bash = ("bash", "5.2", "install ok installed");
    let alpha = snap("alpha", &[bash, ("kesl", "12.1", "install ok installed")]);
    let bravo = snap("bravo", &[bash]);
    let charlie = snap(
        "charlie",
        &[bash, ("kesl", "12.1", "deinstall ok config-files")],
    );
    for f in [&alpha, &bravo, &charlie] {
        let out = c.muster(&["import", f.to_str().unwrap()]);
        assert!(out.contains("imported new host"), "{out}");
    }
    let listed = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["hosts", "--format", "json"];
        all.extend_from_slice(args);
        let v: Value = serde_json::from_str(&c.muster(&all)).unwrap();
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["hostname"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed(&[]), ["alpha", "bravo", "charlie"]);
    assert_eq!(listed(&["--vendor", "KASPERSKY"]), ["alpha", "charlie"]);
    assert_eq!(
        listed(&["--vendor", "kaspersky", "--state", "remnant"]),
        ["charlie"]
    );
    assert_eq!(listed(&["--violates", "bod-17-01"]), ["alpha", "charlie"]);
    assert_eq!(listed(&["--name", "RAV"]), ["bravo"]);
    assert_eq!(listed(&["--category", "vpn"]), Vec::<String>::new());
    let err = fails(
        cmd("muster")
            .args(["--collector", &c.url(), "--identity"])
            .arg(c.data().join("operator"))
            .args(["hosts", "--vendor", "no-such-vendor"]),
    );
    assert!(err.contains("no vendor"), "{err}");

    // BOD 17-01 works out of the box with its own dates: in 2026 every
    // positive host is overdue, a remnant included.
    let status = || -> Value {
        serde_json::from_str(&c.muster(&["campaign", "status", "bod-17-01", "--format", "json"]))
            .unwrap()
    };
    let names = |v: &Value, list: &str| -> Vec<String> {
        v[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["hostname"].as_str().unwrap().to_string())
            .collect()
    };
    let s = status();
    assert_eq!(s["phase"], "overdue");
    assert_eq!(names(&s, "overdue"), ["alpha", "charlie"]);
    assert_eq!(s["counts"]["remnant"], 1);
    let report = c.dir.join("report.html");
    c.muster(&[
        "campaign",
        "report",
        "bod-17-01",
        "--out",
        report.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg") && html.contains("alpha"));
    // Self-contained: nothing loaded from anywhere, links only inside the page.
    assert!(
        !html.contains("src=") && !html.contains("url("),
        "external asset"
    );
    assert!(
        html.match_indices("href=\"")
            .all(|(i, _)| html[i + 6..].starts_with('#'))
    );

    // Kaspersky removed from alpha: cleared, with the removal in its timeline.
    // Snapshot times are in seconds: this one must be later than the first
    // (re-importing that first one is refused as older, below).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let clean = snap("alpha", &[bash]);
    c.muster(&["import", clean.to_str().unwrap()]);
    let s = status();
    assert_eq!(names(&s, "overdue"), ["charlie"]);
    assert_eq!(names(&s, "cleared"), ["alpha"]);

    // Coverage against an asset list.
    let csv = c.dir.join("assets.csv");
    std::fs::write(
        &csv,
        "hostname,owner\nalpha,ops\nbravo,ops\ndelta,finance\n",
    )
    .unwrap();
    c.muster(&["assets", "import", csv.to_str().unwrap()]);
    let cov: Value = serde_json::from_str(&c.muster(&["coverage", "--format", "json"])).unwrap();
    assert_eq!(cov["assets_without_agent"][0]["hostname"], "delta");
    assert_eq!(cov["agents_not_in_assets"][0]["hostname"], "charlie");
    let s = status();
    assert!(names(&s, "unknown").contains(&"delta".to_string()), "{s}");

    // Bad input: a clear error, nothing changed.
    let muster_fails = |args: &[&str]| {
        fails(
            cmd("muster")
                .args(["--collector", &c.url(), "--identity"])
                .arg(c.data().join("operator"))
                .args(args),
        )
    };
    std::fs::write(&csv, "hostname,owner\nalpha,ops\nbravo,ops,extra\n").unwrap();
    let err = muster_fails(&["assets", "import", csv.to_str().unwrap()]);
    assert!(err.contains("line 3"), "{err}");
    let cov: Value = serde_json::from_str(&c.muster(&["coverage", "--format", "json"])).unwrap();
    assert_eq!(cov["assets"], 3, "the earlier asset list stays");
    let err = muster_fails(&[
        "campaign",
        "start",
        "bad",
        "--policy",
        "bod-17-01",
        "--identify-by",
        "2030-02-01",
        "--remove-by",
        "2030-01-01",
    ]);
    assert!(err.contains("remove-by"), "{err}");
    let err = muster_fails(&["host", "does-not-exist"]);
    assert!(err.contains("no host"), "{err}");
    let bad = c.dir.join("bad.json");
    std::fs::write(&bad, r#"{"format_version": 9999}"#).unwrap();
    let err = muster_fails(&["import", bad.to_str().unwrap()]);
    assert!(err.contains("9999"), "{err}");
    let older = muster_fails(&["import", alpha.to_str().unwrap()]);
    assert!(older.contains("newer report"), "{older}");
    assert_eq!(listed(&[]), ["alpha", "bravo", "charlie"]);
    // A campaign of our own, with today's date.
    let out = c.muster(&[
        "campaign",
        "start",
        "ours",
        "--policy",
        "bod-17-01",
        "--issued",
        "2026-01-01",
        "--identify-by",
        "2026-02-01",
        "--remove-by",
        "2099-01-01",
    ]);
    assert!(out.contains("campaign ours started"), "{out}");
    let v: Value =
        serde_json::from_str(&c.muster(&["campaign", "status", "ours", "--format", "json"]))
            .unwrap();
    assert_eq!(v["phase"], "remove");
    assert!(v["overdue"].as_array().unwrap().is_empty());
    assert_eq!(names(&v, "affected"), ["charlie"]);
    let again = muster_fails(&["campaign", "start", "ours", "--policy", "bod-17-01"]);
    assert!(again.contains("exists"), "{again}");
}

/// A new product in the operator's catalog: the collector re-evaluates the
/// stored inventories at start, no agent rescans, and the change is an event.
#[test]
fn a_catalog_change_re_evaluates_stored_inventories() {
    let mut c = Collector::start();
    let (state, root) = c.agent_with_image(
        "acme-host",
        &[("acme-shield", "2.0", "install ok installed")],
    );
    let out = agent_once(&state, &root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(c.hosts()[0]["detections"].as_array().unwrap().is_empty());
    let cat = c.data().join("catalog");
    std::fs::create_dir_all(&cat).unwrap();
    std::fs::write(
        cat.join("acme.toml"),
        "vendor = \"Acme\"\n[[products]]\nid = \"acme.shield\"\nname = \"Acme Shield\"\ncategory = \"antivirus\"\nplatforms = [\"linux\"]\n[[products.indicators]]\nkind = \"package\"\nvalue = \"acme-shield\"\nplatform = \"linux\"\nproves = \"installed\"\nsource = \"test\"\n",
    )
    .unwrap();
    let cfg = c.data().join("collector.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    // A campaign of the config file starts with the collector.
    std::fs::write(
        &cfg,
        format!(
            "{text}\ncatalog_dir = \"{}\"\n\n[[campaign]]\nname = \"from-config\"\npolicy = \"bod-17-01\"\nissued = \"2026-01-01\"\nidentify_by = \"2026-02-01\"\nremove_by = \"2099-01-01\"\n",
            cat.display()
        ),
    )
    .unwrap();
    c.restart();
    let found = wait_for(std::time::Duration::from_secs(30), || {
        let h = c.hosts();
        (h[0]["detections"].as_array().unwrap().len() == 1).then_some(h)
    })
    .unwrap_or_else(|| panic!("not re-evaluated: {}", c.log()));
    assert_eq!(found[0]["detections"][0]["product_id"], "acme.shield");
    assert!(c.log().contains("re-evaluation finished"), "{}", c.log());
    let id = found[0]["id"].as_str().unwrap();
    let h: Value = serde_json::from_str(&c.muster(&["host", id, "--format", "json"])).unwrap();
    let last = h["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "detected");
    assert_eq!(last["product_id"], "acme.shield");
    let summary: Value = serde_json::from_str(&c.muster(&["summary", "--format", "json"])).unwrap();
    assert_eq!(summary["pending_reevaluation"], 0);
    let v: Value =
        serde_json::from_str(&c.muster(&["campaign", "status", "from-config", "--format", "json"]))
            .unwrap();
    assert_eq!(v["campaign"]["remove_by_date"], "2099-01-01");
    assert_eq!(v["phase"], "remove");
}
