//! Console and API response times with a large fleet in the store (issue
//! 9: the overview and the first page of the hosts table under 300 ms of
//! server time with 100 000 hosts on SQLite).
//!
//!   cargo run --release -p muster-tests --bin muster-bench-console -- \
//!       [--hosts 100000] [--data-dir DIR] [--repeat 20] [--budget-ms 300] [--json] [PATH]...
//!
//! The data folder is made with `muster-collector init` and seeded through
//! the store's API (`muster_tests::seed`: enrollments, 60 days of reports,
//! a campaign, an asset list of N rows); a folder seeded earlier with as
//! many hosts is reused, its current hosts reporting again first when their
//! last report is over half an hour old. Then a real `muster-collector
//! serve` (this build's profile) answers each path `--repeat` times, after
//! one warm-up request, over one kept-alive HTTPS connection with an
//! operator token. The server's time per request is read from its log
//! (`api request ... ms=`, `console request ... ms=`). Exit status 1 when a path's server p50 is over
//! the budget (or a request fails).

use anyhow::{Context, Result, bail};
use clap::Parser;
use muster_catalog::Catalog;
use muster_collector::store::{Database, Store};
use muster_tests::fleetgen::package_names;
use muster_tests::https::Https;
use muster_tests::seed::{self, Marker};
use muster_tests::{bin_dir, cmd, ok};
use std::collections::{BTreeSet, VecDeque};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The console's overview and first page of hosts (the budget),
/// then the API's reads behind the other pages.
const DEFAULT_PATHS: &[&str] = &[
    "/",
    "/hosts",
    "/hosts?sort=-last_seen",
    "/api/v1/summary",
    "/api/v1/hosts?limit=50",
    "/api/v1/hosts?vendor=kaspersky&limit=50",
    "/api/v1/campaigns",
    "/api/v1/coverage",
];

/// A current host's report older than this is sent again before measuring:
/// hosts go stale after three hours.
const REPORT_AGAIN_AFTER: i64 = 1800;

#[derive(Parser)]
#[command(
    name = "muster-bench-console",
    about = "Time the console's pages and the API with a large seeded fleet (issue 9)",
    after_help = "Example:\n  cargo run --release -p muster-tests --bin muster-bench-console -- \\\n      --hosts 100000 --data-dir /var/tmp/bench-100k --repeat 20\n  muster-bench-console --data-dir /var/tmp/bench-100k --json /api/v1/summary '/api/v1/hosts?limit=50'"
)]
struct Cli {
    /// Hosts in the fleet
    #[arg(long, default_value_t = 100_000)]
    hosts: usize,
    /// The collector's data folder: made and seeded when absent, reused
    /// when seeded with as many hosts [default: TMPDIR/muster-bench-console-HOSTS]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Timed requests per path (after one warm-up request)
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Most server time (p50, ms) a path may take
    #[arg(long, default_value_t = 300)]
    budget_ms: u64,
    /// JSON instead of a table
    #[arg(long)]
    json: bool,
    /// Paths to request, with their query [default: /api/v1/summary,
    /// /api/v1/hosts?limit=50, /api/v1/hosts?vendor=kaspersky&limit=50,
    /// /api/v1/campaigns, /api/v1/coverage]
    paths: Vec<String>,
}

/// One path's figures.
struct Figures {
    path: String,
    status: u16,
    bytes: usize,
    client: Vec<f64>,
    server: Vec<f64>,
}

fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("muster-bench-console: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> Result<bool> {
    if cli.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let dir = cli.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("muster-bench-console-{}", cli.hosts))
    });
    let paths: Vec<String> = if cli.paths.is_empty() {
        DEFAULT_PATHS.iter().map(|p| p.to_string()).collect()
    } else {
        cli.paths.clone()
    };
    if let Some(p) = paths.iter().find(|p| !p.starts_with('/')) {
        bail!("path {p:?} does not start with / (give it as /api/v1/summary)");
    }
    // Built (or found up to date) before anything is timed.
    bin_dir();
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(prepare(&dir, cli.hosts))?;
    let token = ok(cmd("muster-collector")
        .args(["operator-token", "create", "--expires", "2h", "--name"])
        .arg(format!("bench-{}", muster_collector::store::now()))
        .arg("--data-dir")
        .arg(&dir))
    .lines()
    .last()
    .unwrap_or_default()
    .trim()
    .to_string();
    eprintln!("serving {} with a real collector", dir.display());
    let mut server = Server::start(&dir)?;
    let result = measure(&server, &dir, &token, &paths, cli.repeat);
    server.stop();
    let figures = result?;
    Ok(report(cli, &dir, &figures))
}

