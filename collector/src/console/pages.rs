//! The console's pages. Each reads through the same service functions as
//! the API's endpoint of the same name, so a page and `GET /api/v1/...`
//! never disagree.

use super::html::{self, Section, ago, badge, esc, host_link, when};
use super::{PageError, html as page_html};
use crate::api::handlers::{self, HOST_PARAMS};
use crate::api::{Operator, query};
use crate::server::State;
use crate::service::OperatorService;
use crate::store::{HostFilter, HostOrder};
use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;
use muster_proto::v1;
use muster_proto::v1::operator_server::Operator as _;
use std::fmt::Write as _;
use std::sync::Arc;

type Console = axum::extract::State<Arc<State>>;
type Shown = Result<Response, PageError>;

/// Hosts per page of the hosts table.
pub const HOSTS_PER_PAGE: u64 = 50;
/// Hosts with a banned product listed on the overview.
const OVERVIEW_BANNED_HOSTS: usize = 20;
/// Days the overview's chart covers.
const CHART_DAYS: i64 = 90;
/// Rows of a long list (coverage, a campaign's unknown hosts) shown.
const LONG_LIST: usize = 500;

fn show(title: &str, section: Section, who: &Operator, body: &str) -> Shown {
    Ok(super::html(
        StatusCode::OK,
        page_html::page(title, section, Some(&who.name), body),
    ))
}

fn segment(p: Result<Path<String>, PathRejection>) -> Result<String, PageError> {
    p.map(|Path(s)| s).map_err(|e| {
        PageError(crate::api::ApiError::bad_query(format!(
            "the address is malformed: {e}"
        )))
    })
}

/// Opens a table with these column headings (`#` first: a number,
/// right-aligned); [`TABLE_END`] closes it.
fn table_head(o: &mut String, heads: &[&str]) {
    o.push_str("<div class=\"table-wrap\"><table>\n<thead><tr>");
    for h in heads {
        match h.strip_prefix('#') {
            Some(h) => {
                let _ = write!(o, "<th scope=\"col\" class=\"num\">{h}</th>");
            }
            None => {
                let _ = write!(o, "<th scope=\"col\">{h}</th>");
            }
        }
    }
    o.push_str("</tr></thead>\n<tbody>\n");
}

const TABLE_END: &str = "</tbody></table></div>\n";

/// The products a host has, banned ones marked.
fn products_cell(h: &v1::HostSummary) -> String {
    if h.detections.is_empty() {
        return "<span class=\"muted\">none found</span>".into();
    }
    let mut o = String::new();
    for (i, d) in h.detections.iter().enumerate() {
        if i > 0 {
            o.push_str("<br>");
        }
        o.push_str(&esc(&html::product_name(&d.vendor, &d.product)));
        if h.banned.contains(&d.product_id) {
            o.push(' ');
            o.push_str(&badge("banned"));
        }
        o.push(' ');
        o.push_str(&badge(&d.state));
    }
    o
}

/// A host's standing: stale, revoked, superseded, or reporting.
fn status_cell(h: &v1::HostSummary) -> String {
    if h.revoked_at != 0 {
        badge("revoked")
    } else if !h.superseded_by.is_empty() {
        format!(
            "superseded by {}",
            host_link(&h.superseded_by, &h.superseded_by)
        )
    } else if h.last_checkin == 0 {
        badge("never reported")
    } else if h.stale {
        badge("stale")
    } else {
        "reporting".into()
    }
}

