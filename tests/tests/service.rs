//! The agent as a service: `config check` (the unit's ExecStartPre), the
//! reaction to a revocation, and the Debian package installed into this
//! machine (CI only); the collector's Debian package and example config.

use muster_tests::*;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Starts `muster-agent run` (not --once) logging to `log`, and waits until
/// the log says `what`: the running agent and its log so far.
fn run_until_logged(
    state: &Path,
    root: &Path,
    log: &Path,
    what: &str,
) -> (std::process::Child, String) {
    let agent = agent_run(state, root, &[], std::fs::File::create(log).unwrap().into());
    let said = wait_for(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.contains(what).then_some(text)
    })
    .unwrap_or_else(|| panic!("the agent never logged {what:?}"));
    (agent, said)
}

fn config_check(state: &Path) -> std::process::Output {
    run(cmd("muster-agent")
        .args(["config", "check", "--state-dir"])
        .arg(state))
}

/// An enrolled folder passes; a broken one fails with status 2 (the unit
/// does not restart on it) naming every problem.
#[test]
fn config_check_names_what_is_wrong_with_the_state_folder() {
    let c = Collector::start();
    let state = c.dir.join("agent");
    c.enroll(&state);
    let out = config_check(&state);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("config OK") && text.contains(&c.url()),
        "{text}"
    );
    assert!(text.contains("certificate valid until"), "{text}");

    // Not enrolled.
    let out = config_check(&c.dir.join("nowhere"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("enroll"));

    // A key that is not the certificate's, and a CA from elsewhere.
    let other = c.dir.join("other");
    c.enroll(&other);
    std::fs::copy(other.join("key.pem"), state.join("key.pem")).unwrap();
    let (foreign, _) = muster_collector::pki::Authority::generate("elsewhere").unwrap();
    std::fs::write(state.join("ca.pem"), &foreign.cert_pem).unwrap();
    let out = config_check(&state);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not belong to its certificate"), "{err}");

    std::fs::copy(other.join("key.pem"), state.join("key.pem")).unwrap();
    std::fs::remove_file(state.join("cert.pem")).unwrap();
    let out = config_check(&state);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read the agent's certificate"), "{err}");
}

/// A revoked host's agent says so once and waits (hours), instead of
/// retrying every minute; its state and history stay on the collector.
#[test]
fn a_revoked_agent_says_so_and_stops_retrying() {
    let c = Collector::start();
    let (state, root) =
        c.agent_with_image("revoked-host", &[("bash", "5.2", "install ok installed")]);
    let once = || agent_once(&state, &root);
    assert!(once().status.success());
    let id = c.hosts()[0]["id"].as_str().unwrap().to_string();
    c.muster(&["hosts", "revoke", &id]);
    let out = once();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("this host was revoked"), "{err}");

    let log = c.dir.join("agent.log");
    let (mut agent, said) = run_until_logged(&state, &root, &log, "an operator revoked it");
    assert!(said.contains("retry_in=\"6h\""), "{said}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("an operator revoked it").count(), 1, "{text}");
    let _ = agent.kill();
    let _ = agent.wait();
    let h = c.muster(&["host", &id]);
    assert!(h.contains("REVOKED"), "{h}");
}

/// Whether the package tests run (MUSTER_TEST_PACKAGES=1, as `.ci/run`
/// sets); if not, says what was skipped.
fn packages_enabled(what: &str) -> bool {
    let on = std::env::var("MUSTER_TEST_PACKAGES").as_deref() == Ok("1");
    if !on {
        eprintln!("skipped: set MUSTER_TEST_PACKAGES=1 (as .ci/run does) to {what}");
    }
    on
}

/// Runs `cargo ARGS` in the workspace (with `-o OUT` when a package of
/// extension `ext` is expected) and returns that package.
fn package(args: &[&str], out: &Path, ext: &str) -> std::path::PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut c = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    c.current_dir(workspace).args(args);
    if !ext.is_empty() {
        c.arg("-o").arg(out);
    }
    let run = c.output().unwrap();
    assert!(
        run.status.success(),
        "cargo {args:?} (cargo-deb and cargo-generate-rpm are installed by cargo install): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == ext))
        .unwrap_or_else(|| {
            assert!(ext.is_empty(), "no .{ext} in {}", out.display());
            Default::default()
        })
}

