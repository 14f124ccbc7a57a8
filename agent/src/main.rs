//! `muster-agent`: the read-only endpoint agent.
#![forbid(unsafe_code)]

mod client;
mod facts;
mod logfile;
mod snapshot;
mod sources;
mod state;
mod winservice;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use client::rfc3339;
use muster_catalog::{Catalog, evaluate};
use state::{Report, StateDir};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "muster-agent",
    version,
    about = "Muster's read-only agent: inventories the security software on this host and reports it",
    after_help = "Example:\n  muster-agent enroll --collector https://muster.example.org:8443 --token TOKEN --ca-cert ca.pem --state-dir /var/lib/muster-agent\n  muster-agent run --state-dir /var/lib/muster-agent\n  muster-agent scan --format table"
)]
struct Cli {
    /// Log format: human or json
    #[arg(
        long,
        global = true,
        default_value = "human",
        env = "MUSTER_LOG_FORMAT"
    )]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll this host with a collector: key made here, certificate stored in the state folder
    #[command(
        after_help = "Example:\n  muster-agent enroll --collector https://muster.example.org:8443 --token-file /run/secrets/muster-token \\\n    --ca-cert /etc/muster/ca.pem --state-dir /var/lib/muster-agent"
    )]
    Enroll {
        /// The collector, https://NAME:PORT
        #[arg(long, env = "MUSTER_COLLECTOR")]
        collector: String,
        /// One-time enrollment token (or --token-file, or MUSTER_ENROLL_TOKEN)
        #[arg(
            long,
            env = "MUSTER_ENROLL_TOKEN",
            hide_env_values = true,
            required_unless_present = "token_file"
        )]
        token: Option<String>,
        /// A file holding the token, so it never shows in a process list
        #[arg(long, conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// The collector's CA certificate (DIR/ca.pem on the collector)
        #[arg(long)]
        ca_cert: PathBuf,
        /// Where the agent keeps its key, certificate and spool
        #[arg(long, env = "MUSTER_STATE_DIR")]
        state_dir: PathBuf,
    },
    /// Scan and check in; repeat at the collector's interval unless --once
    #[command(after_help = "Example:\n  muster-agent run --state-dir /var/lib/muster-agent --once")]
    Run {
        /// The agent's state folder (made by enroll)
        #[arg(long, env = "MUSTER_STATE_DIR")]
        state_dir: PathBuf,
        /// Check in once and exit: 0 when the collector acknowledged every report
        #[arg(long)]
        once: bool,
        /// Root of the system to inventory
        #[arg(long, default_value = "/", hide = true)]
        root: PathBuf,
    },
    /// Scan this host (or an image) and print the detections, without any collector
    #[command(
        after_help = "Example:\n  muster-agent scan --format json\n  muster-agent scan --root /mnt/image --format table"
    )]
    Scan {
        /// Root of the system to inventory: / for this host, or a mounted image
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Output: table for people, json for machines (documented in the README)
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Apply this policy (e.g. bod-17-01) and print its verdict
        #[arg(long)]
        policy: Option<String>,
        /// Exit with status 3 when the policy's verdict fails for this reason
        #[arg(long, value_enum, requires = "policy", value_delimiter = ',')]
        fail_on: Vec<FailOn>,
        /// A folder of extra catalog files (vendor files, policies) to use with the built-in catalog
        #[arg(long, env = "MUSTER_CATALOG_DIR")]
        catalog_dir: Option<PathBuf>,
        /// Evaluate a snapshot written by `muster-agent collect` instead of scanning
        #[arg(long, conflicts_with = "root")]
        snapshot: Option<PathBuf>,
    },
    /// Renew this agent's certificate now, with a new key (run does it by itself at two thirds of its life)
    #[command(after_help = "Example:\n  muster-agent renew --state-dir /var/lib/muster-agent")]
    Renew {
        /// The agent's state folder (made by enroll)
        #[arg(long, env = "MUSTER_STATE_DIR")]
        state_dir: PathBuf,
    },
    /// Check the agent's configuration (the state folder)
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// The Windows service: register it, remove it, or run as it (Windows only)
    #[command(
        after_help = "Example (PowerShell, as Administrator; deploy/windows/install.ps1 does all of it):\n  muster-agent service install --state-dir C:\\ProgramData\\Muster\\agent\n  Start-Service MusterAgent"
    )]
    Service {
        #[command(subcommand)]
        cmd: ServiceCmd,
    },
    /// Write this host's (or an image's) inventory to a JSON snapshot, for air-gapped hosts
    #[command(
        after_help = "The format is documented in docs/snapshot.md.\n\nExample:\n  muster-agent collect --out /media/usb/$(hostname).json\n  muster-agent collect --root /mnt/image --out image.json"
    )]
    Collect {
        /// Root of the system to inventory: / for this host, or a mounted image
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// The snapshot file to write
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// Register the service (automatic, delayed start; restarts after a failure), or update it
    #[command(
        after_help = "Windows only, as Administrator (deploy\\windows\\install.ps1 enrolls and runs it).\n\nExample:\n  muster-agent.exe service install --state-dir C:\\ProgramData\\Muster\\agent"
    )]
    Install {
        /// The agent's state folder (made by enroll)
        #[arg(long, default_value = winservice::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Stop and remove the service; the state folder is kept
    #[command(
        after_help = "Windows only, as Administrator.\n\nExample:\n  muster-agent.exe service uninstall"
    )]
    Uninstall,
    /// What the Service Control Manager runs: the agent loop of `run`, stopped by the service's Stop
    #[command(
        after_help = "Windows only; registered by `service install`, not run by hand.\n\nExample: the registered command line\n  \"C:\\Program Files\\Muster\\muster-agent.exe\" service run --state-dir C:\\ProgramData\\Muster\\agent"
    )]
    Run {
        /// The agent's state folder (made by enroll)
        #[arg(long, default_value = winservice::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check the state folder: enrolled, settings readable, key and certificate valid and matching
    #[command(
        after_help = "Exit status 2 when something is wrong (the service unit runs this first and does not restart on 2).\n\nExample:\n  muster-agent config check --state-dir /var/lib/muster-agent"
    )]
    Check {
        /// The agent's state folder (made by enroll)
        #[arg(long, env = "MUSTER_STATE_DIR")]
        state_dir: PathBuf,
    },
}

