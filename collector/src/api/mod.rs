//! The read-only HTTP API (`/api/v1/`, JSON over HTTPS; `docs/api.md`).
//!
//! It is served on its own listener (`http_listen`, default
//! 127.0.0.1:8444) with the collector's server certificate. Client
//! certificates are optional there: a request speaks for an operator
//! through `Authorization: Bearer TOKEN` (an operator token) or an operator
//! client certificate, or it is refused with 401 before anything else is
//! looked at. Every endpoint reads through the same service functions and
//! store queries as the gRPC `Operator` service, and answers with the same
//! JSON as the `muster` command line's `--format json` ([`views`]).

pub(crate) mod handlers;
pub mod query;
pub mod views;

use crate::pki::{Peer, Role};
use crate::server::{Held, State};
use crate::store::OperatorAuth;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The OpenAPI 3.1 document describing every endpoint and its JSON.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Most API connections open at once.
pub const MAX_CONNECTIONS: usize = 512;

/// A refused request: its status and a JSON body
/// `{"error": CODE, "message": TEXT, "parameter": NAME}` (`parameter` only
/// when one query parameter is at fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code: `unauthorized`, `forbidden`, `not_found`,
    /// `bad_request`, `uri_too_long`, `method_not_allowed`, `internal`,
    /// `unavailable`.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The query parameter at fault.
    pub parameter: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            parameter: None,
        }
    }

    /// 401: no, or no valid, credentials.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400 about one query parameter.
    pub fn bad_parameter(name: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            parameter: Some(name.to_string()),
            ..Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
        }
    }

    /// 400 about the query string as a whole.
    pub fn bad_query(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 414: a query string over [`query::MAX_QUERY`].
    pub fn uri_too_long(len: usize) -> ApiError {
        Self::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "the query string is {len} bytes long; at most {} are accepted",
                query::MAX_QUERY
            ),
        )
    }

    /// 500, detail in the log only.
    fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "api request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the collector could not complete the request; see its log",
        )
    }
}

impl From<tonic::Status> for ApiError {
    /// The service functions' refusals, as HTTP. Their messages are meant
    /// for clients already (internal detail was logged, not put there).
    fn from(s: tonic::Status) -> ApiError {
        use tonic::Code;
        let (status, code) = match s.code() {
            Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "forbidden"),
            Code::Unavailable | Code::ResourceExhausted => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, s.message())
    }
}

impl From<crate::service::BadField> for ApiError {
    fn from(b: crate::service::BadField) -> ApiError {
        ApiError::bad_parameter(b.field, format!("{}: {}", b.field, b.message))
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"error": self.code, "message": self.message});
        if let Some(p) = self.parameter {
            body["parameter"] = p.into();
        }
        let mut r = json_response(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"muster\""),
            );
        }
        r
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The operator a request speaks for, in its extensions once it passed
/// [`authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The token's name, or the certificate's operator id: what the log
    /// names.
    pub name: String,
    /// `token` or `certificate`.
    pub via: &'static str,
    /// The token's id (tokens only).
    pub token_id: Option<i64>,
    /// When the token expires (tokens that do only).
    pub expires_at: Option<i64>,
}

impl Operator {
    /// The identity the service functions log and check, as if it had
    /// come in a certificate.
    pub fn peer(&self) -> Peer {
        Peer {
            role: Role::Operator,
            id: self.name.clone(),
            serial: String::new(),
        }
    }
}

/// What the TLS layer knows of a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The client certificate's identity, read once per connection.
    pub caller: crate::server::Caller,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ConnInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> ConnInfo {
        stream.remote_addr().clone()
    }
}

/// Who a request speaks for: the bearer token when an `Authorization`
/// header is given (it alone decides then), else an operator client
/// certificate; anything else is refused.
pub async fn authenticate(
    state: &State,
    headers: &HeaderMap,
    conn: &ConnInfo,
) -> Result<Operator, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "the Authorization header is not `Bearer TOKEN` (make a token with muster-collector operator-token create)",
                )
            })?;
        let now = crate::store::now();
        let hash = crate::service::token_hash(token);
        return match state.store.operator_auth(&hash, now).await? {
            OperatorAuth::Valid(t) => {
                if t.last_used_at
                    .is_none_or(|u| u <= now - crate::store::LAST_USED_RESOLUTION)
                {
                    // Off the request's path: a busy database delays the
                    // record, never the answer.
                    let store = state.store.clone();
                    tokio::spawn(async move {
                        if let Err(e) = store.operator_token_used(t.id, now).await {
                            tracing::warn!(token = t.id, error = %e, "cannot record an operator token's use");
                        }
                    });
                }
                Ok(Operator {
                    name: t.name,
                    via: "token",
                    token_id: Some(t.id),
                    expires_at: t.expires_at,
                })
            }
            OperatorAuth::Unknown => Err(ApiError::unauthorized("unknown operator token")),
            OperatorAuth::Expired(t) => Err(ApiError::unauthorized(format!(
                "the operator token expired at {} (make a new one with muster-collector operator-token create)",
                crate::rfc3339(t.expires_at.unwrap_or_default())
            ))),
            OperatorAuth::Revoked(t) => Err(ApiError::unauthorized(format!(
                "the operator token was revoked at {}",
                crate::rfc3339(t.revoked_at.unwrap_or_default())
            ))),
        };
    }
    // Checked per request: a kept-alive connection must not outlive its
    // certificate.
    let Some(peer) = conn.caller.peer_at(time::OffsetDateTime::now_utc()) else {
        return Err(ApiError::unauthorized(
            "no credentials: send Authorization: Bearer TOKEN (muster-collector operator-token create) or an operator client certificate",
        ));
    };
    let peer = peer.map_err(ApiError::unauthorized)?;
    if peer.role != Role::Operator {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("an {} certificate cannot read the API", peer.role),
        ));
    }
    Ok(Operator {
        name: peer.id,
        via: "certificate",
        token_id: None,
        expires_at: None,
    })
}

