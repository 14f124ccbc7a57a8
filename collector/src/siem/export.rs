//! The exporters: each `[[export]]` of the config file, its transport
//! (syslog over TCP, TLS or UDP; HTTP as Splunk HEC or an NDJSON webhook; a
//! JSON-lines file with rotation) and the loop that drains the outbox into
//! it, at-least-once.
//!
//! Delivery. An exporter reads the events after its cursor, sends them and
//! moves the cursor only once the receiver has them: an HTTP 2xx, a file
//! written and synced. A syslog stream has no acknowledgement, and a write
//! to a receiver that has just gone away still succeeds once; so events
//! written on a TCP or TLS connection are confirmed only when the
//! connection is still up [`CONFIRM_AFTER`] later, and when it is found
//! closed every unconfirmed event is sent again on the next connection.
//! Duplicates are possible (the SIEM deduplicates on the event id); gaps are
//! not. UDP is fire-and-forget: lossy by nature.
//!
//! Failure. While a receiver fails, the events wait in the outbox; the
//! exporter retries with exponential backoff (1 s doubling to 5 minutes,
//! with jitter) and logs once when it starts failing and once when it
//! delivers again.

use super::format::{self, Format};
use super::{Context, SiemEvent};
use crate::config::ExportConfig;
use crate::server::State;
use crate::store::Cursor;
use futures::FutureExt;
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a syslog stream must stay up after a write for the write to
/// count as delivered.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(1);
/// How long a collector's claim on an exporter lasts unless renewed.
const LEASE: i64 = 30;
/// How often an idle exporter looks for new events.
const POLL: Duration = Duration::from_millis(500);
/// Longest wait between two attempts at a failing receiver.
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// Connecting, writing or an HTTP request longer than this fails.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Where an exporter sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Syslog (RFC 5424) over TCP or TLS with octet-counting framing
    /// (RFC 6587 / 5425), or over UDP (one message per datagram).
    Syslog {
        /// `tcp`, `tls` or `udp`.
        transport: &'static str,
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// HTTP POST of a batch of events.
    Http {
        /// The full URL.
        url: String,
        /// `hec` (Splunk HTTP Event Collector) or `ndjson`.
        api: &'static str,
    },
    /// A JSON-lines (or one-event-per-line) file, rotated by size.
    File {
        /// The file.
        path: PathBuf,
        /// Rotate when it would grow past this many bytes.
        max_bytes: u64,
        /// Rotated files kept (`file.1` .. `file.N`).
        keep: u32,
    },
}

/// An exporter's configuration, checked.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Unique name: names the cursor.
    pub name: String,
    /// Where to.
    pub target: Target,
    /// The payload format.
    pub format: Format,
    /// Syslog facility (0-23).
    pub facility: u8,
    /// Syslog APP-NAME.
    pub app_name: String,
    /// Most events per send.
    pub batch: usize,
    /// CA file to trust for `tls://` and `https://` (default: the
    /// system's bundle).
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for receivers that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Name to verify the server certificate against (default: the
    /// address's host).
    pub server_name: Option<String>,
    /// HEC token (`Authorization: Splunk ...`) or webhook bearer token.
    pub token: Option<String>,
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

fn host_port(rest: &str, default_port: u16) -> Result<(String, u16), String> {
    let rest = rest.trim_end_matches('/');
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number"))
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        // [2001:db8::1] or [2001:db8::1]:6514
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{rest:?}: no closing ']'"))?;
        match after {
            "" => (host, default_port),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, port(p)?),
                None => return Err(format!("{rest:?} is not [IPV6]:PORT")),
            },
        }
    } else {
        match rest.matches(':').count() {
            0 => (rest, default_port),
            1 => {
                let (h, p) = rest.split_once(':').expect("one colon");
                (h, port(p)?)
            }
            _ => {
                return Err(format!(
                    "{rest:?}: write an IPv6 address in brackets, e.g. [2001:db8::1]:6514"
                ));
            }
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("{rest:?} is not HOST:PORT"));
    }
    Ok((host.to_string(), port))
}

