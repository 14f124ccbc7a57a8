//! The installers for Windows and macOS, which cannot run here: what can
//! be checked on Linux is that they name the agent's real flags and paths,
//! so a typo cannot ship. The plist is parsed as launchd would read it.

use muster_tests::*;
use std::path::{Path, PathBuf};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `muster-agent SUBCOMMAND --help`.
fn help(subcommand: &[&str]) -> String {
    ok(cmd("muster-agent").args(subcommand).arg("--help"))
}

const STATE_DIR_MACOS: &str = "/Library/Application Support/Muster/agent";

#[test]
fn the_launchd_plist_runs_the_agent_as_a_kept_alive_daemon() {
    let path: PathBuf = workspace().join("deploy/macos/org.muster.agent.plist");
    let plist = plist::Value::from_file(&path).unwrap();
    let d = plist.as_dictionary().expect("a dictionary at the top");
    let string = |k: &str| d.get(k).and_then(|v| v.as_string()).unwrap_or_default();
    assert_eq!(string("Label"), "org.muster.agent");
    let args: Vec<&str> = d
        .get("ProgramArguments")
        .and_then(|v| v.as_array())
        .expect("ProgramArguments")
        .iter()
        .map(|v| v.as_string().expect("string arguments"))
        .collect();
    assert_eq!(
        args,
        [
            "/usr/local/bin/muster-agent",
            "run",
            "--state-dir",
            STATE_DIR_MACOS
        ]
    );
    assert!(
        help(&["run"]).contains("--state-dir"),
        "run takes --state-dir"
    );
    assert_eq!(d.get("RunAtLoad").and_then(|v| v.as_boolean()), Some(true));
    // Restarted after a failure, not after a clean stop.
    let keep = d
        .get("KeepAlive")
        .and_then(|v| v.as_dictionary())
        .expect("KeepAlive as a dictionary");
    assert_eq!(
        keep.get("SuccessfulExit").and_then(|v| v.as_boolean()),
        Some(false)
    );
    let throttle = d
        .get("ThrottleInterval")
        .and_then(|v| v.as_signed_integer())
        .expect("ThrottleInterval");
    assert!((10..=300).contains(&throttle), "{throttle}");
    for k in ["StandardOutPath", "StandardErrorPath"] {
        assert!(string(k).starts_with("/Library/Logs/Muster/"), "{k}");
    }
    assert_eq!(string("ProcessType"), "Background");
    assert_eq!(
        d.get("LowPriorityIO").and_then(|v| v.as_boolean()),
        Some(true)
    );

    // The installer puts the program, the state and the plist where the
    // plist says.
    let install = read("deploy/macos/install.sh");
    for needle in [
        "BIN=/usr/local/bin/muster-agent",
        &format!("STATE=\"{STATE_DIR_MACOS}\""),
        "LOGS=/Library/Logs/Muster",
        "PLIST=/Library/LaunchDaemons/org.muster.agent.plist",
        "LABEL=org.muster.agent",
        "-m 0644 \"$HERE/org.muster.agent.plist\" \"$PLIST\"",
        "launchctl bootstrap system",
    ] {
        assert!(install.contains(needle), "install.sh lacks {needle}");
    }
}

/// The agent's subcommands that the scripts call, with every `--flag`
/// written after them on the same (logical) line.
fn invocations(script: &str) -> Vec<(Vec<&'static str>, Vec<String>)> {
    const SUBCOMMANDS: [&[&str]; 5] = [
        &["enroll"],
        &["config", "check"],
        &["service", "install"],
        &["service", "uninstall"],
        &["run"],
    ];
    let joined = script.replace("\\\n", " ").replace("`\n", " ");
    let mut found = Vec::new();
    for line in joined.lines() {
        let tokens: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || "'\",()@`".contains(c))
            .filter(|t| !t.is_empty())
            .collect();
        for i in 0..tokens.len() {
            for sub in SUBCOMMANDS {
                if tokens[i..].starts_with(sub) {
                    let flags = tokens[i + sub.len()..]
                        .iter()
                        .filter(|t| t.starts_with("--") && t.len() > 2)
                        .map(|t| t.to_string())
                        .collect();
                    found.push((sub.to_vec(), flags));
                }
            }
        }
    }
    found
}

#[test]
fn the_install_scripts_pass_only_flags_the_agent_has() {
    let scripts = [
        "deploy/macos/install.sh",
        "deploy/macos/uninstall.sh",
        "deploy/windows/install.ps1",
        "deploy/windows/uninstall.ps1",
    ];
    let mut enrolls = 0;
    for script in scripts {
        for (sub, flags) in invocations(&read(script)) {
            let listed = help(&sub);
            for flag in &flags {
                assert!(
                    listed.contains(&format!("{flag} ")) || listed.contains(&format!("{flag}\n")),
                    "{script}: `muster-agent {} {flag}` is not a flag of the agent:\n{listed}",
                    sub.join(" ")
                );
                // A token on the command line shows in process lists.
                assert_ne!(flag, "--token", "{script} passes the token as an argument");
            }
            if sub == ["enroll"] && !flags.is_empty() {
                enrolls += 1;
                for needed in ["--collector", "--ca-cert", "--state-dir"] {
                    assert!(
                        flags.iter().any(|f| f == needed),
                        "{script}: enroll without {needed}"
                    );
                }
            }
        }
    }
    // Each installer enrolls with a token file and with the variable.
    assert_eq!(enrolls, 4, "the test found the enroll calls it checks");
    let enroll = help(&["enroll"]);
    assert!(enroll.contains("--token-file") && enroll.contains("MUSTER_ENROLL_TOKEN"));

    // The Windows installer's state folder is the service's default.
    let ps1 = read("deploy/windows/install.ps1");
    let default = r"C:\ProgramData\Muster\agent";
    assert!(
        help(&["service", "install"]).contains(&format!("[default: {default}]")),
        "the service's default state folder"
    );
    assert!(
        ps1.contains(&format!("$StateDir = '{default}'")),
        "install.ps1"
    );
    assert!(
        ps1.contains("/inheritance:r"),
        "install.ps1 drops inherited rights"
    );
}

/// On Linux and macOS the service subcommand exists and says what to use.
#[test]
fn the_windows_service_commands_point_elsewhere_off_windows() {
    for sub in [
        &["service", "install"][..],
        &["service", "uninstall"],
        &["service", "run"],
    ] {
        let err = fails(cmd("muster-agent").args(sub));
        assert!(
            err.contains("exist only on Windows")
                && err.contains("deploy/linux")
                && err.contains("deploy/macos"),
            "{sub:?}: {err}"
        );
    }
}
