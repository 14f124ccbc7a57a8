//! The catalog from the outside: `muster catalog`, `muster-agent scan` with
//! policies, an operator's catalog folder at the collector, and precision
//! against every package name in Debian.

use muster_tests::*;
use std::collections::BTreeSet;
use std::path::Path;

fn scan_json(root: &Path, extra: &[&str]) -> (serde_json::Value, i32) {
    let out = run(cmd("muster-agent")
        .args(["scan", "--format", "json", "--root"])
        .arg(root)
        .args(extra));
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "scan output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, code)
}

fn product_ids(v: &serde_json::Value) -> BTreeSet<String> {
    v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["product_id"].as_str().unwrap().to_string())
        .collect()
}

const ACME: &str = r#"vendor = "Acme Security"

[[products]]
id = "acme.shield"
name = "Acme Shield"
category = "edr"
platforms = ["linux"]

[[products.indicators]]
kind = "package"
value = "acme-shield"
platform = "linux"
proves = "installed"
source = "internal packaging list"
"#;

const REQUIRE_EDR: &str = r#"id = "edr-everywhere"
name = "Every Linux host runs an EDR"
issued = "2026-01-01"

[[require]]
category = "edr"
platform = "linux"
"#;

#[test]
fn catalog_commands_check_list_and_show() {
    let out = ok(cmd("muster").args(["catalog", "check"]));
    assert!(out.contains(": ok"), "{out}");
    let list: serde_json::Value = serde_json::from_str(&ok(
        cmd("muster").args(["catalog", "list", "--format", "json"])
    ))
    .unwrap();
    let products = list["products"].as_array().unwrap();
    let vendors: BTreeSet<&str> = products
        .iter()
        .map(|p| p["vendor"].as_str().unwrap())
        .collect();
    assert!(vendors.len() >= 60, "{} vendors", vendors.len());
    let kaspersky: Vec<_> = products
        .iter()
        .filter(|p| p["vendor"] == "Kaspersky")
        .collect();
    assert!(
        kaspersky.len() >= 10,
        "{} Kaspersky products",
        kaspersky.len()
    );
    assert!(kaspersky.iter().all(|p| p["banned_by"][0] == "bod-17-01"));

    let table = ok(cmd("muster").args(["catalog", "list", "--vendor", "kaspersky"]));
    assert!(
        table.contains("kaspersky.endpoint-security-linux"),
        "{table}"
    );
    for line in table.lines() {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line}"
        );
    }
    let show = ok(cmd("muster").args(["catalog", "show", "kaspersky.endpoint-security-linux"]));
    assert!(
        show.contains("kesl")
            && show.contains("support.kaspersky.com")
            && show.contains("bod-17-01"),
        "{show}"
    );
    let err = fails(cmd("muster").args(["catalog", "show", "nope.nothing"]));
    assert!(err.contains("no product"), "{err}");
}

#[test]
fn a_broken_catalog_folder_is_refused_with_file_and_line() {
    let dir = TempDir::new("badcat");
    std::fs::write(dir.join("dup.toml"), ACME).unwrap();
    std::fs::write(
        dir.join("dup2.toml"),
        ACME.replace("Acme Security", "Acme Again"),
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.toml"),
        "vendor = \"B\"\n\n[[products]]\nid = \"b.b\"\nname = \"B\"\ncategory = \"antivirus\"\nplatforms = [\"linux\"]\n\n[[products.indicators]]\nkind = \"telepathy\"\nvalue = \"x\"\nplatform = \"linux\"\nproves = \"installed\"\nsource = \"s\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("noglob.toml"),
        ACME.replace("acme.shield", "acme.other")
            .replace(
                "value = \"acme-shield\"",
                "value = \"acme-*\"\nmatch = \"glob\"",
            )
            .replace("source = \"internal packaging list\"", "source = \"\""),
    )
    .unwrap();
    std::fs::write(dir.join("notes.yaml"), "a: [b\n").unwrap();
    let out = run(cmd("muster").args(["catalog", "check"]).arg(&dir.0));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "broken.toml:10: unknown variant `telepathy`",
        "product id \"acme.shield\" is also defined at",
        "noglob.toml:9:",
        "globs are not allowed",
        "names no source",
        "notes.yaml:0: not a catalog file",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
}