/// The fleet at a glance: counts, banned products and the hosts that
/// have them, products per category, and hosts with a banned product
/// per day.
pub async fn overview(
    axum::extract::State(st): Console,
    Extension(who): Extension<Operator>,
    q: RawQuery,
) -> Shown {
    query::parse(q.0.as_deref(), &[])?;
    let svc = OperatorService(st.clone());
    let s = svc
        .summary(handlers::request(&who, v1::SummaryRequest {}))
        .await?
        .into_inner();
    let banned = st.banned_products();
    let filter = HostFilter {
        products: Some(banned.clone()),
        ..Default::default()
    };
    let (hosts, more) = svc
        .hosts_matching(&filter, None, None, OVERVIEW_BANNED_HOSTS)
        .await?;
    let episodes = st.store.episode_spans(&banned).await?;
    let now = crate::store::now();

    let mut o = String::from("<h1>Fleet overview</h1>\n<dl class=\"cards\">\n");
    let card = |o: &mut String, label: &str, value: String, bad: bool| {
        let _ = writeln!(
            o,
            "<div{}><dt>{label}</dt><dd>{value}</dd></div>",
            if bad { " class=\"bad\"" } else { "" }
        );
    };
    card(&mut o, "Hosts", s.hosts.to_string(), false);
    card(&mut o, "Reporting", s.reporting.to_string(), false);
    card(
        &mut o,
        "Stale",
        format!("<a href=\"/hosts?stale=true\">{}</a>", s.stale),
        false,
    );
    card(
        &mut o,
        "Never reported",
        s.never_reported.to_string(),
        false,
    );
    card(
        &mut o,
        "With a banned product",
        s.hosts_with_banned.to_string(),
        s.hosts_with_banned > 0,
    );
    card(
        &mut o,
        "Catalog",
        format!("<span class=\"small\">{}</span>", esc(&s.catalog_version)),
        false,
    );
    o.push_str("</dl>\n");
    if s.pending_reevaluation > 0 {
        let _ = writeln!(
            o,
            "<p class=\"note\">{} hosts are waiting to be evaluated against this catalog; their detections may change.</p>",
            s.pending_reevaluation
        );
    }

    o.push_str("<h2 id=\"banned\">Banned products found</h2>\n");
    let found: Vec<&v1::ProductCount> = s.products.iter().filter(|p| p.banned).collect();
    if found.is_empty() {
        o.push_str("<p>No host reports a banned product.</p>\n");
    } else {
        table_head(&mut o, &["Vendor", "Product", "Category", "#Hosts"]);
        for p in &found {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td><a href=\"/hosts{}\">{}</a> {}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(&p.vendor),
                html::query(&[("product", &p.product_id)]),
                esc(&html::product_name(&p.vendor, &p.product)),
                badge("banned"),
                esc(&p.category),
                p.hosts
            );
        }
        o.push_str(TABLE_END);
    }

    o.push_str("<h2 id=\"banned-hosts\">Hosts with a banned product</h2>\n");
    if hosts.is_empty() {
        o.push_str("<p>None.</p>\n");
    } else {
        hosts_table(&mut o, &hosts, now, None);
        if more.is_some() {
            let _ = writeln!(
                o,
                "<p class=\"note\">The first {OVERVIEW_BANNED_HOSTS} of {} by hostname; each banned product above links to all its hosts.</p>",
                s.hosts_with_banned
            );
        }
    }

    o.push_str("<h2 id=\"trend\">Hosts with a banned product over time</h2>\n");
    let today = now.div_euclid(86_400) * 86_400;
    let window = crate::campaign::Campaign {
        name: "fleet".into(),
        policy: String::new(),
        issued: today - (CHART_DAYS - 1) * 86_400,
        identify_by: i64::MAX / 4,
        remove_by: i64::MAX / 4,
    };
    let trend = crate::campaign::status(&window, &[], &episodes, &[], now);
    crate::campaign::render_chart(
        &mut o,
        &trend.daily,
        &trend.campaign,
        &format!("in these {CHART_DAYS} days"),
    );

    o.push_str("<div class=\"grid2\">\n<section>\n<h2 id=\"products\">Security products</h2>\n");
    if s.products.is_empty() {
        o.push_str("<p>No host reports a security product of the catalog.</p>\n");
    } else {
        table_head(&mut o, &["Product", "Category", "#Hosts"]);
        for p in &s.products {
            let _ = writeln!(
                o,
                "<tr><td><a href=\"/hosts{}\">{}</a></td><td>{}</td><td class=\"num\">{}</td></tr>",
                html::query(&[("product", &p.product_id)]),
                esc(&html::product_name(&p.vendor, &p.product)),
                esc(&p.category),
                p.hosts
            );
        }
        o.push_str(TABLE_END);
    }
    o.push_str("</section>\n<section>\n<h2 id=\"categories\">Hosts per category</h2>\n");
    let mut per_category: std::collections::BTreeMap<&str, u64> = Default::default();
    for p in &s.products {
        *per_category.entry(p.category.as_str()).or_default() += p.hosts;
    }
    if per_category.is_empty() {
        o.push_str("<p>None.</p>\n");
    } else {
        table_head(&mut o, &["Category", "#Detections"]);
        for (k, n) in per_category {
            let _ = writeln!(
                o,
                "<tr><td><a href=\"/hosts{}\">{}</a></td><td class=\"num\">{n}</td></tr>",
                html::query(&[("category", k)]),
                esc(k)
            );
        }
        o.push_str("</tbody></table></div>\n<p class=\"note\">A host with two products of one category counts twice.</p>\n");
    }
    o.push_str("</section>\n</div>\n");
    show("Overview", Section::Overview, &who, &o)
}