/// dpkg takes one package operation at a time: the package tests that
/// install take turns.
static DPKG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sh(program: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn must(program: &str, args: &[&str]) -> String {
    let out = sh(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The Debian package, built with cargo-deb and installed into this
/// machine: files and modes, the service user and state folder, a unit
/// systemd accepts; `dpkg -r` keeps the state, `dpkg -P` deletes it. It
/// changes the machine, so it runs only where MUSTER_TEST_PACKAGES=1 (as
/// `.ci/run` sets) and as root.
#[test]
fn the_debian_package_installs_and_removes_cleanly() {
    if !packages_enabled("install the package into this machine") {
        return;
    }
    assert_eq!(
        must("id", &["-u"]).trim(),
        "0",
        "installing a package needs root"
    );
    let _turn = DPKG.lock().unwrap_or_else(|e| e.into_inner());
    let out = TempDir::new("deb");
    let deb = package(
        &["deb", "-p", "muster-agent", "--profile", "dist"],
        &out.0,
        "deb",
    );
    let deb = deb.to_str().unwrap();
    let listing = must("dpkg-deb", &["-c", deb]);
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/muster-agent"),
        ("-rw-r--r--", "./lib/systemd/system/muster-agent.service"),
        (
            "-rw-r--r--",
            "./usr/share/doc/muster-agent/agent.toml.example",
        ),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{path} with {mode}:\n{listing}"
        );
    }

    must("dpkg", &["-i", deb]);
    let installed = (|| -> Result<(), String> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = |p: &str| std::fs::metadata(p).map_err(|e| format!("{p}: {e}"));
        let bin = meta("/usr/bin/muster-agent")?;
        if bin.permissions().mode() & 0o777 != 0o755 {
            return Err(format!(
                "/usr/bin/muster-agent mode {:o}",
                bin.permissions().mode()
            ));
        }
        // The shipped build (the `dist` profile): the footprint goal.
        if bin.len() >= 10 * 1024 * 1024 {
            return Err(format!("/usr/bin/muster-agent is {} bytes", bin.len()));
        }
        let uid: u32 = must("id", &["-u", "muster-agent"]).trim().parse().unwrap();
        let state = meta("/var/lib/muster-agent")?;
        if !state.is_dir() || state.permissions().mode() & 0o777 != 0o700 || state.uid() != uid {
            return Err(format!(
                "/var/lib/muster-agent: dir {} mode {:o} uid {} (want 0700, {uid})",
                state.is_dir(),
                state.permissions().mode(),
                state.uid()
            ));
        }
        installed_unit(
            "muster-agent",
            &[
                "NoNewPrivileges=yes",
                "ProtectSystem=strict",
                "User=muster-agent",
            ],
        )?;
        let v = must("/usr/bin/muster-agent", &["--version"]);
        if !v.contains(env!("CARGO_PKG_VERSION")) {
            return Err(format!("installed agent says {v}"));
        }
        Ok(())
    })();
    // Something the agent keeps: remove leaves it, purge deletes it.
    std::fs::write("/var/lib/muster-agent/agent.toml", "collector = \"x\"\n").unwrap();
    let removed = sh("dpkg", &["-r", "muster-agent"]);
    let kept = Path::new("/var/lib/muster-agent/agent.toml").exists();
    let gone = !Path::new("/usr/bin/muster-agent").exists();
    let purged = sh("dpkg", &["-P", "muster-agent"]);
    installed.unwrap();
    assert!(removed.status.success() && purged.status.success());
    assert!(gone, "dpkg -r removes the program");
    assert!(kept, "dpkg -r keeps the agent's state");
    assert!(
        !Path::new("/var/lib/muster-agent").exists(),
        "dpkg -P deletes the state"
    );
}

/// The control member `name` of the package `deb` (a maintainer script).
fn control_member(deb: &str, name: &str) -> String {
    must("dpkg-deb", &["-I", deb, name])
}