/// The state folder is not usable: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ConfigError(String);

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailOn {
    /// A banned product is present (a remnant counts)
    Banned,
    /// A required product is missing
    MissingRequired,
}

/// After a revocation the agent asks again only this rarely (an operator
/// may re-enroll the host, or undo a mistake).
const REVOKED_RETRY_SECONDS: u64 = 6 * 3600;

fn main() -> std::process::ExitCode {
    quiet_broken_pipe();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    init_logging(&cli.log_format, service_log(&cli.cmd).as_deref());
    let outcome = match cli.cmd {
        // The service dispatcher blocks this thread and starts its own.
        Cmd::Service { cmd } => service(cmd),
        cmd => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(run(cmd)),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            eprintln!("error: {e:#}");
            // The service unit does not restart on 2: a restart cannot fix it.
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A reader that stops reading (`muster ... | head`) closes the pipe:
/// end quietly and successfully, as ripgrep does: what was asked for was
/// delivered, and `set -o pipefail` scripts must not fail on `| head`.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// The log file of the Windows service, which has no console; every other
/// command logs to standard error (journald takes it from there).
fn service_log(cmd: &Cmd) -> Option<PathBuf> {
    match cmd {
        Cmd::Service {
            cmd: ServiceCmd::Run { state_dir },
        } if cfg!(windows) => Some(winservice::log_path(state_dir)),
        _ => None,
    }
}

fn init_logging(format: &str, file: Option<&std::path::Path>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MUSTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = file.and_then(
        |p| match logfile::CappedLog::open(p, winservice::LOG_MAX_BYTES) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("warning: cannot open the log {}: {e}", p.display());
                None
            }
        },
    );
    // Colours only on a terminal: journald and log files get plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(log.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match (log, format == "json") {
        (Some(f), true) => b.json().with_writer(std::sync::Mutex::new(f)).init(),
        (Some(f), false) => b.with_writer(std::sync::Mutex::new(f)).init(),
        (None, true) => b.json().with_writer(std::io::stderr).init(),
        (None, false) => b.with_writer(std::io::stderr).init(),
    }
}