impl Spec {
    /// Checks one `[[export]]`; the error names the exporter and the key.
    pub fn from_config(c: &ExportConfig) -> Result<Spec, String> {
        let name = &c.name;
        let bad = |m: String| format!("export {name:?}: {m}");
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            return Err(bad(
                "name must be letters, digits, '-', '_' or '.'".to_string()
            ));
        }
        let target = match c.kind.as_str() {
            "syslog" => {
                let (transport, rest, port) = if let Some(r) = c.address.strip_prefix("tcp://") {
                    ("tcp", r, 514)
                } else if let Some(r) = c.address.strip_prefix("tls://") {
                    ("tls", r, 6514)
                } else if let Some(r) = c.address.strip_prefix("udp://") {
                    ("udp", r, 514)
                } else {
                    return Err(bad(format!(
                        "address {:?}: a syslog address starts with tcp://, tls:// or udp://",
                        c.address
                    )));
                };
                let (host, port) =
                    host_port(rest, port).map_err(|e| bad(format!("address: {e}")))?;
                Target::Syslog {
                    transport,
                    host,
                    port,
                }
            }
            "http" => {
                if !(c.address.starts_with("http://") || c.address.starts_with("https://")) {
                    return Err(bad(format!(
                        "address {:?}: an http exporter's address is an http:// or https:// URL",
                        c.address
                    )));
                }
                reqwest::Url::parse(&c.address)
                    .map_err(|e| bad(format!("address {:?}: {e}", c.address)))?;
                let api = match c.api.as_deref().unwrap_or("ndjson") {
                    "hec" => "hec",
                    "ndjson" => "ndjson",
                    other => {
                        return Err(bad(format!("api = {other:?}: use \"hec\" or \"ndjson\"")));
                    }
                };
                Target::Http {
                    url: c.address.clone(),
                    api,
                }
            }
            "file" => {
                if c.address.is_empty() {
                    return Err(bad("address: a file exporter needs a file path".into()));
                }
                let max_bytes = c.max_bytes.unwrap_or(100 * 1024 * 1024);
                if max_bytes < 4096 {
                    return Err(bad("max_bytes must be at least 4096".into()));
                }
                let keep = c.keep.unwrap_or(5);
                if keep > 1000 {
                    return Err(bad("keep must be at most 1000".into()));
                }
                Target::File {
                    path: PathBuf::from(&c.address),
                    max_bytes,
                    keep,
                }
            }
            other => {
                return Err(bad(format!(
                    "kind = {other:?}: use \"syslog\", \"http\" or \"file\""
                )));
            }
        };
        let default_format = match target {
            Target::Syslog { .. } => "cef",
            _ => "ecs",
        };
        let format = Format::parse(c.format.as_deref().unwrap_or(default_format))
            .map_err(|e| bad(format!("format: {e}")))?;
        let facility = match &c.facility {
            None => 13, // log audit
            Some(f) => FACILITIES
                .iter()
                .position(|n| n == f)
                .or_else(|| f.parse::<usize>().ok().filter(|n| *n < 24))
                .ok_or_else(|| bad(format!("facility {f:?} is not a syslog facility")))?
                as u8,
        };
        let batch = c.batch.unwrap_or(100);
        if !(1..=10_000).contains(&batch) {
            return Err(bad("batch must be between 1 and 10000".into()));
        }
        let client_cert = match (&c.client_cert, &c.client_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => return Err(bad("client_cert and client_key go together".into())),
        };
        let token = match (&c.token, &c.token_file) {
            (Some(_), Some(_)) => return Err(bad("give token or token_file, not both".into())),
            (Some(t), None) => Some(t.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| bad(format!("token_file {}: {e}", f.display())))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if matches!(target, Target::Http { api: "hec", .. }) && token.is_none() {
            return Err(bad("api = \"hec\" needs a token (or token_file)".into()));
        }
        let spec = Spec {
            name: name.clone(),
            target,
            format,
            facility,
            app_name: c.app_name.clone().unwrap_or_else(|| "muster".into()),
            batch,
            ca: c.ca.clone(),
            client_cert,
            server_name: c.server_name.clone(),
            token,
        };
        if spec.uses_tls() {
            spec.tls_config().map_err(bad)?;
        }
        Ok(spec)
    }

    fn uses_tls(&self) -> bool {
        match &self.target {
            Target::Syslog { transport, .. } => *transport == "tls",
            Target::Http { url, .. } => url.starts_with("https://"),
            Target::File { .. } => false,
        }
    }

