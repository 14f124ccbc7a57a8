//! The pieces every console page is made of: the frame (navigation,
//! sign-out, footer), escaping, times and state badges. Every string that
//! comes from data goes through [`esc`]; nothing is inline-styled or
//! scripted, so the Content-Security-Policy can forbid both.

pub(crate) use crate::campaign::esc;
use std::fmt::Write as _;

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Hosts,
    Campaigns,
    Coverage,
    /// A page outside the navigation (sign-in, errors).
    None,
}

const NAV: [(Section, &str, &str); 4] = [
    (Section::Overview, "/", "Overview"),
    (Section::Hosts, "/hosts", "Hosts"),
    (Section::Campaigns, "/campaigns", "Campaigns"),
    (Section::Coverage, "/coverage", "Coverage"),
];

/// A whole page: `title` (plain text), the section it belongs to, the
/// operator signed in (`None` on the sign-in page: no navigation then)
/// and the body (HTML, inside `<main>`).
pub fn page(title: &str, section: Section, operator: Option<&str>, body: &str) -> String {
    let mut o = String::with_capacity(body.len() + 2048);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} — Muster</title>\n<link rel=\"stylesheet\" href=\"/assets/console.css\">\n\
         <link rel=\"icon\" href=\"/assets/icon.svg\" type=\"image/svg+xml\">\n\
         </head>\n<body>\n<a class=\"skip\" href=\"#content\">Skip to content</a>\n\
         <header class=\"top\">\n<span class=\"brand\">Muster</span>\n",
        esc(title)
    );
    if let Some(who) = operator {
        o.push_str("<nav aria-label=\"Main\">\n<ul>\n");
        for (s, href, label) in NAV {
            let current = if s == section {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = writeln!(o, "<li><a href=\"{href}\"{current}>{label}</a></li>");
        }
        let _ = write!(
            o,
            "</ul>\n</nav>\n<form class=\"signout\" method=\"post\" action=\"/signout\">\
             <span class=\"who\" title=\"Signed in as\">{}</span> \
             <button type=\"submit\">Sign out</button></form>\n",
            esc(who)
        );
    }
    let _ = write!(
        o,
        "</header>\n<main id=\"content\" tabindex=\"-1\">\n{body}</main>\n\
         <footer>Muster {} · read-only console</footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    o
}

/// Unix seconds for people: `2026-11-29 18:59 UTC` in a `<time>`
/// element, or `never` for 0 and less.
pub fn when(t: i64) -> String {
    if t <= 0 {
        return "<span class=\"muted\">never</span>".into();
    }
    let rfc = crate::rfc3339(t);
    format!(
        "<time datetime=\"{}\">{}</time>",
        esc(&rfc),
        esc(&crate::campaign::human_time(&rfc))
    )
}

/// How long ago `t` was, as of `now`: `5 min ago`, `3 h ago`, `12 d ago`.
pub fn ago(now: i64, t: i64) -> String {
    if t <= 0 {
        return "never".into();
    }
    let d = (now - t).max(0);
    match d {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", d / 60),
        3600..86_400 => format!("{} h ago", d / 3600),
        _ => format!("{} d ago", d / 86_400),
    }
}

/// A detection state as a badge: running, installed, remnant (and the
/// campaign words cleared, stale, unknown).
pub fn badge(state: &str) -> String {
    let class = match state {
        "running" => "b-running",
        "installed" => "b-installed",
        "remnant" => "b-remnant",
        "cleared" => "b-cleared",
        "banned" | "overdue" | "revoked" => "b-banned",
        _ => "b-muted",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(state))
}

/// Percent-encodes a query component.
pub fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// A query string (`?a=1&b=2`, or empty) of the non-empty pairs.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A product as people name it: `Kaspersky Endpoint Security`, not
/// `Kaspersky Kaspersky Endpoint Security`.
pub fn product_name(vendor: &str, product: &str) -> String {
    if vendor.is_empty() || product.to_lowercase().starts_with(&vendor.to_lowercase()) {
        product.to_string()
    } else {
        format!("{vendor} {product}")
    }
}

/// A link to a host's page.
pub fn host_link(id: &str, hostname: &str) -> String {
    let name = if hostname.is_empty() { id } else { hostname };
    format!("<a href=\"/hosts/{}\">{}</a>", enc(id), esc(name))
}

/// An error message for a screen reader and the eye.
pub fn alert(message: &str) -> String {
    format!("<p class=\"alert\" role=\"alert\">{}</p>\n", esc(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_escaped_and_encoded() {
        assert_eq!(
            host_link("a\"b", "<x>"),
            "<a href=\"/hosts/a%22b\">&lt;x&gt;</a>"
        );
        assert_eq!(query(&[("name", "a b&c"), ("os", "")]), "?name=a%20b%26c");
        assert_eq!(query(&[("os", "")]), "");
        assert_eq!(
            product_name("Kaspersky", "Kaspersky Endpoint Security"),
            "Kaspersky Endpoint Security"
        );
        assert_eq!(
            product_name("Cisco", "Secure Endpoint"),
            "Cisco Secure Endpoint"
        );
        assert!(page("<t>", Section::None, Some("<op>"), "").contains("&lt;op&gt;"));
        assert!(!page("t", Section::None, None, "").contains("Sign out"));
    }

    #[test]
    fn times_read_for_people() {
        assert_eq!(ago(1000, 990), "just now");
        assert_eq!(ago(10_000, 10_000 - 7200), "2 h ago");
        assert_eq!(ago(1, 0), "never");
        assert!(when(0).contains("never"));
        assert!(when(1_764_442_740).contains("2025-11-29 18:59 UTC"));
    }
}
