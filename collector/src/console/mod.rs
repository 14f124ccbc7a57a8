//! The operators' console: HTML pages served by the collector itself on
//! the API's HTTPS listener (`docs/console.md`).
//!
//! Pages are rendered on the server from the same service functions as
//! the API and `muster`; they need no JavaScript and load nothing but one
//! embedded stylesheet, so the Content-Security-Policy forbids scripts,
//! inline styles, frames and every other origin.
//!
//! Signing in takes an operator token (`muster-collector operator-token
//! create`) and makes a session kept in the database, whose secret the
//! browser holds in an HttpOnly, Secure, SameSite=Strict cookie. A session
//! lasts [`SESSION_HOURS`] at most, never beyond its token's expiry, and
//! ends at once when its token is revoked or the operator signs out. A
//! request with an operator client certificate or a bearer token needs no
//! session.

mod html;
mod pages;

use crate::api::{self, ApiError, ConnInfo, Operator};
use crate::server::State;
use crate::store::{OperatorAuth, SessionAuth};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use html::Section;
use std::sync::Arc;
use std::time::Instant;

/// The session cookie's name.
pub const COOKIE: &str = "muster_session";

/// How long a console session lasts at most, in hours.
pub const SESSION_HOURS: i64 = 12;

/// Largest sign-in form accepted, in bytes.
const MAX_FORM: usize = 4096;

/// No script, no inline style, nothing from elsewhere, never in a frame.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("console.css");

/// The tab's icon: an "M" on the header's blue.
const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
<rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#14213d\"/>\
<path d=\"M3 12V4h2l3 4 3-4h2v8h-2V7l-3 4-3-4v5z\" fill=\"#fff\"/></svg>";

/// An HTML response.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A 303 to `to`.
fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A page that could not be shown: the API's error, as a page.
pub struct PageError(pub ApiError);

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(e: E) -> PageError {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        let title = match e.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Bad request",
            StatusCode::URI_TOO_LONG => "Address too long",
            StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
            s if s.is_client_error() => "Refused",
            _ => "Error",
        };
        let body = format!(
            "<h1>{title}</h1>\n{}<p><a href=\"/\">Back to the overview</a></p>\n",
            html::alert(&e.message)
        );
        html(e.status, html::page(title, Section::None, None, &body))
    }
}

/// The console's routes. Pages need an operator (a session, a bearer
/// token or an operator certificate); without one they send the browser
/// to the sign-in page.
pub fn router(state: Arc<State>) -> axum::Router<Arc<State>> {
    use axum::routing::{get, post};
    let pages = axum::Router::new()
        .route("/", get(pages::overview))
        .route("/hosts", get(pages::hosts))
        .route("/hosts/{id}", get(pages::host))
        .route("/campaigns", get(pages::campaigns))
        .route("/campaigns/{name}", get(pages::campaign))
        .route("/campaigns/{name}/report", get(pages::campaign_report))
        .route("/coverage", get(pages::coverage))
        .route_layer(axum::middleware::from_fn_with_state(state, signed_in));
    axum::Router::new()
        .merge(pages)
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/assets/console.css", get(css))
        .route("/assets/icon.svg", get(icon))
        .route("/favicon.ico", get(icon))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(security_headers))
}

/// Headers on every console response: the CSP (unless the response set
/// its own, as the campaign report does), no framing, no caching, no
/// referrer.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

/// An embedded file, which a browser may keep for an hour.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    r
}

async fn not_found(uri: axum::http::Uri) -> PageError {
    PageError(ApiError::not_found(format!(
        "There is no page at {}.",
        uri.path()
    )))
}

/// The value of cookie `name` in the request, if sent.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value of a session cookie holding `secret` for
/// `max_age` seconds (0: delete it).
fn session_cookie(secret: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={secret}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("muster_session=; Max-Age=0"))
}

/// Who a page request speaks for: its session, else a bearer token or an
/// operator certificate (as for the API); `None` when it brings none of
/// these, or only a session that has ended.
async fn operator(
    st: &State,
    headers: &HeaderMap,
    conn: &ConnInfo,
) -> Result<Option<Operator>, ApiError> {
    if let Some(secret) = cookie(headers, COOKIE) {
        let hash = crate::service::token_hash(secret);
        if let SessionAuth::Valid(t) = st.store.console_session(&hash, crate::store::now()).await? {
            return Ok(Some(Operator {
                name: t.name,
                via: "session",
                token_id: Some(t.id),
                expires_at: t.expires_at,
            }));
        }
    }
    if headers.contains_key(header::AUTHORIZATION) || conn.caller.has_certificate() {
        return api::authenticate(st, headers, conn).await.map(Some);
    }
    Ok(None)
}

/// Lets a page request through with its operator, logging it; sends the
/// browser to sign in otherwise.
async fn signed_in(
    axum::extract::State(st): axum::extract::State<Arc<State>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let query_len = req.uri().query().map_or(0, str::len);
    if query_len > api::query::MAX_QUERY {
        return PageError(ApiError::uri_too_long(query_len)).into_response();
    }
    match operator(&st, req.headers(), &conn).await {
        Ok(Some(who)) => {
            let uri = req.uri().to_string();
            api::run_as(who, &conn, uri, req, next, started, "console").await
        }
        Ok(None) => {
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let mut r = see_other(&format!("/signin{}", html::query(&[("next", &path)])));
            if cookie(req.headers(), COOKIE).is_some() {
                // A session that ended: the browser may forget it.
                r.headers_mut()
                    .insert(header::SET_COOKIE, session_cookie("", 0));
            }
            r
        }
        Err(e) => {
            tracing::warn!(peer = %conn.remote, path = %req.uri().path(), status = e.status.as_u16(), reason = %e.message, "console request refused");
            PageError(e).into_response()
        }
    }
}