#[test]
fn scan_applies_policies_and_exits_3_when_asked() {
    let dir = TempDir::new("policy");
    let kasp = dir.join("kasp");
    linux_image(
        &kasp,
        "k1",
        &[
            ("kesl", "12.1", "install ok installed"),
            ("bash", "5", "install ok installed"),
        ],
        &[],
    );
    let (v, code) = scan_json(&kasp, &["--policy", "bod-17-01", "--fail-on", "banned"]);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["policy"]["policy"], "bod-17-01");
    assert_eq!(v["policy"]["verdict"], "fail");
    assert_eq!(
        v["policy"]["violations"][0]["product_id"],
        "kaspersky.endpoint-security-linux"
    );
    // The documented shape of a detection and its evidence.
    let d = &v["detections"][0];
    for key in [
        "product_id",
        "vendor",
        "product",
        "category",
        "state",
        "version",
        "evidence",
    ] {
        assert!(!d[key].is_null(), "detection lacks {key}: {d}");
    }
    for key in ["kind", "value", "matched", "location", "state"] {
        assert!(
            !d["evidence"][0][key].is_null(),
            "evidence lacks {key}: {d}"
        );
    }
    assert_eq!(v["errors"].as_array().unwrap().len(), 0);
    // Without --fail-on the verdict is printed but the exit status is 0.
    let (_, code) = scan_json(&kasp, &["--policy", "bod-17-01"]);
    assert_eq!(code, 0);
    let table = ok(cmd("muster-agent")
        .args(["scan", "--policy", "bod-17-01", "--root"])
        .arg(&kasp));
    assert!(
        table.contains("policy bod-17-01") && table.contains("FAIL"),
        "{table}"
    );
    for line in table.lines() {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line}"
        );
    }

    let clean = dir.join("clean");
    linux_image(&clean, "c1", &[("bash", "5", "install ok installed")], &[]);
    let (v, code) = scan_json(&clean, &["--policy", "bod-17-01", "--fail-on", "banned"]);
    assert_eq!(code, 0);
    assert_eq!(v["policy"]["verdict"], "pass");

    // A policy and a product of the operator's own, from a catalog folder.
    let cat = dir.join("catalog");
    std::fs::create_dir_all(&cat).unwrap();
    std::fs::write(cat.join("acme.toml"), ACME).unwrap();
    std::fs::write(cat.join("edr-everywhere.toml"), REQUIRE_EDR).unwrap();
    let cat_arg = cat.to_str().unwrap();
    let (v, code) = scan_json(
        &clean,
        &[
            "--catalog-dir",
            cat_arg,
            "--policy",
            "edr-everywhere",
            "--fail-on",
            "missing-required",
        ],
    );
    assert_eq!(code, 3);
    assert_eq!(
        v["policy"]["missing_required"][0],
        "require category edr on linux"
    );
    let edr = dir.join("edr");
    linux_image(
        &edr,
        "e1",
        &[("acme-shield", "2.0", "install ok installed")],
        &[],
    );
    let (v, code) = scan_json(
        &edr,
        &[
            "--catalog-dir",
            cat_arg,
            "--policy",
            "edr-everywhere",
            "--fail-on",
            "missing-required,banned",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(product_ids(&v), BTreeSet::from(["acme.shield".to_string()]));

    let err = fails(
        cmd("muster-agent")
            .args(["scan", "--policy", "no-such-policy", "--root"])
            .arg(&clean),
    );
    assert!(
        err.contains("no policy \"no-such-policy\"") && err.contains("bod-17-01"),
        "{err}"
    );
}

#[test]
fn an_unreadable_source_is_reported_not_fatal_for_scan() {
    let dir = TempDir::new("unreadable");
    let root = dir.join("root");
    linux_image(&root, "u1", &[], &["kesl.service"]);
    // A status "file" that cannot be read as one.
    std::fs::remove_file(root.join("var/lib/dpkg/status")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg/status")).unwrap();
    let (v, code) = scan_json(&root, &[]);
    assert_eq!(code, 0);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["source"], "dpkg");
    assert!(
        errors[0]["reason"]
            .as_str()
            .unwrap()
            .contains("var/lib/dpkg/status"),
        "{v}"
    );
    // The other sources still ran.
    assert!(product_ids(&v).contains("kaspersky.endpoint-security-linux"));
}

#[test]
fn the_collector_uses_the_operators_catalog_folder() {
    let c = Collector::start_with(|data| {
        let cat = data.join("catalog");
        std::fs::create_dir_all(&cat).unwrap();
        std::fs::write(cat.join("acme.toml"), ACME).unwrap();
        let cfg = data.join("collector.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(
            cfg,
            format!("{text}\ncatalog_dir = \"{}\"\n", cat.display()),
        )
        .unwrap();
    });
    ok(cmd("muster-collector")
        .args(["config", "check", "--data-dir"])
        .arg(c.data()));
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
    // The agent's built-in catalog does not know Acme; the collector's does,
    // and the collector is the authority.
    let h = &c.hosts()[0];
    assert_eq!(h["detections"][0]["product_id"], "acme.shield");
    assert_eq!(h["detections"][0]["version"], "2.0");

    // A broken folder is caught by config check before serving.
    std::fs::write(c.data().join("catalog/broken.toml"), "vendor = \n").unwrap();
    let err = fails(
        cmd("muster-collector")
            .args(["config", "check", "--data-dir"])
            .arg(c.data()),
    );
    assert!(
        err.contains("catalog_dir") && err.contains("broken.toml"),
        "{err}"
    );
}

/// Every one of Debian bookworm's 63 694 package names installed at once:
/// only real security products may be detected, and these are the ones.
#[test]
fn every_debian_package_name_yields_only_real_security_products() {
    let Some(names) = fixture("package-names/debian-bookworm.txt") else {
        return;
    };
    let text = std::fs::read_to_string(&names).unwrap();
    let dir = TempDir::new("debian");
    let root = dir.join("root");
    let pkgs: Vec<(&str, &str, &str)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|n| (n.trim(), "1.0", "install ok installed"))
        .collect();
    assert!(pkgs.len() > 60_000, "{} names", pkgs.len());
    linux_image(&root, "all-of-debian", &pkgs, &[]);
    let (v, code) = scan_json(&root, &[]);
    assert_eq!(code, 0);
    let found = product_ids(&v);
    let expected: BTreeSet<String> = [
        "aide.aide",
        "chkrootkit.chkrootkit",
        "clamav.clamav",
        "crowdsec.custom-bouncer",
        "crowdsec.firewall-bouncer",
        "crowdsec.security-engine",
        "fail2ban.fail2ban",
        "keepass.keepass2",
        "keepass.keepassxc",
        "lynis.lynis",
        "rkhunter.rkhunter",
        "samhain.samhain",
        "tripwire.open-source",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        found, expected,
        "detections from Debian's package names changed"
    );
    // Every piece of evidence is an exact package name, never a fragment.
    for d in v["detections"].as_array().unwrap() {
        for e in d["evidence"].as_array().unwrap() {
            assert_eq!(e["kind"], "package");
            assert_eq!(e["value"], e["matched"], "{e}");
        }
    }
}