/// `muster-agent service ...`: the Windows service's commands.
fn service(cmd: ServiceCmd) -> Result<()> {
    #[cfg(windows)]
    {
        match cmd {
            ServiceCmd::Install { state_dir } => winservice::windows::install(&state_dir),
            ServiceCmd::Uninstall => winservice::windows::uninstall(),
            ServiceCmd::Run { state_dir } => winservice::windows::run(state_dir),
        }
    }
    #[cfg(not(windows))]
    {
        let _ = cmd;
        anyhow::bail!(winservice::NOT_WINDOWS)
    }
}

/// The Windows service's agent: the state folder checked as the systemd
/// unit's ExecStartPre does (status 2 when unusable), then the loop of
/// `run` until `stop`.
#[cfg_attr(not(windows), allow(dead_code))]
async fn run_service(
    state_dir: PathBuf,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let dir = StateDir(state_dir);
    config_check(&dir).map_err(ConfigError)?;
    run_until(&dir, std::path::Path::new("/"), &Catalog::builtin(), stop).await
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn take_report(
    root: &std::path::Path,
    catalog: &Catalog,
    sequence: u64,
) -> (Report, Vec<sources::ScanError>) {
    take_report_with(root, &|| catalog, sequence)
}

/// [`take_report`] with a catalog that may still be loading on another
/// thread: it is waited for only when a source or the evaluation needs it.
fn take_report_with<'c>(
    root: &std::path::Path,
    catalog: &dyn Fn() -> &'c Catalog,
    sequence: u64,
) -> (Report, Vec<sources::ScanError>) {
    let live = root == std::path::Path::new("/");
    let scan = sources::scan_with(root, live, catalog);
    let catalog = catalog();
    let detections = evaluate(&scan.inventory, catalog);
    let report = Report {
        sequence,
        scanned_at: now(),
        facts: scan.facts,
        inventory: scan.inventory,
        detections,
        catalog_version: catalog.version.clone(),
    };
    (report, scan.errors)
}

