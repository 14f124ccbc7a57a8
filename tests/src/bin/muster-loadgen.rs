//! `muster-loadgen`: many simulated agents against one collector.
//!
//! `enroll` enrolls N agents through the real enrollment path (one token
//! with N uses), each with its own key made here, and keeps their
//! identities in the state folder (`agents.jsonl`, one line per agent), so
//! a later `enroll` adds to them and `run` uses them. `run` makes them
//! check in for a while, as fast as the collector takes them or at a set
//! rate, and reports check-ins per second, latency and errors.
//!
//! Every simulated agent has a realistic inventory made from its number:
//! 1 000–3 000 packages drawn from Debian bookworm's package names (the
//! fixture, else made-up names), 100–300 services and 100–300 processes; 3 %
//! carry Kaspersky Endpoint Security for Linux. Sequence numbers come from
//! the clock (milliseconds × 1 000 and a counter), so a later run goes on
//! where an earlier one stopped without any saved progress.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use muster_catalog::{HostFacts, Item, ItemKind, Presence, Section};
use muster_proto::channel::{Route, build_client_config, connect_with};
use muster_proto::v1::{self, agent_client::AgentClient, enrollment_client::EnrollmentClient};
use muster_proto::{facts_to_wire, section_to_wire};
use muster_tests::fleetgen::{self, Rng, package_names};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(Parser)]
#[command(
    name = "muster-loadgen",
    about = "Simulated agents against a collector: enroll many, then measure check-ins",
    after_help = "Example:\n  muster-loadgen enroll --collector https://localhost:8443 --identity DIR/operator \\\n      --state-dir /tmp/fleet --agents 1000\n  muster-loadgen run --collector https://localhost:8443 --state-dir /tmp/fleet --duration 30s --mode resume"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll agents until the state folder holds N (through Enrollment.Enroll)
    #[command(
        after_help = "Example:\n  muster-loadgen enroll --collector https://localhost:8443 --identity DIR/operator \\\n      --state-dir /tmp/fleet --agents 1000"
    )]
    Enroll {
        /// The collector, https://NAME:PORT
        #[arg(long)]
        collector: String,
        /// An operator identity folder: its ca.pem is the collector's CA
        #[arg(long)]
        identity: PathBuf,
        /// Where the agents' identities are kept (created)
        #[arg(long)]
        state_dir: PathBuf,
        /// How many agents the folder should hold
        #[arg(long)]
        agents: usize,
        /// An enrollment token with enough uses [default: one made now through
        /// the operator identity (Operator.CreateEnrollmentToken), valid an hour]
        #[arg(long, env = "MUSTER_ENROLL_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Enrollments in flight at once
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Check in with the enrolled agents for a while and report the figures
    #[command(
        after_help = "Example:\n  muster-loadgen run --collector https://localhost:8443 --state-dir /tmp/fleet \\\n      --duration 30s --mode keepalive --changed 0.05 --format json"
    )]
    Run(RunArgs),
    /// What this machine can do at all, with the same client code: bare
    /// mutual-TLS handshakes, or bare gRPC calls, against a minimal server
    /// in this process
    #[command(
        after_help = "Example:\n  muster-loadgen baseline --mode handshake --duration 30s --format json"
    )]
    Baseline {
        /// handshake, resumption or echo
        #[arg(long, value_enum)]
        mode: BaselineMode,
        /// How long to run (s, m)
        #[arg(long, default_value = "30s")]
        duration: String,
        /// Operations in flight at once
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// table for people, json for machines
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// What `run` takes.
#[derive(clap::Args)]
struct RunArgs {
    /// The collector, https://NAME:PORT
    #[arg(long)]
    collector: String,
    /// The folder `enroll` filled
    #[arg(long)]
    state_dir: PathBuf,
    /// How long to run (s, m)
    #[arg(long, default_value = "30s")]
    duration: String,
    /// full: a new connection and full TLS handshake per check-in;
    /// resume: a new connection resuming each agent's TLS session;
    /// keepalive: one connection per agent, kept open (every agent connects
    /// and checks in once before the clock starts)
    #[arg(long, value_enum, default_value = "full")]
    mode: Mode,
    /// Check-ins per second in all (default: as fast as the collector takes them)
    #[arg(long)]
    rate: Option<f64>,
    /// Fraction of check-ins with one changed section
    #[arg(long, default_value_t = 0.0)]
    changed: f64,
    /// Fraction of check-ins sending the full inventory
    #[arg(long, default_value_t = 0.0)]
    full: f64,
    /// Check-ins in flight at once
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Spread connections over this many source addresses 127.0.0.1.. (loopback collectors)
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// The collector's process id, to sample its CPU and RSS from /proc
    #[arg(long)]
    collector_pid: Option<u32>,
    /// Write every acknowledged (agent id, sequence) to this file, one per line
    #[arg(long)]
    record: Option<PathBuf>,
    /// Every agent checks in once, all at the start, as a fleet does when
    /// its collector comes back: a deferred or failed check-in is retried
    /// after a pause until it is accepted or --duration ends (the agent
    /// gives up). Reports how long until every agent was served.
    #[arg(long)]
    once: bool,
    /// With --once: first every agent checks in once (and so holds a
    /// connection or a session ticket), then this shell command runs (restart
    /// the collector with it), then the measured round. A number on the
    /// command's last line of output becomes the collector's process id.
    #[arg(long, requires = "once")]
    restart: Option<String>,
    /// table for people, json for machines
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum BaselineMode {
    /// A bare rustls mutual-TLS 1.3 handshake loop against a minimal rustls server
    Handshake,
    /// The same loop, each connection resuming its worker's last TLS 1.3
    /// session with the collector's session tickets: the most resumption
    /// can gain over full handshakes on this machine
    Resumption,
    /// A bare gRPC unary call (health check) over kept-open connections
    Echo,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Mode {
    Full,
    Resume,
    Keepalive,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// One enrolled agent, as kept in `agents.jsonl`.
#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Identity {
    index: usize,
    id: String,
    cert_pem: String,
    key_pem: String,
}

fn agents_file(dir: &Path) -> PathBuf {
    dir.join("agents.jsonl")
}

/// The identities in the folder; a torn last line (an interrupted
/// enrollment) is left out.
fn load_identities(dir: &Path) -> Result<Vec<Identity>> {
    let text = match std::fs::read_to_string(agents_file(dir)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context("cannot read agents.jsonl"),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The facts and inventory of simulated agent `i`; `variant` changes one
/// package's version (a changed section).
fn inventory(i: usize, variant: u64, names: &[String]) -> (HostFacts, BTreeMap<String, Section>) {
    let mut rng = Rng(0x51_7cc1_b727_220a ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9));
    let n_packages = 1000 + rng.below(2001);
    let mut packages = fleetgen::packages(&mut rng, n_packages, names);
    if rng.below(100) < 3 {
        packages.push(
            Item::new(ItemKind::Package, "kesl", Presence::Present, "dpkg").version("12.1.0"),
        );
    }
    packages.push(
        Item::new(
            ItemKind::Package,
            "muster-loadgen-marker",
            Presence::Present,
            "dpkg",
        )
        .version(format!("{variant}")),
    );
    let services: Vec<Item> = (0..100 + rng.below(201))
        .map(|s| {
            Item::new(
                ItemKind::Service,
                format!("svc-{}.service", (i + s * 7919) % 5000),
                Presence::Active,
                "systemd",
            )
        })
        .collect();
    let processes: Vec<Item> = (0..100 + rng.below(201))
        .map(|p| {
            Item::new(
                ItemKind::Process,
                format!("proc-{}", (i * 31 + p) % 3000),
                Presence::Active,
                "/proc",
            )
        })
        .collect();
    let sections = fleetgen::sections([
        ("dpkg", packages),
        ("systemd", services),
        ("processes", processes),
    ]);
    (facts(i), sections)
}

/// The facts of simulated agent `i`.
fn facts(i: usize) -> HostFacts {
    HostFacts {
        hostname: format!("loadgen-{i:06}"),
        os_name: "Debian GNU/Linux".into(),
        os_version: "12".into(),
        kernel: "6.1.0-loadgen".into(),
        arch: "x86_64".into(),
        ips: vec![format!(
            "10.{}.{}.{}",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        )],
        agent_version: env!("CARGO_PKG_VERSION").into(),
        platform: "linux".into(),
        hardware_id: format!("10ad0000-0000-4000-8000-{i:012x}"),
    }
}

/// Every agent's section digests of its first inventory (variant 0), as
/// kept in `digests.jsonl`: made once, before any run's clock starts, as a
/// running agent keeps them in memory.
fn first_digests(
    dir: &Path,
    identities: &[Identity],
    names: &[String],
) -> Result<HashMap<usize, Vec<v1::SectionDigest>>> {
    let path = dir.join("digests.jsonl");
    let mut known: HashMap<usize, Vec<v1::SectionDigest>> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(&path) {
        for line in text.lines() {
            if let Ok((i, d)) = serde_json::from_str::<(usize, Vec<(String, String)>)>(line) {
                let d = d
                    .into_iter()
                    .map(|(name, digest)| v1::SectionDigest { name, digest })
                    .collect();
                known.insert(i, d);
            }
        }
    }
    let todo: Vec<usize> = identities
        .iter()
        .map(|id| id.index)
        .filter(|i| !known.contains_key(i))
        .collect();
    if todo.is_empty() {
        return Ok(known);
    }
    eprintln!(
        "making the inventories of {} agents, once (kept in {})",
        todo.len(),
        path.display()
    );
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let done = AtomicU64::new(0);
    let total = todo.len();
    let made: Vec<(usize, Vec<(String, String)>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = todo
            .chunks(todo.len().div_ceil(threads))
            .map(|chunk| {
                let done = &done;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|&i| {
                            let (_, sections) = inventory(i, 0, names);
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            if n.is_multiple_of(10_000) {
                                eprintln!("  {n} of {total}");
                            }
                            let d = sections
                                .iter()
                                .map(|(name, s)| (name.clone(), s.digest()))
                                .collect();
                            (i, d)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("digest thread"))
            .collect()
    });
    let mut text = String::new();
    for (i, d) in &made {
        text.push_str(&serde_json::to_string(&(i, d))?);
        text.push('\n');
    }
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    for (i, d) in made {
        let d = d
            .into_iter()
            .map(|(name, digest)| v1::SectionDigest { name, digest })
            .collect();
        known.insert(i, d);
    }
    Ok(known)
}

fn parse_duration(s: &str) -> Result<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .with_context(|| format!("{s:?} is not a duration like 30s"))?;
    Ok(Duration::from_secs(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("{s:?} is not a duration like 30s or 2m"),
    }))
}

async fn enroll(
    collector: String,
    identity: PathBuf,
    dir: PathBuf,
    agents: usize,
    token: Option<String>,
    concurrency: usize,
) -> Result<()> {
    let ca = std::fs::read_to_string(identity.join("ca.pem"))
        .with_context(|| format!("cannot read {}/ca.pem", identity.display()))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("ca.pem"), &ca)?;
    let have = load_identities(&dir)?;
    let start = have.iter().map(|a| a.index + 1).max().unwrap_or(0);
    if start >= agents {
        println!("{} already holds {start} agents", dir.display());
        return Ok(());
    }
    let token = match token {
        Some(t) => t,
        None => {
            let read = |f: &str| {
                std::fs::read_to_string(identity.join(f))
                    .with_context(|| format!("cannot read {}/{f}", identity.display()))
            };
            let operator = (read("cert.pem")?, read("key.pem")?);
            let config =
                Arc::new(build_client_config(&ca, Some(&operator)).map_err(anyhow::Error::msg)?);
            let channel = connect_with(&collector, config, None).await?;
            let uses = u32::try_from(agents - start).context("too many agents for one token")?;
            muster_proto::v1::operator_client::OperatorClient::new(channel)
                .create_enrollment_token(v1::CreateEnrollmentTokenRequest {
                    uses,
                    valid_seconds: 3600,
                })
                .await
                .map_err(|s| {
                    anyhow::anyhow!("the collector made no enrollment token: {}", s.message())
                })?
                .into_inner()
                .token
        }
    };
    start_sequences();
    let config = Arc::new(build_client_config(&ca, None).map_err(anyhow::Error::msg)?);
    let out = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(agents_file(&dir))?,
    ));
    let kept = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("digests.jsonl"))?,
    ));
    let names = Arc::new(package_names());
    let next = Arc::new(AtomicUsize::new(start));
    let done = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (collector, config, out, kept, names, next, done, token, ca) = (
            collector.clone(),
            config.clone(),
            out.clone(),
            kept.clone(),
            names.clone(),
            next.clone(),
            done.clone(),
            token.clone(),
            ca.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let channel = connect_with(&collector, config, None).await?;
            let mut client = EnrollmentClient::new(channel);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= agents {
                    return Ok::<(), anyhow::Error>(());
                }
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                let csr = rcgen::CertificateParams::new(Vec::<String>::new())?
                    .serialize_request(&key)?
                    .pem()?;
                let (facts, _) = inventory(i, 0, &names);
                let resp = client
                    .enroll(v1::EnrollRequest {
                        token: token.clone(),
                        csr_pem: csr,
                        facts: Some(facts_to_wire(&facts)),
                    })
                    .await
                    .map_err(|s| {
                        anyhow::anyhow!("enrollment of agent {i} refused: {}", s.message())
                    })?
                    .into_inner();
                let identity = Identity {
                    index: i,
                    id: resp.agent_id,
                    cert_pem: resp.certificate_pem,
                    key_pem: key.serialize_pem(),
                };
                // As an agent does once enrolled: its whole inventory, on
                // a connection of its own.
                let mut sim = Sim {
                    identity: identity.clone(),
                    config: None,
                    channel: None,
                    digests: None,
                    facts: facts_to_wire(&facts),
                    variant: 0,
                };
                check_in(&mut sim, &collector, &ca, Mode::Full, None, 2, &names)
                    .await
                    .map_err(|e| anyhow::anyhow!("the first report of agent {i} failed: {e}"))?;
                let digests: Vec<(&str, &str)> = sim
                    .digests
                    .iter()
                    .flat_map(|(_, d)| d.iter().map(|d| (d.name.as_str(), d.digest.as_str())))
                    .collect();
                let digests = serde_json::to_string(&(i, digests))?;
                writeln!(kept.lock().unwrap_or_else(|e| e.into_inner()), "{digests}")?;
                let line = serde_json::to_string(&identity)?;
                writeln!(out.lock().unwrap_or_else(|e| e.into_inner()), "{line}")?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 1000 == 0 {
                    eprintln!(
                        "  {n} agents enrolled and reported ({:.0} s)",
                        t.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    let mut first_error = None;
    for task in tasks {
        if let Err(e) = task.await? {
            first_error.get_or_insert(e);
        }
    }
    out.lock().unwrap_or_else(|e| e.into_inner()).sync_all()?;
    let n = done.load(Ordering::Relaxed);
    println!(
        "{n} agents enrolled, each with its first report, in {:.1} s ({:.0}/s); {} holds {}",
        t.elapsed().as_secs_f64(),
        n as f64 / t.elapsed().as_secs_f64().max(1e-9),
        dir.display(),
        start + n
    );
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A simulated agent during a run.
struct Sim {
    identity: Identity,
    /// Its own configuration (resume, keepalive): sessions resume.
    config: Option<Arc<rustls::ClientConfig>>,
    channel: Option<AgentClient<Channel>>,
    /// The digests of its inventory at `variant`, once made.
    digests: Option<(u64, Vec<v1::SectionDigest>)>,
    /// Its facts as last sent.
    facts: v1::HostFacts,
    variant: u64,
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    /// `--once`: agents not served before the end.
    given_up: u64,
    /// `--once`: seconds from the start until the last agent was served.
    last_served: f64,
    errors: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
    acknowledged: Vec<(String, u64)>,
}

/// Sequence numbers that only grow, across runs: milliseconds since the
/// epoch times 1 000, then one by one.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Starts this process's sequence numbers from the clock.
fn start_sequences() {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    SEQUENCE.store(now_ms * 1000, Ordering::Relaxed);
}

fn next_sequence() -> u64 {
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

/// One check-in of `sim`; `Err` holds the error's kind.
async fn check_in(
    sim: &mut Sim,
    collector: &str,
    ca: &str,
    mode: Mode,
    route: Option<Route>,
    kind: u64,
    names: &[String],
) -> Result<u64, String> {
    let mut client = match (&sim.channel, mode) {
        (Some(c), Mode::Keepalive) => c.clone(),
        _ => {
            let config = match (&sim.config, mode) {
                (Some(c), Mode::Resume | Mode::Keepalive) => c.clone(),
                _ => {
                    let identity = (sim.identity.cert_pem.clone(), sim.identity.key_pem.clone());
                    let c = Arc::new(
                        build_client_config(ca, Some(&identity))
                            .map_err(|_| "credentials".to_string())?,
                    );
                    if mode != Mode::Full {
                        sim.config = Some(c.clone());
                    }
                    c
                }
            };
            let channel = connect_with(collector, config, route)
                .await
                .map_err(|_| "connect".to_string())?;
            let c = AgentClient::new(channel).max_encoding_message_size(64 * 1024 * 1024);
            if mode == Mode::Keepalive {
                sim.channel = Some(c.clone());
            }
            c
        }
    };
    // kind: 0 unchanged, 1 one changed section, 2 full inventory.
    if kind == 1 {
        sim.variant += 1;
    }
    // The inventory is made (a few thousand items) only when a section is
    // sent or its digests are not known yet: an unchanged check-in of a
    // simulated agent costs the load generator what it costs an agent.
    let mut made = None;
    let digests = match &mut sim.digests {
        Some((v, d)) if *v == sim.variant && kind == 0 => &*d,
        slot => {
            let (facts, sections) = inventory(sim.identity.index, sim.variant, names);
            let d: Vec<v1::SectionDigest> = sections
                .iter()
                .map(|(name, s)| v1::SectionDigest {
                    name: name.clone(),
                    digest: s.digest(),
                })
                .collect();
            made = Some((facts, sections));
            &slot.insert((sim.variant, d)).1
        }
    };
    let sequence = next_sequence();
    // Like an agent that lost its progress, a simulated agent's first
    // check-in of a run sends digests only: the collector asks for the
    // sections it lacks (a new agent's, or one changed in an earlier run).
    let mut send: Vec<String> = match kind {
        2 => digests.iter().map(|d| d.name.clone()).collect(),
        1 => vec!["dpkg".into()],
        _ => Vec::new(),
    };
    for _ in 0..2 {
        if !send.is_empty() && made.is_none() {
            made = Some(inventory(sim.identity.index, sim.variant, names));
        }
        if let Some((f, _)) = &made {
            sim.facts = facts_to_wire(f);
        }
        let req = v1::CheckInRequest {
            sequence,
            facts: Some(sim.facts.clone()),
            digests: digests.clone(),
            sections: send
                .iter()
                .filter_map(|n| {
                    let (_, sections) = made.as_ref()?;
                    sections.get(n).map(|s| section_to_wire(n, s))
                })
                .collect(),
            detections: Vec::new(),
            catalog_version: String::new(),
            scanned_at: muster_collector::store::now(),
        };
        let resp = match client.check_in(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                sim.channel = None;
                return Err(if muster_proto::busy::retry_after(&s).is_some() {
                    "deferred".into()
                } else {
                    format!("{:?}", s.code())
                });
            }
        };
        if resp.acknowledged_sequence == sequence {
            return Ok(sequence);
        }
        if resp.missing_sections.is_empty() {
            return Err("not_acknowledged".into());
        }
        // What was sent and what is missing: the collector took nothing.
        send.extend(resp.missing_sections);
    }
    Err("base_missing_twice".into())
}

/// CPU seconds (user + system) and RSS in KiB of process `pid`.
fn sample(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / 100.0, rss))
}

async fn run(a: RunArgs) -> Result<()> {
    let RunArgs {
        collector,
        state_dir: dir,
        duration,
        mode,
        rate,
        changed,
        full,
        concurrency,
        sources,
        mut collector_pid,
        record,
        once,
        restart,
        format,
    } = a;
    let duration = parse_duration(&duration)?;
    let ca = std::fs::read_to_string(dir.join("ca.pem")).with_context(|| {
        format!(
            "{} holds no ca.pem: run `muster-loadgen enroll` first",
            dir.display()
        )
    })?;
    let identities = load_identities(&dir)?;
    if identities.is_empty() {
        bail!(
            "{} holds no agents: run `muster-loadgen enroll` first",
            dir.display()
        );
    }
    anyhow::ensure!(
        (0.0..=1.0).contains(&changed) && (0.0..=1.0).contains(&full) && changed + full <= 1.0,
        "--changed and --full are fractions whose sum is at most 1"
    );
    anyhow::ensure!(rate.is_none_or(|r| r > 0.0), "--rate must be above 0");
    start_sequences();
    let loopback = collector.contains("://localhost:") || collector.contains("://127.");
    let spread = loopback && sources > 0;
    // The collector's address, resolved once: a lookup at every connection
    // costs the load generator (a thread hop and /etc/hosts read) what no
    // baseline pays, and an agent pays once an hour.
    let remote = muster_proto::channel::resolve(&collector)
        .await?
        .into_iter()
        .find(|a| !spread || a.is_ipv4())
        .with_context(|| format!("{collector} resolves to no address to connect to"))?;
    let route_of = |w: usize| Route {
        remote,
        local: spread
            .then(|| std::net::IpAddr::from([127, 0, 0, 1 + (w % usize::from(sources)) as u8])),
    };
    let n_agents = identities.len();
    let workers = concurrency.clamp(1, n_agents);
    // Agent k belongs to worker k % workers: one check-in per agent at a
    // time, so its sequence numbers arrive in order.
    let names = Arc::new(package_names());
    let mut digests = first_digests(&dir, &identities, &names)?;
    let mut shards: Vec<Vec<Sim>> = (0..workers).map(|_| Vec::new()).collect();
    for (k, identity) in identities.into_iter().enumerate() {
        let i = identity.index;
        shards[k % workers].push(Sim {
            identity,
            config: None,
            channel: None,
            digests: digests.remove(&i).map(|d| (0, d)),
            facts: facts_to_wire(&facts(i)),
            variant: 0,
        });
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let pace = Arc::new(Mutex::new(Instant::now()));
    // With --restart the measured round starts after the command: every
    // worker warms its agents, waits at the barrier, then for the start.
    let barrier = Arc::new(tokio::sync::Barrier::new(workers + 1));
    let (go, ready) = tokio::sync::watch::channel(None::<Instant>);
    // Kept-open connections are measured open: every agent connects (and
    // checks in once) before the clock starts, and the time that took is
    // reported apart. So is every agent's check-in before a --restart.
    let warm = restart.is_some() || (mode == Mode::Keepalive && !once);
    if warm {
        eprintln!("every agent connects and checks in once before the measured run");
    }
    let warm_start = Instant::now();
    let warm_deadline = warm_start + duration;
    let mut tasks = Vec::new();
    for (w, shard) in shards.iter_mut().enumerate() {
        let mut shard = std::mem::take(shard);
        let (collector, ca, names, barrier, mut ready) = (
            collector.clone(),
            ca.clone(),
            names.clone(),
            barrier.clone(),
            ready.clone(),
        );
        let route = Some(route_of(w));
        tasks.push(tokio::spawn(async move {
            let mut unserved = 0u64;
            if warm {
                for sim in &mut shard {
                    let mut served = false;
                    while !served && Instant::now() < warm_deadline {
                        served = check_in(sim, &collector, &ca, mode, route, 0, &names)
                            .await
                            .is_ok();
                        if !served {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                    unserved += u64::from(!served);
                }
                barrier.wait().await;
                let _ = ready.wait_for(Option::is_some).await;
            }
            (shard, unserved)
        }));
    }
    let warm_up = if warm {
        barrier.wait().await;
        Some(warm_start.elapsed().as_secs_f64())
    } else {
        None
    };
    if let Some(cmd) = &restart {
        eprintln!("running: {cmd}");
        let out = std::process::Command::new("sh")
            .args(["-c", cmd])
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run {cmd:?}"))?;
        anyhow::ensure!(out.status.success(), "{cmd:?} failed: {}", out.status);
        if let Some(pid) = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
        {
            collector_pid = Some(pid);
        }
    }
    let start = Instant::now();
    let deadline = start + duration;
    let _ = go.send(Some(start));
    let mut unserved_before = 0;
    for (task, shard) in tasks.into_iter().zip(shards.iter_mut()) {
        let (s, u) = task.await?;
        *shard = s;
        unserved_before += u;
    }
    if warm {
        anyhow::ensure!(
            unserved_before == 0,
            "{unserved_before} agents could not check in before the restart"
        );
    }
    let before = collector_pid.and_then(sample);
    let rss_max = Arc::new(AtomicU64::new(before.map_or(0, |s| s.1)));
    let sampler = collector_pid.map(|pid| {
        let rss_max = rss_max.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Some((_, rss)) = sample(pid) {
                    rss_max.fetch_max(rss, Ordering::Relaxed);
                }
            }
        })
    });
    let mut tasks = Vec::new();
    for (w, mut shard) in shards.into_iter().enumerate() {
        let (collector, ca, names, tally, pace) = (
            collector.clone(),
            ca.clone(),
            names.clone(),
            tally.clone(),
            pace.clone(),
        );
        let recording = record.is_some();
        let route = Some(route_of(w));
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (w as u64 + 1));
            if once {
                for sim in &mut shard {
                    loop {
                        if Instant::now() >= deadline {
                            tally.lock().unwrap_or_else(|e| e.into_inner()).given_up += 1;
                            break;
                        }
                        let t = Instant::now();
                        let outcome = check_in(sim, &collector, &ca, mode, route, 0, &names).await;
                        let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                        let served = {
                            let mut tl = tally.lock().unwrap_or_else(|e| e.into_inner());
                            match outcome {
                                Ok(seq) => {
                                    tl.accepted += 1;
                                    tl.latencies_us.push(us);
                                    tl.last_served =
                                        tl.last_served.max(start.elapsed().as_secs_f64());
                                    if recording {
                                        tl.acknowledged.push((sim.identity.id.clone(), seq));
                                    }
                                    true
                                }
                                Err(kind) => {
                                    *tl.errors.entry(kind).or_default() += 1;
                                    false
                                }
                            }
                        };
                        if served {
                            break;
                        }
                        // An agent's retry: half a second to a second and
                        // a half later, spread so retries do not come back
                        // together.
                        let pause = 500 + rng.next_u64() % 1000;
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                }
                return;
            }
            let mut k = 0;
            while Instant::now() < deadline {
                if let Some(r) = rate {
                    let slot = {
                        let mut next = pace.lock().unwrap_or_else(|e| e.into_inner());
                        let slot = (*next).max(Instant::now());
                        *next = slot + Duration::from_secs_f64(1.0 / r);
                        slot
                    };
                    if slot >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(slot.into()).await;
                }
                let roll = (rng.next_u64() % 1_000_000) as f64 / 1_000_000.0;
                let kind = if roll < full {
                    2
                } else if roll < full + changed {
                    1
                } else {
                    0
                };
                let len = shard.len();
                let sim = &mut shard[k % len];
                k += 1;
                let t = Instant::now();
                let outcome = check_in(sim, &collector, &ca, mode, route, kind, &names).await;
                let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                let mut tl = tally.lock().unwrap_or_else(|e| e.into_inner());
                match outcome {
                    Ok(seq) => {
                        tl.accepted += 1;
                        tl.latencies_us.push(us);
                        if recording {
                            tl.acknowledged.push((sim.identity.id.clone(), seq));
                        }
                    }
                    Err(kind) => *tl.errors.entry(kind).or_default() += 1,
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(s) = sampler {
        s.abort();
    }
    let after = collector_pid.and_then(sample);
    let tl = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(path) = &record {
        let mut text = String::new();
        for (id, seq) in &tl.acknowledged {
            text.push_str(&format!("{id} {seq}\n"));
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let collector_figures = collector_pid.map(|pid| {
        let cpu = match (before, after) {
            (Some(b), Some(a)) => Some((a.0 - b.0) / elapsed * 100.0),
            _ => None,
        };
        serde_json::json!({
            "pid": pid,
            "cpu_percent": cpu.map(|c| (c * 10.0).round() / 10.0),
            "rss_max_mib": (rss_max.load(Ordering::Relaxed) as f64 / 1024.0 * 10.0).round() / 10.0,
        })
    });
    let mode = format!("{mode:?}").to_lowercase();
    let once = once.then(|| {
        serde_json::json!({
            "given_up": tl.given_up,
            "all_served_s": (tl.given_up == 0).then(|| (tl.last_served * 10.0).round() / 10.0),
        })
    });
    let mut report = Report::new(&mode, n_agents, workers, elapsed, tl, collector_figures);
    if let Some(o) = once {
        report.0["once"] = o;
    }
    if let Some(w) = warm_up {
        report.0["warm_up_s"] = serde_json::json!((w * 10.0).round() / 10.0);
    }
    report.print(format)
}

/// What a run measured, as the table and the JSON show it.
struct Report(serde_json::Value);

impl Report {
    fn new(
        mode: &str,
        agents: usize,
        concurrency: usize,
        elapsed: f64,
        mut tl: Tally,
        collector: Option<serde_json::Value>,
    ) -> Report {
        tl.latencies_us.sort_unstable();
        let pct = |p: f64| -> f64 {
            if tl.latencies_us.is_empty() {
                return 0.0;
            }
            let i = ((tl.latencies_us.len() as f64 * p).ceil() as usize)
                .clamp(1, tl.latencies_us.len());
            f64::from(tl.latencies_us[i - 1]) / 1000.0
        };
        let errors: u64 = tl.errors.values().sum();
        Report(serde_json::json!({
            "mode": mode,
            "agents": agents,
            "concurrency": concurrency,
            "duration_s": (elapsed * 10.0).round() / 10.0,
            "accepted": tl.accepted,
            "errors": errors,
            "errors_by_kind": tl.errors,
            "per_second": (tl.accepted as f64 / elapsed * 10.0).round() / 10.0,
            "latency_ms": {
                "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
                "max": tl.latencies_us.last().map_or(0.0, |&u| f64::from(u) / 1000.0),
            },
            "collector": collector,
        }))
    }

    fn print(&self, format: Format) -> Result<()> {
        let r = &self.0;
        if format == Format::Json {
            println!("{}", serde_json::to_string_pretty(r)?);
            return Ok(());
        }
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        t.set_header(["measure", "figure"]);
        let l = &r["latency_ms"];
        let errors = r["errors_by_kind"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| format!("{k}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        for (k, v) in [
            ("mode", r["mode"].as_str().unwrap_or_default().to_string()),
            (
                "agents / in flight",
                format!("{} / {}", r["agents"], r["concurrency"]),
            ),
            (
                "duration",
                match r["warm_up_s"].as_f64() {
                    Some(w) => format!(
                        "{} s, after {w} s for every agent to connect and check in once",
                        r["duration_s"]
                    ),
                    None => format!("{} s", r["duration_s"]),
                },
            ),
            ("accepted", r["accepted"].to_string()),
            ("per second", r["per_second"].to_string()),
            (
                "latency p50 / p90 / p99 / max",
                format!(
                    "{} / {} / {} / {} ms",
                    l["p50"], l["p90"], l["p99"], l["max"]
                ),
            ),
            ("errors", errors),
        ] {
            t.add_row([k.to_string(), v]);
        }
        if let Some(o) = r["once"].as_object() {
            t.add_row([
                "every agent once: all served after / gave up".to_string(),
                format!(
                    "{} / {}",
                    o["all_served_s"]
                        .as_f64()
                        .map_or("not all".to_string(), |s| format!("{s} s")),
                    o["given_up"]
                ),
            ]);
        }
        if let Some(c) = r["collector"].as_object() {
            t.add_row([
                "collector CPU / peak RSS".to_string(),
                format!("{}% / {} MiB", c["cpu_percent"], c["rss_max_mib"]),
            ]);
        }
        println!("{t}");
        Ok(())
    }
}

/// A CA, a server certificate for localhost and a client certificate, as
/// the collector would issue them.
fn baseline_pki() -> Result<(
    String,
    muster_collector::pki::Issued,
    muster_collector::pki::Issued,
)> {
    let (ca, _) = muster_collector::pki::Authority::generate("baseline")?;
    let server = ca.server_cert("localhost")?;
    let client = ca.operator_cert("baseline", 1)?;
    Ok((ca.cert_pem.clone(), server, client))
}

fn server_config(
    ca_pem: &str,
    server: &muster_collector::pki::Issued,
) -> Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build()?;
    let chain = CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes())?;
    let mut cfg = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// One bare mutual-TLS handshake with the baseline server, which answers
/// one byte once it is done; true when the session was resumed.
async fn bare_handshake(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<bool, String> {
    use tokio::io::AsyncReadExt;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|_| "connect".to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|_| "handshake".to_string())?;
    let mut b = [0u8; 1];
    tls.read_exact(&mut b)
        .await
        .map_err(|_| "read".to_string())?;
    Ok(tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
}

async fn baseline(
    mode: BaselineMode,
    duration: Duration,
    concurrency: usize,
    format: Format,
) -> Result<()> {
    let (ca, server, client) = baseline_pki()?;
    let mut server_cfg = server_config(&ca, &server)?;
    if mode == BaselineMode::Resumption {
        // The collector's own session tickets. They live in memory once
        // made; the file they are written to is not needed after.
        let file = std::env::temp_dir().join(format!(
            "muster-loadgen-baseline-tickets-{}",
            std::process::id()
        ));
        let keys = muster_collector::tickets::TicketKeys::load_or_create(&file);
        let _ = std::fs::remove_file(&file);
        server_cfg.ticketer = Arc::new(keys?);
        server_cfg.send_tls13_tickets = 1;
    }
    let server_cfg = Arc::new(server_cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let url = format!("https://localhost:{}", addr.port());
    let identity = (client.cert_pem.clone(), client.key_pem.clone());
    match mode {
        BaselineMode::Handshake | BaselineMode::Resumption => {
            // The server completes each handshake and answers one byte, so
            // both ends have done all their work before the client counts it.
            let acceptor = tokio_rustls::TlsAcceptor::from(server_cfg);
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    // As the collector's listener.
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        if let Ok(mut tls) = acceptor.accept(tcp).await {
                            let _ = tls.write_all(b"k").await;
                            let _ = tls.shutdown().await;
                        }
                    });
                }
            });
        }
        BaselineMode::Echo => {
            let (health, service) = tonic_health::server::health_reporter();
            health
                .set_service_status("", tonic_health::ServingStatus::Serving)
                .await;
            let acceptor = tokio_rustls::TlsAcceptor::from(server_cfg);
            let (tx, rx) = tokio::sync::mpsc::channel(128);
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let _ = tcp.set_nodelay(true);
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = tx.send(Ok::<_, std::io::Error>(tls)).await;
                        }
                    });
                }
            });
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx)),
            );
        }
    }
    // Resumption: each worker's first handshake is a full one, made before
    // the clock starts.
    let mut resuming = vec![None; concurrency.max(1)];
    if mode == BaselineMode::Resumption {
        for slot in resuming.iter_mut() {
            let config = Arc::new(
                build_client_config(&ca, Some(&identity)).map_err(|e| anyhow::anyhow!(e))?,
            );
            bare_handshake(addr, config.clone())
                .await
                .map_err(|e| anyhow::anyhow!("baseline handshake: {e}"))?;
            *slot = Some(config);
        }
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for w in 0..concurrency.max(1) {
        let (url, ca, identity, tally) = (url.clone(), ca.clone(), identity.clone(), tally.clone());
        let resuming = resuming[w].clone();
        tasks.push(tokio::spawn(async move {
            let mut echo = None;
            while Instant::now() < deadline {
                let t = Instant::now();
                let outcome: Result<(), String> = match mode {
                    BaselineMode::Handshake => {
                        async {
                            // A new configuration each time: no resumption.
                            let config = Arc::new(
                                build_client_config(&ca, Some(&identity))
                                    .map_err(|e| e.to_string())?,
                            );
                            bare_handshake(addr, config).await.map(|_| ())
                        }
                        .await
                    }
                    BaselineMode::Resumption => match &resuming {
                        Some(config) => match bare_handshake(addr, config.clone()).await {
                            Ok(true) => Ok(()),
                            Ok(false) => Err("not_resumed".to_string()),
                            Err(e) => Err(e),
                        },
                        None => Err("credentials".to_string()),
                    },
                    BaselineMode::Echo => {
                        async {
                            if echo.is_none() {
                                let config = Arc::new(
                                    build_client_config(&ca, Some(&identity))
                                        .map_err(|e| e.to_string())?,
                                );
                                let bind = std::net::IpAddr::from([127, 0, 0, 1 + (w % 8) as u8]);
                                let route = Route {
                                    remote: addr,
                                    local: Some(bind),
                                };
                                let channel = connect_with(&url, config, Some(route))
                                    .await
                                    .map_err(|_| "connect".to_string())?;
                                echo = Some(tonic_health::pb::health_client::HealthClient::new(
                                    channel,
                                ));
                            }
                            let client = echo.as_mut().expect("set above");
                            client
                                .check(tonic_health::pb::HealthCheckRequest {
                                    service: String::new(),
                                })
                                .await
                                .map_err(|s| format!("{:?}", s.code()))?;
                            Ok(())
                        }
                        .await
                    }
                };
                let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                let mut tl = tally.lock().unwrap_or_else(|e| e.into_inner());
                match outcome {
                    Ok(()) => {
                        tl.accepted += 1;
                        tl.latencies_us.push(us);
                    }
                    Err(kind) => *tl.errors.entry(kind).or_default() += 1,
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let tl = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    let report = Report::new(
        &format!("baseline-{mode:?}").to_lowercase(),
        0,
        concurrency,
        elapsed,
        tl,
        None,
    );
    report.print(format)
}

fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Enroll {
                collector,
                identity,
                state_dir,
                agents,
                token,
                concurrency,
            } => enroll(collector, identity, state_dir, agents, token, concurrency).await,
            Cmd::Baseline {
                mode,
                duration,
                concurrency,
                format,
            } => baseline(mode, parse_duration(&duration)?, concurrency, format).await,
            Cmd::Run(a) => run(a).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