/// The collector's Debian package: its files and modes and maintainer
/// scripts read with dpkg-deb, then installed into this machine: the
/// `muster` user, a collector initialised for the name given at install,
/// owned by that user, which can serve it (also after a backup and a
/// restore run as root); a reinstall keeps the CA; `dpkg -r` keeps the
/// data folder, `dpkg -P` deletes it. Runs where MUSTER_TEST_PACKAGES=1,
/// as root.
#[test]
fn the_collector_debian_package_installs_and_removes_cleanly() {
    if !packages_enabled("install the collector's package into this machine") {
        return;
    }
    assert_eq!(
        must("id", &["-u"]).trim(),
        "0",
        "installing a package needs root"
    );
    let _turn = DPKG.lock().unwrap_or_else(|e| e.into_inner());
    const DATA: &str = "/var/lib/muster-collector";
    let out = TempDir::new("deb-collector");
    let deb = package(
        &["deb", "-p", "muster-collector", "--profile", "dist"],
        &out.0,
        "deb",
    );
    let deb = deb.to_str().unwrap();
    let listing = must("dpkg-deb", &["-c", deb]);
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/muster-collector"),
        ("-rwxr-xr-x", "./usr/bin/muster"),
        (
            "-rw-r--r--",
            "./lib/systemd/system/muster-collector.service",
        ),
        (
            "-rw-r--r--",
            "./usr/share/doc/muster-collector/collector.toml.example",
        ),
        (
            "-rw-r--r--",
            "./usr/share/doc/muster-collector/collector-service.md",
        ),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path) && l.contains(" 0/0 ")),
            "{path} with {mode}, owned by root:\n{listing}"
        );
    }
    let info = must("dpkg-deb", &["-I", deb]);
    assert!(info.contains("Package: muster-collector"), "{info}");
    assert!(info.contains("adduser"), "depends on adduser: {info}");
    // The scripts are there, executable (`*` in dpkg-deb's list), valid
    // shell, and do what the docs say.
    for script in ["postinst", "prerm", "postrm"] {
        assert!(
            info.lines()
                .any(|l| l.contains(" * ") && l.split_whitespace().any(|w| w == script)),
            "{script} executable:\n{info}"
        );
        let p = out.join(script);
        std::fs::write(&p, control_member(deb, script)).unwrap();
        must("sh", &["-n", p.to_str().unwrap()]);
    }
    let postinst = control_member(deb, "postinst");
    for needle in [
        "adduser --system --group",
        "install -d -m 0700 -o muster -g muster \"$DATA\"",
        "if [ -z \"$(ls -A \"$DATA\")\" ]; then",
        "/usr/bin/muster-collector init --data-dir \"$DATA\" --server-name \"$name\"",
        "chown -R muster:muster \"$DATA\"",
    ] {
        assert!(
            postinst.contains(needle),
            "postinst lacks {needle}:\n{postinst}"
        );
    }
    assert!(
        !postinst
            .lines()
            .any(|l| l.trim_start().starts_with("systemctl enable")),
        "enabled before the config is reviewed: {postinst}"
    );
    let prerm = control_member(deb, "prerm");
    assert!(
        prerm.contains("systemctl stop muster-collector.service"),
        "{prerm}"
    );
    let postrm = control_member(deb, "postrm");
    let purge = postrm
        .find("if [ \"$1\" = \"purge\" ]; then")
        .unwrap_or_else(|| panic!("{postrm}"));
    let delete = postrm.find("rm -rf /var/lib/muster-collector").unwrap();
    assert!(delete > purge, "data deleted on purge only: {postrm}");

    // A clean machine: an earlier failed run's package and folder gone.
    let _ = sh("dpkg", &["-P", "muster-collector"]);
    assert!(
        !Path::new(DATA).exists(),
        "{DATA} is left from an earlier run; remove it"
    );
    let installed = std::process::Command::new("dpkg")
        .args(["-i", deb])
        .env("MUSTER_SERVER_NAME", "collector.test")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&installed.stdout).to_string();
    assert!(
        installed.status.success(),
        "dpkg -i: {said}{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let checked = (|| -> Result<Vec<u8>, String> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = |p: &str| std::fs::metadata(p).map_err(|e| format!("{p}: {e}"));
        if !said.contains("a new collector for \"collector.test\"") {
            return Err(format!("postinst said: {said}"));
        }
        for bin in ["/usr/bin/muster-collector", "/usr/bin/muster"] {
            if meta(bin)?.permissions().mode() & 0o777 != 0o755 {
                return Err(format!("{bin} is not 0755"));
            }
            let help = sh(bin, &["--help"]);
            if !help.status.success() || !String::from_utf8_lossy(&help.stdout).contains("Example:")
            {
                return Err(format!("{bin} --help: {help:?}"));
            }
        }
        let uid: u32 = must("id", &["-u", "muster"]).trim().parse().unwrap();
        let data = meta(DATA)?;
        if !data.is_dir() || data.permissions().mode() & 0o777 != 0o700 || data.uid() != uid {
            return Err(format!(
                "{DATA}: mode {:o} uid {} (want 0700, {uid})",
                data.permissions().mode(),
                data.uid()
            ));
        }
        for (file, mode) in [
            ("ca.pem", 0o644),
            ("ca-key.pem", 0o600),
            ("server-key.pem", 0o600),
            ("collector.toml", 0o600),
            ("muster.db", 0),
        ] {
            let m = meta(&format!("{DATA}/{file}"))?;
            if m.uid() != uid || (mode != 0 && m.permissions().mode() & 0o777 != mode) {
                return Err(format!(
                    "{file}: uid {} mode {:o}",
                    m.uid(),
                    m.permissions().mode()
                ));
            }
        }
        let server = std::fs::read(format!("{DATA}/server.pem")).map_err(|e| e.to_string())?;
        let der = rustls_pemfile::certs(&mut server.as_slice())
            .next()
            .unwrap()
            .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let names = format!("{:?}", cert.subject_alternative_name());
        if !names.contains("collector.test") {
            return Err(format!("the server certificate names {names}"));
        }
        installed_unit(
            "muster-collector",
            &[
                "User=muster",
                "ExecStart=/usr/bin/muster-collector serve --data-dir /var/lib/muster-collector",
                "ExecReload=/bin/kill -HUP $MAINPID",
                "NoNewPrivileges=yes",
                "ProtectSystem=strict",
                "CapabilityBoundingSet=\n",
            ],
        )?;
        // The unit's ExecStartPre.
        must(
            "/usr/bin/muster-collector",
            &["config", "check", "--data-dir", DATA],
        );
        // Backup and restore as root leave files the service's user owns.
        let backup = out.join("installed.db");
        let backup = backup.to_str().unwrap();
        must(
            "/usr/bin/muster-collector",
            &["backup", "--data-dir", DATA, "--out", backup],
        );
        must(
            "/usr/bin/muster-collector",
            &["restore", "--data-dir", DATA, "--from", backup],
        );
        if meta(&format!("{DATA}/muster.db"))?.uid() != uid {
            return Err("the restored database is not the service user's".into());
        }
        // The service's user serves the folder as installed.
        let port = free_port();
        // setpriv execs the collector (runuser would fork, and the kill
        // below would miss it).
        let mut serving = std::process::Command::new("setpriv")
            .args(["--reuid=muster", "--regid=muster", "--init-groups"])
            .args(["/usr/bin/muster-collector", "serve"])
            .args(["--data-dir", DATA, "--listen", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let listening = wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let _ = serving.kill();
        let ended = serving.wait_with_output().map_err(|e| e.to_string())?;
        if listening.is_none() {
            return Err(format!(
                "the muster user cannot serve {DATA}: {}",
                String::from_utf8_lossy(&ended.stderr)
            ));
        }
        std::fs::read(format!("{DATA}/ca.pem")).map_err(|e| e.to_string())
    })();
    // A reinstall keeps the collector: same CA.
    let again = sh("dpkg", &["-i", deb]);
    let ca_after = std::fs::read(format!("{DATA}/ca.pem")).ok();
    let removed = sh("dpkg", &["-r", "muster-collector"]);
    let kept =
        Path::new(DATA).join("ca.pem").exists() && Path::new(DATA).join("muster.db").exists();
    let gone = !Path::new("/usr/bin/muster-collector").exists();
    let purged = sh("dpkg", &["-P", "muster-collector"]);
    let ca = checked.unwrap();
    assert!(again.status.success(), "{again:?}");
    assert_eq!(ca_after.as_ref(), Some(&ca), "a reinstall keeps the CA");
    assert!(removed.status.success() && purged.status.success());
    assert!(gone, "dpkg -r removes the programs");
    assert!(kept, "dpkg -r keeps the CA and the fleet");
    assert!(!Path::new(DATA).exists(), "dpkg -P deletes the data folder");
}