/// A table of hosts; with `sort` (the listing's query without its sort),
/// the hostname and last check-in headers sort.
fn hosts_table(
    o: &mut String,
    hosts: &[v1::HostSummary],
    now: i64,
    sort: Option<(HostOrder, &[(&str, &str)])>,
) {
    let header = |label: &str, asc: HostOrder, desc: HostOrder| -> String {
        let Some((current, pairs)) = sort else {
            return format!("<th scope=\"col\">{label}</th>");
        };
        let (aria, next, arrow) = if current == asc {
            (" aria-sort=\"ascending\"", desc, " ▲")
        } else if current == desc {
            (" aria-sort=\"descending\"", asc, " ▼")
        } else {
            ("", asc, "")
        };
        let mut q: Vec<(&str, &str)> = pairs.to_vec();
        q.push(("sort", next.name()));
        format!(
            "<th scope=\"col\"{aria}><a href=\"/hosts{}\">{label}{arrow}</a></th>",
            esc(&html::query(&q))
        )
    };
    let _ = write!(
        o,
        "<div class=\"table-wrap\"><table>\n<thead><tr>{}<th scope=\"col\">OS</th>\
         <th scope=\"col\">Security products</th>{}<th scope=\"col\">Status</th></tr></thead>\n<tbody>\n",
        header("Hostname", HostOrder::Hostname, HostOrder::HostnameDesc),
        header(
            "Last check-in",
            HostOrder::LastSeen,
            HostOrder::LastSeenDesc
        ),
    );
    for h in hosts {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} <span class=\"muted\">{}</span></td><td>{}</td></tr>",
            host_link(&h.id, &h.hostname),
            esc(&h.os),
            products_cell(h),
            when(h.last_checkin),
            if h.last_checkin > 0 {
                format!("({})", ago(now, h.last_checkin))
            } else {
                String::new()
            },
            status_cell(h)
        );
    }
    o.push_str(TABLE_END);
}

/// A `<select>` of `options` (value, label), `current` selected, with an
/// empty "any" choice first.
fn select(o: &mut String, name: &str, label: &str, options: &[(String, String)], current: &str) {
    let _ = write!(
        o,
        "<label for=\"f-{name}\">{label}<select id=\"f-{name}\" name=\"{name}\"><option value=\"\">any</option>"
    );
    for (v, l) in options {
        let sel = if v == current { " selected" } else { "" };
        let _ = write!(o, "<option value=\"{}\"{sel}>{}</option>", esc(v), esc(l));
    }
    o.push_str("</select></label>\n");
}