/// Makes and seeds `dir` with `hosts` hosts, or reuses it.
async fn prepare(dir: &Path, hosts: usize) -> Result<()> {
    let marker_path = dir.join("bench-seed.json");
    let db = Database::Sqlite(dir.join("muster.db"));
    let catalog = Arc::new(Catalog::builtin());
    let names = Arc::new(package_names());
    if let Ok(text) = std::fs::read_to_string(&marker_path) {
        let mut m: Marker = serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged", marker_path.display()))?;
        if m.hosts != hosts || m.version != seed::SEED_VERSION {
            bail!(
                "{} holds a fleet of {} hosts (seed version {}), not {hosts} (version {}): \
                 give another --data-dir, or remove that folder",
                dir.display(),
                m.hosts,
                m.version,
                seed::SEED_VERSION
            );
        }
        let now = muster_collector::store::now();
        eprintln!(
            "reusing {} ({hosts} hosts, seeded {} h ago)",
            dir.display(),
            (now - m.seeded_at) / 3600
        );
        if now - m.reported_at > REPORT_AGAIN_AFTER {
            eprintln!(
                "current hosts last reported {} min ago: reporting again",
                (now - m.reported_at) / 60
            );
            let store = Store::open(&db, false).await?;
            let (ids, highest) = seed::host_ids(&store, hosts).await?;
            seed::report_now(&store, hosts, Arc::new(ids), names, catalog, highest + 1).await?;
            store.close().await;
            m.reported_at = now;
            std::fs::write(&marker_path, serde_json::to_string_pretty(&m)?)?;
        }
        return Ok(());
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty and was not seeded by this benchmark (or its seeding was \
             interrupted): remove it, or give another --data-dir",
            dir.display()
        );
    }
    ok(cmd("muster-collector")
        .args(["init", "--server-name", "localhost", "--data-dir"])
        .arg(dir));
    let ca = ca_fingerprint(&dir.join("ca.pem"))?;
    let t0 = muster_collector::store::now();
    eprintln!(
        "seeding {} with {hosts} hosts (minutes at 100 000)",
        dir.display()
    );
    let started = Instant::now();
    let store = Store::open(&db, false).await?;
    seed::seed(&store, hosts, t0, &ca, names, catalog).await?;
    store.close().await;
    eprintln!("seeded in {:.0} s", started.elapsed().as_secs_f64());
    let m = Marker {
        version: seed::SEED_VERSION,
        hosts,
        seeded_at: t0,
        reported_at: muster_collector::store::now(),
    };
    std::fs::write(&marker_path, serde_json::to_string_pretty(&m)?)?;
    Ok(())
}

fn ca_fingerprint(path: &Path) -> Result<String> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .with_context(|| format!("no certificate in {}", path.display()))??;
    Ok(muster_collector::pki::fingerprint(der.as_ref()))
}

/// What the collector's log says, line by line.
enum Logged {
    /// The API's address (`HTTP API served at /api/v1/`).
    Listening(String),
    /// `api request`: target, milliseconds, the client's address.
    Request { uri: String, ms: f64, peer: String },
}

/// A running `muster-collector serve` with its log read on a thread.
struct Server {
    child: Child,
    log: mpsc::Receiver<Logged>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    fn start(dir: &Path) -> Result<Server> {
        let mut child = cmd("muster-collector")
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(dir)
            .env("MUSTER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start muster-collector serve")?;
        let stderr = child.stderr.take().context("the collector's stderr")?;
        let (tx, log) = mpsc::channel();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let keep = tail.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Some(e) = parse_log(&line) {
                    let _ = tx.send(e);
                }
                let mut t = keep.lock().unwrap_or_else(|p| p.into_inner());
                t.push_back(line);
                if t.len() > 40 {
                    t.pop_front();
                }
            }
        });
        Ok(Server { child, log, tail })
    }

    /// The log's last lines, for an error message.
    fn tail(&self) -> String {
        let t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The next log entry within `timeout`.
    fn next(&self, timeout: Duration) -> Option<Logged> {
        self.log.recv_timeout(timeout).ok()
    }

    fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let stopped = muster_tests::wait_for(Duration::from_secs(20), || {
            self.child.try_wait().ok().flatten()
        });
        if stopped.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse_log(line: &str) -> Option<Logged> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let f = &v["fields"];
    match f["message"].as_str()? {
        m if m.starts_with("HTTP API served at") => {
            Some(Logged::Listening(f["listen"].as_str()?.into()))
        }
        "api request" | "console request" => Some(Logged::Request {
            uri: f["uri"].as_str()?.into(),
            ms: f["ms"].as_f64()?,
            peer: f["peer"].as_str()?.into(),
        }),
        _ => None,
    }
}

