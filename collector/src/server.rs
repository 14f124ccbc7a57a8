//! The gRPC server: a rustls TLS 1.3 listener that verifies client
//! certificates against the collector's CA at the handshake, the services
//! behind it, and graceful drain on shutdown.

use crate::config::{Config, DataDir};
use crate::pki::{Authority, Peer, Role};
use crate::service::{AgentService, EnrollmentService, OperatorService};
use crate::store::Store;
use anyhow::{Context, Result};
use muster_catalog::Catalog;
use muster_proto::v1::agent_server::AgentServer;
use muster_proto::v1::enrollment_server::EnrollmentServer;
use muster_proto::v1::operator_server::OperatorServer;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Everything the services share.
pub struct State {
    /// The fleet store.
    pub store: Store,
    /// The catalog the collector evaluates with.
    pub catalog: Catalog,
    /// The CA, for enrollment and renewal; replaced on SIGHUP (a CA
    /// rotation).
    pub authority: std::sync::RwLock<Arc<Authority>>,
    /// The config.
    pub config: Config,
    /// The SIEM exporters of the config.
    pub exporters: Vec<crate::siem::export::Spec>,
    /// This collector's hostname, for the events' observer.
    pub observer: String,
    /// Counters for the metrics endpoint.
    pub metrics: crate::metrics::Metrics,
    /// The check-in rate limit.
    pub admission: crate::admission::Admission,
}

impl State {
    /// The CA as it is now.
    pub fn authority(&self) -> Arc<Authority> {
        self.authority
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Hosts whose last report (or enrollment) is older than this are
    /// stale.
    pub fn stale_before(&self) -> i64 {
        let cfg = &self.config;
        crate::store::now() - cfg.interval().as_secs() as i64 * i64::from(cfg.stale_after_intervals)
    }

    /// Every product some policy of the catalog bans.
    pub fn banned_products(&self) -> Vec<String> {
        let catalog = &self.catalog;
        catalog
            .products
            .iter()
            .filter(|p| !catalog.banned_by(p).is_empty())
            .map(|p| p.id.clone())
            .collect()
    }
}

pub(crate) fn read_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

pub(crate) fn read_pem_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .with_context(|| format!("{} is not a PEM key file", path.display()))?
        .with_context(|| format!("{} holds no private key", path.display()))
}

/// The TLS configuration: TLS 1.3 only, ALPN h2, client certificates
/// optional at the handshake (Enrollment needs none) but, when presented,
/// verified against the CA there — a foreign or expired certificate never
/// gets a connection. Services that need an identity check for it.
/// Sessions resume with `tickets` (none without).
pub fn tls_config(
    dir: &DataDir,
    tickets: Option<Arc<crate::tickets::TicketKeys>>,
) -> Result<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_pem_certs(&dir.ca_cert())? {
        roots
            .add(c)
            .context("the CA certificate is not usable as a trust anchor")?;
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .context("cannot build the client certificate verifier")?;
    // AES-128-GCM with SHA-256 first, whatever the client prefers: on
    // processors with SHA extensions (and no SHA-512 ones) the TLS 1.3 key
    // schedule, a dozen HMACs per handshake, costs a fraction of what it
    // does with SHA-384, which was 5 % of the collector's time with
    // resuming agents. Both are TLS 1.3's approved AEAD suites; a client
    // that offers only AES-256 still gets it.
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("the TLS provider cannot do TLS 1.3")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            read_pem_certs(&dir.server_cert())?,
            read_pem_key(&dir.server_key())?,
        )
        .context("the server certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    cfg.ignore_client_order = true;
    // TLS 1.3 resumption with tickets the agents keep (crate::tickets):
    // an agent's next check-in resumes without either certificate chain on
    // the wire and without a signature, the collector keeps nothing per
    // agent, and the keys outlive a restart or a reload (SIGHUP), so a
    // returning fleet resumes. A ticket carries the session, the agent's
    // certificate included: about 900 bytes each way per check-in. (The
    // alternative, rustls's session cache, costs about 1 KB per agent and
    // finds a session by a scan of its whole eviction queue, under one
    // lock: a 100 000-entry scan per resumption.) One ticket per handshake
    // is enough: an agent connects once per check-in.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    match tickets {
        Some(t) => {
            cfg.ticketer = t;
            cfg.send_tls13_tickets = 1;
        }
        None => cfg.send_tls13_tickets = 0,
    }
    Ok(cfg)
}

/// Admits only callers whose certificate names `role`, and hands the
/// verified identity to the service in the request's extensions.
#[derive(Clone, Copy)]
pub struct RequireRole(pub Role);