/// The hosts table: the API's filters in a form, sortable by hostname or
/// last check-in, a page at a time.
pub async fn hosts(
    axum::extract::State(st): Console,
    Extension(who): Extension<Operator>,
    RawQuery(q): RawQuery,
) -> Shown {
    let p = query::parse(q.as_deref(), HOST_PARAMS)?;
    let svc = OperatorService(st.clone());
    let value = |n: &str| p.text(n).unwrap_or_default().to_string();
    let c = &st.catalog;

    // The form, filled with what was asked (even when it was wrong).
    let mut o = String::from(
        "<h1>Hosts</h1>\n<form class=\"filters\" method=\"get\" action=\"/hosts\" role=\"search\">\n",
    );
    let _ = writeln!(
        o,
        "<label for=\"f-name\">Hostname contains<input id=\"f-name\" name=\"name\" value=\"{}\"></label>",
        esc(&value("name"))
    );
    let _ = writeln!(
        o,
        "<label for=\"f-os\">OS contains<input id=\"f-os\" name=\"os\" value=\"{}\"></label>",
        esc(&value("os"))
    );
    let vendors: Vec<(String, String)> = c
        .vendors()
        .iter()
        .map(|v| (v.to_lowercase(), v.to_string()))
        .collect();
    select(
        &mut o,
        "vendor",
        "Vendor",
        &vendors,
        &value("vendor").to_lowercase(),
    );
    let products: Vec<(String, String)> = c
        .products
        .iter()
        .map(|x| (x.id.clone(), html::product_name(&x.vendor, &x.name)))
        .collect();
    select(&mut o, "product", "Product", &products, &value("product"));
    let categories: Vec<(String, String)> = [
        "antivirus",
        "edr",
        "hids",
        "firewall",
        "vulnerability-agent",
        "dlp",
        "vpn",
        "password-manager",
        "parental-control",
        "other",
    ]
    .iter()
    .map(|k| (k.to_string(), k.to_string()))
    .collect();
    select(
        &mut o,
        "category",
        "Category",
        &categories,
        &value("category"),
    );
    let states: Vec<(String, String)> = ["running", "installed", "remnant"]
        .iter()
        .map(|k| (k.to_string(), k.to_string()))
        .collect();
    select(&mut o, "state", "State", &states, &value("state"));
    let policies: Vec<(String, String)> = c
        .policies
        .iter()
        .map(|x| (x.id.clone(), x.name.clone()))
        .collect();
    select(
        &mut o,
        "violates",
        "Violates policy",
        &policies,
        &value("violates"),
    );
    let checked = |n: &str| {
        if matches!(p.text(n), Some("true" | "1")) {
            " checked"
        } else {
            ""
        }
    };
    let _ = writeln!(
        o,
        "<label class=\"check\"><input type=\"checkbox\" name=\"stale\" value=\"true\"{}> Stale only</label>\
         <label class=\"check\"><input type=\"checkbox\" name=\"include_superseded\" value=\"true\"{}> Include superseded</label>",
        checked("stale"),
        checked("include_superseded")
    );
    if let Some(s) = p.text("sort") {
        let _ = writeln!(
            o,
            "<input type=\"hidden\" name=\"sort\" value=\"{}\">",
            esc(s)
        );
    }
    o.push_str("<button type=\"submit\" class=\"primary\">Filter</button> <a class=\"button\" href=\"/hosts\">Clear</a>\n</form>\n");

    let listing = match handlers::listing(&svc, &p, HOSTS_PER_PAGE) {
        Ok(l) => l,
        Err(e) => {
            o.push_str(&html::alert(&e.message));
            return Ok(super::html(
                e.status,
                page_html::page("Hosts", Section::Hosts, Some(&who.name), &o),
            ));
        }
    };
    let (hosts, next) = svc
        .hosts_matching(
            &listing.filter,
            listing.policy.as_ref(),
            listing.after.clone(),
            listing.limit,
        )
        .await?;
    let now = crate::store::now();
    // The query of this listing, without its position or order.
    let kept: Vec<(&str, String)> = HOST_PARAMS
        .iter()
        .filter(|n| !matches!(**n, "after" | "sort"))
        .filter_map(|n| p.text(n).map(|v| (*n, v.to_string())))
        .collect();
    let pairs: Vec<(&str, &str)> = kept.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if hosts.is_empty() {
        o.push_str("<p>No host matches.</p>\n");
    } else {
        let _ = writeln!(
            o,
            "<p class=\"note\">{} hosts on this page{}.</p>",
            hosts.len(),
            if listing.after.is_some() {
                ""
            } else {
                " (the first page)"
            }
        );
        hosts_table(&mut o, &hosts, now, Some((listing.filter.order, &pairs)));
    }
    o.push_str("<nav class=\"pager\" aria-label=\"Pages\">");
    if listing.after.is_some() {
        let mut q = pairs.clone();
        q.push(("sort", listing.filter.order.name()));
        let _ = write!(
            o,
            "<a href=\"/hosts{}\">First page</a>",
            esc(&html::query(&q))
        );
    }
    if let Some((key, id)) = next {
        let cursor = query::cursor(&key, &id);
        let mut q = pairs.clone();
        q.push(("sort", listing.filter.order.name()));
        q.push(("after", &cursor));
        let _ = write!(
            o,
            "<a href=\"/hosts{}\" rel=\"next\">Next page</a>",
            esc(&html::query(&q))
        );
    }
    o.push_str("</nav>\n");
    show("Hosts", Section::Hosts, &who, &o)
}

