//! The cost of a scan, side by side with the plain tools: wall time, CPU
//! time and peak resident memory of `muster-agent scan` (live, and on an
//! image with 3 000 packages, 500 services and the 12 MB Windows SYSTEM
//! hive) and of `dpkg-query -W` plus `ps -e` on the same machine.
//!
//!   cargo run --release -p muster-tests --bin muster-bench-sources
//!
//! Needs GNU time (`apt-get install time`) for CPU and memory figures.

use muster_tests::*;
use std::path::Path;
use std::process::Command;

struct Run {
    wall: f64,
    cpu: f64,
    rss_kib: u64,
}

/// Runs `cmd` through /usr/bin/time five times; the median by wall time.
/// CPU time is GNU time's user + system (10 ms resolution).
fn measure(label: &str, args: &[&str]) -> Option<Run> {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%e %U %S %M"])
            .args(args)
            .output()
            .ok()?;
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last()?.to_string();
        let f: Vec<f64> = last
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() != 4 {
            eprintln!("{label}: cannot read /usr/bin/time's output: {last}");
            return None;
        }
        // GNU time counts wall time in 10 ms steps; the clock here is finer.
        let wall = started.elapsed().as_secs_f64();
        runs.push(Run {
            wall,
            cpu: f[1] + f[2],
            rss_kib: f[3] as u64,
        });
    }
    runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    Some(runs.swap_remove(2))
}

fn image(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("image");
    let names: Vec<String> = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/package-names/debian-bookworm.txt"
    ))
    .map(|t| t.lines().step_by(20).take(3000).map(String::from).collect())
    .unwrap_or_else(|_| (0..3000).map(|i| format!("package-{i}")).collect());
    let pkgs: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "1.0-1", "install ok installed"))
        .collect();
    let units: Vec<String> = (0..500).map(|i| format!("unit-{i}.service")).collect();
    let units: Vec<&str> = units.iter().map(String::as_str).collect();
    linux_image(&root, "bench-image", &pkgs, &units);
    let hive = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/windows-registry/regipy_SYSTEM");
    if hive.exists() {
        // A dual-boot style image: the Linux root also carries a Windows
        // volume's hive; scanned as its own Windows root below.
        let win = dir.join("windows/Windows/System32/config");
        std::fs::create_dir_all(&win).unwrap();
        std::fs::copy(&hive, win.join("SYSTEM")).unwrap();
    }
    root
}

fn main() {
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("GNU time is needed: apt-get install time");
        std::process::exit(1);
    }
    let agent = bin_dir().join("muster-agent");
    let agent = agent.to_str().unwrap();
    let dir = TempDir::new("bench-sources");
    let root = image(&dir.0);
    let root_s = root.to_str().unwrap();
    let win = dir.join("windows");
    let win_s = win.to_str().unwrap();
    let rows: Vec<(&str, Vec<&str>)> = vec![
        (
            "muster-agent scan (live host)",
            vec![agent, "scan", "--format", "json"],
        ),
        (
            "dpkg-query -W + ps -e (live host)",
            vec!["sh", "-c", "dpkg-query -W >/dev/null && ps -e >/dev/null"],
        ),
        (
            "muster-agent scan --root (3 000 pkgs, 500 units)",
            vec![agent, "scan", "--format", "json", "--root", root_s],
        ),
        (
            "dpkg-query -W --admindir (same image)",
            vec![
                "sh",
                "-c",
                &*Box::leak(
                    format!("dpkg-query --admindir={root_s}/var/lib/dpkg -W >/dev/null")
                        .into_boxed_str(),
                ),
            ],
        ),
        (
            "muster-agent scan --root (12 MB SYSTEM hive)",
            vec![agent, "scan", "--format", "json", "--root", win_s],
        ),
    ];
    println!(
        "{:<50} {:>9} {:>9} {:>10}",
        "command (median of 5)", "wall ms", "cpu ms", "peak RSS"
    );
    for (label, args) in rows {
        if label.contains("hive") && !win.join("Windows").exists() {
            continue;
        }
        if let Some(r) = measure(label, &args) {
            println!(
                "{label:<50} {:>9.0} {:>9.0} {:>7.1} MiB",
                r.wall * 1e3,
                r.cpu * 1e3,
                r.rss_kib as f64 / 1024.0
            );
        }
    }
}
