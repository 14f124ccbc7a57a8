//! The client end of the transport: a TLS channel to the collector that
//! trusts only the collector's CA. Shared by the agent and the operator CLI
//! so both speak to the collector the same way.
//!
//! The rustls client configuration is built here rather than by tonic, and
//! kept for the life of the process, one per identity: its session store
//! then holds the TLS 1.3 ticket the collector sent, and the next
//! connection with the same identity resumes instead of sending both
//! certificate chains and signatures again (BENCHMARKS.md: a running
//! agent's unchanged check-in, 3.1 KB on the wire with a full handshake,
//! 1.6 KB resumed).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

/// Why a channel could not be opened; the message names the address.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address is not `https://NAME:PORT`.
    #[error("collector address {0:?} must look like https://NAME:PORT")]
    BadAddress(String),
    /// The CA bundle, certificate or key cannot be used.
    #[error("cannot use the TLS files for the collector at {url}: {cause}")]
    Credentials {
        /// The address.
        url: String,
        /// What is wrong with which file.
        cause: String,
    },
    /// TCP or TLS failed.
    #[error("cannot reach the collector at {url}: {cause}")]
    Unreachable {
        /// The address.
        url: String,
        /// The error and its causes, on one line.
        cause: String,
    },
}

/// An error and its causes on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Opens a TLS channel to `url` (`https://NAME:PORT`), verifying the
/// server against `ca_pem` (every certificate of the bundle is trusted)
/// under NAME and presenting `identity` (certificate PEM, key PEM) when
/// given. A later call with the same CA and identity in the same process
/// resumes the TLS session the collector offered.
pub async fn connect(
    url: &str,
    ca_pem: &str,
    identity: Option<(String, String)>,
) -> Result<Channel, ConnectError> {
    // The address is checked before the files, so a bad one is named as such.
    parse_url(url)?;
    let config =
        client_config(ca_pem, identity.as_ref()).map_err(|cause| ConnectError::Credentials {
            url: url.to_string(),
            cause,
        })?;
    connect_with(url, config, None).await
}

/// `https://NAME:PORT` as (NAME, PORT).
fn parse_url(url: &str) -> Result<(&str, u16), ConnectError> {
    let bad = || ConnectError::BadAddress(url.to_string());
    let authority = url.strip_prefix("https://").ok_or_else(bad)?;
    let authority = authority.split('/').next().unwrap_or_default();
    let (name, port) = match authority.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => (
            h.trim_matches(['[', ']']),
            port.parse::<u16>().map_err(|_| bad())?,
        ),
        _ => return Err(bad()),
    };
    if name.is_empty() {
        return Err(bad());
    }
    Ok((name, port))
}

/// Where a connection goes when its caller resolved the collector's name
/// itself, and from which local address: a load generator resolves once
/// per run rather than at every connection, and spreads its connections
/// over several local addresses.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub remote: std::net::SocketAddr,
    pub local: Option<std::net::IpAddr>,
}

/// The addresses the name of `url` (`https://NAME:PORT`) resolves to.
pub async fn resolve(url: &str) -> Result<Vec<std::net::SocketAddr>, ConnectError> {
    let (name, port) = parse_url(url)?;
    let found =
        tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| ConnectError::Unreachable {
                url: url.to_string(),
                cause: e.to_string(),
            })?;
    Ok(found.collect())
}

/// Opens a TLS channel to `url` with a client configuration made by
/// [`build_client_config`], by `route` when given, else to whatever the
/// name resolves to now. Sessions resume when the same configuration is
/// used again.
pub async fn connect_with(
    url: &str,
    config: Arc<rustls::ClientConfig>,
    route: Option<Route>,
) -> Result<Channel, ConnectError> {
    let bad = || ConnectError::BadAddress(url.to_string());
    let (name, port) = parse_url(url)?;
    let authority = url
        .strip_prefix("https://")
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default();
    let server_name = ServerName::try_from(name.to_string()).map_err(|_| bad())?;
    let connector = TlsConnector {
        config,
        server_name,
        host: name.to_string(),
        port,
        route,
    };
    // tonic refuses an https:// endpoint without its own TLS settings; the
    // connector below does the TLS, so the endpoint is only the HTTP/2
    // authority.
    let endpoint = Endpoint::from_shared(format!("http://{authority}")).map_err(|_| bad())?;
    endpoint
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .connect_with_connector(connector)
        .await
        .map_err(|e| ConnectError::Unreachable {
            url: url.to_string(),
            cause: error_chain(&e),
        })
}

