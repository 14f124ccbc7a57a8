//! The Windows service: every decision about how the agent is registered
//! and run under the Service Control Manager, as plain data and pure
//! functions tested on every platform. The calls into Windows are the few
//! lines of `windows.rs`, built only on Windows (not in this project's CI,
//! which can build only Linux).

// Off Windows only the tests use most of this: that is the point of it.
#![cfg_attr(not(windows), allow(dead_code))]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(windows)]
pub mod windows;

/// The service's key name (`sc.exe query MusterAgent`, `Get-Service MusterAgent`).
pub const NAME: &str = "MusterAgent";

/// The name the Services console shows.
pub const DISPLAY_NAME: &str = "Muster agent";

/// The description the Services console shows.
pub const DESCRIPTION: &str = "Inventories the security software installed and running on this computer (read-only) and reports it over mutual TLS to a Muster collector.";

/// The state folder when none is given: machine-wide program data, which
/// the installer restricts to SYSTEM and Administrators.
pub const DEFAULT_STATE_DIR: &str = r"C:\ProgramData\Muster\agent";

/// Automatic start, delayed: the inventory is not urgent at boot, and the
/// network is more likely to be up two minutes later.
pub const DELAYED_AUTO_START: bool = true;

/// Recovery after a failure (a crash, or a stop with a non-zero exit code):
/// restart after 10 s the first time, then after 60 s each time, the count
/// starting again after a day without failure (systemd's unit restarts
/// after 30 s).
pub const RESTART_DELAYS: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(60)];

/// After this long without a failure, the next one counts as the first.
pub const FAILURE_COUNT_RESET: Duration = Duration::from_secs(24 * 3600);

/// How long the agent may take to stop; whatever was not acknowledged
/// stays in the spool, so there is nothing to drain.
pub const STOP_WAIT_HINT: Duration = Duration::from_secs(10);

/// What `muster-agent service ...` says anywhere but on Windows.
pub const NOT_WINDOWS: &str = "the Windows service commands exist only on Windows; on Linux use the systemd unit in deploy/linux, on macOS the launchd plist in deploy/macos";

/// The arguments the service is registered with, after the program's path.
pub fn launch_arguments(state_dir: &Path) -> Vec<OsString> {
    vec![
        "service".into(),
        "run".into(),
        "--state-dir".into(),
        state_dir.as_os_str().to_owned(),
    ]
}

/// The command line the Service Control Manager stores for the service,
/// each part quoted as Windows parses it. An unquoted program path with a
/// space (`C:\Program Files\...`) would let `C:\Program.exe` run as
/// SYSTEM; windows-service quotes the same way, and install prints this.
pub fn command_line(executable: &Path, state_dir: &Path) -> String {
    std::iter::once(executable.as_os_str().to_owned())
        .chain(launch_arguments(state_dir))
        .map(|a| quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One argument as `CommandLineToArgvW` reads it back: quoted when it has a
/// space, tab or quote (or is empty); backslashes doubled only before a
/// quote, including the closing one.
fn quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '\n', '\x0b', '"']) {
        return arg.to_string();
    }
    let mut out = String::from('"');
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            c => {
                out.extend(std::iter::repeat_n('\\', backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.extend(std::iter::repeat_n('\\', backslashes * 2));
    out.push('"');
    out
}

/// Where the service logs: it has no console, and the state folder is
/// readable by SYSTEM and Administrators only.
pub fn log_path(state_dir: &Path) -> PathBuf {
    state_dir.join("muster-agent.log")
}

/// The service's log is capped at this size, one older file kept.
pub const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// The exit code the service reports when it stops: the same numbers as
/// the process's exit status on Linux (0 stopped as asked, 2 the state
/// folder is not usable, 1 anything else).
pub fn exit_code(outcome: &anyhow::Result<()>) -> u32 {
    match outcome {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<crate::ConfigError>().is_some() => 2,
        Err(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_runs_the_agent_on_its_state_folder() {
        let args = launch_arguments(Path::new(DEFAULT_STATE_DIR));
        assert_eq!(
            args,
            [
                "service",
                "run",
                "--state-dir",
                r"C:\ProgramData\Muster\agent"
            ]
        );
        // The same arguments the CLI accepts.
        let mut argv = vec![OsString::from("muster-agent")];
        argv.extend(args);
        let cli = <crate::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        assert!(matches!(
            cli.cmd,
            crate::Cmd::Service {
                cmd: crate::ServiceCmd::Run { state_dir }
            } if state_dir == Path::new(DEFAULT_STATE_DIR)
        ));
    }

    #[test]
    fn paths_with_spaces_are_quoted_in_the_command_line() {
        assert_eq!(
            command_line(
                Path::new(r"C:\Program Files\Muster\muster-agent.exe"),
                Path::new(DEFAULT_STATE_DIR)
            ),
            r#""C:\Program Files\Muster\muster-agent.exe" service run --state-dir C:\ProgramData\Muster\agent"#
        );
        // A trailing backslash must not escape the closing quote.
        assert_eq!(
            command_line(
                Path::new(r"C:\Muster\muster-agent.exe"),
                Path::new(r"D:\Muster data\")
            ),
            r#"C:\Muster\muster-agent.exe service run --state-dir "D:\Muster data\\""#
        );
        assert_eq!(quote(r#"a "b" \"#), r#""a \"b\" \\""#);
        assert_eq!(quote(""), r#""""#);
    }

    #[test]
    fn recovery_restarts_after_ten_then_sixty_seconds() {
        assert_eq!(RESTART_DELAYS.map(|d| d.as_secs()), [10, 60]);
        assert_eq!(FAILURE_COUNT_RESET.as_secs(), 86400);
        assert_eq!(STOP_WAIT_HINT.as_secs(), 10);
        assert_eq!((NAME, DELAYED_AUTO_START), ("MusterAgent", true));
    }

    #[test]
    fn exit_codes_match_the_process_exit_status() {
        assert_eq!(exit_code(&Ok(())), 0);
        assert_eq!(
            exit_code(&Err(crate::ConfigError("not enrolled".into()).into())),
            2
        );
        assert_eq!(exit_code(&Err(anyhow::anyhow!("network down"))), 1);
    }

    #[test]
    fn the_log_lives_in_the_state_folder() {
        assert_eq!(
            log_path(Path::new("/state")),
            Path::new("/state/muster-agent.log")
        );
    }
}
