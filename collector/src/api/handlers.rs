//! The endpoints. Each reads through the gRPC `Operator` service's own
//! functions (`OperatorService`), so a filter, a campaign or a summary means
//! the same over HTTP as in `muster`.

use super::query::{self, Params};
use super::{ApiError, OPENAPI, Operator, json_response, views};
use crate::server::State;
use crate::service::OperatorService;
use crate::store::HostOrder;
use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use muster_proto::v1;
use muster_proto::v1::operator_server::Operator as _;
use serde_json::{Value, json};
use std::sync::Arc;

type Api = axum::extract::State<Arc<State>>;
type Answer = Result<Response, ApiError>;

/// Most hosts one page of `GET /hosts` returns, and how many by default.
pub const HOSTS_LIMIT_MAX: u64 = 1000;
/// See [`HOSTS_LIMIT_MAX`].
pub const HOSTS_LIMIT_DEFAULT: u64 = 100;

fn ok(body: &Value) -> Answer {
    Ok(json_response(StatusCode::OK, body))
}

/// A gRPC-shaped request carrying the operator, for the service functions.
pub(crate) fn request<T>(who: &Operator, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.extensions_mut().insert(who.peer());
    r
}

/// A path segment, or a JSON 400 when it is not valid UTF-8.
fn segment(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::bad_query(format!("the path is malformed: {e}")))
}

/// Refuses any query parameter (for endpoints that take none).
fn no_params(q: &RawQuery) -> Result<Params, ApiError> {
    query::parse(q.0.as_deref(), &[])
}

pub async fn summary(
    axum::extract::State(st): Api,
    Extension(who): Extension<Operator>,
    q: RawQuery,
) -> Answer {
    no_params(&q)?;
    let s = OperatorService(st)
        .summary(request(&who, v1::SummaryRequest {}))
        .await?
        .into_inner();
    ok(&views::summary_json(&s))
}

/// The query parameters of a host listing (`GET /hosts`, and the
/// console's hosts table).
pub(crate) const HOST_PARAMS: &[&str] = &[
    "product",
    "vendor",
    "category",
    "state",
    "os",
    "violates",
    "stale",
    "name",
    "include_superseded",
    "sort",
    "limit",
    "after",
];

/// A host listing as its query parameters ask for it.
pub(crate) struct Listing {
    pub filter: crate::store::HostFilter,
    pub policy: Option<muster_catalog::Policy>,
    pub after: Option<(String, String)>,
    pub limit: usize,
}

/// Reads a host listing's parameters ([`HOST_PARAMS`]); a bad value is a
/// 400 naming its parameter.
pub(crate) fn listing(
    svc: &OperatorService,
    p: &Params,
    default_limit: u64,
) -> Result<Listing, ApiError> {
    let text = |n: &str| p.text(n).unwrap_or_default().to_string();
    let r = v1::ListHostsRequest {
        product: text("product"),
        vendor: text("vendor"),
        category: text("category"),
        state: text("state"),
        os: text("os"),
        violates: text("violates"),
        stale: p.flag("stale")?,
        name: text("name"),
        include_superseded: p.flag("include_superseded")?,
    };
    let limit = p.number("limit", 1, HOSTS_LIMIT_MAX, default_limit)? as usize;
    let order = match p.text("sort") {
        None => HostOrder::default(),
        Some(s) => HostOrder::parse(s).ok_or_else(|| {
            ApiError::bad_parameter(
                "sort",
                format!("sort={s:?}: use hostname, -hostname, last_seen or -last_seen"),
            )
        })?,
    };
    let after = p
        .text("after")
        .map(|c| query::read_cursor("after", c))
        .transpose()?;
    if let Some((key, _)) = &after
        && matches!(order, HostOrder::LastSeen | HostOrder::LastSeenDesc)
        && key.parse::<i64>().is_err()
    {
        return Err(ApiError::bad_parameter(
            "after",
            "after is a position in another order than sort asks for (use the `next` of a page in the same order)",
        ));
    }
    let (mut filter, policy) = svc.host_filter(&r)?;
    filter.order = order;
    Ok(Listing {
        filter,
        policy,
        after,
        limit,
    })
}

pub async fn hosts(
    axum::extract::State(st): Api,
    Extension(who): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = query::parse(q.as_deref(), HOST_PARAMS)?;
    let svc = OperatorService(st);
    let l = listing(&svc, &p, HOSTS_LIMIT_DEFAULT)?;
    let (hosts, next) = svc
        .hosts_matching(&l.filter, l.policy.as_ref(), l.after, l.limit)
        .await?;
    tracing::debug!(operator = %who.name, hosts = hosts.len(), "hosts listed");
    ok(&json!({
        "hosts": hosts.iter().map(views::host_json).collect::<Vec<_>>(),
        "next": next.map(|(key, id)| query::cursor(&key, &id)),
    }))
}