/// Whether a form was posted from the console's own pages: a browser
/// says where a request comes from (`Sec-Fetch-Site`, else `Origin`); a
/// client that says neither (curl) is not a browser another site drives.
/// Refusing other sites' posts keeps them from signing a browser in to
/// their own operator's session, or out.
fn same_site(headers: &HeaderMap) -> bool {
    let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin.strip_prefix("https://") == Some(host),
        (Some(_), None) => false,
    }
}

/// The answer to a form posted from another site.
fn cross_site() -> Response {
    tracing::warn!("console form refused: posted from another site");
    signin_form(
        StatusCode::FORBIDDEN,
        Some("This form was sent from another site: sign in from the console's own page."),
        "/",
    )
}

/// Where to go after signing in: a path of this site only.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

fn signin_form(status: StatusCode, error: Option<&str>, next: &str) -> Response {
    let mut body = String::from(
        "<div class=\"signin\">\n<h1>Sign in</h1>\n<p>Muster's console is read-only. Sign in with an \
         operator token, made on the collector with \
         <code>muster-collector operator-token create --name NAME</code>.</p>\n",
    );
    if let Some(e) = error {
        body.push_str(&html::alert(e));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/signin\">\n\
         <label for=\"token\">Operator token</label>\n\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required autofocus>\n\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\n\
         <button type=\"submit\" class=\"primary\">Sign in</button>\n</form>\n</div>\n",
        html::esc(safe_next(Some(next)))
    ));
    html(status, html::page("Sign in", Section::None, None, &body))
}

async fn signin_page(axum::extract::RawQuery(q): axum::extract::RawQuery) -> Response {
    let next = api::query::parse(q.as_deref(), &["next"])
        .ok()
        .and_then(|p| p.text("next").map(str::to_string));
    signin_form(StatusCode::OK, None, safe_next(next.as_deref()))
}

/// `POST /signin` (`token`, `next`): a session for a valid operator
/// token, or the form again with why not (401).
async fn signin(
    axum::extract::State(st): axum::extract::State<Arc<State>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !same_site(&headers) {
        return cross_site();
    }
    if body.len() > MAX_FORM {
        return signin_form(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("The form is too large."),
            "/",
        );
    }
    let form = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_query("the form is not UTF-8"))
        .and_then(|b| api::query::parse(Some(b), &["token", "next"]));
    let form = match form {
        Ok(f) => f,
        Err(e) => return signin_form(StatusCode::BAD_REQUEST, Some(&e.message), "/"),
    };
    let next = safe_next(form.text("next")).to_string();
    let Some(token) = form.text("token") else {
        return signin_form(
            StatusCode::UNAUTHORIZED,
            Some("Enter an operator token."),
            &next,
        );
    };
    let now = crate::store::now();
    let refused = |why: &str| {
        tracing::warn!(peer = %conn.remote, reason = %why, "console sign-in refused");
        signin_form(StatusCode::UNAUTHORIZED, Some(why), &next)
    };
    let t = match st
        .store
        .operator_auth(&crate::service::token_hash(token), now)
        .await
    {
        Ok(OperatorAuth::Valid(t)) => t,
        Ok(OperatorAuth::Unknown) => return refused("That is not a valid operator token."),
        Ok(OperatorAuth::Expired(_)) => {
            return refused("That operator token has expired: ask for a new one.");
        }
        Ok(OperatorAuth::Revoked(_)) => return refused("That operator token was revoked."),
        Err(e) => return PageError::from(e).into_response(),
    };
    let ends = t.expires_at.map_or(now + SESSION_HOURS * 3600, |e| {
        e.min(now + SESSION_HOURS * 3600)
    });
    let secret = hex::encode(rand::random::<[u8; 32]>());
    if let Err(e) = st
        .store
        .create_console_session(&crate::service::token_hash(&secret), t.id, ends)
        .await
    {
        return PageError::from(e).into_response();
    }
    tracing::info!(operator = %t.name, token = t.id, peer = %conn.remote, until = %crate::rfc3339(ends), "console sign-in");
    let mut r = see_other(&next);
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&secret, ends - now));
    r
}

/// `POST /signout`: ends the session on the server and in the browser.
async fn signout(
    axum::extract::State(st): axum::extract::State<Arc<State>>,
    headers: HeaderMap,
) -> Response {
    if !same_site(&headers) {
        return cross_site();
    }
    if let Some(secret) = cookie(&headers, COOKIE) {
        match st
            .store
            .end_console_session(&crate::service::token_hash(secret))
            .await
        {
            Ok(true) => tracing::info!("console sign-out"),
            Ok(false) => {}
            Err(e) => return PageError::from(e).into_response(),
        }
    }
    let mut r = see_other("/signin");
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x_muster_session=no; muster_session=abc; other=1"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        let v = session_cookie("s", 60);
        let v = v.to_str().unwrap();
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(v.contains(part), "{v}");
        }
    }

    #[test]
    fn forms_from_other_sites_are_told_apart() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(same_site(&h(&[])));
        assert!(same_site(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_site(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_site(&h(&[("sec-fetch-site", "same-site")])));
        assert!(same_site(&h(&[
            ("origin", "https://muster.example:8444"),
            ("host", "muster.example:8444")
        ])));
        assert!(!same_site(&h(&[
            ("origin", "https://evil.example"),
            ("host", "muster.example:8444")
        ])));
        assert!(!same_site(&h(&[("origin", "null"), ("host", "m:1")])));
    }

    #[test]
    fn sign_in_only_returns_to_this_site() {
        assert_eq!(safe_next(Some("/hosts?name=a")), "/hosts?name=a");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
