//! Offline images and snapshots, from the outside: `muster-agent collect`
//! and `scan --snapshot` on images built around real fixtures.

use muster_tests::*;
use std::path::Path;

fn collect(root: &Path, out: &Path) -> serde_json::Value {
    ok(cmd("muster-agent")
        .args(["collect", "--root"])
        .arg(root)
        .arg("--out")
        .arg(out));
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

#[test]
fn a_windows_image_is_collected_with_its_services_and_drivers() {
    let Some(hive) = fixture("windows-registry/regipy_SYSTEM") else {
        return;
    };
    let dir = TempDir::new("win-collect");
    let config = dir.join("win7/Windows/System32/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::copy(hive, config.join("SYSTEM")).unwrap();
    let snap = collect(&dir.join("win7"), &dir.join("win7.json"));
    assert_eq!(snap["format_version"], 1);
    assert_eq!(snap["host"]["hostname"], "WKS-WIN732BITA");
    let services = snap["services"].as_array().unwrap();
    assert!(services.len() >= 400, "{} services", services.len());
    let by_name = |n: &str| {
        services
            .iter()
            .find(|s| s["name"].as_str().unwrap().eq_ignore_ascii_case(n))
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(by_name("mfehidk")["kind"], "driver");
    assert_eq!(by_name("McShield")["kind"], "service");
    assert_eq!(by_name("McShield")["display_name"], "McAfee McShield");
    assert_eq!(by_name("WinDefend")["start"], "3");

    // The snapshot, evaluated elsewhere, finds what a scan of the image finds.
    let from_snapshot = ok(cmd("muster-agent")
        .args(["scan", "--format", "json", "--snapshot"])
        .arg(dir.join("win7.json")));
    let direct = ok(cmd("muster-agent")
        .args(["scan", "--format", "json", "--root"])
        .arg(dir.join("win7")));
    let ids = |t: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        v["detections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["product_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&from_snapshot), ids(&direct));
    assert!(
        ids(&direct)
            .iter()
            .any(|i| i == "trellix.virusscan-enterprise")
    );
}

#[test]
fn dpkg_remnants_and_bad_snapshots() {
    let Some(status) = fixture("dpkg/trivy_status") else {
        return;
    };
    let dir = TempDir::new("dpkg-collect");
    let root = dir.join("ubuntu");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=ubuntu\nVERSION_ID=\"18.04\"\n",
    )
    .unwrap();
    std::fs::copy(status, root.join("var/lib/dpkg/status")).unwrap();
    let snap = collect(&root, &dir.join("u.json"));
    let pkgs = snap["packages"].as_array().unwrap();
    let installed = pkgs.iter().filter(|p| p["status"] == "installed").count();
    assert_eq!(installed, 90, "the fixture has 90 installed packages");
    let git = pkgs.iter().find(|p| p["name"] == "git").unwrap();
    assert_eq!(git["status"], "config-files");
    assert_eq!(git["presence"], "leftover");
    assert_eq!(snap["host"]["os"], "ubuntu");
    assert_eq!(snap["host"]["os_version"], "18.04");

    // A snapshot from another version, and a damaged one: clear errors.
    let mut other = snap.clone();
    other["format_version"] = serde_json::json!(2);
    std::fs::write(dir.join("v2.json"), other.to_string()).unwrap();
    let err = fails(
        cmd("muster-agent")
            .args(["scan", "--snapshot"])
            .arg(dir.join("v2.json")),
    );
    assert!(
        err.contains("format version 2") && err.contains("v2.json"),
        "{err}"
    );
    let text = snap.to_string();
    std::fs::write(dir.join("cut.json"), &text[..text.len() / 2]).unwrap();
    let err = fails(
        cmd("muster-agent")
            .args(["scan", "--snapshot"])
            .arg(dir.join("cut.json")),
    );
    assert!(
        err.contains("cut.json") && err.contains("not valid JSON"),
        "{err}"
    );
}

/// An image whose links point at the scanning machine's own files, or loop:
/// nothing of this machine is read, and the scan ends.
#[test]
fn a_hostile_image_cannot_make_the_agent_read_outside_it() {
    use std::os::unix::fs::symlink;
    let dir = TempDir::new("hostile");
    let root = dir.join("img");
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    std::fs::create_dir_all(root.join("lib/systemd")).unwrap();
    // Relative links climbing out, absolute links (which mean the image's
    // own paths), and a loop.
    symlink(
        "../../../../../../../var/lib/dpkg",
        root.join("var/lib/dpkg"),
    )
    .unwrap();
    symlink("/../../../../etc", root.join("etc")).unwrap();
    symlink("/lib/systemd/system", root.join("lib/systemd/system")).unwrap();
    symlink("a", root.join("b")).unwrap();
    symlink("b", root.join("a")).unwrap();
    std::fs::create_dir_all(root.join("opt")).unwrap();
    symlink("/opt/kaspersky", root.join("opt/kaspersky")).unwrap();
    let out = ok(cmd("muster-agent")
        .args(["scan", "--format", "json", "--root"])
        .arg(&root));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["sections"]["packages"].as_u64().unwrap_or(0),
        0,
        "this machine's dpkg database was read: {out}"
    );
    assert_eq!(v["sections"]["services"].as_u64().unwrap_or(0), 0, "{out}");
    assert_eq!(
        v["host"]["hostname"], "",
        "this machine's hostname leaked: {out}"
    );
    assert_eq!(v["detections"].as_array().unwrap().len(), 0);
}

