//! The agent's footprint on this machine: a real agent (`muster-agent run`,
//! the live host) reporting every 10 s to a real collector through a relay
//! in this process that counts the bytes of each connection. Reported: peak
//! RSS during the first (full) scan and check-in, RSS while idle between
//! check-ins, CPU time of a scan and check-in, bytes on the wire of a full
//! and of an unchanged check-in (TLS handshake included: each check-in is
//! a new connection), and the stripped binary's size.
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
    c.enroll(&state);
    let (port, flows) = relay(c.port);
    let cfg = state.join("agent.toml");
    let text = std::fs::read_to_string(&cfg).expect("agent.toml");
    std::fs::write(
        &cfg,
        text.replace(&c.url(), &format!("https://localhost:{port}")),
    )
    .expect("agent.toml");
    let log = c.dir.join("agent.log");
    let mut agent = cmd("muster-agent")
        .args(["run", "--state-dir"])
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("agent");
    let pid = agent.id();
    let acks = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("check-in acknowledged")
            .count()
    };
    let started = Instant::now();
    let mut first = None;
    let mut idle_rss = 0;
    let mut second = None;
    while started.elapsed() < Duration::from_secs(60) {
        let Some(s) = sample(pid) else { break };
        match acks() {
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
        "unchanged_checkin_bytes": bytes(1),
        "unchanged_checkin_up_down": flows.get(1),
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
    println!(
        "  bytes, unchanged check-in:           {} (up {}, down {}; TLS handshake included)",
        bytes(1),
        flows.get(1).map(|f| f.0).unwrap_or(0),
        flows.get(1).map(|f| f.1).unwrap_or(0)
    );
    println!(
        "  stripped binary:                     {:.1} MB",
        size as f64 / 1e6
    );
}
