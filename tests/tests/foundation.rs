//! The foundation's user path, end to end: a real collector, real agents,
//! real certificates, on loopback.

use muster_tests::*;
use std::path::Path;

const KESL: (&str, &str, &str) = ("kesl", "11.1.0.3013", "install ok installed");

fn image(
    dir: &TempDir,
    name: &str,
    packages: &[(&str, &str, &str)],
    units: &[&str],
) -> std::path::PathBuf {
    let root = dir.join(&format!("img-{name}"));
    linux_image(&root, name, packages, units);
    root
}

fn run_once(state: &Path, root: &Path) -> std::process::Output {
    run(cmd("muster-agent")
        .arg("run")
        .arg("--once")
        .arg("--state-dir")
        .arg(state)
        .arg("--root")
        .arg(root))
}

#[test]
fn enroll_check_in_and_read_the_fleet() {
    let c = Collector::start();
    let state = c.dir.join("agent");
    c.enroll(&state);

    // The key never leaves the host and only its owner can read it.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    for key in ["ca-key.pem", "server-key.pem", "operator/key.pem"] {
        let mode = std::fs::metadata(c.data().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    // Enrolled, not yet reported.
    let hosts = c.hosts();
    assert_eq!(hosts.len(), 1);
    assert!(hosts[0]["last_checkin"].is_null());

    let root = image(
        &c.dir,
        "ws-0001",
        &[KESL, ("bash", "5.2", "install ok installed")],
        &["kesl.service"],
    );
    let out = run_once(&state, &root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let hosts = c.hosts();
    assert_eq!(hosts.len(), 1);
    let h = &hosts[0];
    assert_eq!(h["hostname"], "ws-0001");
    assert_eq!(h["os"], "Debian GNU/Linux 12");
    assert!(h["last_checkin"].is_string());
    assert_eq!(h["sequence"], 1);
    // The agent id is the one in the agent's certificate, chosen by the collector.
    let id = h["id"].as_str().unwrap();
    let agent_toml = std::fs::read_to_string(state.join("agent.toml")).unwrap();
    assert!(agent_toml.contains(id));
    let det = &h["detections"][0];
    assert_eq!(det["product_id"], "kaspersky.endpoint-security-linux");
    assert_eq!(det["state"], "installed");
    assert_eq!(det["version"], "11.1.0.3013");
    assert_eq!(h["banned"][0], "kaspersky.endpoint-security-linux");

    // One host: facts, sections, detections with evidence and the ban.
    let detail: serde_json::Value =
        serde_json::from_str(&c.muster(&["host", id, "--format", "json"])).unwrap();
    let sections: Vec<&str> = detail["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(sections, ["packages", "services"]);
    let ev = detail["detections"][0]["evidence"].as_array().unwrap();
    assert!(ev.iter().any(|e| e["kind"] == "package"
        && e["matched"] == "kesl"
        && e["location"] == "/var/lib/dpkg/status"));
    assert!(ev.iter().any(|e| e["kind"] == "systemd_unit"
        && e["matched"].as_str().unwrap().starts_with("kesl.service")));
    assert_eq!(detail["detections"][0]["banned_by"][0], "bod-17-01");
    // The agent's own view is kept beside the collector's.
    assert_eq!(
        detail["agent_detections"][0]["product_id"],
        "kaspersky.endpoint-security-linux"
    );
    let table = c.muster(&["host", id]);
    assert!(
        table.contains("kaspersky.endpoint-security-linux") && table.contains("bod-17-01"),
        "{table}"
    );

    // The fleet summary counts the host and the ban.
    let s: serde_json::Value =
        serde_json::from_str(&c.muster(&["summary", "--format", "json"])).unwrap();
    assert_eq!(s["hosts"], 1);
    assert_eq!(s["reporting"], 1);
    assert_eq!(s["hosts_with_banned"], 1);
    assert_eq!(
        s["products"][0]["product_id"],
        "kaspersky.endpoint-security-linux"
    );
    assert_eq!(s["products"][0]["hosts"], 1);
    assert_eq!(s["products"][0]["banned"], true);
    let table = c.muster(&["summary"]);
    assert!(table.contains("hosts with a banned product: 1"), "{table}");

    // CSV: a header and one row per host.
    let csv = c.muster(&["hosts", "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,hostname,os,last_checkin,stale,detections,banned"
    );
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains("kaspersky.endpoint-security-linux:installed"));

    // Kaspersky removed but not purged: the collector sees a remnant, not "gone".
    std::fs::write(
        root.join("var/lib/dpkg/status"),
        "Package: kesl\nStatus: deinstall ok config-files\nVersion: 11.1.0.3013\n\n",
    )
    .unwrap();
    std::fs::remove_file(root.join("lib/systemd/system/kesl.service")).unwrap();
    let out = run_once(&state, &root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = &c.hosts()[0];
    assert_eq!(h["sequence"], 2);
    assert_eq!(h["detections"][0]["state"], "remnant");

    // Purged: the detection goes.
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    assert!(run_once(&state, &root).status.success());
    let h = &c.hosts()[0];
    assert_eq!(h["sequence"], 3);
    assert_eq!(h["detections"].as_array().unwrap().len(), 0);
    assert_eq!(h["banned"].as_array().unwrap().len(), 0);
}

#[test]
fn an_unreachable_collector_keeps_the_report_until_it_is_sent() {
    let mut c = Collector::start();
    let state = c.dir.join("agent");
    c.enroll(&state);
    let root = image(&c.dir, "laptop-7", &[KESL], &[]);
    let url = c.url();
    c.kill();

    let out = run_once(&state, &root);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&url), "the error does not name {url}: {err}");
    let spooled: Vec<_> = std::fs::read_dir(state.join("spool"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(spooled.len(), 1, "the unsent report is not on disk");

    // Back on the same port: the spooled report goes first, then a fresh one.
    c.restart();
    assert_eq!(c.url(), url);
    let out = run_once(&state, &root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(state.join("spool"))
            .unwrap()
            .flatten()
            .count(),
        0
    );
    let h = &c.hosts()[0];
    assert_eq!(h["sequence"], 2, "both reports acknowledged");
    assert_eq!(agent_progress(&state)["acked_sequence"], 2);
    // Both reports are in the host's check-in history: nothing was lost.
    let stored: Vec<i64> = column(
        &c.data().join("muster.db"),
        "SELECT sequence FROM checkins ORDER BY sequence",
    );
    assert_eq!(stored, [1, 2]);
}

#[test]
fn local_scan_prints_detections_with_evidence() {
    let dir = TempDir::new("scan");
    let root = image(
        &dir,
        "offline-1",
        &[
            ("clamav-daemon", "1.0.7", "install ok installed"),
            ("klnagent64", "14", "deinstall ok config-files"),
        ],
        &["clamav-daemon.service"],
    );
    // A folder left behind by an uninstalled Kaspersky Endpoint Security.
    std::fs::create_dir_all(root.join("var/opt/kaspersky/kesl")).unwrap();
    let out = ok(cmd("muster-agent")
        .args(["scan", "--format", "json", "--root"])
        .arg(&root));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["host"]["hostname"], "offline-1");
    let dets = v["detections"].as_array().unwrap();
    let find = |id: &str| {
        dets.iter()
            .find(|d| d["product_id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {out}"))
    };
    assert_eq!(find("clamav.clamav")["state"], "installed");
    assert_eq!(find("kaspersky.network-agent")["state"], "remnant");
    let kesl = find("kaspersky.endpoint-security-linux");
    assert_eq!(kesl["state"], "remnant");
    assert_eq!(kesl["evidence"][0]["matched"], "/var/opt/kaspersky/kesl");
    assert_eq!(kesl["evidence"][0]["kind"], "file_path");
    assert!(
        find("clamav.clamav")["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["value"] == "clamav-daemon.service")
    );

    let table = ok(cmd("muster-agent").args(["scan", "--root"]).arg(&root));
    assert!(
        table.contains("offline-1")
            && table.contains("kaspersky.network-agent")
            && table.contains("remnant"),
        "{table}"
    );

    // The live host works too and prints JSON.
    let live = ok(cmd("muster-agent").args(["scan", "--format", "json"]));
    let v: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert!(v["sections"]["processes"].as_u64().unwrap() > 0);
}

#[test]
fn every_command_has_help_with_an_example() {
    for (bin, args) in [
        ("muster-collector", vec!["init"]),
        ("muster-collector", vec!["serve"]),
        ("muster-collector", vec!["token", "create"]),
        ("muster-collector", vec!["operator-token", "create"]),
        ("muster-collector", vec!["operator-token", "revoke"]),
        ("muster-collector", vec!["operator-token", "list"]),
        ("muster-collector", vec!["config", "check"]),
        ("muster-agent", vec!["enroll"]),
        ("muster-agent", vec!["run"]),
        ("muster-agent", vec!["scan"]),
        ("muster", vec!["hosts"]),
        ("muster", vec!["host"]),
        ("muster", vec!["summary"]),
        ("muster", vec!["import"]),
        ("muster", vec!["assets", "import"]),
        ("muster", vec!["coverage"]),
        ("muster", vec!["campaign", "start"]),
        ("muster", vec!["campaign", "status"]),
        ("muster", vec!["campaign", "report"]),
        ("muster", vec!["siem", "status"]),
        ("muster", vec!["siem", "test"]),
        ("muster", vec!["hosts", "revoke"]),
        ("muster-agent", vec!["collect"]),
        ("muster-agent", vec!["renew"]),
        ("muster-agent", vec!["config", "check"]),
        ("muster-agent", vec!["service", "install"]),
        ("muster-agent", vec!["service", "uninstall"]),
        ("muster-agent", vec!["service", "run"]),
        ("muster-collector", vec!["ca", "rotate"]),
        ("muster-collector", vec!["ca", "status"]),
        ("muster-collector", vec!["ca", "finish"]),
        ("muster-collector", vec!["backup"]),
        ("muster-collector", vec!["restore"]),
        ("muster-loadgen", vec!["enroll"]),
        ("muster-loadgen", vec!["run"]),
        ("muster-loadgen", vec!["baseline"]),
        ("muster-bench-console", vec![]),
    ] {
        let out = ok(cmd(bin).args(&args).arg("--help"));
        assert!(
            out.contains("Example:"),
            "{bin} {args:?} --help has no example:\n{out}"
        );
    }
    let out = ok(cmd("muster").arg("--help"));
    assert!(
        out.contains("MUSTER_COLLECTOR") && out.contains("profile"),
        "{out}"
    );
}

#[test]
fn operator_settings_come_from_a_profile_or_the_environment() {
    let c = Collector::start();
    let profile = c.dir.join("profile.toml");
    std::fs::write(
        &profile,
        format!(
            "collector = \"{}\"\nidentity = \"{}\"\n",
            c.url(),
            c.data().join("operator").display()
        ),
    )
    .unwrap();
    let out = ok(cmd("muster")
        .arg("--profile")
        .arg(&profile)
        .args(["summary", "--format", "json"]));
    assert!(out.contains("\"hosts\": 0"), "{out}");
    let out = ok(cmd("muster")
        .env("MUSTER_COLLECTOR", c.url())
        .env("MUSTER_IDENTITY", c.data().join("operator"))
        .args(["hosts", "--format", "json"]));
    assert!(out.contains("\"hosts\""), "{out}");
    let err = fails(cmd("muster").args(["hosts"]));
    assert!(err.contains("no collector given"), "{err}");
}

#[test]
fn init_refuses_to_overwrite_and_config_check_reports_every_problem() {
    let c = Collector::start();
    let err = fails(
        cmd("muster-collector")
            .args(["init", "--server-name", "x", "--data-dir"])
            .arg(c.data()),
    );
    assert!(err.contains("refusing to overwrite"), "{err}");
    ok(cmd("muster-collector")
        .args(["config", "check", "--data-dir"])
        .arg(c.data()));
    std::fs::write(
        c.data().join("collector.toml"),
        "listen = \"nowhere\"\nlog_format = \"xml\"\n",
    )
    .unwrap();
    let err = fails(
        cmd("muster-collector")
            .args(["config", "check", "--data-dir"])
            .arg(c.data()),
    );
    assert!(
        err.contains("listen") && err.contains("log_format"),
        "{err}"
    );
    std::fs::write(c.data().join("collector.toml"), "lisen = 1\n").unwrap();
    let err = fails(
        cmd("muster-collector")
            .args(["config", "check", "--data-dir"])
            .arg(c.data()),
    );
    assert!(err.contains("lisen"), "{err}");
}

/// `muster hosts | head -1` in a `set -o pipefail` script: a reader that
/// stops early is not an error.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let c = Collector::start();
    let mut child = cmd("muster")
        .args(["--collector", &c.url(), "--identity"])
        .arg(c.data().join("operator"))
        .args(["catalog", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close our end before it writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