pub async fn host(
    axum::extract::State(st): Api,
    Extension(who): Extension<Operator>,
    id: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> Answer {
    let id = segment(id)?;
    no_params(&q)?;
    let d = OperatorService(st)
        .get_host(request(&who, v1::GetHostRequest { id }))
        .await?
        .into_inner();
    ok(&views::host_detail_json(&d))
}

pub async fn campaigns(
    axum::extract::State(st): Api,
    Extension(_who): Extension<Operator>,
    q: RawQuery,
) -> Answer {
    no_params(&q)?;
    let svc = OperatorService(st);
    let mut out = Vec::new();
    for (c, started) in svc.all_campaigns().await? {
        let s = svc.campaign_status(&c).await?;
        out.push(json!({
            "name": c.name,
            "policy": c.policy,
            "started": started,
            "issued": s.campaign.issued_date,
            "identify_by": s.campaign.identify_by_date,
            "remove_by": s.campaign.remove_by_date,
            "phase": s.phase.as_str(),
            "counts": s.counts,
        }));
    }
    ok(&json!({ "campaigns": out }))
}

/// A campaign's status, or 404.
pub(crate) async fn status_of(
    st: Arc<State>,
    name: &str,
) -> Result<crate::campaign::CampaignStatus, ApiError> {
    let svc = OperatorService(st);
    let c = svc.find_campaign(name).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no campaign named {name:?} (GET /api/v1/campaigns lists them)"
        ))
    })?;
    Ok(svc.campaign_status(&c).await?)
}

pub async fn campaign(
    axum::extract::State(st): Api,
    Extension(_who): Extension<Operator>,
    name: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> Answer {
    let name = segment(name)?;
    no_params(&q)?;
    let s = status_of(st, &name).await?;
    ok(&serde_json::to_value(&s).map_err(ApiError::internal)?)
}

/// The campaign's self-contained HTML report (`muster campaign report`),
/// as a download.
pub async fn campaign_report(
    axum::extract::State(st): Api,
    Extension(_who): Extension<Operator>,
    name: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> Answer {
    let name = segment(name)?;
    no_params(&q)?;
    let version = st.catalog.version.clone();
    let s = status_of(st, &name).await?;
    let html = crate::campaign::render_html(&s, &version);
    // The name went through the store or the catalog; still, only safe
    // characters reach the header.
    let file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}-report.html\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    );
    Ok(r)
}

pub async fn coverage(
    axum::extract::State(st): Api,
    Extension(_who): Extension<Operator>,
    q: RawQuery,
) -> Answer {
    no_params(&q)?;
    let c = OperatorService(st).coverage().await?;
    ok(&serde_json::to_value(&c).map_err(ApiError::internal)?)
}

pub async fn products(
    axum::extract::State(st): Api,
    Extension(_who): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Answer {
    let p = query::parse(q.as_deref(), &["vendor", "category"])?;
    let c = &st.catalog;
    let vendor = p.text("vendor");
    let category = p.text("category");
    if let Some(v) = vendor
        && !c.vendors().iter().any(|x| x.eq_ignore_ascii_case(v))
    {
        return Err(ApiError::bad_parameter(
            "vendor",
            format!("no vendor {v:?} in the catalog"),
        ));
    }
    if let Some(k) = category
        && muster_catalog::Category::parse(k).is_none()
    {
        return Err(ApiError::bad_parameter(
            "category",
            format!(
                "no category {k:?} (antivirus, edr, hids, firewall, vulnerability-agent, dlp, vpn, password-manager, parental-control, other)"
            ),
        ));
    }
    let products = c
        .products
        .iter()
        .filter(|p| vendor.is_none_or(|v| p.vendor.eq_ignore_ascii_case(v)))
        .filter(|p| category.is_none_or(|k| p.category.as_str() == k));
    ok(&views::catalog_json(c, products))
}

pub async fn policies(
    axum::extract::State(st): Api,
    Extension(_who): Extension<Operator>,
    q: RawQuery,
) -> Answer {
    no_params(&q)?;
    ok(&views::policies_json(&st.catalog))
}

pub async fn exporters(
    axum::extract::State(st): Api,
    Extension(_who): Extension<Operator>,
    q: RawQuery,
) -> Answer {
    no_params(&q)?;
    ok(&OperatorService(st).siem_status().await?)
}

/// Who the request speaks for: a sign-in page checks a token with it.
pub async fn me(Extension(who): Extension<Operator>, q: RawQuery) -> Answer {
    no_params(&q)?;
    ok(&json!({
        "operator": who.name,
        "auth": who.via,
        "token_id": who.token_id,
        "expires_at": who.expires_at.map(crate::rfc3339),
    }))
}

pub async fn openapi(q: RawQuery) -> Answer {
    no_params(&q)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response())
}

pub async fn no_route(axum::extract::OriginalUri(uri): axum::extract::OriginalUri) -> ApiError {
    ApiError::not_found(format!(
        "no endpoint {} (GET /api/v1/openapi.json lists them)",
        uri.path()
    ))
}

pub async fn no_method(method: axum::http::Method) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!("{method} is not allowed: the API is read-only (GET)"),
        parameter: None,
    }
}
