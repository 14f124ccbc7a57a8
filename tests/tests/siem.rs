//! The SIEM exporters against real receivers: rsyslog over TCP and over
//! TLS (with certificates made here), killed and restarted while events
//! flow; an HTTP server that refuses the first requests; the JSON-lines
//! file; several collectors on one PostgreSQL database; the metrics.

use muster_tests::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Appends `text` to the file `path` (a collector's config).
fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A CA of the test's own (a SIEM's), a server certificate from it for
/// `localhost` and a client certificate, as PEM files under `dir`: (CA,
/// server certificate, server key, client certificate, client key).
fn test_pki(dir: &Path, tag: &str) -> [PathBuf; 5] {
    let (ca, _) = muster_collector::pki::Authority::generate(tag).unwrap();
    let server = ca.server_cert("localhost").unwrap();
    let client = ca.operator_cert("muster-collector", 30).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(format!("{tag}-{name}"));
        std::fs::write(&p, text).unwrap();
        p
    };
    [
        write("ca.pem", &ca.cert_pem),
        write("server.pem", &server.cert_pem),
        write("server-key.pem", &server.key_pem),
        write("client.pem", &client.cert_pem),
        write("client-key.pem", &client.key_pem),
    ]
}

fn rsyslogd() -> Option<PathBuf> {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// An rsyslog of our own: its config, work folder and output file under
/// `dir`, listening on `port` (TLS when given a CA, certificate and key;
/// it then wants a client certificate signed by that CA).
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    fn start(dir: &Path, tls: Option<(&Path, &Path, &Path)>) -> Rsyslog {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let d = dir.display();
        let (global, module) = match tls {
            None => (String::new(), "module(load=\"imtcp\")".to_string()),
            Some((ca, cert, key)) => (
                format!(
                    " DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{}\" \
                     DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\"",
                    ca.display(),
                    cert.display(),
                    key.display()
                ),
                "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" \
                 StreamDriver.AuthMode=\"x509/certvalid\")"
                    .to_string(),
            ),
        };
        let conf = format!(
            "global(workDirectory=\"{d}\"{global})\n{module}\n\
             input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\" ruleset=\"in\")\n\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             ruleset(name=\"in\") {{ action(type=\"omfile\" file=\"{d}/events.log\" template=\"raw\") }}\n"
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let mut r = Rsyslog {
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let out = std::fs::File::create(self.dir.join("rsyslogd.out")).unwrap();
        let child = Command::new(rsyslogd().expect("rsyslogd"))
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("pid"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let port = self.port;
        wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "rsyslogd did not listen: {}",
                std::fs::read_to_string(self.dir.join("rsyslogd.out")).unwrap_or_default()
            )
        });
    }

    /// SIGKILL: whatever it had not written is gone, as in a crash.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("events.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of `key=` in a CEF or LEEF line (up to the next space or
/// tab, which rsyslog writes as `#011`; ids and hostnames here have
/// neither).
fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!("{key}="))?;
    let rest = line[at + key.len() + 1..].replace("#011", "\t");
    Some(
        rest.split([' ', '\t'])
            .next()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Every event id in the hosts' timelines.
fn stored_event_ids(c: &Collector) -> Vec<String> {
    let mut ids = Vec::new();
    for h in c.hosts() {
        let id = h["id"].as_str().unwrap();
        let d: Value = serde_json::from_str(&c.muster(&["host", id, "--format", "json"])).unwrap();
        for e in d["timeline"].as_array().unwrap() {
            ids.push(e["id"].as_str().unwrap().to_string());
        }
    }
    ids
}

fn siem_status(c: &Collector) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&c.muster(&["siem", "status", "--format", "json"])).unwrap();
    v["exporters"].as_array().unwrap().clone()
}

/// Waits until every exporter has nothing waiting and no error.
fn wait_drained(c: &Collector, secs: u64) {
    wait_drained_but(c, &[], secs)
}