    /// The TLS client configuration: the CA file (or the system's
    /// bundle), and the client certificate when there is one.
    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        let mut roots = rustls::RootCertStore::empty();
        let ca = self
            .ca
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        let certs = crate::server::read_pem_certs(&ca)
            .map_err(|e| format!("ca: {e:#} (set ca = \"FILE\" to the receiver's CA)"))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("ca {}: {e}", ca.display()))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
        match &self.client_cert {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let certs = crate::server::read_pem_certs(cert)
                    .map_err(|e| format!("client_cert: {e:#}"))?;
                let key =
                    crate::server::read_pem_key(key).map_err(|e| format!("client_key: {e:#}"))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("client_cert: {e}"))
            }
        }
    }

    /// One event as this exporter writes it (for syslog, the RFC 5424
    /// message without framing).
    pub fn payload(&self, e: &SiemEvent) -> String {
        let body = self.format.render(e);
        match self.target {
            Target::Syslog { .. } => {
                format::rfc5424(e, self.facility, &self.app_name, &e.observer, &body)
            }
            _ => body,
        }
    }
}

/// A connection that reads and writes (TCP or TLS over TCP).
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// Syslog over TCP or TLS.
struct StreamSink {
    host: String,
    port: u16,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    conn: Option<Box<dyn Conn>>,
}

impl StreamSink {
    async fn connect(&mut self) -> io::Result<()> {
        let addr = (self.host.as_str(), self.port);
        let tcp = tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting timed out"))??;
        tcp.set_nodelay(true)?;
        self.conn = Some(match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(
                tokio::time::timeout(IO_TIMEOUT, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })??,
            ),
        });
        Ok(())
    }

    /// Whether the open connection is still up. A syslog receiver never
    /// sends anything, so a readable connection is one that was closed or
    /// failed.
    fn check(&mut self) -> io::Result<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let mut buf = [0u8; 256];
        // Read until nothing is waiting: data followed by end-of-file is
        // still a closed connection.
        loop {
            match conn.read(&mut buf).now_or_never() {
                None => return Ok(()),
                Some(Ok(1..)) => continue,
                Some(Ok(0)) => {
                    self.conn = None;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the receiver closed the connection",
                    ));
                }
                Some(Err(e)) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.conn.is_none() {
            self.connect().await?;
        }
        let conn = self.conn.as_mut().expect("connected above");
        let done = tokio::time::timeout(IO_TIMEOUT, async {
            conn.write_all(bytes).await?;
            conn.flush().await
        })
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "writing timed out")));
        if done.is_err() {
            self.conn = None;
        }
        done
    }
}

/// Appends lines to a file, rotating it by size.
struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
}

impl FileSink {
    fn write(&self, text: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let mut size = std::fs::metadata(&self.path).map(|m| m.len()).ok();
        if size.is_some_and(|n| n > 0 && n + text.len() as u64 > self.max_bytes) {
            self.rotate()?;
            size = None;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        if let Err(e) = f.write_all(text).and_then(|_| f.sync_data()) {
            // No half line stays behind to be appended to on the retry.
            let _ = f.set_len(size.unwrap_or(0));
            return Err(e);
        }
        if size.is_none() {
            // A new file: its name must survive a power cut too.
            self.sync_dir()?;
        }
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => std::fs::File::open(".")?.sync_all(),
        }
    }

    /// `file` becomes `file.1`, `file.1` becomes `file.2`, ... and the
    /// oldest beyond `keep` goes.
    fn rotate(&self) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            if numbered(n).exists() {
                std::fs::rename(numbered(n), numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))
    }
}

/// Where the bytes go.
enum Sink {
    Stream(StreamSink),
    Udp {
        host: String,
        port: u16,
        socket: Option<tokio::net::UdpSocket>,
    },
    Http {
        client: reqwest::Client,
        url: String,
        api: &'static str,
        token: Option<String>,
    },
    File(FileSink),
}

/// Why a send failed.
#[derive(Debug)]
struct SendError {
    message: String,
    /// The receiver refused the request as too large (HTTP 413): fewer
    /// events at a time may pass.
    too_large: bool,
}

impl From<String> for SendError {
    fn from(message: String) -> SendError {
        SendError {
            message,
            too_large: false,
        }
    }
}

/// Longest syslog message sent over UDP: a datagram must fit.
const UDP_MAX: usize = 65_000;

/// How a successful send counts.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// The receiver has it.
    Delivered,
    /// Written to a stream: delivered if the connection stays up.
    Unconfirmed,
}

