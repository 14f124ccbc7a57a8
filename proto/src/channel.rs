//! The client end of the transport: a TLS channel to the collector that
//! trusts only the collector's CA. Shared by the agent and the operator CLI
//! so both speak to the collector the same way.

use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Why a channel could not be opened; the message names the address.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address is not `https://NAME:PORT`.
    #[error("collector address {0:?} must look like https://NAME:PORT")]
    BadAddress(String),
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
/// server against `ca_pem` under NAME and presenting `identity`
/// (certificate PEM, key PEM) when given.
pub async fn connect(
    url: &str,
    ca_pem: &str,
    identity: Option<(String, String)>,
) -> Result<Channel, ConnectError> {
    let bad = || ConnectError::BadAddress(url.to_string());
    let authority = url.strip_prefix("https://").ok_or_else(bad)?;
    let authority = authority.split('/').next().unwrap_or_default();
    let name = match authority.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            h.trim_matches(['[', ']'])
        }
        _ => return Err(bad()),
    };
    if name.is_empty() {
        return Err(bad());
    }
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(name);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let unreachable = |e: &(dyn std::error::Error + 'static)| ConnectError::Unreachable {
        url: url.to_string(),
        cause: error_chain(e),
    };
    Endpoint::from_shared(url.to_string())
        .map_err(|_| bad())?
        .tls_config(tls)
        .map_err(|e| unreachable(&e))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .connect()
        .await
        .map_err(|e| unreachable(&e))
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
        ] {
            let e = connect(url, "", None).await.unwrap_err();
            assert!(matches!(e, ConnectError::BadAddress(_)), "{url}: {e}");
        }
    }
}