/// The real Windows 7 SYSTEM hive (McAfee VirusScan Enterprise, and Windows
/// Defender set to manual start) placed in an image: both vendors are found
/// with their services as evidence, and the image's own computer name.
#[test]
fn a_windows_7_image_yields_mcafee_and_defender() {
    let Some(hive) = fixture("windows-registry/regipy_SYSTEM") else {
        return;
    };
    let dir = TempDir::new("win7");
    // Folder names on a Windows volume come in any case.
    let config = dir.join("win7/WINDOWS/system32/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::copy(&hive, config.join("SYSTEM")).unwrap();
    let (v, code) = scan_json(
        &dir.join("win7"),
        &["--policy", "bod-17-01", "--fail-on", "banned"],
    );
    assert_eq!(code, 0, "no Kaspersky on this image: {}", v["policy"]);
    assert_eq!(v["host"]["hostname"], "WKS-WIN732BITA");
    assert_eq!(v["host"]["platform"], "windows");
    let ids = product_ids(&v);
    assert!(ids.contains("trellix.virusscan-enterprise"), "{ids:?}");
    assert!(ids.contains("microsoft.defender-antivirus"), "{ids:?}");
    let text = v["detections"].to_string();
    assert!(
        text.contains("McShield") && text.contains("mfehidk.sys"),
        "{text}"
    );
    assert!(
        text.contains("HKLM\\\\SYSTEM\\\\ControlSet001\\\\Services\\\\WinDefend"),
        "{text}"
    );
    // Nothing of Linux is matched against a Windows image.
    assert!(!ids.iter().any(|i| i.contains("linux")), "{ids:?}");
}