/// One host: its facts, its detections with their evidence, its
/// inventory and its timeline.
pub async fn host(
    axum::extract::State(st): Console,
    Extension(who): Extension<Operator>,
    id: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> Shown {
    let id = segment(id)?;
    query::parse(q.0.as_deref(), &[])?;
    let d = OperatorService(st)
        .get_host(handlers::request(&who, v1::GetHostRequest { id }))
        .await?
        .into_inner();
    let h = d.host.clone().unwrap_or_default();
    let f = d.facts.clone().unwrap_or_default();
    let now = crate::store::now();
    let mut o = format!("<h1>{}</h1>\n", esc(&h.hostname));
    if !h.banned.is_empty() {
        o.push_str(&html::alert(&format!(
            "This host has {} banned product{}.",
            h.banned.len(),
            if h.banned.len() == 1 { "" } else { "s" }
        )));
    }
    o.push_str("<h2 id=\"facts\">Facts</h2>\n<dl class=\"facts\">\n");
    let fact = |o: &mut String, k: &str, v: String| {
        let v = if v.trim().is_empty() || v.contains("<code></code>") {
            "<span class=\"muted\">—</span>".to_string()
        } else {
            v
        };
        let _ = writeln!(o, "<dt>{k}</dt><dd>{v}</dd>");
    };
    fact(&mut o, "Status", status_cell(&h));
    fact(
        &mut o,
        "Last check-in",
        format!(
            "{} <span class=\"muted\">({})</span>",
            when(h.last_checkin),
            ago(now, h.last_checkin)
        ),
    );
    fact(&mut o, "Enrolled", when(h.enrolled_at));
    fact(
        &mut o,
        "OS",
        esc(&format!("{} {}", f.os_name, f.os_version)),
    );
    fact(&mut o, "Kernel", esc(&f.kernel));
    fact(&mut o, "Architecture", esc(&f.arch));
    fact(&mut o, "Platform", esc(&f.platform));
    fact(&mut o, "IP addresses", esc(&f.ips.join(", ")));
    fact(&mut o, "Agent version", esc(&f.agent_version));
    fact(&mut o, "Hardware id", esc(&f.hardware_id));
    fact(&mut o, "Host id", format!("<code>{}</code>", esc(&h.id)));
    fact(
        &mut o,
        "Certificate serial",
        format!("<code>{}</code>", esc(&d.certificate_serial)),
    );
    fact(&mut o, "Reports received", h.sequence.to_string());
    o.push_str("</dl>\n");

    o.push_str("<h2 id=\"detections\">Detections</h2>\n");
    if d.detections.is_empty() {
        o.push_str("<p>No security product of the catalog was found on this host.</p>\n");
    } else {
        table_head(&mut o, &["Product", "State", "Version", "Seen", "Evidence"]);
        for r in &d.detections {
            let x = r.detection.clone().unwrap_or_default();
            let mut product = format!(
                "{} <span class=\"muted\">({})</span>",
                esc(&html::product_name(&x.vendor, &x.product)),
                esc(&x.category)
            );
            for p in &r.banned_by {
                let _ = write!(
                    product,
                    "<br>{} by <a href=\"/campaigns/{}\">{}</a>",
                    badge("banned"),
                    html::enc(p),
                    esc(p)
                );
            }
            let state = if r.removed_at > 0 {
                format!("{} {}", badge("cleared"), when(r.removed_at))
            } else {
                badge(&x.state)
            };
            let mut evidence = String::from("<ul class=\"evidence\">");
            for e in &x.evidence {
                let _ = write!(
                    evidence,
                    "<li>{}: <code>{}</code>{}{}</li>",
                    esc(&e.kind),
                    esc(if e.matched.is_empty() {
                        &e.value
                    } else {
                        &e.matched
                    }),
                    if e.location.is_empty() {
                        String::new()
                    } else {
                        format!(" at <code>{}</code>", esc(&e.location))
                    },
                    if e.state.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", esc(&e.state))
                    }
                );
            }
            evidence.push_str("</ul>");
            let _ = writeln!(
                o,
                "<tr><td>{product}</td><td>{state}</td><td>{}</td><td class=\"nowrap\">first {}<br>last {}</td><td>{evidence}</td></tr>",
                esc(&x.version),
                when(r.first_seen),
                when(r.last_seen)
            );
        }
        o.push_str(TABLE_END);
    }
    if !d.agent_detections.is_empty() {
        o.push_str("<h2 id=\"agent-detections\">What the agent itself reported</h2>\n<ul>\n");
        for x in &d.agent_detections {
            let _ = writeln!(
                o,
                "<li>{} {}</li>",
                esc(&html::product_name(&x.vendor, &x.product)),
                badge(&x.state)
            );
        }
        o.push_str("</ul>\n");
    }

    o.push_str("<h2 id=\"timeline\">Timeline</h2>\n");
    if d.timeline.is_empty() {
        o.push_str("<p>Nothing has happened on this host yet.</p>\n");
    } else {
        table_head(&mut o, &["When", "What", "Product", "State", "Version"]);
        for e in &d.timeline {
            let what = if e.related_host.is_empty() {
                esc(&e.kind)
            } else {
                format!(
                    "{} ({})",
                    esc(&e.kind),
                    host_link(&e.related_host, &e.related_host)
                )
            };
            let state = match (e.previous_state.is_empty(), e.state.is_empty()) {
                (true, true) => String::new(),
                (true, false) => badge(&e.state),
                (false, true) => badge(&e.previous_state),
                (false, false) => format!("{} → {}", badge(&e.previous_state), badge(&e.state)),
            };
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{what}</td><td>{}</td><td>{state}</td><td>{}</td></tr>",
                when(e.at),
                esc(&html::product_name(&e.vendor, &e.product)),
                esc(&e.version)
            );
        }
        o.push_str(TABLE_END);
    }

    o.push_str("<h2 id=\"inventory\">Inventory</h2>\n");
    if d.sections.is_empty() {
        o.push_str("<p>No inventory received yet.</p>\n");
    } else {
        table_head(&mut o, &["Section", "#Items", "Updated"]);
        for s in &d.sections {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&s.name),
                s.items,
                when(s.updated_at)
            );
        }
        o.push_str(TABLE_END);
    }
    show(&h.hostname, Section::Hosts, &who, &o)
}

