//! A small blocking HTTPS/1.1 client for the collector's HTTP API: real
//! TLS (rustls, the collector's CA, optionally a client certificate), and
//! request targets sent exactly as given, so tests can send what a
//! library would have cleaned up (bad escapes, huge query strings).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

/// A client for `https://localhost:PORT`.
pub struct Https {
    config: Arc<rustls::ClientConfig>,
    /// The port on localhost.
    pub port: u16,
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header that may repeat (`Set-Cookie`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON; panics, showing it, when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

impl Https {
    /// Trusts the CA bundle `ca`; presents the identity folder's
    /// `cert.pem` and `key.pem` when `identity` is given.
    pub fn new(ca: &Path, port: u16, identity: Option<&Path>) -> Https {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(ca) {
            roots.add(c).expect("CA certificate");
        }
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots);
        let mut config = match identity {
            Some(dir) => {
                let key = std::fs::read(dir.join("key.pem")).expect("key.pem");
                let key = rustls_pemfile::private_key(&mut key.as_slice())
                    .expect("PEM key")
                    .expect("a key");
                b.with_client_auth_cert(certs(&dir.join("cert.pem")), key)
                    .expect("client certificate")
            }
            None => b.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Https {
            config: Arc::new(config),
            port,
        }
    }

    /// `GET target` (`/api/v1/...`, sent as is), with `Authorization:
    /// Bearer TOKEN` when a token is given.
    pub fn get(&self, target: &str, token: Option<&str>) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        self.request("GET", target, &headers)
    }

    fn stream(&self) -> Tls {
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(self.config.clone(), name).expect("client");
        let tcp = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("connect to the API on {}: {e}", self.port));
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(300)))
            .expect("timeout");
        rustls::StreamOwned::new(conn, tcp)
    }

    /// A connection kept open for many requests, one after the other.
    pub fn keep_alive(&self) -> KeepAlive {
        KeepAlive {
            tls: std::io::BufReader::new(self.stream()),
            port: self.port,
        }
    }

    /// Any request, headers as given.
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(method, target, headers, b"")
    }

    /// `POST target` of an HTML form's fields, URL-encoded as a browser
    /// sends them, with any further headers (a `Cookie`, say).
    pub fn post_form(
        &self,
        target: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let body = fields
            .iter()
            .map(|(n, v)| format!("{}={}", form_encode(n), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        self.send("POST", target, &all, body.as_bytes())
    }

    /// Any request with a body (`Content-Length` added when it has one, or
    /// is a POST).
    pub fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut tls = self.stream();
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n",
            self.port
        );
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        tls.write_all(&bytes).expect("send the request");
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw) {
            Ok(_) => {}
            // A server may close without close_notify once the response is
            // complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => panic!("read the response to {method} {target}: {e}"),
        }
        parse(&raw)
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// One HTTP/1.1 connection that stays open between requests
/// ([`Https::keep_alive`]): what a browser does, and what timing a page's
/// answer needs (no handshake in the figure).
pub struct KeepAlive {
    tls: std::io::BufReader<Tls>,
    port: u16,
}

impl KeepAlive {
    /// `GET target` with `Authorization: Bearer TOKEN`; the whole answer
    /// read (by its length, or its chunks) and the connection left open.
    pub fn get(&mut self, target: &str, token: &str) -> std::io::Result<Reply> {
        use std::io::BufRead;
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: localhost:{}\r\nAuthorization: Bearer {token}\r\n\r\n",
            self.port
        );
        self.tls.get_mut().write_all(req.as_bytes())?;
        self.tls.get_mut().flush()?;
        let mut head = Vec::new();
        loop {
            let n = self.tls.read_until(b'\n', &mut head)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let mut reply = parse(&head);
        let chunked = reply
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            loop {
                let mut line = String::new();
                self.tls.read_line(&mut line)?;
                let size =
                    usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    // Trailers, then the blank line.
                    while line != "\r\n" {
                        line.clear();
                        if self.tls.read_line(&mut line)? == 0 {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0; size + 2];
                self.tls.read_exact(&mut chunk)?;
                reply.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            let len: usize = reply
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| std::io::Error::other("an answer without a length"))?;
            reply.body = vec![0; len];
            self.tls.read_exact(&mut reply.body)?;
        }
        Ok(reply)
    }
}

/// `application/x-www-form-urlencoded` escaping of one name or value.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                char::from(b).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
}