impl Sink {
    fn new(spec: &Spec) -> Result<Sink, String> {
        Ok(match &spec.target {
            Target::Syslog {
                transport: "udp",
                host,
                port,
            } => Sink::Udp {
                host: host.clone(),
                port: *port,
                socket: None,
            },
            Target::Syslog {
                transport,
                host,
                port,
            } => {
                let tls = if *transport == "tls" {
                    let name = spec.server_name.clone().unwrap_or_else(|| host.clone());
                    let name = rustls::pki_types::ServerName::try_from(name.clone())
                        .map_err(|_| format!("{name:?} is not a valid server name"))?;
                    Some((
                        tokio_rustls::TlsConnector::from(Arc::new(spec.tls_config()?)),
                        name,
                    ))
                } else {
                    None
                };
                Sink::Stream(StreamSink {
                    host: host.clone(),
                    port: *port,
                    tls,
                    conn: None,
                })
            }
            Target::Http { url, api } => {
                let mut b = reqwest::Client::builder()
                    .timeout(IO_TIMEOUT)
                    .user_agent(concat!("muster-collector/", env!("CARGO_PKG_VERSION")));
                if url.starts_with("https://") {
                    b = b.tls_backend_preconfigured(spec.tls_config()?);
                }
                Sink::Http {
                    client: b.build().map_err(|e| e.to_string())?,
                    url: url.clone(),
                    api,
                    token: spec.token.clone(),
                }
            }
            Target::File {
                path,
                max_bytes,
                keep,
            } => Sink::File(FileSink {
                path: path.clone(),
                max_bytes: *max_bytes,
                keep: *keep,
            }),
        })
    }

    /// Sends `payloads` (one per event, from [`Spec::payload`]) of
    /// `events`.
    async fn send(
        &mut self,
        spec: &Spec,
        events: &[SiemEvent],
        payloads: &[String],
    ) -> Result<Sent, SendError> {
        match self {
            Sink::Stream(s) => {
                let mut bytes = Vec::new();
                for p in payloads {
                    bytes.extend(format::octet_frame(p));
                }
                s.write(&bytes).await.map_err(|e| io_error(&e))?;
                Ok(Sent::Unconfirmed)
            }
            Sink::Udp { host, port, socket } => {
                if socket.is_none() {
                    let s = tokio::net::UdpSocket::bind(if host.contains(':') {
                        "[::]:0"
                    } else {
                        "0.0.0.0:0"
                    })
                    .await
                    .map_err(|e| io_error(&e))?;
                    s.connect((host.as_str(), *port))
                        .await
                        .map_err(|e| io_error(&e))?;
                    *socket = Some(s);
                }
                let s = socket.as_ref().expect("bound above");
                for p in payloads {
                    let mut end = p.len().min(UDP_MAX);
                    while !p.is_char_boundary(end) {
                        end -= 1;
                    }
                    if let Err(e) = s.send(&p.as_bytes()[..end]).await {
                        *socket = None;
                        return Err(io_error(&e).into());
                    }
                }
                Ok(Sent::Delivered)
            }
            Sink::Http {
                client,
                url,
                api,
                token,
            } => {
                let mut body = String::new();
                for (e, p) in events.iter().zip(payloads) {
                    if *api == "hec" {
                        body.push_str(&hec_envelope(spec, e, p));
                    } else {
                        body.push_str(p);
                    }
                    body.push('\n');
                }
                let mut req = client.post(url.as_str()).body(body);
                req = match (*api, token) {
                    ("hec", Some(t)) => req
                        .header("Authorization", format!("Splunk {t}"))
                        .header("Content-Type", "application/json"),
                    (_, Some(t)) => req
                        .header("Authorization", format!("Bearer {t}"))
                        .header("Content-Type", "application/x-ndjson"),
                    (_, None) => req.header("Content-Type", "application/x-ndjson"),
                };
                let resp = req.send().await.map_err(|e| -> SendError {
                    let mut msg = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        msg = format!("{msg}: {s}");
                        src = s.source();
                    }
                    msg.into()
                })?;
                let status = resp.status();
                if status.is_success() {
                    Ok(Sent::Delivered)
                } else {
                    // The first chunk of the answer says enough.
                    let mut resp = resp;
                    let chunk = resp.chunk().await.ok().flatten().unwrap_or_default();
                    let text: String = String::from_utf8_lossy(&chunk[..chunk.len().min(200)])
                        .trim()
                        .to_string();
                    Err(SendError {
                        message: format!("HTTP {status}: {text}"),
                        too_large: status == reqwest::StatusCode::PAYLOAD_TOO_LARGE,
                    })
                }
            }
            Sink::File(f) => {
                let mut text = String::new();
                for p in payloads {
                    text.push_str(p);
                    text.push('\n');
                }
                let f = FileSink {
                    path: f.path.clone(),
                    max_bytes: f.max_bytes,
                    keep: f.keep,
                };
                tokio::task::spawn_blocking(move || f.write(text.as_bytes()))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("{}: {}", spec_path(spec), io_error(&e)))?;
                Ok(Sent::Delivered)
            }
        }
    }

    /// For a stream: whether the connection is still up (`Ok` when there
    /// is none).
    fn check(&mut self) -> Result<(), String> {
        match self {
            Sink::Stream(s) => s.check().map_err(|e| io_error(&e)),
            _ => Ok(()),
        }
    }

    fn close(&mut self) {
        match self {
            Sink::Stream(s) => s.conn = None,
            Sink::Udp { socket, .. } => *socket = None,
            _ => {}
        }
    }

    /// Closes a stream properly (TLS `close_notify`, then FIN), so that
    /// the receiver reads everything sent before.
    async fn shutdown(&mut self) {
        if let Sink::Stream(s) = self
            && let Some(mut conn) = s.conn.take()
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.shutdown()).await;
        }
    }
}

