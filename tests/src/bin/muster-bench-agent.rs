//! The agent's footprint on this machine: a real agent (`muster-agent run`,
//! the live host) reporting every 10 s to a real collector through a relay
//! in this process that counts the bytes of each connection. Reported: peak
//! RSS during the first (full) scan and check-in, RSS while idle between
//! check-ins, CPU time of a scan and check-in, bytes on the wire of a full
//! check-in, and the stripped binary's size.
//!
//! Bytes of an unchanged check-in (TLS handshake included: each check-in
//! is a new connection) are measured on a second agent scanning a fixed
//! image, because the live host's process list may change between two
//! scans: once as a new process (`run --once`, a full handshake) and once
//! as the second check-in of a running agent (`run`), which resumes the
//! TLS session of the first.
//!
//!   cargo run --release -p muster-tests --bin muster-bench-agent -- [--json]

use muster_tests::*;
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes (agent to collector, collector to agent) of each connection, in
/// order.
type Flows = Arc<Mutex<Vec<(Arc<Mutex<u64>>, Arc<Mutex<u64>>)>>>;

fn relay(upstream: u16) -> (u16, Flows) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let flows: Flows = Arc::default();
    let f = flows.clone();
    std::thread::spawn(move || {
        for client in l.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (up, down) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
            f.lock().expect("flows").push((up.clone(), down.clone()));
            let pipe =
                |mut from: std::net::TcpStream, mut to: std::net::TcpStream, n: Arc<Mutex<u64>>| {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(k @ 1..) = from.read(&mut buf) {
                            *n.lock().expect("count") += k as u64;
                            if to.write_all(&buf[..k]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
            pipe(
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
                up,
            );
            pipe(server, client, down);
        }
    });
    (port, flows)
}

/// (RSS KiB, peak RSS KiB, CPU seconds) of process `pid`.
fn sample(pid: u32) -> Option<(u64, u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((kib("VmRSS:")?, kib("VmHWM:")?, ticks / 100.0))
}

/// Enrolls an agent into `state` and points it at the relay on `port`.
fn agent_behind_relay(c: &Collector, state: &std::path::Path, port: u16) {
    c.enroll(state);
    let cfg = state.join("agent.toml");
    let text = std::fs::read_to_string(&cfg).expect("agent.toml");
    std::fs::write(
        &cfg,
        text.replace(&c.url(), &format!("https://localhost:{port}")),
    )
    .expect("agent.toml");
}

/// How many check-ins the agent logging to `log` has had acknowledged.
fn acks(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("check-in acknowledged")
        .count()
}

/// The bytes of an unchanged check-in on a fixed image: (new process,
/// second check-in of a running agent), each (up, down).
fn unchanged_checkins(c: &Collector) -> ((u64, u64), (u64, u64)) {
    let (port, flows) = relay(c.port);
    let state = c.dir.join("agent-image");
    agent_behind_relay(c, &state, port);
    let img = c.dir.join("img");
    linux_image(
        &img,
        "bench-image",
        &[("bash", "5.2", "install ok installed")],
        &["ssh.service"],
    );
    // The first (full) check-in, then an unchanged one from a new process.
    for _ in 0..2 {
        let out = agent_once(&state, &img);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A running agent: its first check-in makes a full handshake, its
    // second resumes.
    let log = c.dir.join("agent-image.log");
    let mut agent = agent_run(
        &state,
        &img,
        &[],
        std::fs::File::create(&log).expect("log").into(),
    );
    let twice = wait_for(Duration::from_secs(40), || (acks(&log) >= 2).then_some(()));
    let _ = agent.kill();
    let _ = agent.wait();
    twice.unwrap_or_else(|| {
        panic!(
            "the agent did not check in twice: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.matches("sections_sent=0").count() >= 2,
        "the image changed between check-ins: {text}"
    );
    let flows = flows.lock().expect("flows");
    let f = |i: usize| {
        let (u, d) = &flows[i];
        (*u.lock().expect("n"), *d.lock().expect("n"))
    };
    (f(1), f(3))
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let c = Collector::start_with(|data| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("collector.toml"))
            .expect("config");
        writeln!(f, "\ncheckin_interval = \"10s\"").expect("write");
    });
    let state = c.dir.join("agent");
    let (port, flows) = relay(c.port);
    agent_behind_relay(&c, &state, port);
    let log = c.dir.join("agent.log");
    let mut agent = cmd("muster-agent")
        .args(["run", "--state-dir"])
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("agent");
    let pid = agent.id();
    let started = Instant::now();
    let mut first = None;
    let mut idle_rss = 0;
    let mut second = None;
    while started.elapsed() < Duration::from_secs(60) {
        let Some(s) = sample(pid) else { break };
        match acks(&log) {
            1 if first.is_none() => first = Some(s),
            // Idle: a few seconds after the first check-in.
            1 if first.is_some() && idle_rss == 0 && started.elapsed() > Duration::from_secs(6) => {
                idle_rss = s.0
            }
            2.. => {
                second = Some(s);
                break;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    let (Some(first), Some(second)) = (first, second) else {
        panic!(
            "the agent did not check in twice: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    let flows: Vec<(u64, u64)> = flows
        .lock()
        .expect("flows")
        .iter()
        .map(|(u, d)| (*u.lock().expect("n"), *d.lock().expect("n")))
        .collect();
    let (once, resumed) = unchanged_checkins(&c);
    let bytes = |i: usize| flows.get(i).map(|(u, d)| u + d).unwrap_or(0);
    let exe = bin_dir().join("muster-agent");
    let stripped = c.dir.join("muster-agent.stripped");
    let strip = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&exe)
        .status();
    let size = strip
        .ok()
        .filter(|s| s.success())
        .and_then(|_| std::fs::metadata(&stripped).ok())
        .map(|m| m.len())
        .unwrap_or(0);
    let figures = serde_json::json!({
        "peak_rss_kib": second.1,
        "idle_rss_kib": idle_rss,
        "first_checkin_cpu_seconds": first.2,
        "second_checkin_cpu_seconds": second.2 - first.2,
        "full_checkin_bytes": bytes(0),
        "second_live_checkin_bytes": bytes(1),
        "unchanged_checkin_new_process_up_down": once,
        "unchanged_checkin_bytes": resumed.0 + resumed.1,
        "unchanged_checkin_up_down": resumed,
        "stripped_binary_bytes": size,
        "connections": flows.len(),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&figures).expect("json"));
        return;
    }
    println!("agent footprint (live host, {} s between check-ins)", 10);
    println!(
        "  peak RSS (first scan and check-in): {:.1} MiB",
        second.1 as f64 / 1024.0
    );
    println!(
        "  idle RSS between check-ins:          {:.1} MiB",
        idle_rss as f64 / 1024.0
    );
    println!("  CPU, first scan and check-in:        {:.2} s", first.2);
    println!(
        "  CPU, next (unchanged) check-in:      {:.2} s",
        second.2 - first.2
    );
    println!("  bytes, full check-in:                {}", bytes(0));
    println!("  bytes, second check-in (live host):  {}", bytes(1));
    println!(
        "  bytes, unchanged check-in, new process (full TLS handshake): {} (up {}, down {})",
        once.0 + once.1,
        once.0,
        once.1
    );
    println!(
        "  bytes, unchanged check-in, running agent (TLS resumed):     {} (up {}, down {})",
        resumed.0 + resumed.1,
        resumed.0,
        resumed.1
    );
    println!(
        "  stripped binary:                     {:.1} MB",
        size as f64 / 1e6
    );
}