async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Enroll {
            collector,
            token,
            token_file,
            ca_cert,
            state_dir,
        } => {
            let token = match (token, token_file) {
                (Some(t), _) => t,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read the token file {}", f.display()))?,
                (None, None) => anyhow::bail!("give --token, --token-file or MUSTER_ENROLL_TOKEN"),
            };
            let ca = std::fs::read_to_string(&ca_cert)
                .with_context(|| format!("cannot read the CA certificate {}", ca_cert.display()))?;
            let dir = StateDir(state_dir);
            // The same detection a scan uses, so a Windows or macOS host
            // does not enroll as Linux.
            let root = std::path::Path::new("/");
            let facts = facts::collect(root, true, sources::system::detect(root));
            let id = client::enroll(&dir, &collector, &token, &ca, facts).await?;
            println!("enrolled as agent {id}; state in {}", dir.0.display());
            Ok(())
        }
        Cmd::Run {
            state_dir,
            once,
            root,
        } => {
            let dir = StateDir(state_dir);
            let catalog = Catalog::builtin();
            if once {
                return check_in(&dir, &root, &catalog).await;
            }
            // Signals are watched from the start, so a stop that arrives
            // during a check-in is not the default (abrupt) exit; whatever
            // was not acknowledged stays in the spool.
            run_until(&dir, &root, &catalog, shutdown()).await
        }
        Cmd::Renew { state_dir } => {
            let dir = StateDir(state_dir);
            let cfg = dir.load_config()?;
            let until = client::renew(&dir, &cfg).await?;
            println!(
                "certificate renewed with a new key; valid until {}",
                rfc3339(until)
            );
            Ok(())
        }
        // main() runs it outside the runtime: the dispatcher blocks its thread.
        Cmd::Service { cmd } => service(cmd),
        Cmd::Config {
            cmd: ConfigCmd::Check { state_dir },
        } => {
            let summary = config_check(&StateDir(state_dir)).map_err(ConfigError)?;
            println!("{summary}");
            Ok(())
        }
        Cmd::Collect { root, out } => {
            let catalog = Catalog::builtin();
            let live = root == std::path::Path::new("/");
            let scan = sources::scan(&root, live, &catalog);
            for e in &scan.errors {
                eprintln!("warning: {}: {}", e.source, e.reason);
            }
            let doc = snapshot::to_json(&scan.facts, &scan.inventory, &scan.errors, now());
            snapshot::write(&out, &doc)?;
            println!(
                "snapshot of {} written to {}: {}",
                scan.facts.hostname,
                out.display(),
                section_counts(&scan.inventory)
            );
            Ok(())
        }
        Cmd::Scan {
            root,
            format,
            policy,
            fail_on,
            catalog_dir,
            snapshot,
        } => {
            let cell = std::sync::OnceLock::new();
            if let Some(d) = &catalog_dir {
                let _ = cell.set(Catalog::with_dir(d)?);
            }
            let started = std::time::Instant::now();
            // The built-in catalog is parsed on a second thread while the
            // sources read the disk; they wait for it only at the end.
            let (r, errors) = std::thread::scope(|s| -> Result<_> {
                if cell.get().is_none() {
                    s.spawn(|| {
                        let _ = cell.set(Catalog::builtin());
                    });
                }
                Ok(match &snapshot {
                    Some(path) => {
                        let s = snapshot::read(path)?;
                        let catalog = cell.wait();
                        let detections = evaluate(&s.inventory, catalog);
                        let report = Report {
                            sequence: 0,
                            scanned_at: s.collected_at,
                            facts: s.host,
                            inventory: s.inventory,
                            detections,
                            catalog_version: catalog.version.clone(),
                        };
                        (report, s.errors)
                    }
                    None => take_report_with(&root, &|| cell.wait(), 0),
                })
            })?;
            let catalog = cell.wait();
            let policy = match &policy {
                Some(id) => Some(catalog.policy(id).with_context(|| {
                    let known: Vec<&str> = catalog.policies.iter().map(|p| p.id.as_str()).collect();
                    format!(
                        "no policy {id:?} in the catalog (known: {})",
                        known.join(", ")
                    )
                })?),
                None => None,
            };
            let verdict = policy.map(|p| p.verdict(&r.detections, r.inventory.platform));
            print_scan(&r, verdict.as_ref(), &errors, format, started.elapsed());
            if std::env::var_os("MUSTER_STATS").is_some() {
                // For the benchmark: wall time and peak resident memory of this scan.
                let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                let hwm = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .unwrap_or("")
                    .trim();
                eprintln!(
                    "stats: elapsed_ms={} peak_rss={hwm}",
                    started.elapsed().as_millis()
                );
            }
            if let Some(v) = &verdict {
                let failed = (fail_on.contains(&FailOn::Banned) && !v.violations.is_empty())
                    || (fail_on.contains(&FailOn::MissingRequired)
                        && !v.missing_required.is_empty());
                if failed {
                    std::process::exit(3);
                }
            }
            Ok(())
        }
    }
}

/// Checks in at the collector's interval (backing off after failures)
/// until `stop` completes: SIGTERM or SIGINT for `run`, the Service Control
/// Manager's Stop for the Windows service.
async fn run_until(
    dir: &StateDir,
    root: &std::path::Path,
    catalog: &Catalog,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(stop);
    let mut failures = 0u32;
    loop {
        let outcome = tokio::select! {
            r = check_in(dir, root, catalog) => r,
            _ = &mut stop => { tracing::info!("stopping"); return Ok(()); }
        };
        let interval = dir
            .load_progress()
            .map(|p| p.interval_seconds)
            .unwrap_or(0)
            .max(10);
        let wait = match outcome {
            Ok(()) => {
                failures = 0;
                // Up to 10% jitter, so a fleet restarted together
                // spreads out.
                interval + rand::random::<u64>() % (interval / 10 + 1)
            }
            Err(e) if e.downcast_ref::<client::Busy>().is_some() => {
                let asked = u64::from(e.downcast_ref::<client::Busy>().map_or(1, |b| b.seconds));
                // The collector already spread the waits; a little more
                // jitter keeps agents given one slot apart.
                let wait = asked + rand::random::<u64>() % (asked / 10 + 1);
                tracing::warn!(error = %format!("{e:#}"), retry_in_seconds = wait, "the collector is busy; the report stays in the spool");
                wait
            }
            Err(e) if e.downcast_ref::<client::Revoked>().is_some() => {
                tracing::error!(error = %format!("{e:#}"), retry_in = "6h", "the collector refuses this host: an operator revoked it; enroll it again with a new token to bring it back");
                REVOKED_RETRY_SECONDS
            }
            Err(e) => {
                failures += 1;
                // Never longer than the interval, nor an hour.
                let wait = retry_after_failure(failures, interval.min(3600));
                tracing::error!(error = %format!("{e:#}"), failures, retry_in_seconds = wait, "check-in failed; the report stays in the spool");
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            _ = &mut stop => { tracing::info!("stopping"); return Ok(()); }
        }
    }
}

/// SIGTERM (systemd's stop) or SIGINT, registered now, not when first polled.
#[cfg(unix)]
fn shutdown() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}

