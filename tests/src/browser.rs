//! A real headless browser for tests of the collector's HTML console:
//! Debian's Chromium, driven by a Node script through Playwright
//! (`playwright-core`, pinned by `tests/browser/package-lock.json`).
//!
//! Where Chromium or Node is absent a test skips, saying so, as tests
//! without PostgreSQL do; under CI (`CI` set) that is a failure instead, so
//! a CI machine missing them cannot pass by skipping.

use std::fmt;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Chromium used when `MUSTER_TEST_CHROMIUM` names no other.
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one script may run before it and its browser are killed.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Chromium, Node and Playwright's modules, ready to run scripts.
#[derive(Debug)]
pub struct Browser {
    /// The Chromium binary the scripts launch (`CHROMIUM` in their
    /// environment).
    pub chromium: PathBuf,
    node_modules: PathBuf,
}

/// What a script did.
#[derive(Debug)]
pub struct ScriptRun {
    /// Its exit status (a kill on time-out included).
    pub status: ExitStatus,
    /// Whether it was killed for running past its time.
    pub timed_out: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl ScriptRun {
    /// Exited 0 in time.
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }
}

impl fmt::Display for ScriptRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.timed_out {
            writeln!(f, "killed after {SCRIPT_TIMEOUT:?}")?;
        }
        writeln!(f, "status: {}", self.status)?;
        writeln!(f, "--- stdout\n{}", self.stdout)?;
        write!(f, "--- stderr\n{}", self.stderr)
    }
}

impl Browser {
    /// Chromium and Node, with Playwright installed on first use; `None`,
    /// saying why on standard error, where either is missing. Panics
    /// instead when `CI` is set.
    pub fn find() -> Option<Browser> {
        let chromium = std::env::var_os("MUSTER_TEST_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(CHROMIUM));
        let missing = if !chromium.is_file() {
            Some(format!(
                "no Chromium at {} (apt-get install chromium, or set MUSTER_TEST_CHROMIUM)",
                chromium.display()
            ))
        } else if !works("node") {
            Some("node does not run (apt-get install nodejs npm)".to_string())
        } else if !works("npm") {
            Some("npm does not run (apt-get install npm)".to_string())
        } else {
            None
        };
        if let Some(why) = missing {
            if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
                panic!("CI is set, so the browser tests must run, but {why}");
            }
            eprintln!("skipped: {why}");
            return None;
        }
        Some(Browser {
            chromium,
            node_modules: node_modules().to_path_buf(),
        })
    }

    /// Runs the script `tests/browser/NAME` with Node, `env` added to its
    /// environment along with `CHROMIUM` and `NODE_PATH`; kills it, and
    /// the browser it started, after [`SCRIPT_TIMEOUT`].
    pub fn run(&self, name: &str, env: &[(&str, &str)]) -> ScriptRun {
        let script = source_dir().join(name);
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .env("NODE_PATH", &self.node_modules)
            .env("CHROMIUM", &self.chromium)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a time-out kills Chromium too.
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("node {}: {e}", script.display()));
        let pipe = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_string(&mut s);
                }
                s
            })
        };
        let out = pipe(child.stdout.take().map(|p| Box::new(p) as _));
        let err = pipe(child.stderr.take().map(|p| Box::new(p) as _));
        let end = Instant::now() + SCRIPT_TIMEOUT;
        let mut timed_out = false;
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait for node") {
                break st;
            }
            if Instant::now() > end {
                timed_out = true;
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                break child.wait().expect("wait for node");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        ScriptRun {
            status,
            timed_out,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    }
}

/// `target/test-artifacts/NAME/`, made empty: where a test leaves its
/// screenshots for a person (or CI) to look at.
pub fn artifacts(name: &str) -> PathBuf {
    let dir = target_dir().join("test-artifacts").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

fn works(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `tests/browser/`: the scripts, `package.json` and its lock.
fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Cargo's target folder, from this test binary's path
/// (`target/<profile>/deps/<binary>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let mut dir = exe.parent().expect("binary's folder").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir.pop();
    dir
}

/// `target/muster-browser/node_modules`, installed by `npm ci` from the
/// committed lock, once per lock: tests of one binary run in threads (the
/// `OnceLock`), and several test binaries may run at once (the file lock).
fn node_modules() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir().join("muster-browser");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let lock = std::fs::File::create(dir.join(".install.lock")).expect("install lock file");
        lock.lock().expect("lock the install");
        let wanted = std::fs::read(source_dir().join("package-lock.json"))
            .expect("tests/browser/package-lock.json");
        let stamp = dir.join("node_modules/.muster-installed-lock.json");
        if std::fs::read(&stamp).ok().as_deref() != Some(wanted.as_slice()) {
            for f in ["package.json", "package-lock.json"] {
                std::fs::copy(source_dir().join(f), dir.join(f))
                    .unwrap_or_else(|e| panic!("copy {f}: {e}"));
            }
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .expect("run npm ci");
            assert!(
                out.status.success(),
                "npm ci in {} failed ({}):\n{}\n{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(&stamp, &wanted).expect("install stamp");
        }
        let _ = lock.unlock();
        dir.join("node_modules")
    })
}