fn spec_path(spec: &Spec) -> String {
    match &spec.target {
        Target::File { path, .. } => path.display().to_string(),
        _ => String::new(),
    }
}

fn io_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

/// A Splunk HEC event: the payload (JSON as an object, CEF or LEEF as a
/// string) with its time, host and source type.
fn hec_envelope(spec: &Spec, e: &SiemEvent, payload: &str) -> String {
    let event = serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .filter(|v| v.is_object())
        .unwrap_or_else(|| serde_json::Value::String(payload.to_string()));
    serde_json::json!({
        "time": e.time,
        "host": e.host.hostname,
        "source": "muster",
        "sourcetype": format!("muster:{}", spec.format.as_str()),
        "event": event,
    })
    .to_string()
}

/// Sends one test event through `spec` now, outside the outbox: what
/// `muster siem test` does. For a syslog stream, the connection must stay
/// up for [`CONFIRM_AFTER`] after the write.
pub async fn send_test(spec: &Spec, event: &SiemEvent) -> Result<(), String> {
    let mut sink = Sink::new(spec)?;
    let payload = spec.payload(event);
    let sent = sink
        .send(spec, std::slice::from_ref(event), &[payload])
        .await
        .map_err(|e| e.message)?;
    if sent == Sent::Unconfirmed {
        tokio::time::sleep(CONFIRM_AFTER).await;
        sink.check()?;
    }
    sink.shutdown().await;
    Ok(())
}

/// Exponential backoff: 1 s, 2 s, 4 s ... up to [`BACKOFF_CAP`], each
/// wait drawn between half and all of it, so that collectors do not retry
/// in step.
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let full = Duration::from_secs(1)
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_CAP);
        self.failures += 1;
        full.mul_f64(rand::random_range(0.5..=1.0))
    }
}

/// Starts one task per configured exporter; they stop when `shutdown`
/// turns true, releasing their leases.
pub fn start(
    state: Arc<State>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let owner = format!("{}:{}", super::observer(), uuid::Uuid::new_v4());
    state
        .exporters
        .iter()
        .cloned()
        .map(|spec| {
            let exporter = Exporter {
                state: state.clone(),
                spec,
                owner: owner.clone(),
                shutdown: shutdown.clone(),
            };
            tokio::spawn(exporter.run())
        })
        .collect()
}

struct Exporter {
    state: Arc<State>,
    spec: Spec,
    owner: String,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Where an exporter stands with its lease and its receiver.
struct Progress {
    /// The last event the receiver is known to have (persisted).
    confirmed: Cursor,
    /// The last event written (ahead of `confirmed` on a stream).
    sent: Cursor,
    /// Writes on the current stream not yet confirmed: (last event, when,
    /// how many events).
    pending: VecDeque<(Cursor, Instant, u64)>,
    lease_until: i64,
    /// The error since delivery started failing.
    failing: Option<String>,
    backoff: Backoff,
    /// Events per send now: the configured batch, halved while a receiver
    /// refuses a request as too large.
    batch: usize,
}

impl Progress {
    fn at(cursor: Cursor, lease_until: i64, batch: usize) -> Progress {
        Progress {
            confirmed: cursor,
            sent: cursor,
            pending: VecDeque::new(),
            lease_until,
            failing: None,
            backoff: Backoff { failures: 0 },
            batch,
        }
    }
}

impl Exporter {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Waits `d`, or less when the collector stops.
    async fn pause(&mut self, d: Duration) {
        let _ = tokio::time::timeout(d, self.shutdown.wait_for(|s| *s)).await;
    }