/// Ctrl+C in a console elsewhere (the Windows service stops through its
/// control handler instead).
#[cfg(not(unix))]
fn shutdown() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One round: scan, spool, then send every spooled report oldest first.
/// Renews the certificate when two thirds of its life have passed. A
/// failure is logged and the check-in goes on with the current
/// certificate, which is still valid; the next check-in tries again.
async fn renew_if_due(dir: &StateDir, cfg: &state::AgentConfig) -> Result<()> {
    let (from, until) = client::validity(dir)?;
    if now() < client::renewal_due(from, until) {
        return Ok(());
    }
    match client::renew(dir, cfg).await {
        Ok(new_until) => {
            tracing::info!(valid_until = %rfc3339(new_until), "certificate renewed with a new key");
            Ok(())
        }
        Err(e) if e.downcast_ref::<client::Revoked>().is_some() => Err(e),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), expires = %rfc3339(until), "certificate renewal failed; trying again at the next check-in");
            Ok(())
        }
    }
}

async fn check_in(dir: &StateDir, root: &std::path::Path, catalog: &Catalog) -> Result<()> {
    let cfg = dir.load_config()?;
    dir.recover_identity()?;
    renew_if_due(dir, &cfg).await?;
    let mut progress = dir.load_progress()?;
    let (report, errors) = take_report(root, catalog, progress.next_sequence);
    for e in errors.iter().filter(|e| e.partial) {
        tracing::warn!(source = %e.source, reason = %e.reason, "part of a source could not be read");
    }
    if let Some(e) = errors.iter().find(|e| !e.partial) {
        // Sending the inventory without the section would tell the collector
        // that everything in it was removed.
        anyhow::bail!("{}: {} (nothing sent)", e.source, e.reason);
    }
    progress.next_sequence += 1;
    dir.spool_report(&report)?;
    dir.save_progress(&progress)?;
    let mut last = None;
    let addresses: Vec<&str> = cfg.addresses().collect();
    for (i, url) in addresses.iter().enumerate() {
        match send_pending(dir, url, &mut progress).await {
            Ok(()) => return Ok(()),
            // A busy collector asked for a wait: the next address would
            // only add to the crowd it is spreading out.
            Err(e)
                if e.downcast_ref::<client::Revoked>().is_some()
                    || e.downcast_ref::<client::Busy>().is_some() =>
            {
                return Err(e);
            }
            Err(e) => {
                if let Some(next) = addresses.get(i + 1) {
                    tracing::warn!(collector = %url, next = %next, error = %format!("{e:#}"), "check-in failed; trying the next address");
                }
                last = Some(e);
            }
        }
    }
    Err(last.expect("a configuration names at least one address"))
}

/// Sends every spooled report, oldest first, to `url`; each leaves the
/// spool only once acknowledged.
async fn send_pending(dir: &StateDir, url: &str, progress: &mut state::Progress) -> Result<()> {
    let mut client = client::connect_agent(dir, url).await?;
    for r in dir.pending()? {
        let sent = client::send(&mut client, url, &r, progress).await?;
        dir.save_progress(progress)?;
        dir.remove_pending(r.sequence)?;
        tracing::info!(
            sequence = r.sequence,
            sections_sent = sent,
            detections = r.detections.len(),
            collector = %url,
            "check-in acknowledged"
        );
    }
    Ok(())
}

/// How long to wait after the `failures`-th failure in a row: exponential
/// from 10 s, capped at `cap`, with full jitter (anywhere between 1 s and
/// the exponential value), so that agents that failed together do not
/// return together.
fn retry_after_failure(failures: u32, cap: u64) -> u64 {
    let ceiling = 10u64
        .saturating_mul(1 << failures.saturating_sub(1).min(20))
        .min(cap.max(10));
    rand::random_range(1..=ceiling)
}