/// Every campaign, with its phase and counts.
pub async fn campaigns(
    axum::extract::State(st): Console,
    Extension(who): Extension<Operator>,
    q: RawQuery,
) -> Shown {
    query::parse(q.0.as_deref(), &[])?;
    let svc = OperatorService(st);
    let mut o = String::from("<h1>Campaigns</h1>\n");
    let all = svc.all_campaigns().await?;
    if all.is_empty() {
        o.push_str(
            "<p>No campaign: start one with <code>muster campaign start</code>, or use a catalog policy with a removal date.</p>\n",
        );
        return show("Campaigns", Section::Campaigns, &who, &o);
    }
    table_head(
        &mut o,
        &[
            "Campaign",
            "Policy",
            "Phase",
            "Remove by",
            "#Affected",
            "#Overdue",
            "#Cleared",
            "#Unknown",
        ],
    );
    for (c, started) in all {
        let s = svc.campaign_status(&c).await?;
        let k = &s.counts;
        let _ = writeln!(
            o,
            "<tr><td><a href=\"/campaigns/{}\">{}</a>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            html::enc(&c.name),
            esc(&c.name),
            if started {
                ""
            } else {
                " <span class=\"muted\">(from the catalog)</span>"
            },
            esc(&c.policy),
            badge(s.phase.as_str()),
            esc(&s.campaign.remove_by_date),
            k.affected,
            k.overdue,
            k.cleared,
            k.unknown
        );
    }
    o.push_str(TABLE_END);
    show("Campaigns", Section::Campaigns, &who, &o)
}

/// A table of affected hosts and their banned products with evidence.
fn affected_table(o: &mut String, hosts: &[crate::campaign::AffectedHost]) {
    table_head(
        o,
        &[
            "Host",
            "State",
            "Products and evidence",
            "Since",
            "Last check-in",
        ],
    );
    for h in hosts {
        let mut products = String::new();
        for p in &h.products {
            let _ = write!(
                products,
                "<div>{} {} {}<ul class=\"evidence\">",
                esc(&html::product_name(&p.vendor, &p.product)),
                esc(&p.version),
                badge(&p.state)
            );
            for e in &p.evidence {
                let _ = write!(
                    products,
                    "<li>{}: <code>{}</code></li>",
                    esc(&e.kind),
                    esc(&e.value)
                );
            }
            products.push_str("</ul></div>");
        }
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}{}</td><td>{products}</td><td>{}</td><td>{}</td></tr>",
            host_link(&h.id, &h.hostname),
            badge(&h.state),
            if h.stale {
                format!(" {}", badge("stale"))
            } else {
                String::new()
            },
            esc(&crate::campaign::human_time(&h.since)),
            h.last_checkin
                .as_deref()
                .map_or("never".into(), |t| esc(&crate::campaign::human_time(t)))
        );
    }
    o.push_str(TABLE_END);
}