/// The client configurations made so far, newest last, keyed by a digest
/// of the CA bundle and identity: a renewed certificate gets a new one.
/// Each holds the session tickets for its identity only, so a connection
/// never resumes a session made with another identity.
static CONFIGS: Mutex<Vec<([u8; 32], Arc<rustls::ClientConfig>)>> = Mutex::new(Vec::new());

/// How many configurations are kept: an agent has one identity (two
/// around a renewal), the operator CLI one, tests a handful.
const KEPT_CONFIGS: usize = 8;

fn client_config(
    ca_pem: &str,
    identity: Option<&(String, String)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut h = Sha256::new();
    for part in [
        Some(ca_pem),
        identity.map(|i| i.0.as_str()),
        identity.map(|i| i.1.as_str()),
    ] {
        // Length-prefixed, so no two different inputs hash alike.
        let part = part.unwrap_or_default();
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update([u8::from(identity.is_some())]);
    let key: [u8; 32] = h.finalize().into();
    let mut kept = CONFIGS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, c)) = kept.iter().find(|(k, _)| *k == key) {
        return Ok(c.clone());
    }
    let config = Arc::new(build_client_config(ca_pem, identity)?);
    if kept.len() >= KEPT_CONFIGS {
        kept.remove(0);
    }
    kept.push((key, config.clone()));
    Ok(config)
}

/// A client configuration trusting every CA of `ca_pem` and presenting
/// `identity` (certificate PEM, key PEM); a new one never resumes a
/// session of another.
pub fn build_client_config(
    ca_pem: &str,
    identity: Option<&(String, String)>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("the CA bundle is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("a CA certificate is not usable as a trust anchor: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the CA bundle holds no certificate".into());
    }
    // The binaries install ring; a library user who installed nothing gets
    // it too rather than a panic.
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    // The collector speaks TLS 1.3 only; offering 1.2 would only lengthen
    // the hello.
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("the TLS provider cannot do TLS 1.3: {e}"))?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the certificate is not PEM: {e}"))?;
            if chain.is_empty() {
                return Err("the certificate file holds no certificate".into());
            }
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| format!("the key is not a PEM private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the certificate and key do not match: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// TCP then TLS to one collector, whatever URI hyper asks for.
#[derive(Clone)]
struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    host: String,
    port: u16,
    route: Option<Route>,
}

type Io = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tonic::codegen::Service<Uri> for TlsConnector {
    type Response = Io;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Io, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let c = self.clone();
        Box::pin(async move {
            let tcp = match c.route {
                None => tokio::net::TcpStream::connect((c.host.as_str(), c.port)).await?,
                Some(Route {
                    remote,
                    local: None,
                }) => tokio::net::TcpStream::connect(remote).await?,
                Some(Route {
                    remote,
                    local: Some(local),
                }) => {
                    let socket = if remote.is_ipv4() {
                        tokio::net::TcpSocket::new_v4()?
                    } else {
                        tokio::net::TcpSocket::new_v6()?
                    };
                    socket.bind(std::net::SocketAddr::new(local, 0))?;
                    socket.connect(remote).await?
                }
            };
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(c.config)
                .connect(c.server_name, tcp)
                .await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(std::io::Error::other(
                    "the collector did not agree to HTTP/2",
                ));
            }
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_without_scheme_or_port_are_refused() {
        for url in [
            "localhost:8443",
            "https://localhost",
            "https://:8443",
            "http://x:1",
            "https://x:99999",
        ] {
            let e = connect(url, "", None).await.unwrap_err();
            assert!(matches!(e, ConnectError::BadAddress(_)), "{url}: {e}");
        }
    }

    #[tokio::test]
    async fn an_empty_ca_bundle_is_named() {
        let e = connect("https://localhost:1", "", None).await.unwrap_err();
        assert!(e.to_string().contains("holds no certificate"), "{e}");
    }
}