/// The example collector.toml shipped in the package is a valid config.
#[test]
fn the_packaged_example_config_is_valid() {
    let dir = TempDir::new("example-config");
    let data = dir.join("c");
    ok(cmd("muster-collector")
        .args(["init", "--server-name", "localhost", "--data-dir"])
        .arg(&data));
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/linux/collector.toml.example"),
        data.join("collector.toml"),
    )
    .unwrap();
    let said = ok(cmd("muster-collector")
        .args(["config", "check", "--data-dir"])
        .arg(&data));
    assert!(said.contains("ok (listen 0.0.0.0:8443"), "{said}");
}

/// The RPM, built with cargo-generate-rpm and read with `rpm` (the CI
/// machine is Debian, so it is not installed): the files with their modes
/// and owners, and the scriptlets that make the user and the 0700 state
/// folder and stop and disable the unit on erase. Runs where
/// MUSTER_TEST_PACKAGES=1, as the Debian package test.
#[test]
fn the_rpm_package_holds_the_files_and_scriptlets() {
    if !packages_enabled("build the RPM (needs cargo-generate-rpm and rpm)") {
        return;
    }
    let out = TempDir::new("rpm");
    // cargo-generate-rpm packs what is built; it does not build.
    package(
        &["build", "--profile", "dist", "-p", "muster-agent"],
        &out.0,
        "",
    );
    let rpm = package(
        &["generate-rpm", "-p", "agent", "--profile", "dist"],
        &out.0,
        "rpm",
    );
    let rpm = rpm.to_str().unwrap();
    let name = must("rpm", &["-qp", "--qf", "%{NAME} %{VERSION}", rpm]);
    assert_eq!(name, format!("muster-agent {}", env!("CARGO_PKG_VERSION")));
    let listing = must("rpm", &["-qlvp", rpm]);
    for (mode, path) in [
        ("-rwxr-xr-x", "/usr/bin/muster-agent"),
        ("-rw-r--r--", "/usr/lib/systemd/system/muster-agent.service"),
        (
            "-rw-r--r--",
            "/usr/share/doc/muster-agent/agent.toml.example",
        ),
        ("-rw-r--r--", "/usr/share/doc/muster-agent/agent-service.md"),
    ] {
        assert!(
            listing.lines().any(|l| l.starts_with(mode)
                && l.ends_with(path)
                && l.split_whitespace().nth(2) == Some("root")),
            "{path} with {mode}, owned by root:\n{listing}"
        );
    }
    assert_eq!(listing.lines().count(), 4, "nothing else:\n{listing}");
    let scripts = must("rpm", &["-qp", "--scripts", rpm]);
    // "preinstall scriptlet (using /bin/sh):" heads each one; the
    // interpreter must be named (the package sets it, as rpmbuild does).
    let mut sections = std::collections::HashMap::<String, String>::new();
    let mut current = String::new();
    for line in scripts.lines() {
        match line.split_once(" scriptlet (using ") {
            Some((name, prog)) => {
                assert_eq!(prog, "/bin/sh):", "{line}");
                current = name.to_string();
            }
            None => {
                let text = sections.entry(current.clone()).or_default();
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    let section = |name: &str| -> String {
        sections
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} scriptlet:\n{scripts}"))
    };
    let pre = section("preinstall");
    assert!(
        pre.contains("groupadd --system muster-agent") && pre.contains("useradd --system"),
        "{pre}"
    );
    let post = section("postinstall");
    assert!(
        post.contains("install -d -m 0700 -o muster-agent -g muster-agent /var/lib/muster-agent"),
        "{post}"
    );
    assert!(
        !post.contains("systemctl enable"),
        "enabled before enrollment: {post}"
    );
    let preun = section("preuninstall");
    assert!(
        preun.contains("[ \"$1\" -eq 0 ]")
            && preun.contains("systemctl stop muster-agent.service")
            && preun.contains("systemctl disable muster-agent.service"),
        "{preun}"
    );
    let postun = section("postuninstall");
    assert!(postun.contains("daemon-reload"), "{postun}");
    // The scriptlets are valid shell.
    for f in ["pre", "post", "preun", "postun"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/linux/rpm")
            .join(f);
        must("sh", &["-n", p.to_str().unwrap()]);
    }
}

/// Agent certificates are renewed with a new key: on demand (`muster-agent
/// renew`) and by itself once two thirds of the certificate's life have
/// passed; the collector records the new serial and a timeline event; a
/// revoked host gets no new certificate.
#[test]
fn certificates_are_renewed_with_a_new_key_before_they_expire() {
    use muster_collector::pki::{Authority, Role};
    let c = Collector::start();
    let (state, root) = c.agent_with_image("renewing", &[("bash", "5.2", "install ok installed")]);
    let once = || agent_once(&state, &root);
    assert!(once().status.success());
    let id = c.hosts()[0]["id"].as_str().unwrap().to_string();
    let host = || -> serde_json::Value {
        serde_json::from_str(&c.muster(&["host", &id, "--format", "json"])).unwrap()
    };
    let read = |f: &str| std::fs::read_to_string(state.join(f)).unwrap();
    let (key0, cert0, serial0) = (
        read("key.pem"),
        read("cert.pem"),
        host()["certificate_serial"].clone(),
    );

    let out = ok(cmd("muster-agent")
        .args(["renew", "--state-dir"])
        .arg(&state));
    assert!(out.contains("certificate renewed with a new key"), "{out}");
    assert_ne!(read("key.pem"), key0, "a new key");
    assert_ne!(read("cert.pem"), cert0);
    let h = host();
    assert_ne!(h["certificate_serial"], serial0, "{h}");
    assert!(
        h["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "certificate_renewed"),
        "{h}"
    );
    assert!(
        once().status.success(),
        "check-ins go on with the new identity"
    );

    // A certificate 20 of its 30 days old: the next check-in renews it.
    let ca = Authority::load(
        &std::fs::read_to_string(c.data().join("ca.pem")).unwrap(),
        &std::fs::read_to_string(c.data().join("ca-key.pem")).unwrap(),
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let aged = ca
        .client_cert_between(
            Role::Agent,
            &id,
            now - time::Duration::days(20) - time::Duration::minutes(1),
            now + time::Duration::days(10) - time::Duration::minutes(1),
        )
        .unwrap();
    std::fs::write(state.join("cert.pem"), &aged.cert_pem).unwrap();
    std::fs::write(state.join("key.pem"), &aged.key_pem).unwrap();
    let out = once();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("certificate renewed with a new key"), "{log}");
    assert_ne!(read("cert.pem"), aged.cert_pem);
    let check = ok(cmd("muster-agent")
        .args(["config", "check", "--state-dir"])
        .arg(&state));
    assert!(
        check.contains("(29 days)") || check.contains("(30 days)"),
        "{check}"
    );

    // Revoked: no new certificate.
    c.muster(&["hosts", "revoke", &id]);
    let err = fails(
        cmd("muster-agent")
            .args(["renew", "--state-dir"])
            .arg(&state),
    );
    assert!(err.contains("revoked"), "{err}");
}

/// The sequence numbers of every check-in the collector stored for its
/// one host, in the order it received them. Within one second the log is
/// ordered by sequence, but a check-in older than one already stored is
/// answered without being logged: a report delivered out of order is
/// missing here, and one applied twice is here twice (within one second,
/// the log's key refuses the second).
fn stored_sequences(c: &Collector) -> Vec<i64> {
    let db = c.data().join("muster.db");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
            .await
            .unwrap();
        let rows: Vec<i64> =
            sqlx::query_scalar("SELECT sequence FROM checkins ORDER BY received_at, sequence")
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        rows
    })
}

fn set_addresses(state: &Path, collector: &str, fallback: &[&str]) {
    let path = state.join("agent.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let id = text
        .lines()
        .find(|l| l.starts_with("agent_id"))
        .unwrap()
        .to_string();
    let list: Vec<String> = fallback.iter().map(|u| format!("{u:?}")).collect();
    std::fs::write(
        path,
        format!(
            "collector = {collector:?}\n{id}\nfallback = [{}]\n",
            list.join(", ")
        ),
    )
    .unwrap();
}

/// The collector down for several check-ins, then up: every spooled report
/// arrives, in order. An address that does not answer is passed over for
/// the next one in the configuration.
#[test]
fn reports_spooled_through_an_outage_all_arrive_in_order() {
    let mut c = Collector::start();
    let state = c.dir.join("agent");
    c.enroll(&state);
    let root = c.dir.join("img");
    let once = |pkgs: &[(&str, &str, &str)]| {
        linux_image(&root, "outage", pkgs, &[]);
        agent_once(&state, &root)
    };
    let bash = ("bash", "5.2", "install ok installed");
    let kesl = ("kesl", "12.1", "install ok installed");
    assert!(once(&[bash]).status.success());
    c.kill();
    for pkgs in [&[bash, kesl][..], &[bash], &[bash, kesl]] {
        let out = once(pkgs);
        assert!(
            !out.status.success(),
            "a check-in succeeded with the collector down"
        );
    }
    let spooled = std::fs::read_dir(state.join("spool")).unwrap().count();
    assert_eq!(spooled, 3, "three reports wait in the spool");
    c.restart();
    // The first address answers nothing; the second is the collector.
    let dead = format!("https://localhost:{}", free_port());
    set_addresses(&state, &dead, &[&c.url()]);
    let out = once(&[bash, kesl]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("trying the next address"), "{log}");
    assert_eq!(
        stored_sequences(&c),
        vec![1, 2, 3, 4, 5],
        "every report, in order"
    );
    assert_eq!(std::fs::read_dir(state.join("spool")).unwrap().count(), 0);
    // The timeline saw kesl come, go and come back.
    let id = c.hosts()[0]["id"].as_str().unwrap().to_string();
    let h: serde_json::Value =
        serde_json::from_str(&c.muster(&["host", &id, "--format", "json"])).unwrap();
    let kinds: Vec<&str> = h["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["enrolled", "detected", "removed", "detected"],
        "{h}"
    );
}

/// A TCP relay to `upstream` that passes the client's bytes on at once and
/// the server's three seconds late: a collector's acknowledgement is on its
/// way long after the collector stored the report.
fn slow_relay(upstream: u16) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in l.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut from_client, mut to_server) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut to_server);
            });
            let (tx, rx) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
            let mut from_server = server;
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n @ 1..) = std::io::Read::read(&mut from_server, &mut buf) {
                    let _ = tx.send((std::time::Instant::now(), buf[..n].to_vec()));
                }
            });
            let mut to_client = client;
            std::thread::spawn(move || {
                for (at, bytes) in rx {
                    std::thread::sleep(
                        (at + Duration::from_secs(3))
                            .saturating_duration_since(std::time::Instant::now()),
                    );
                    if std::io::Write::write_all(&mut to_client, &bytes).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// The agent killed (SIGKILL) while it waits for the acknowledgement of a
/// report the collector has already stored: the report stays in the spool,
/// is sent again, and the collector takes the replay as a duplicate.
#[test]
fn an_agent_killed_mid_send_loses_nothing_and_applies_nothing_twice() {
    let c = Collector::start();
    let (state, root) = c.agent_with_image("killed", &[("kesl", "12.1", "install ok installed")]);
    let relay = slow_relay(c.port);
    set_addresses(&state, &format!("https://localhost:{relay}"), &[]);
    let mut agent = agent_run(&state, &root, &["--once"], Stdio::null());
    wait_for(Duration::from_secs(60), || {
        c.log().contains("check-in accepted").then_some(())
    })
    .unwrap_or_else(|| panic!("the collector never stored the report: {}", c.log()));
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(
        std::fs::read_dir(state.join("spool")).unwrap().count(),
        1,
        "the unacknowledged report stays in the spool"
    );
    set_addresses(&state, &c.url(), &[]);
    let out = agent_once(&state, &root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(c.log().contains("check-in already stored"), "{}", c.log());
    assert_eq!(
        stored_sequences(&c),
        vec![1, 2],
        "report 1 once, then the next"
    );
    let id = c.hosts()[0]["id"].as_str().unwrap().to_string();
    let h: serde_json::Value =
        serde_json::from_str(&c.muster(&["host", &id, "--format", "json"])).unwrap();
    let detected = h["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "detected")
        .count();
    assert_eq!(detected, 1, "{h}");
}

/// A state folder the agent cannot write (here its spool replaced by a
/// file, which fails even for root; a full disk fails the same write): a
/// clear error in the log, the agent keeps running, and recovers.
#[test]
fn an_unwritable_spool_is_reported_and_the_agent_recovers() {
    let c = Collector::start();
    let (state, root) = c.agent_with_image("full-disk", &[("bash", "5.2", "install ok installed")]);
    let spool = state.join("spool");
    let _ = std::fs::remove_dir_all(&spool);
    std::fs::write(&spool, "not a folder").unwrap();
    let log = c.dir.join("agent.log");
    let (mut agent, said) = run_until_logged(&state, &root, &log, "check-in failed");
    assert!(
        said.contains(&spool.display().to_string()),
        "the error names the path: {said}"
    );
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    std::fs::remove_file(&spool).unwrap();
    wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("check-in acknowledged")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no recovery: {}", std::fs::read_to_string(&log).unwrap()));
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(c.hosts()[0]["hostname"], "full-disk");
}

/// The certificate the collector presents to a new connection (DER).
fn served_certificate(c: &Collector) -> Vec<u8> {
    try_served_certificate(c).unwrap()
}

/// Like [`served_certificate`], or why the handshake failed: until a
/// reload is done, the collector may present a certificate that the CA
/// bundle now on disk no longer verifies.
fn try_served_certificate(c: &Collector) -> Result<Vec<u8>, String> {
    let ca = std::fs::read(c.data().join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let port = c.port;
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
        })
}

/// A new server certificate is taken on SIGHUP, without a restart, by the
/// next connections; a bad one is refused with a log line and the current
/// one kept.
#[test]
fn the_server_certificate_is_replaced_on_sighup() {
    use muster_collector::pki::Authority;
    let c = Collector::start();
    let state = c.dir.join("agent");
    c.enroll(&state);
    let before = served_certificate(&c);
    let ca = Authority::load(
        &std::fs::read_to_string(c.data().join("ca.pem")).unwrap(),
        &std::fs::read_to_string(c.data().join("ca-key.pem")).unwrap(),
    )
    .unwrap();
    let fresh = ca.server_cert("localhost").unwrap();
    std::fs::write(c.data().join("server.pem"), &fresh.cert_pem).unwrap();
    std::fs::write(c.data().join("server-key.pem"), &fresh.key_pem).unwrap();
    c.signal("HUP");
    let after = wait_for(Duration::from_secs(10), || {
        let now = served_certificate(&c);
        (now != before).then_some(now)
    })
    .unwrap_or_else(|| panic!("the new certificate was not served: {}", c.log()));
    let fresh_der: Vec<u8> = rustls_pemfile::certs(&mut fresh.cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec();
    assert_eq!(after, fresh_der);
    assert!(
        c.log()
            .contains("server certificate and CA bundle reloaded")
    );
    // Agents go on without noticing.
    let root = c.dir.join("img");
    linux_image(&root, "reloaded", &[], &[]);
    let out = agent_once(&state, &root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A broken key: refused, logged, the current certificate kept.
    std::fs::write(c.data().join("server-key.pem"), "not a key").unwrap();
    c.signal("HUP");
    wait_for(Duration::from_secs(10), || {
        c.log()
            .contains("cannot reload the TLS files")
            .then_some(())
    })
    .expect("the bad file is reported");
    assert_eq!(served_certificate(&c), fresh_der);
}

/// A re-imaged machine: the same image (hostname, hardware id) enrolled
/// again into a new state folder. The fleet shows one live host; the old
/// one is kept, marked superseded, and the two timelines name each other.
#[test]
fn a_reimaged_host_supersedes_its_old_agent() {
    let c = Collector::start();
    let (old_state, root) =
        c.agent_with_image("ws-reimaged", &[("bash", "5.2", "install ok installed")]);
    let dmi = root.join("sys/class/dmi/id");
    std::fs::create_dir_all(&dmi).unwrap();
    std::fs::write(
        dmi.join("product_uuid"),
        "4C4C4544-0042-3510-8052-B4C04F563132\n",
    )
    .unwrap();
    assert!(agent_once(&old_state, &root).status.success());
    let old = c.hosts()[0]["id"].as_str().unwrap().to_string();

    let new_state = c.dir.join("agent-after-reimage");
    c.enroll(&new_state);
    assert!(agent_once(&new_state, &root).status.success());
    let hosts = c.hosts();
    assert_eq!(hosts.len(), 1, "one live host: {hosts:?}");
    let new = hosts[0]["id"].as_str().unwrap().to_string();
    assert_ne!(new, old);

    let all = c.muster(&["hosts", "--include-superseded", "--format", "json"]);
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    let marked = all["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == old.as_str())
        .expect("the old host is kept");
    assert_eq!(marked["superseded_by"], new.as_str());
    let table = c.muster(&["hosts", "--include-superseded"]);
    assert!(table.contains("SUPERSEDED"), "{table}");

    let shown = c.muster(&["host", &old]);
    assert!(shown.contains(&format!("by host {new}")), "{shown}");
    let detail: serde_json::Value =
        serde_json::from_str(&c.muster(&["host", &new, "--format", "json"])).unwrap();
    assert_eq!(
        detail["facts"]["hardware_id"],
        "4c4c4544-0042-3510-8052-b4c04f563132"
    );
    let linked = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "supersedes" && e["related_host"] == old.as_str());
    assert!(linked, "{}", detail["timeline"]);
    let summary = c.muster(&["summary", "--format", "json"]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["hosts"], 1);
}

/// A fleet arriving together at a collector limited to one check-in a
/// second: those over the limit are told when to come back, say so in
/// their log, keep their report, and all are stored soon after, a slot
/// apart.
#[test]
fn a_busy_collector_spreads_a_crowd_with_retry_after() {
    let c = Collector::start_with_config("max_checkins_per_second = 1");
    let n = 6;
    let mut agents = Vec::new();
    for i in 0..n {
        let state = c.dir.join(&format!("agent-{i}"));
        let root = c.dir.join(&format!("img-{i}"));
        c.enroll(&state);
        linux_image(
            &root,
            &format!("crowd-{i}"),
            &[("bash", "5.2", "install ok installed")],
            &[],
        );
        agents.push((state, root));
    }
    let logs: Vec<_> = (0..n)
        .map(|i| c.dir.join(&format!("agent-{i}.log")))
        .collect();
    let mut running: Vec<_> = agents
        .iter()
        .zip(&logs)
        .map(|((state, root), log)| {
            agent_run(state, root, &[], std::fs::File::create(log).unwrap().into())
        })
        .collect();
    let all_reported = wait_for(Duration::from_secs(60), || {
        let hosts = c.hosts();
        (hosts.len() == n && hosts.iter().all(|h| !h["last_checkin"].is_null())).then_some(())
    });
    for a in &mut running {
        let _ = a.kill();
        let _ = a.wait();
    }
    let texts: Vec<String> = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap())
        .collect();
    assert!(
        all_reported.is_some(),
        "not every agent was stored: {texts:#?}"
    );
    let told: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("the collector is busy"))
        .collect();
    assert!(!told.is_empty(), "no agent was told to wait: {texts:#?}");
    for t in &told {
        assert!(t.contains("retry_in_seconds="), "{t}");
        assert!(
            !t.contains("check-in failed"),
            "a deferral is not a failure: {t}"
        );
    }
    let metrics = c.log();
    assert!(!metrics.contains("panicked"), "{metrics}");
}

fn collector_ca(c: &Collector, args: &[&str]) -> std::process::Output {
    cmd("muster-collector")
        .arg("ca")
        .args(args)
        .arg("--data-dir")
        .arg(c.data())
        .output()
        .unwrap()
}

/// The documented CA rotation, end to end: rotate and reload; agents and
/// operators go on; `finish` waits for the agents that have not renewed;
/// an agent renews and gets the new CA; finish and reload; the server now
/// shows a new-CA certificate, the renewed agent still reports, and a
/// certificate of the previous CA no longer gets in.
#[test]
fn the_ca_is_rotated_with_an_overlap() {
    let c = Collector::start();
    let (state, root) = c.agent_with_image("rotating", &[("bash", "5.2", "install ok installed")]);
    let report = |state: &Path| {
        let out = agent_once(state, &root);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    report(&state);
    let old_server = served_certificate(&c);

    let out = collector_ca(&c, &["rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.signal("HUP");
    wait_for(Duration::from_secs(10), || {
        c.log()
            .contains("server certificate and CA bundle reloaded")
            .then_some(())
    })
    .expect("reloaded");
    let again = collector_ca(&c, &["rotate"]);
    assert!(!again.status.success(), "one rotation at a time");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already in progress"));

    // The overlap: the old certificate still works, the operator too.
    report(&state);
    assert_eq!(c.hosts().len(), 1);
    let status: serde_json::Value =
        serde_json::from_slice(&collector_ca(&c, &["status", "--format", "json"]).stdout).unwrap();
    assert_eq!(status["rotating"], true);
    assert_eq!(status["cas"].as_array().unwrap().len(), 2);
    assert_eq!(status["agents_on_other_ca"], 1);
    let refused = collector_ca(&c, &["finish"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("rotating") && why.contains("locked out"),
        "{why}"
    );

    // Keep a copy of the identity that never renews.
    let stale = c.dir.join("agent-not-renewed");
    copy_dir(&state, &stale);
    let out = cmd("muster-agent")
        .args(["renew", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = std::fs::read_to_string(state.join("ca.pem")).unwrap();
    assert_eq!(
        bundle.matches("BEGIN CERTIFICATE").count(),
        2,
        "the agent got both CAs"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&collector_ca(&c, &["status", "--format", "json"]).stdout).unwrap();
    assert_eq!(status["agents_on_other_ca"], 0, "{status}");

    let out = collector_ca(&c, &["finish"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.signal("HUP");
    let new_server = wait_for(Duration::from_secs(10), || {
        try_served_certificate(&c)
            .ok()
            .filter(|now| *now != old_server)
    })
    .expect("the new server certificate is served");
    let ca_now = std::fs::read_to_string(c.data().join("ca.pem")).unwrap();
    assert_eq!(ca_now.matches("BEGIN CERTIFICATE").count(), 1);
    let issuer_ok = {
        use x509_parser::prelude::*;
        let ca_der: Vec<u8> = rustls_pemfile::certs(&mut ca_now.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec();
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        let (_, server) = X509Certificate::from_der(&new_server).unwrap();
        server.issuer() == ca.subject()
    };
    assert!(issuer_ok, "the server certificate comes from the new CA");

    // The renewed agent and the operator go on; the previous CA's
    // certificate is refused.
    report(&state);
    assert_eq!(c.hosts().len(), 1);
    let out = agent_once(&stale, &root);
    assert!(
        !out.status.success(),
        "a certificate of the previous CA still got in"
    );
}

/// A running agent resumes its TLS session at the next check-in (neither
/// certificate chain crosses the wire again), and the check-in made on the
/// resumed session is accepted: the collector still knows which agent it
/// is.
#[test]
fn a_running_agent_resumes_its_tls_session_at_the_next_check_in() {
    let metrics_port = free_port();
    let c = Collector::start_with_config(&format!(
        "checkin_interval = \"10s\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\""
    ));
    let (state, root) = c.agent_with_image("resuming", &[("bash", "5.2", "install ok installed")]);
    let log = c.dir.join("agent.log");
    let (mut agent, _) = run_until_logged(&state, &root, &log, "check-in acknowledged");
    let acks = wait_for(Duration::from_secs(30), || {
        let n = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("check-in acknowledged")
            .count();
        (n >= 2).then_some(n)
    });
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        acks.is_some(),
        "no second check-in: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let m = scrape_metrics(metrics_port);
    assert_eq!(
        metric(&m, "muster_tls_handshakes_total{kind=\"resumed\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "muster_checkins_total{outcome=\"accepted\"}"),
        Some(2.0),
        "{m}"
    );
}

/// The installed unit `NAME.service` holds every one of `directives` and
/// passes `systemd-analyze verify` without a word about itself.
fn installed_unit(name: &str, directives: &[&str]) -> Result<(), String> {
    let path = format!("/lib/systemd/system/{name}.service");
    let unit = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    for d in directives {
        if !unit.contains(d) {
            return Err(format!("{path} lacks {d:?}"));
        }
    }
    let verify = sh("systemd-analyze", &["verify", &path]);
    let complaint = String::from_utf8_lossy(&verify.stderr).to_string();
    if !verify.status.success() || complaint.contains(name) {
        return Err(format!("systemd-analyze verify: {complaint}"));
    }
    Ok(())
}