/// Runs a request as `who` and logs it in one line naming the operator:
/// `{what} request` (`api`, `console`), the whole `uri`, the status and
/// the time it took since `started`.
pub(crate) async fn run_as(
    who: Operator,
    conn: &ConnInfo,
    uri: String,
    mut req: Request,
    next: Next,
    started: Instant,
    what: &'static str,
) -> Response {
    let method = req.method().clone();
    req.extensions_mut().insert(who.clone());
    let r = next.run(req).await;
    tracing::info!(
        operator = %who.name,
        auth = %who.via,
        peer = %conn.remote,
        %method,
        uri = %uri,
        status = r.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "{what} request"
    );
    r
}

/// Every request: the query string's size, then the operator, then the
/// endpoint; and one log line naming the operator.
async fn guard(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // The whole URI: inside `/api/v1` the router sees only the rest.
    let full = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().clone(), |u| u.0.clone());
    let path = full.path().to_string();
    let query_len = full.query().map_or(0, str::len);
    let mut response = if query_len > query::MAX_QUERY {
        tracing::warn!(peer = %conn.remote, %method, path = %path, query_len, "api request refused: query string too long");
        ApiError::uri_too_long(query_len).into_response()
    } else {
        match authenticate(&state, req.headers(), &conn).await {
            Ok(who) => run_as(who, &conn, full.to_string(), req, next, started, "api").await,
            Err(e) => {
                tracing::warn!(
                    peer = %conn.remote,
                    %method,
                    path = %path,
                    status = e.status.as_u16(),
                    reason = %e.message,
                    "api request refused"
                );
                e.into_response()
            }
        }
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The API's routes, under `/api/v1/` behind [`guard`], and the console's
/// pages beside them.
pub fn router(state: Arc<State>) -> axum::Router {
    use axum::routing::get;
    let api = axum::Router::new()
        .route("/summary", get(handlers::summary))
        .route("/hosts", get(handlers::hosts))
        .route("/hosts/{id}", get(handlers::host))
        .route("/campaigns", get(handlers::campaigns))
        .route("/campaigns/{name}", get(handlers::campaign))
        .route("/campaigns/{name}/report", get(handlers::campaign_report))
        .route("/coverage", get(handlers::coverage))
        .route("/catalog/products", get(handlers::products))
        .route("/catalog/policies", get(handlers::policies))
        .route("/exporters", get(handlers::exporters))
        .route("/me", get(handlers::me))
        .route("/openapi.json", get(handlers::openapi))
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::no_method)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard));
    axum::Router::new()
        .nest("/api/v1", api)
        .merge(crate::console::router(state.clone()))
        .with_state(state)
}

/// TLS connections, handed to axum once their handshake is done.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(Held, ConnInfo)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = Held;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Held, ConnInfo) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended: no more connections, ever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<ConnInfo> {
        Ok(ConnInfo {
            remote: self.local,
            caller: Default::default(),
        })
    }
}

/// The API's TLS configuration: the gRPC listener's (same certificate,
/// CA and optional client certificates) speaking HTTP/1.1.
fn http_tls(grpc: &rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    let mut c = grpc.clone();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// Serves the API on `listener` until `shutdown` resolves. Each connection
/// is accepted with the TLS configuration `tls` holds then, so a SIGHUP
/// reload applies here too.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut tls: tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let accept = tokio::spawn(async move {
        let mut config = http_tls(&tls.borrow_and_update());
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "api: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(peer = %addr, "api connection refused: {MAX_CONNECTIONS} open already");
                continue;
            };
            if tls.has_changed().unwrap_or(false) {
                config = http_tls(&tls.borrow_and_update());
            }
            // As the gRPC listener: no small write waits for a delayed ACK.
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
                match handshake.await {
                    Ok(Ok(io)) => {
                        let held = Held::new(io, permit);
                        let conn = ConnInfo {
                            remote: addr,
                            caller: held.caller().clone(),
                        };
                        let _ = tx.send((held, conn)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::info!(peer = %addr, error = %e, "api: tls handshake refused")
                    }
                    Err(_) => tracing::info!(peer = %addr, "api: tls handshake timed out"),
                }
            });
        }
    });
    let app = router(state).into_make_service_with_connect_info::<ConnInfo>();
    let result = axum::serve(TlsListener { rx, local }, app)
        .with_graceful_shutdown(shutdown)
        .await;
    accept.abort();
    result
}