fn measure(
    server: &Server,
    dir: &Path,
    token: &str,
    paths: &[String],
    repeat: usize,
) -> Result<Vec<Figures>> {
    let port: u16 = loop {
        match server.next(Duration::from_secs(120)) {
            Some(Logged::Listening(addr)) => {
                break addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .with_context(|| format!("the API's address {addr:?}"))?;
            }
            Some(_) => {}
            None => bail!("the collector did not serve its API:\n{}", server.tail()),
        }
    };
    let mut conn = Https::new(&dir.join("ca.pem"), port, None).keep_alive();
    // A catalog newer than the seed's re-evaluates every host in the
    // background at start: wait until that is done.
    let waited = Instant::now();
    loop {
        let r = conn.get("/api/v1/summary", token)?;
        match r.json()["pending_reevaluation"].as_u64() {
            Some(0) => break,
            Some(n) if waited.elapsed() < Duration::from_secs(1800) => {
                eprintln!("  waiting for the re-evaluation of {n} hosts");
                std::thread::sleep(Duration::from_secs(5));
            }
            _ => bail!("GET /api/v1/summary: {} {}", r.status, r.text()),
        }
    }
    let mut out = Vec::new();
    let mut peers = BTreeSet::new();
    for path in paths {
        eprintln!("  {path}: 1 + {repeat} requests");
        let mut f = Figures {
            path: path.clone(),
            status: 0,
            bytes: 0,
            client: Vec::new(),
            server: Vec::new(),
        };
        for round in 0..=repeat {
            let t = Instant::now();
            let r = conn
                .get(path, token)
                .with_context(|| format!("GET {path}:\n{}", server.tail()))?;
            let client_ms = t.elapsed().as_secs_f64() * 1000.0;
            f.status = r.status;
            f.bytes = r.body.len();
            // Its log line, written before the answer went out; pages that
            // do not log their time have none.
            let mut server_ms = None;
            while let Some(e) = server.next(Duration::from_secs(2)) {
                if let Logged::Request { uri, ms, peer } = e
                    && uri == *path
                {
                    server_ms = Some(ms);
                    peers.insert(peer);
                    break;
                }
            }
            if round > 0 {
                f.client.push(client_ms);
                f.server.extend(server_ms);
            }
        }
        out.push(f);
    }
    if peers.len() > 1 {
        eprintln!(
            "note: the requests came over {} connections, not one",
            peers.len()
        );
    }
    Ok(out)
}

/// (p50, p90, max) of `v`, nearest rank.
fn percentiles(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Some((p(0.5), p(0.9), p(1.0)))
}

/// Prints the figures; `true` when every path answered 200 within budget.
fn report(cli: &Cli, dir: &Path, figures: &[Figures]) -> bool {
    let within = |f: &Figures| {
        f.status == 200
            && percentiles(if f.server.is_empty() {
                &f.client
            } else {
                &f.server
            })
            .is_some_and(|(p50, _, _)| p50 <= cli.budget_ms as f64)
    };
    let all_ok = figures.iter().all(within);
    if cli.json {
        let three = |v: &[f64]| {
            let r = |x: f64| (x * 100.0).round() / 100.0;
            percentiles(v)
                .map(|(a, b, c)| serde_json::json!({"p50": r(a), "p90": r(b), "max": r(c)}))
        };
        let paths: Vec<serde_json::Value> = figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path, "status": f.status, "bytes": f.bytes, "n": f.client.len(),
                    "client_ms": three(&f.client), "server_ms": three(&f.server),
                    "within_budget": within(f),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "hosts": cli.hosts, "data_dir": dir, "repeat": cli.repeat,
            "budget_ms": cli.budget_ms, "ok": all_ok, "paths": paths,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return all_ok;
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header([
            "PATH",
            "STATUS",
            "BYTES",
            "CLIENT p50",
            "p90",
            "max",
            "SERVER p50",
            "p90",
            "max",
            "",
        ]);
    let ms = |x: f64| format!("{x:.1}");
    for f in figures {
        let (c50, c90, cmax) = percentiles(&f.client).unwrap_or_default();
        let server = percentiles(&f.server)
            .map(|(a, b, c)| [ms(a), ms(b), ms(c)])
            .unwrap_or_else(|| ["-".into(), "-".into(), "-".into()]);
        table.add_row([
            f.path.clone(),
            f.status.to_string(),
            f.bytes.to_string(),
            ms(c50),
            ms(c90),
            ms(cmax),
            server[0].clone(),
            server[1].clone(),
            server[2].clone(),
            if within(f) { "ok" } else { "OVER" }.to_string(),
        ]);
    }
    println!("{table}");
    println!(
        "({} hosts; ms over {} requests per path after one warm-up, one kept-alive connection; \
         server: the collector's own `ms` per request; budget: server p50 <= {} ms)",
        cli.hosts, cli.repeat, cli.budget_ms
    );
    all_ok
}