    async fn run(mut self) {
        let name = self.spec.name.clone();
        let mut sink = match Sink::new(&self.spec) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(exporter = %name, error = %e, "exporter cannot start");
                return;
            }
        };
        let mut progress: Option<Progress> = None;
        let mut last_expiry = Instant::now() - Duration::from_secs(3600);
        let retention = self.state.config.siem_retention().as_secs() as i64;
        let mut campaigns = Vec::new();
        let mut campaigns_read = Instant::now() - Duration::from_secs(3600);
        loop {
            if self.stopping() {
                break;
            }
            let t = crate::store::now();
            // Hold (or take) the lease.
            if progress
                .as_ref()
                .is_none_or(|p| p.lease_until - t < LEASE / 2)
            {
                match self
                    .state
                    .store
                    .claim_exporter(&name, &self.owner, t + LEASE, t - retention)
                    .await
                {
                    Ok(Some(cursor)) => match progress.as_mut() {
                        Some(p) if p.confirmed == cursor => p.lease_until = t + LEASE,
                        _ => {
                            // New, or the cursor moved under us (another
                            // collector held the exporter meanwhile):
                            // start again from the stored cursor.
                            if progress.is_none() {
                                tracing::info!(exporter = %name, "exporter started");
                            }
                            sink.close();
                            progress = Some(Progress::at(cursor, t + LEASE, self.spec.batch));
                        }
                    },
                    Ok(None) => {
                        if progress.take().is_some() {
                            tracing::warn!(exporter = %name, "another collector now drives this exporter");
                        }
                        sink.close();
                        self.pause(Duration::from_secs(5)).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(exporter = %name, error = %e, "cannot claim the exporter");
                        self.pause(Duration::from_secs(5)).await;
                        continue;
                    }
                }
            }
            let mut p = progress.take().expect("claimed above");
            let keep = self
                .step(
                    &mut sink,
                    &mut p,
                    &mut last_expiry,
                    &mut campaigns,
                    &mut campaigns_read,
                    retention,
                )
                .await;
            if keep {
                progress = Some(p);
            }
        }
        // Stopping: confirm what the stream held, close it, let go.
        if let Some(p) = progress.as_mut() {
            if !p.pending.is_empty() {
                tokio::time::sleep(CONFIRM_AFTER).await;
                if sink.check().is_ok() {
                    let count = p.pending.iter().map(|(_, _, n)| n).sum();
                    let last = p.pending.back().expect("not empty").0;
                    self.delivered(p, last, count).await;
                }
            }
            sink.shutdown().await;
            let _ = self.state.store.release_exporter(&name, &self.owner).await;
        }
        tracing::info!(exporter = %name, "exporter stopped");
    }

    /// One turn of the loop with the lease held: expire, confirm, read,
    /// send. False when the progress must be dropped (the lease was lost).
    async fn step(
        &mut self,
        sink: &mut Sink,
        p: &mut Progress,
        last_expiry: &mut Instant,
        campaigns: &mut Vec<crate::campaign::Campaign>,
        campaigns_read: &mut Instant,
        retention: i64,
    ) -> bool {
        let name = self.spec.name.clone();
        let t = crate::store::now();
        // Events that outlived the retention window are dropped, counted
        // and logged.
        if last_expiry.elapsed() > Duration::from_secs(60) {
            *last_expiry = Instant::now();
            match self
                .state
                .store
                .exporter_expire(&name, &self.owner, p.confirmed, t - retention)
                .await
            {
                Ok((0, _)) => {}
                Ok((n, to)) => {
                    tracing::warn!(exporter = %name, dropped = n, retention = %self.state.config.siem_retention, "events older than the retention window were never delivered and are dropped");
                    p.confirmed = to;
                    p.sent = p.sent.max(to);
                    // Writes of later events still wait for their
                    // confirmation.
                    p.pending.retain(|(c, _, _)| *c > to);
                }
                Err(e) => tracing::warn!(exporter = %name, error = %e, "cannot expire old events"),
            }
        }
        // Confirm what the stream has held long enough, or resend it.
        match sink.check() {
            Ok(()) => {
                let mut last = None;
                let mut count = 0;
                while let Some((c, at, n)) = p.pending.front().copied() {
                    if at.elapsed() < CONFIRM_AFTER {
                        break;
                    }
                    p.pending.pop_front();
                    last = Some(c);
                    count += n;
                }
                if let Some(c) = last
                    && !self.delivered(p, c, count).await
                {
                    return false;
                }
            }
            Err(e) if !p.pending.is_empty() || p.sent > p.confirmed => {
                let e = format!("{e}; resending the events not confirmed");
                return self.failed(p, e).await;
            }
            Err(_) => {} // idle connection closed: reconnect on the next send
        }
        if campaigns_read.elapsed() > Duration::from_secs(10) {
            if let Ok(c) = self.state.store.campaigns().await {
                *campaigns = c;
            }
            *campaigns_read = Instant::now();
        }
        let batch = match self.state.store.outbox_after(p.sent, p.batch as u32).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(exporter = %name, error = %e, "cannot read the outbox");
                self.pause(Duration::from_secs(5)).await;
                return true;
            }
        };
        if batch.is_empty() {
            let wait = if p.pending.is_empty() {
                POLL
            } else {
                CONFIRM_AFTER / 4
            };
            self.pause(wait).await;
            return true;
        }
        let cx = Context {
            catalog: &self.state.catalog,
            campaigns,
            observer: &self.state.observer,
            now: t,
        };
        let events: Vec<SiemEvent> = batch.iter().map(|o| super::build(o, &cx)).collect();
        let payloads: Vec<String> = events.iter().map(|e| self.spec.payload(e)).collect();
        let last = batch.last().expect("not empty").cursor;
        match sink.send(&self.spec, &events, &payloads).await {
            Ok(Sent::Delivered) => {
                p.sent = last;
                if p.batch < self.spec.batch {
                    p.batch = (p.batch * 2).min(self.spec.batch);
                }
                self.delivered(p, last, batch.len() as u64).await
            }
            Ok(Sent::Unconfirmed) => {
                p.sent = last;
                p.pending
                    .push_back((last, Instant::now(), batch.len() as u64));
                true
            }
            Err(e) => {
                if e.too_large && p.batch > 1 {
                    p.batch /= 2;
                    tracing::warn!(exporter = %name, batch = p.batch, error = %e.message, "the receiver refused a batch as too large; sending fewer events at a time");
                    return true;
                }
                self.failed(p, e.message).await
            }
        }
    }

    /// Records a delivery up to `to`; false when the lease was lost.
    async fn delivered(&self, p: &mut Progress, to: Cursor, count: u64) -> bool {
        let t = crate::store::now();
        match self
            .state
            .store
            .exporter_delivered(&self.spec.name, &self.owner, to, count, t, t + LEASE)
            .await
        {
            Ok(true) => {
                p.confirmed = to;
                p.lease_until = t + LEASE;
                self.state.metrics.exported(&self.spec.name, count);
                if p.failing.take().is_some() {
                    tracing::info!(exporter = %self.spec.name, "exporter delivering again");
                }
                p.backoff.failures = 0;
                true
            }
            Ok(false) => {
                // Another collector took over; it resends from the cursor.
                tracing::warn!(exporter = %self.spec.name, "another collector now drives this exporter");
                false
            }
            Err(e) => {
                tracing::warn!(exporter = %self.spec.name, error = %e, "cannot record the delivery; the events will be sent again");
                true
            }
        }
    }

    /// Records a failure, rewinds to the last confirmed event, and waits
    /// the backoff out, renewing the lease meanwhile. False when the lease
    /// was lost.
    async fn failed(&mut self, p: &mut Progress, error: String) -> bool {
        p.sent = p.confirmed;
        p.pending.clear();
        let t = crate::store::now();
        let _ = self
            .state
            .store
            .exporter_failed(&self.spec.name, &self.owner, &error, t)
            .await;
        if p.failing.is_none() {
            tracing::warn!(exporter = %self.spec.name, error = %error, "exporter cannot deliver; events wait in the outbox and are retried with backoff");
        }
        p.failing = Some(error);
        let until = Instant::now() + p.backoff.next();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stopping() {
                return true;
            }
            self.pause(left.min(Duration::from_secs(LEASE as u64 / 2)))
                .await;
            let t = crate::store::now();
            if p.lease_until - t < LEASE / 2 {
                match self
                    .state
                    .store
                    .claim_exporter(&self.spec.name, &self.owner, t + LEASE, 0)
                    .await
                {
                    Ok(Some(c)) if c == p.confirmed => p.lease_until = t + LEASE,
                    Ok(_) => return false,
                    Err(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: &str, address: &str) -> ExportConfig {
        ExportConfig {
            name: "soc".into(),
            kind: kind.into(),
            address: address.into(),
            ..ExportConfig::default()
        }
    }

    #[test]
    fn addresses_and_defaults() {
        let s = Spec::from_config(&cfg("syslog", "tcp://siem.example.org:1514")).unwrap();
        assert_eq!(
            s.target,
            Target::Syslog {
                transport: "tcp",
                host: "siem.example.org".into(),
                port: 1514
            }
        );
        assert_eq!(s.format, Format::Cef);
        let e = Spec::from_config(&cfg("syslog", "tcp://::1:514")).unwrap_err();
        assert!(e.contains("in brackets"), "{e}");
        let s = Spec::from_config(&cfg("syslog", "udp://[::1]")).unwrap();
        assert_eq!(
            s.target,
            Target::Syslog {
                transport: "udp",
                host: "::1".into(),
                port: 514
            }
        );
        let s = Spec::from_config(&cfg("file", "/var/log/muster.jsonl")).unwrap();
        assert_eq!(s.format, Format::Ecs);
        let s = Spec::from_config(&cfg("http", "http://127.0.0.1:9/hook")).unwrap();
        assert_eq!(
            s.target,
            Target::Http {
                url: "http://127.0.0.1:9/hook".into(),
                api: "ndjson"
            }
        );
    }

    #[test]
    fn mistakes_are_named() {
        let e = Spec::from_config(&cfg("syslog", "siem:514")).unwrap_err();
        assert!(e.contains("tcp://, tls:// or udp://"), "{e}");
        let e = Spec::from_config(&cfg("syslog", "tcp://siem:99999")).unwrap_err();
        assert!(e.contains("not a port"), "{e}");
        let e = Spec::from_config(&cfg("kafka", "x")).unwrap_err();
        assert!(e.contains("kind = \"kafka\""), "{e}");
        let e = Spec::from_config(&ExportConfig {
            format: Some("xml".into()),
            ..cfg("file", "/tmp/x")
        })
        .unwrap_err();
        assert!(e.contains("export \"soc\": format"), "{e}");
        let e = Spec::from_config(&ExportConfig {
            api: Some("hec".into()),
            ..cfg("http", "https://splunk:8088/services/collector/event")
        })
        .unwrap_err();
        assert!(e.contains("needs a token"), "{e}");
        let e = Spec::from_config(&ExportConfig {
            ca: Some("/nonexistent/ca.pem".into()),
            ..cfg("syslog", "tls://siem:6514")
        })
        .unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let mut b = Backoff { failures: 0 };
        let waits: Vec<Duration> = (0..12).map(|_| b.next()).collect();
        assert!(waits[0] >= Duration::from_millis(500) && waits[0] <= Duration::from_secs(1));
        assert!(waits[3] >= Duration::from_secs(4) && waits[3] <= Duration::from_secs(8));
        assert!(waits.iter().all(|w| *w <= BACKOFF_CAP));
        assert!(waits[11] >= BACKOFF_CAP / 2);
    }

    #[test]
    fn files_rotate_by_size_and_keep_only_so_many() {
        let dir = tempfile::tempdir().unwrap();
        let f = FileSink {
            path: dir.path().join("events.jsonl"),
            max_bytes: 100,
            keep: 2,
        };
        for i in 0..10 {
            f.write(format!("{{\"n\":{i:040}}}\n").as_bytes()).unwrap();
        }
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        // 49-byte lines, 100 bytes at most: two lines per file.
        assert_eq!(read("events.jsonl").lines().count(), 2);
        assert!(read("events.jsonl").contains(&format!("{:040}", 9)));
        assert!(read("events.jsonl.1").contains(&format!("{:040}", 7)));
        assert!(read("events.jsonl.2").contains(&format!("{:040}", 5)));
        assert!(!dir.path().join("events.jsonl.3").exists());
    }
}