/// One campaign: where it stands, its burn-down, the overdue and affected
/// hosts, the hosts cleared and those whose state cannot be proven.
pub async fn campaign(
    axum::extract::State(st): Console,
    Extension(who): Extension<Operator>,
    name: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> Shown {
    let name = segment(name)?;
    query::parse(q.0.as_deref(), &[])?;
    let s = handlers::status_of(st, &name).await?;
    let c = &s.campaign;
    let mut o = format!(
        "<h1>Campaign {}</h1>\n<p>Policy <strong>{}</strong> · issued {} · identify by {} · remove by {} · phase {}</p>\n\
         <p><a class=\"button\" href=\"/campaigns/{}/report\" download>Download the HTML report</a></p>\n<dl class=\"cards\">\n",
        esc(&c.name),
        esc(&c.policy),
        esc(&c.issued_date),
        esc(&c.identify_by_date),
        esc(&c.remove_by_date),
        badge(s.phase.as_str()),
        html::enc(&c.name)
    );
    let k = &s.counts;
    for (label, n, bad) in [
        ("Affected", k.affected, k.affected > 0),
        ("Running", k.running, k.running > 0),
        ("Installed", k.installed, false),
        ("Remnant", k.remnant, false),
        ("Overdue", k.overdue, k.overdue > 0),
        ("Cleared", k.cleared, false),
        ("Unknown", k.unknown, false),
        ("Hosts", k.hosts, false),
    ] {
        let _ = writeln!(
            o,
            "<div{}><dt>{label}</dt><dd>{n}</dd></div>",
            if bad { " class=\"bad\"" } else { "" }
        );
    }
    o.push_str("</dl>\n<h2 id=\"burn-down\">Burn-down</h2>\n");
    crate::campaign::render_chart(
        &mut o,
        &recent_days(&s.daily),
        &s.campaign,
        "during the campaign",
    );

    o.push_str("<h2 id=\"overdue\">Overdue</h2>\n");
    if s.overdue.is_empty() {
        let _ = writeln!(
            o,
            "<p>No host is overdue{}.</p>",
            if s.phase == crate::campaign::Phase::Overdue {
                ""
            } else {
                " (the remove-by date has not passed)"
            }
        );
    } else {
        affected_table(&mut o, &s.overdue);
    }
    o.push_str("<h2 id=\"affected\">Affected</h2>\n");
    if s.affected.is_empty() {
        o.push_str("<p>No host has a banned product of this campaign.</p>\n");
    } else {
        affected_table(&mut o, &s.affected);
    }
    o.push_str("<h2 id=\"cleared\">Cleared</h2>\n");
    if s.cleared.is_empty() {
        o.push_str("<p>None yet.</p>\n");
    } else {
        o.push_str("<ul>\n");
        for h in &s.cleared {
            let _ = writeln!(
                o,
                "<li>{} — cleared {}</li>",
                host_link(&h.id, &h.hostname),
                esc(&crate::campaign::human_time(&h.cleared_at))
            );
        }
        o.push_str("</ul>\n");
    }
    o.push_str("<h2 id=\"unknown\">Unknown</h2>\n");
    if s.unknown.is_empty() {
        o.push_str("<p>Every known host's state is proven.</p>\n");
    } else {
        table_head(&mut o, &["Host", "Why", "Last check-in", "Owner"]);
        for u in s.unknown.iter().take(LONG_LIST) {
            let host = if u.id.is_empty() {
                esc(&u.hostname)
            } else {
                host_link(&u.id, &u.hostname)
            };
            let _ = writeln!(
                o,
                "<tr><td>{host}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                badge(u.state.as_str()),
                u.last_checkin
                    .as_deref()
                    .map_or("never".into(), |t| esc(&crate::campaign::human_time(t))),
                esc(&u.owner)
            );
        }
        o.push_str(TABLE_END);
        more_note(&mut o, s.unknown.len());
    }
    show(
        &format!("Campaign {}", c.name),
        Section::Campaigns,
        &who,
        &o,
    )
}

/// The days of a burn-down worth drawing on a screen: from the first day
/// with an affected or cleared host (but at least the last
/// [`CHART_DAYS`]), so a years-old campaign whose hosts reported only
/// lately is not a line at the right edge. The report keeps every day.
fn recent_days(
    daily: &std::collections::BTreeMap<String, crate::campaign::DayCount>,
) -> std::collections::BTreeMap<String, crate::campaign::DayCount> {
    let first = daily
        .iter()
        .position(|(_, d)| d.affected > 0 || d.cleared > 0)
        .unwrap_or(daily.len());
    let from = first.min(daily.len().saturating_sub(CHART_DAYS as usize));
    daily
        .iter()
        .skip(from)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Says how many rows of a long list were left out, and where to get them.
fn more_note(o: &mut String, total: usize) {
    if total > LONG_LIST {
        let _ = writeln!(
            o,
            "<p class=\"note\">The first {LONG_LIST} of {total}; the whole list is in the HTML report, \
             in <code>muster</code>'s JSON and in the API.</p>"
        );
    }
}

/// The campaign's HTML report, as a download (the API's own answer).
pub async fn campaign_report(
    st: Console,
    who: Extension<Operator>,
    name: Result<Path<String>, PathRejection>,
    q: RawQuery,
) -> Shown {
    Ok(handlers::campaign_report(st, who, name, q).await?)
}

/// Coverage: assets without an agent, agents not in the asset list, stale
/// agents.
pub async fn coverage(
    axum::extract::State(st): Console,
    Extension(who): Extension<Operator>,
    q: RawQuery,
) -> Shown {
    query::parse(q.0.as_deref(), &[])?;
    let c = OperatorService(st).coverage().await?;
    let mut o = String::from("<h1>Coverage</h1>\n<dl class=\"cards\">\n");
    for (label, v, bad) in [
        ("Assets", c.assets.to_string(), false),
        ("Agents", c.agents.to_string(), false),
        ("Covered", format!("{:.1} %", c.percent_covered), false),
        (
            "Assets without an agent",
            c.assets_without_agent.len().to_string(),
            !c.assets_without_agent.is_empty(),
        ),
        (
            "Agents not in the asset list",
            c.agents_not_in_assets.len().to_string(),
            false,
        ),
        ("Stale agents", c.stale.len().to_string(), false),
    ] {
        let _ = writeln!(
            o,
            "<div{}><dt>{label}</dt><dd>{v}</dd></div>",
            if bad { " class=\"bad\"" } else { "" }
        );
    }
    o.push_str("</dl>\n");
    if c.assets == 0 {
        o.push_str(
            "<p class=\"note\">No asset list was imported: import one with <code>muster assets import FILE.csv</code> to see which machines have no agent.</p>\n",
        );
    }
    o.push_str("<h2 id=\"without-agent\">Assets without an agent</h2>\n");
    if c.assets_without_agent.is_empty() {
        o.push_str("<p>None.</p>\n");
    } else {
        table_head(&mut o, &["Hostname", "IP", "Owner", "Business unit"]);
        for a in c.assets_without_agent.iter().take(LONG_LIST) {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.hostname),
                esc(&a.ip),
                esc(&a.owner),
                esc(&a.business_unit)
            );
        }
        o.push_str(TABLE_END);
        more_note(&mut o, c.assets_without_agent.len());
    }
    let now = crate::store::now();
    for (id, title, list) in [
        (
            "not-in-assets",
            "Agents not in the asset list",
            &c.agents_not_in_assets,
        ),
        ("stale", "Stale agents", &c.stale),
    ] {
        let _ = writeln!(o, "<h2 id=\"{id}\">{title}</h2>");
        if list.is_empty() {
            o.push_str("<p>None.</p>\n");
            continue;
        }
        table_head(&mut o, &["Host", "Last check-in"]);
        for a in list.iter().take(LONG_LIST) {
            let t = a.last_checkin.unwrap_or(0);
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{} <span class=\"muted\">({})</span></td></tr>",
                host_link(&a.id, &a.hostname),
                when(t),
                ago(now, t)
            );
        }
        o.push_str(TABLE_END);
        more_note(&mut o, list.len());
    }
    show("Coverage", Section::Coverage, &who, &o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::DayCount;

    #[test]
    fn a_burn_down_is_drawn_from_its_first_busy_day_or_the_last_90() {
        let day = |n: usize, affected: usize| {
            (
                format!("2020-{:05}", n),
                DayCount {
                    affected,
                    cleared: 0,
                },
            )
        };
        // Quiet for years, busy for the last ten days: the last 90 shown.
        let quiet: std::collections::BTreeMap<_, _> =
            (0..1000).map(|n| day(n, usize::from(n >= 990))).collect();
        let shown = recent_days(&quiet);
        assert_eq!(shown.len(), 90);
        assert_eq!(shown.keys().last(), quiet.keys().last());
        // Busy from day 500: from there on.
        let busy: std::collections::BTreeMap<_, _> =
            (0..1000).map(|n| day(n, usize::from(n >= 500))).collect();
        assert_eq!(recent_days(&busy).len(), 500);
        // Short campaigns are drawn whole.
        let short: std::collections::BTreeMap<_, _> = (0..20).map(|n| day(n, 0)).collect();
        assert_eq!(recent_days(&short).len(), 20);
    }
}