/// A live scan of this machine finds Debian's ClamAV by its package
/// (`.ci/run` installs it; elsewhere the test says so and skips).
#[test]
fn a_live_scan_finds_clamav_installed_by_the_package_manager() {
    let installed = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "clamav"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"));
    if !installed {
        eprintln!("skipped: Debian's clamav package is not installed here (.ci/run installs it)");
        return;
    }
    let out = ok(cmd("muster-agent").args(["scan", "--format", "json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let clam = v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["product_id"] == "clamav.clamav")
        .unwrap_or_else(|| panic!("ClamAV not found by a live scan: {out}"));
    assert!(
        clam["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "package"
                && e["matched"] == "clamav"
                && e["location"] == "/var/lib/dpkg/status"),
        "{clam}"
    );
    assert!(!clam["version"].as_str().unwrap().is_empty());
}

/// A Windows volume written here: a SOFTWARE hive registering Kaspersky
/// Endpoint Security (Uninstall entry, Security Center, KasperskyLab key),
/// its install folder, and a user's hive. The ban fails with evidence from
/// each, and the user's own install is inventoried.
#[test]
fn a_windows_image_with_kaspersky_fails_bod_17_01() {
    use regf::writer::HiveBuilder;
    let dir = TempDir::new("win-kes");
    let root = dir.join("c");
    let config = root.join("Windows/System32/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(root.join("Program Files (x86)/Kaspersky Lab/KES.11.11.0")).unwrap();
    let mut b = HiveBuilder::new().unwrap();
    let un = "WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{9A017278-F7F4-4DF9-A482-0B97B70DD7ED}";
    b.create_key(un).unwrap();
    b.add_value_string(
        un,
        Some("DisplayName"),
        "Kaspersky Endpoint Security for Windows",
    )
    .unwrap();
    b.add_value_string(un, Some("DisplayVersion"), "11.11.0.452")
        .unwrap();
    let av = "Microsoft\\Security Center\\Provider\\Av\\{1E8F8AB8}";
    b.create_key(av).unwrap();
    b.add_value_string(
        av,
        Some("DISPLAYNAME"),
        "Kaspersky Endpoint Security for Windows",
    )
    .unwrap();
    b.create_key("KasperskyLab").unwrap();
    let nt = "Microsoft\\Windows NT\\CurrentVersion";
    b.create_key(nt).unwrap();
    b.add_value_string(nt, Some("ProductName"), "Windows 10 Enterprise")
        .unwrap();
    b.add_value_string(nt, Some("DisplayVersion"), "22H2")
        .unwrap();
    b.add_value_string(nt, Some("CurrentBuild"), "19045")
        .unwrap();
    b.write_to_file(config.join("SOFTWARE")).unwrap();
    let user = root.join("Users/alice");
    std::fs::create_dir_all(&user).unwrap();
    let mut b = HiveBuilder::new().unwrap();
    let un = "Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Zoom";
    b.create_key(un).unwrap();
    b.add_value_string(un, Some("DisplayName"), "Zoom").unwrap();
    b.write_to_file(user.join("NTUSER.DAT")).unwrap();

    let out = run(cmd("muster-agent")
        .args([
            "scan",
            "--format",
            "json",
            "--policy",
            "bod-17-01",
            "--fail-on",
            "banned",
            "--root",
        ])
        .arg(&root));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["host"]["os_name"], "Windows 10 Enterprise");
    assert_eq!(v["host"]["os_version"], "22H2 (build 19045)");
    let kes = v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["product_id"] == "kaspersky.endpoint-security-windows")
        .unwrap_or_else(|| panic!("{}", v["detections"]));
    assert_eq!(kes["state"], "installed");
    assert_eq!(kes["version"], "11.11.0.452");
    let kinds: std::collections::BTreeSet<&str> = v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["vendor"] == "Kaspersky")
        .flat_map(|d| {
            d["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["kind"].as_str().unwrap())
        })
        .collect();
    for k in ["uninstall_display_name", "registry_key", "file_path"] {
        assert!(kinds.contains(k), "no {k} evidence: {kinds:?}");
    }
    let snap = collect(&root, &dir.join("c.json"));
    assert!(
        snap["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Zoom" && p["user"] == "alice"),
        "{}",
        snap["packages"]
    );
    assert!(
        snap["other"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "security_center")
    );
}