/// What `config check` checks: every problem at once, or a summary.
fn config_check(dir: &StateDir) -> Result<String, String> {
    let cfg = dir.load_config().map_err(|e| format!("{e:#}"))?;
    let mut problems = Vec::new();
    for url in cfg.addresses() {
        if !url.starts_with("https://") {
            problems.push(format!(
                "{url:?} in {} is not an https:// URL",
                dir.config().display()
            ));
        }
    }
    let mut files = Vec::new();
    for (path, what) in [
        (dir.ca(), "the collector's CA"),
        (dir.cert(), "the agent's certificate"),
        (dir.key(), "the agent's key"),
    ] {
        match std::fs::read(&path) {
            Ok(bytes) => files.push(bytes),
            Err(e) => problems.push(format!("cannot read {what} {}: {e}", path.display())),
        }
    }
    let mut until = String::new();
    if let [ca, cert, key] = files.as_slice() {
        match client::check_identity(cert, key, ca, now()) {
            Ok(u) => until = u,
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "the state folder {} is not usable:\n  {}",
            dir.0.display(),
            problems.join("\n  ")
        ));
    }
    Ok(format!(
        "config OK: agent {} reports to {}; certificate valid until {until}",
        cfg.agent_id, cfg.collector
    ))
}

/// `759 packages, 285 services, ...` for people.
fn section_counts(inv: &muster_catalog::Inventory) -> String {
    let counts: Vec<String> = inv
        .sections
        .iter()
        .map(|(n, s)| format!("{} {n}", s.items.len()))
        .collect();
    counts.join(", ")
}

fn print_scan(
    r: &Report,
    verdict: Option<&muster_catalog::Verdict>,
    errors: &[sources::ScanError],
    format: Format,
    took: Duration,
) {
    match format {
        Format::Json => {
            let sections: std::collections::BTreeMap<_, _> = r
                .inventory
                .sections
                .iter()
                .map(|(n, s)| (n.clone(), s.items.len()))
                .collect();
            let mut out = serde_json::json!({
                "host": r.facts,
                "catalog_version": r.catalog_version,
                "scanned_at": r.scanned_at,
                "sections": sections,
                "detections": r.detections,
                "errors": errors,
            });
            if let Some(v) = verdict {
                out["policy"] = serde_json::to_value(v).expect("json");
            }
            println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        }
        Format::Table => {
            println!(
                "{} — {} {}",
                r.facts.hostname, r.facts.os_name, r.facts.os_version
            );
            println!(
                "inventory: {} ({} ms)",
                section_counts(&r.inventory),
                took.as_millis()
            );
            println!("catalog: {}", r.catalog_version);
            for e in errors {
                println!("error: {}: {}", e.source, e.reason);
            }
            if r.detections.is_empty() {
                println!("no security product of the catalog found");
            } else {
                let mut t = comfy_table::Table::new();
                t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
                    .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
                    .set_width(100);
                t.set_header(["product", "state", "version", "evidence"]);
                for d in &r.detections {
                    let ev: Vec<String> = d
                        .evidence
                        .iter()
                        .map(|e| format!("{} {} ({}) @ {}", e.kind, e.matched, e.state, e.location))
                        .collect();
                    t.add_row([
                        format!("{}\n{}", d.product, d.product_id),
                        d.state.to_string(),
                        d.version.clone(),
                        ev.join("\n"),
                    ]);
                }
                println!("{t}");
            }
            if let Some(v) = verdict {
                println!(
                    "policy {} ({}): {}",
                    v.policy,
                    v.name,
                    v.verdict.to_uppercase()
                );
                for x in &v.violations {
                    println!("  banned: {} ({}) — {}", x.product_id, x.state, x.rule);
                }
                for m in &v.missing_required {
                    println!("  missing: {m}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_full_jitter_up_to_the_cap() {
        for _ in 0..200 {
            assert!((1..=10).contains(&retry_after_failure(1, 3600)));
            assert!((1..=40).contains(&retry_after_failure(3, 3600)));
            assert!((1..=600).contains(&retry_after_failure(30, 600)));
        }
        // Full jitter: the waits spread over the whole range.
        let waits: Vec<u64> = (0..500).map(|_| retry_after_failure(10, 3600)).collect();
        assert!(waits.iter().any(|w| *w < 600) && waits.iter().any(|w| *w > 3000));
    }
}