/// Waits until every exporter but `except` has nothing waiting and no
/// error.
fn wait_drained_but(c: &Collector, except: &[&str], secs: u64) {
    wait_for(Duration::from_secs(secs), || {
        let st = siem_status(c);
        st.iter()
            .filter(|e| !except.iter().any(|n| e["name"] == *n))
            .all(|e| e["lag_events"] == 0 && e["state"] == "ok")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("exporters did not drain: {:?}\n{}", siem_status(c), c.log()));
}

/// Agents on images whose packages the test changes between runs.
struct Fleet {
    hosts: Vec<(PathBuf, PathBuf, String)>,
}

impl Fleet {
    fn enroll(c: &Collector, n: usize) -> Fleet {
        let hosts = (0..n)
            .map(|i| {
                let state = c.dir.join(&format!("agent{i}"));
                c.enroll(&state);
                (
                    state,
                    c.dir.join(&format!("img{i}")),
                    format!("siem-host-{i}"),
                )
            })
            .collect();
        Fleet { hosts }
    }

    /// Every host reports once with kesl in `status`.
    fn report(&self, kesl_status: &str) {
        for (state, root, name) in &self.hosts {
            linux_image(
                root,
                name,
                &[
                    ("bash", "5.2.15-2", "install ok installed"),
                    ("kesl", "12.1.0.1297", kesl_status),
                ],
                &[],
            );
            ok(cmd("muster-agent")
                .args(["run", "--once", "--state-dir"])
                .arg(state)
                .arg("--root")
                .arg(root));
        }
    }
}

const INSTALLED: &str = "install ok installed";
const REMNANT: &str = "deinstall ok config-files";

/// The acceptance criterion of at-least-once: rsyslog over TCP and over
/// TLS with a client certificate, killed (SIGKILL) while check-ins keep
/// making events and restarted later; every stored event arrives at both,
/// duplicates counted.
#[test]
fn syslog_over_tcp_and_tls_loses_nothing_when_rsyslog_is_killed() {
    if rsyslogd().is_none() {
        eprintln!("skipped: rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)");
        return;
    }
    let work = TempDir::new("siem-syslog");
    // A SIEM's own CA: rsyslog's server certificate and the collector's
    // client certificate.
    let [ca_pem, srv_cert, srv_key, cli_cert, cli_key] = test_pki(&work.0, "siem");
    let mut tcp = Rsyslog::start(&work.join("tcp"), None);
    let mut tls = Rsyslog::start(&work.join("tls"), Some((&ca_pem, &srv_cert, &srv_key)));
    let c = Collector::start_with(|data| {
        append(
            &data.join("collector.toml"),
            &format!(
                "\n[[export]]\nname = \"soc-tcp\"\nkind = \"syslog\"\naddress = \"tcp://127.0.0.1:{}\"\nformat = \"cef\"\n\n\
             [[export]]\nname = \"soc-tls\"\nkind = \"syslog\"\naddress = \"tls://127.0.0.1:{}\"\nformat = \"leef\"\n\
             server_name = \"localhost\"\nca = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n\n\
             [[export]]\nname = \"soc-tls-nocert\"\nkind = \"syslog\"\naddress = \"tls://127.0.0.1:{}\"\n\
             server_name = \"localhost\"\nca = {:?}\n",
                tcp.port,
                tls.port,
                ca_pem.display().to_string(),
                cli_cert.display().to_string(),
                cli_key.display().to_string(),
                tls.port,
                ca_pem.display().to_string(),
            ),
        );
    });
    let fleet = Fleet::enroll(&c, 3);
    fleet.report(INSTALLED);
    for r in [&tcp, &tls] {
        wait_for(Duration::from_secs(30), || {
            let n = r
                .lines()
                .iter()
                .filter(|l| l.contains("siem-host-"))
                .count();
            (n >= 3).then_some(())
        })
        .unwrap_or_else(|| panic!("no event reached {:?}: {}", r.dir, c.log()));
    }
    let first = tcp.lines().join("\n");
    assert!(first.contains("CEF:0|Muster|Muster|"), "{first}");
    assert!(first.contains("dvchost=siem-host-0"), "{first}");
    assert!(first.contains("Kaspersky"), "{first}");
    assert!(tls.lines().join("\n").contains("LEEF:2.0|Muster|Muster|"));

    // Receivers killed right after a burst of events, more events while
    // they are down, then they come back.
    fleet.report(REMNANT);
    tcp.kill();
    tls.kill();
    fleet.report(INSTALLED);
    fleet.report(REMNANT);
    std::thread::sleep(Duration::from_secs(2));
    let down = siem_status(&c);
    assert!(
        down.iter()
            .all(|e| e["lag_events"].as_i64().unwrap() > 0 && e["state"] == "failing"),
        "with the receivers down, events wait and the exporters say why: {down:?}"
    );
    assert!(
        down[0]["last_error"].as_str().unwrap().contains("refused"),
        "{down:?}"
    );
    tcp.restart();
    tls.restart();
    fleet.report(INSTALLED);
    wait_drained_but(&c, &["soc-tls-nocert"], 90);

    let stored = stored_event_ids(&c);
    // enrolled + detected + 4 state changes, for 3 hosts.
    assert_eq!(stored.len(), 3 * 6, "{stored:?}");
    for (r, key) in [(&tcp, "externalId"), (&tls, "externalId")] {
        let lines = r.lines();
        let got: Vec<String> = lines.iter().filter_map(|l| field(l, key)).collect();
        let unique: HashSet<&String> = got.iter().collect();
        let missing: Vec<&String> = stored.iter().filter(|id| !unique.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "{:?}: events never arrived: {missing:?}\n{}",
            r.dir,
            c.log()
        );
        eprintln!(
            "{:?}: {} events stored, {} lines received, {} duplicates",
            r.dir,
            stored.len(),
            got.len(),
            got.len() - unique.len()
        );
    }
    // One log line when delivery started failing and one when it came
    // back, not one per retry. rsyslog refuses the exporter without a
    // client certificate after the TLS 1.3 handshake, so its writes seem
    // to pass: it must still count as failing, once.
    let log = c.log();
    let lines = |what: &str, who: &str| {
        log.lines()
            .filter(|l| l.contains(what) && l.contains(who))
            .count()
    };
    let nocert = siem_status(&c)
        .into_iter()
        .find(|e| e["name"] == "soc-tls-nocert")
        .unwrap();
    eprintln!("nocert: {nocert}");
    assert_eq!(lines("exporter cannot deliver", "soc-tcp"), 1, "{log}");
    assert_eq!(lines("exporter cannot deliver", "soc-tls "), 1, "{log}");
    assert_eq!(
        lines("exporter cannot deliver", "soc-tls-nocert"),
        1,
        "{log}"
    );
    assert_eq!(
        lines("exporter delivering again", "soc-tls-nocert"),
        0,
        "{log}"
    );
    assert!(
        log.matches("exporter delivering again").count() >= 2,
        "{log}"
    );
    let nocert = siem_status(&c)
        .into_iter()
        .find(|e| e["name"] == "soc-tls-nocert")
        .unwrap();
    assert_eq!(nocert["state"], "failing", "{nocert}");
    assert_eq!(nocert["delivered"], 0, "{nocert}");
    let out = c.muster(&["siem", "test", "soc-tcp"]);
    let id = out.split_whitespace().nth(2).unwrap().to_string();
    wait_for(Duration::from_secs(10), || {
        tcp.lines().iter().any(|l| l.contains(&id)).then_some(())
    })
    .expect("the test event arrives");
    let err = fails(
        cmd("muster")
            .args(["--collector", &c.url(), "--identity"])
            .arg(c.data().join("operator"))
            .args(["siem", "test", "nope"]),
    );
    assert!(err.contains("no exporter named \"nope\""), "{err}");
}

/// A request as the test's HTTP server saw it.
#[derive(Debug, Clone)]
struct Seen {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// A small HTTP/1.1 server (keep-alive, Content-Length bodies), over TLS
/// when given a configuration: answers 503 to the first `fail` requests and
/// while `accepting` is false, 200 otherwise; keeps every request.
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Seen>>>,
    accepting: Arc<AtomicBool>,
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

impl Receiver {
    fn start(fail: usize, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accepting = Arc::new(AtomicBool::new(true));
        let (seen, open) = (requests.clone(), accepting.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let stream: Box<dyn Stream> = match &tls {
                    None => Box::new(tcp),
                    Some(cfg) => Box::new(rustls::StreamOwned::new(
                        rustls::ServerConnection::new(cfg.clone()).unwrap(),
                        tcp,
                    )),
                };
                let (seen, open) = (seen.clone(), open.clone());
                std::thread::spawn(move || serve(stream, fail, &seen, &open));
            }
        });
        Receiver {
            port,
            requests,
            accepting,
        }
    }

    /// Bodies' lines of the requests answered 200.
    fn accepted_lines(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.status == 200)
            .flat_map(|r| {
                r.body
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<Value>>()
            })
            .collect()
    }
}