impl Interceptor for RequireRole {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let peer = req
            .extensions()
            .get::<Caller>()
            .and_then(|c| c.peer_at(time::OffsetDateTime::now_utc()))
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "this service needs a client certificate with the {} role",
                    self.0
                ))
            })?
            .map_err(Status::unauthenticated)?;
        if peer.role != self.0 {
            return Err(Status::permission_denied(format!(
                "an {} certificate cannot call the {} service",
                peer.role, self.0
            )));
        }
        req.extensions_mut().insert(peer);
        Ok(req)
    }
}

/// The verified caller of a request that passed [`RequireRole`].
pub fn peer<T>(req: &Request<T>) -> Result<Peer, Status> {
    req.extensions()
        .get::<Peer>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no verified client identity"))
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight
/// calls finish and returns. Each connection is accepted with the TLS
/// configuration `tls` holds at that moment, so a new server certificate
/// or CA bundle (SIGHUP) applies to the next handshake without a restart.
pub async fn serve(
    listener: TcpListener,
    tls: tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let limit = Arc::new(tokio::sync::Semaphore::new(state.config.max_connections));
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    let counted = state.clone();
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(peer = %addr, "connection refused: max_connections reached");
                continue;
            };
            // Without it, a small write waiting on the peer's delayed ACK
            // (40 ms) ends each handshake and call: check-ins on a new
            // connection took 40 ms each.
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.borrow().clone());
            let tx = tx.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                match handshake.await {
                    Ok(Ok(tls)) => {
                        let resumed = tls.get_ref().1.handshake_kind()
                            == Some(rustls::HandshakeKind::Resumed);
                        counted.metrics.handshake(resumed);
                        let _ = tx
                            .send(Ok::<_, std::io::Error>(Held::new(tls, permit)))
                            .await;
                    }
                    Ok(Err(e)) => tracing::info!(peer = %addr, error = %e, "tls handshake refused"),
                    Err(_) => tracing::info!(peer = %addr, "tls handshake timed out"),
                }
            });
        }
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AgentServer<AgentService>>().await;
    health
        .set_serving::<OperatorServer<OperatorService>>()
        .await;
    health
        .set_serving::<EnrollmentServer<EnrollmentService>>()
        .await;

    let max = state.config.max_checkin_bytes;
    let agent = AgentServer::new(AgentService(state.clone())).max_decoding_message_size(max);
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(
            EnrollmentServer::new(EnrollmentService(state.clone()))
                .max_decoding_message_size(64 * 1024),
        )
        .add_service(tonic::service::interceptor::InterceptedService::new(
            agent,
            RequireRole(Role::Agent),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            OperatorServer::new(OperatorService(state.clone())),
            RequireRole(Role::Operator),
        ))
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await;
    accept.abort();
    result.context("the gRPC server failed")
}

/// Who is at the other end of a connection, in every request's
/// extensions: its address, and what its client certificate names, parsed
/// once when the connection is accepted rather than at every call (that
/// was a tenth of the collector's own work with kept-open agents). The
/// certificate's validity window is still checked at every call. The
/// gRPC services and the HTTP API both read their callers from it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The peer's address.
    pub remote: Option<std::net::SocketAddr>,
    /// The client certificate's identity, or why it has none; `None`
    /// without a client certificate.
    certified: Option<Arc<Result<crate::pki::Certified, String>>>,
}

impl Caller {
    fn of(tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Caller {
        let (tcp, session) = tls.get_ref();
        Caller {
            remote: tcp.peer_addr().ok(),
            certified: session
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|der| Arc::new(crate::pki::certified(der).map_err(|e| format!("{e:#}")))),
        }
    }

    /// Whether the caller presented a client certificate.
    pub fn has_certificate(&self) -> bool {
        self.certified.is_some()
    }

    /// The identity the client certificate names, if it is valid at
    /// `now`, or why not; `None` without a client certificate.
    pub fn peer_at(&self, now: time::OffsetDateTime) -> Option<Result<crate::pki::Peer, String>> {
        let certified = self.certified.as_deref()?;
        Some(match certified {
            Ok(c) => c.at(now).map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.clone()),
        })
    }
}

/// A TLS connection that holds its slot under a connection limit until
/// closed.
pub struct Held {
    io: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    caller: Caller,
}

impl Held {
    pub(crate) fn new(
        io: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Held {
        Held {
            caller: Caller::of(&io),
            io,
            _permit: permit,
        }
    }

    /// Who is at the other end.
    pub(crate) fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl tonic::transport::server::Connected for Held {
    type ConnectInfo = Caller;
    fn connect_info(&self) -> Caller {
        self.caller.clone()
    }
}

impl tokio::io::AsyncRead for Held {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Held {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