fn serve(stream: Box<dyn Stream>, fail: usize, seen: &Mutex<Vec<Seen>>, open: &AtomicBool) {
    let mut reader = std::io::BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers
            .get("content-length")
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = {
            let mut s = seen.lock().unwrap();
            let status = if s.len() < fail || !open.load(Ordering::SeqCst) {
                503
            } else {
                200
            };
            s.push(Seen {
                status,
                headers,
                body: String::from_utf8(body).unwrap(),
            });
            status
        };
        let (reason, text) = if status == 200 {
            ("OK", "{\"text\":\"Success\",\"code\":0}")
        } else {
            (
                "Service Unavailable",
                "{\"text\":\"Server is busy\",\"code\":9}",
            )
        };
        let out = reader.get_mut();
        let _ = write!(
            out,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )
        .and_then(|_| out.flush());
    }
}

/// The Splunk HEC exporter against a server that fails the first requests:
/// the events wait and then all arrive, in HEC's envelope with the token.
#[test]
fn http_exporter_retries_until_the_receiver_accepts() {
    let rx = Receiver::start(3, None);
    let c = Collector::start_with(|data| {
        append(
            &data.join("collector.toml"),
            &format!(
                "\n[[export]]\nname = \"splunk\"\nkind = \"http\"\napi = \"hec\"\ntoken = \"0f1e2d3c\"\n\
             address = \"http://127.0.0.1:{}/services/collector/event\"\nformat = \"ecs\"\nbatch = 2\n",
                rx.port
            ),
        );
    });
    let fleet = Fleet::enroll(&c, 2);
    fleet.report(INSTALLED);
    wait_drained(&c, 60);
    let stored = stored_event_ids(&c);
    assert_eq!(stored.len(), 4, "{stored:?}");
    let reqs = rx.requests.lock().unwrap().clone();
    assert_eq!(
        reqs.iter().filter(|r| r.status == 503).count(),
        3,
        "the first three were refused"
    );
    let mut received = HashSet::new();
    for Seen {
        status,
        headers,
        body,
    } in &reqs
    {
        assert_eq!(headers["authorization"], "Splunk 0f1e2d3c");
        for line in body.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["sourcetype"], "muster:ecs");
            assert!(v["time"].is_i64(), "{v}");
            assert!(!v["host"].as_str().unwrap().is_empty(), "{v}");
            assert!(v["event"]["@timestamp"].is_string(), "{v}");
            if *status == 200 {
                received.insert(v["event"]["event"]["id"].as_str().unwrap().to_string());
            }
        }
    }
    for id in &stored {
        assert!(received.contains(id), "event {id} never accepted: {reqs:?}");
    }
    let st = siem_status(&c);
    assert_eq!(st[0]["delivered"], 4, "{st:?}");
    let log = c.log();
    assert_eq!(log.matches("exporter cannot deliver").count(), 1, "{log}");
    assert!(log.contains("503"), "{log}");
}

/// A TLS server configuration from a CA of the test's own, which wants a
/// client certificate from that CA; and that CA, a client certificate and
/// its key, as PEM files under `dir`.
fn tls_receiver(dir: &Path) -> (Arc<rustls::ServerConfig>, PathBuf, PathBuf, PathBuf) {
    let [ca, cert, key, client, client_key] = test_pki(dir, "webhook");
    let pem = |p: &PathBuf| std::fs::read(p).unwrap();
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem(&cert).as_slice())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut pem(&key).as_slice())
        .unwrap()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem(&ca).as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    (Arc::new(cfg), ca, client, client_key)
}

/// An NDJSON webhook over HTTPS with a client certificate: while it
/// refuses, the events wait across a collector restart; once it accepts,
/// each arrives once, and after another restart nothing is sent again.
#[test]
fn https_webhook_waits_across_a_restart_and_resumes_from_its_cursor() {
    let dir = TempDir::new("siem-https");
    let (tls, ca, cert, key) = tls_receiver(&dir.0);
    let rx = Receiver::start(0, Some(tls));
    rx.accepting.store(false, Ordering::SeqCst);
    let mut c = Collector::start_with(|data| {
        append(
            &data.join("collector.toml"),
            &format!(
                "\n[[export]]\nname = \"hook\"\nkind = \"http\"\naddress = \"https://localhost:{}/hook\"\n\
             token = \"s3cret\"\nca = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n",
                rx.port,
                ca.display().to_string(),
                cert.display().to_string(),
                key.display().to_string()
            ),
        );
    });
    let fleet = Fleet::enroll(&c, 1);
    fleet.report(INSTALLED);
    let st = wait_for(Duration::from_secs(30), || {
        let st = siem_status(&c);
        (st[0]["state"] == "failing").then_some(st)
    })
    .expect("the exporter reports its failure");
    assert_eq!(st[0]["lag_events"], 2, "{st:?}");
    assert!(
        st[0]["last_error"].as_str().unwrap().contains("503"),
        "{st:?}"
    );

    c.terminate();
    c.restart();
    rx.accepting.store(true, Ordering::SeqCst);
    wait_drained(&c, 60);
    let stored = stored_event_ids(&c);
    let ids = |lines: &[Value]| -> Vec<String> {
        lines
            .iter()
            .map(|e| e["event"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    let got = ids(&rx.accepted_lines());
    assert_eq!(got, stored, "every event once, in order");
    let reqs = rx.requests.lock().unwrap().clone();
    assert!(
        reqs.iter()
            .all(|r| r.headers["authorization"] == "Bearer s3cret")
    );
    assert!(
        reqs.iter()
            .all(|r| r.headers["content-type"] == "application/x-ndjson")
    );

    c.terminate();
    c.restart();
    fleet.report(REMNANT);
    wait_drained(&c, 60);
    let got = ids(&rx.accepted_lines());
    let stored = stored_event_ids(&c);
    assert_eq!(stored.len(), 3);
    assert_eq!(got, stored, "only the new event after the restart");
}

/// A revoked host and a host that stops reporting become events in an
/// OCSF file; the revoked host's reports are refused; the metrics endpoint
/// counts it all.
#[test]
fn revoked_and_stale_hosts_are_events_and_metrics_count_them() {
    let metrics_port = free_port();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let c = Collector::start_with(|data| {
        append(
            &data.join("collector.toml"),
            &format!(
                "\ncheckin_interval = \"10s\"\nstale_after_intervals = 1\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\n\
             [[export]]\nname = \"lake\"\nkind = \"file\"\naddress = {:?}\nformat = \"ocsf\"\n\n\
             [[export]]\nname = \"udp\"\nkind = \"syslog\"\naddress = \"udp://127.0.0.1:{udp_port}\"\nfacility = \"local3\"\n",
                data.join("ocsf.jsonl").display().to_string()
            ),
        );
    });
    let fleet = Fleet::enroll(&c, 2);
    fleet.report(INSTALLED);
    let (state0, root0, _) = &fleet.hosts[0];
    let id0 = c
        .hosts()
        .into_iter()
        .find(|h| h["hostname"] == "siem-host-0")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = c.muster(&["hosts", "revoke", &id0]);
    assert!(out.contains("revoked"), "{out}");
    let err = fails(
        cmd("muster-agent")
            .args(["run", "--once", "--state-dir"])
            .arg(state0)
            .arg("--root")
            .arg(root0),
    );
    assert!(err.contains("revoked"), "the agent says why: {err}");
    // The revoked host keeps its state.
    let h: Value = serde_json::from_str(&c.muster(&["host", &id0, "--format", "json"])).unwrap();
    assert_eq!(h["detections"][0]["state"], "installed", "{h}");

    // Neither host reports again: host 1 goes stale after one interval;
    // the revoked one is not reported as stale.
    let file = c.data().join("ocsf.jsonl");
    let events = wait_for(Duration::from_secs(40), || {
        let lines: Vec<Value> = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines
            .iter()
            .any(|e| e["metadata"]["event_code"] == "stale")
            .then_some(lines)
    })
    .unwrap_or_else(|| panic!("no stale event: {}", c.log()));
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["metadata"]["event_code"].as_str().unwrap(),
                e["device"]["hostname"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(kinds.contains(&("revoked", "siem-host-0")), "{kinds:?}");
    assert!(kinds.contains(&("stale", "siem-host-1")), "{kinds:?}");
    assert!(!kinds.contains(&("stale", "siem-host-0")), "{kinds:?}");
    for e in &events {
        assert_eq!(e["class_uid"], 5020, "{e}");
        assert_eq!(
            e["type_uid"].as_i64().unwrap(),
            5020 * 100 + e["activity_id"].as_i64().unwrap()
        );
    }

    // Over UDP, one RFC 5424 message per datagram (facility local3 = 19).
    let mut buf = [0u8; 65536];
    let mut datagrams = Vec::new();
    while let Ok(n) = udp.recv(&mut buf) {
        datagrams.push(String::from_utf8_lossy(&buf[..n]).to_string());
        if datagrams.iter().any(|d| d.contains("|stale|")) {
            break;
        }
    }
    assert!(
        datagrams.iter().any(|d| d.contains("|revoked|")),
        "{datagrams:?}"
    );
    for d in &datagrams {
        let pri: u32 = d[1..d.find('>').unwrap()].parse().unwrap();
        assert_eq!(pri / 8, 19, "{d}");
        assert!(d[d.find('>').unwrap() + 1..].starts_with("1 "), "{d}");
        assert!(d.contains(" CEF:0|Muster|Muster|"), "{d}");
    }

    let m = scrape_metrics(metrics_port);
    assert_eq!(
        metric(&m, "muster_checkins_total{outcome=\"accepted\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "muster_checkins_refused_total{reason=\"revoked\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "muster_hosts{state=\"stale\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "muster_detections{product=\"kaspersky.endpoint-security-linux\"}"
        ),
        Some(2.0),
        "{m}"
    );
    assert!(
        m.contains("muster_siem_lag_events{exporter=\"lake\"}"),
        "{m}"
    );
    assert!(m.contains("muster_catalog_info{version=\""), "{m}");
    assert!(m.contains("muster_reevaluation_pending_hosts 0"), "{m}");
}

/// Two collectors on one PostgreSQL database, with the same exporter: each
/// event reaches the file once (one collector holds the exporter's lease).
#[test]
fn collectors_sharing_postgresql_send_each_event_once() {
    let Some(db) = PgDatabase::create("siem") else {
        return;
    };
    let file = TempDir::new("siem-pg");
    let out = file.join("events.jsonl");
    let mut a = Collector::start_postgres(&db.url);
    {
        append(
            &a.data().join("collector.toml"),
            &format!(
                "\n[[export]]\nname = \"lake\"\nkind = \"file\"\naddress = {:?}\n",
                out.display().to_string()
            ),
        );
    }
    a.restart();
    let b = a.replica();
    // Agents report to both collectors.
    let fleet = Fleet::enroll(&a, 2);
    fleet.report(INSTALLED);
    for (state, _, _) in &fleet.hosts {
        let cfg = state.join("agent.toml");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(&a.url(), &b.url());
        std::fs::write(&cfg, text).unwrap();
    }
    fleet.report(REMNANT);
    let stored = stored_event_ids(&a);
    assert_eq!(stored.len(), 2 * 3, "{stored:?}");
    // Exporters see an event once every older transaction on the server
    // has finished: wait for all of them rather than for a lag of 0.
    let read = || -> Vec<String> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let e: Value = serde_json::from_str(l).unwrap();
                e["event"]["id"].as_str().unwrap().to_string()
            })
            .collect()
    };
    wait_for(Duration::from_secs(60), || {
        let ids = read();
        stored.iter().all(|id| ids.contains(id)).then_some(())
    })
    .unwrap_or_else(|| panic!("not every event arrived: {:?}\n{}", read(), a.log()));
    std::thread::sleep(Duration::from_secs(2));
    let ids = read();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "an event was sent twice: {ids:?}");
    assert_eq!(ids.len(), stored.len());
}
