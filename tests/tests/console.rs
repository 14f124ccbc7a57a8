//! The collector's HTML console end to end: in a real headless Chromium
//! (tests/browser/console.js, through Playwright) where one is installed,
//! and, everywhere, its sessions and security headers over plain HTTPS.

use muster_tests::browser::{self, Browser};
use muster_tests::https::{Https, Reply};
use muster_tests::sample::{fleet, id_of};
use muster_tests::*;

/// The campaign the tests start: BOD 17-01 with its own dates, long past,
/// so alpha is overdue.
const CAMPAIGN: &str = "kaspersky-ban";

fn start_campaign(c: &Collector) {
    let out = c.muster(&["campaign", "start", CAMPAIGN, "--policy", "bod-17-01"]);
    assert!(out.contains("started"), "{out}");
}

#[test]
fn an_operator_uses_the_console_in_a_real_browser() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let c = fleet();
    start_campaign(&c);
    let token = c.operator_token("browser", "1h");
    let shots = browser::artifacts("console");
    eprintln!("screenshots: {}", shots.display());
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_string();
    let run = browser.run(
        "console.js",
        &[
            ("BASE", &format!("https://localhost:{}/", c.http_port)),
            ("TOKEN", &token),
            ("SHOTS", &path(&shots)),
            ("ALPHA_ID", &id_of(&c, "alpha")),
            ("CAMPAIGN", CAMPAIGN),
            // Chromium accepts the collector's key and nothing else; Node,
            // for the requests it makes itself, trusts the collector's CA.
            ("SERVER_CERT", &path(&c.data().join("server.pem"))),
            ("NODE_EXTRA_CA_CERTS", &path(&c.data().join("ca.pem"))),
        ],
    );
    eprintln!("{}", run.stdout);
    assert!(
        run.success(),
        "the browser script failed (screenshots in {}):\n{run}\n--- collector log\n{}",
        shots.display(),
        c.log()
    );
    assert!(run.stdout.contains("step: done"), "{run}");
    assert!(!c.log().contains("ERROR"), "{}", c.log());
}

/// The `muster_session=VALUE` part of a response's cookie, if it set one.
fn session_cookie(r: &Reply) -> Option<String> {
    r.all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("muster_session="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
}

/// Signs in with `token`; must succeed. The `Cookie` header to send.
fn sign_in(api: &Https, token: &str) -> String {
    let r = api.post_form("/signin", &[("token", token)], &[]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/"));
    session_cookie(&r).unwrap_or_else(|| panic!("no session cookie: {:?}", r.headers))
}

/// `r` is a 303 to the sign-in page (which may carry `?next=`, the page
/// to return to).
fn to_sign_in(r: &Reply) -> bool {
    r.status == 303
        && r.header("location")
            .is_some_and(|l| l == "/signin" || l.starts_with("/signin?"))
}

/// `Content-Security-Policy` as directive → sources.
fn csp(r: &Reply, page: &str) -> Vec<(String, Vec<String>)> {
    let v = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{page}: no Content-Security-Policy: {:?}", r.headers));
    v.split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace().map(str::to_ascii_lowercase);
            Some((words.next()?, words.collect()))
        })
        .collect()
}

#[test]
fn every_page_needs_a_session_and_sends_strict_security_headers() {
    let c = fleet();
    start_campaign(&c);
    let api = c.api(None);
    let alpha = id_of(&c, "alpha");
    let pages = [
        "/".to_string(),
        "/hosts".into(),
        "/hosts?vendor=kaspersky&sort=-hostname".into(),
        format!("/hosts/{alpha}"),
        "/campaigns".into(),
        format!("/campaigns/{CAMPAIGN}"),
        "/coverage".into(),
    ];
    for page in &pages {
        let r = api.get(page, None);
        assert!(to_sign_in(&r), "{page} without a session: {r:?}");
        assert!(session_cookie(&r).is_none(), "{page}");
    }
    let cookie = sign_in(&api, &c.operator_token("headers", "1h"));
    let signin = api.get("/signin", None);
    assert_eq!(signin.status, 200, "{}", signin.text());
    let mut seen = vec![("/signin".to_string(), signin)];
    for page in &pages {
        let r = api.request("GET", page, &[("Cookie", &cookie)]);
        assert_eq!(r.status, 200, "{page}: {}", r.text());
        seen.push((page.clone(), r));
    }
    for (page, r) in &seen {
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{page}: {:?}",
            r.header("content-type")
        );
        let policy = csp(r, page);
        let sources = |name: &str| policy.iter().find(|(d, _)| d == name).map(|(_, s)| s);
        let default = sources("default-src").unwrap_or_else(|| panic!("{page}: no default-src"));
        assert!(
            default.iter().any(|s| s == "'none'" || s == "'self'"),
            "{page}: default-src {default:?}"
        );
        let scripts = sources("script-src").unwrap_or(default);
        assert!(
            !scripts
                .iter()
                .any(|s| s == "'unsafe-inline'" || s == "'unsafe-eval'" || s == "*"),
            "{page}: scripts from {scripts:?}"
        );
        let framed = sources("frame-ancestors").is_some_and(|s| s == &["'none'"]);
        assert!(
            framed || r.header("x-frame-options") == Some("DENY"),
            "{page}: may be framed: {:?}",
            r.headers
        );
        assert!(
            r.text().contains("<main id=\"content\""),
            "{page}: no <main id=\"content\">"
        );
    }
    // The report is a download, not a page to open inside the console.
    let r = api.request(
        "GET",
        &format!("/campaigns/{CAMPAIGN}/report"),
        &[("Cookie", &cookie)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(
        r.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment")),
        "{:?}",
        r.headers
    );
    // A bad filter is the operator's mistake, said as such.
    let r = api.request("GET", "/hosts?state=bogus", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("role=\"alert\""), "{}", r.text());
    assert!(!c.log().contains("ERROR"), "{}", c.log());
}

#[test]
fn signing_in_sets_a_strict_cookie_and_a_wrong_token_gets_401() {
    let c = Collector::start();
    let api = c.api(None);
    let token = c.operator_token("ops", "1h");

    let r = api.post_form("/signin", &[("token", "not-a-token")], &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.all("set-cookie").is_empty(), "{:?}", r.headers);
    let page = r.text();
    assert!(page.contains("role=\"alert\""), "{page}");
    assert!(page.contains("name=\"token\""), "the form again: {page}");
    assert!(
        !page.contains("not-a-token"),
        "the wrong token echoed: {page}"
    );
    let r = api.post_form("/signin", &[], &[]);
    assert!(
        (400..500).contains(&r.status),
        "no token: {} {}",
        r.status,
        r.text()
    );

    let r = api.post_form("/signin", &[("token", &token)], &[]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/"));
    let set = r
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("muster_session="))
        .unwrap_or_else(|| panic!("no session cookie: {:?}", r.headers));
    let attrs: Vec<String> = set
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for want in ["httponly", "secure", "samesite=strict", "path=/"] {
        assert!(attrs.iter().any(|a| a == want), "{want} missing: {set}");
    }
    assert!(!set.contains(&token), "the cookie is the token: {set}");
    let cookie = session_cookie(&r).unwrap();
    let r = api.request("GET", "/", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200, "{}", r.text());

    // Signing in returns to the page asked for, and only to this site.
    let r = api.get("/coverage?x=1", None);
    assert!(to_sign_in(&r), "{r:?}");
    let back = |next: &str| {
        let r = api.post_form("/signin", &[("token", &token), ("next", next)], &[]);
        assert!(r.status == 303 || r.status == 400, "next={next:?}: {r:?}");
        r.header("location").map(str::to_string)
    };
    assert_eq!(back("/coverage?x=1").as_deref(), Some("/coverage?x=1"));
    for elsewhere in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "\\evil.example",
        "javascript:alert(1)",
    ] {
        let to = back(elsewhere);
        assert!(
            to.as_deref().is_none_or(|l| l == "/"),
            "next={elsewhere:?} sends the browser to {to:?}"
        );
    }
    // A made-up session is no session.
    let r = api.request("GET", "/", &[("Cookie", "muster_session=made-up")]);
    assert!(to_sign_in(&r), "{} {}", r.status, r.text());

    // Another site cannot sign a browser in (to its own operator's
    // session) or out; the console's own page can.
    for from in [
        ("Origin", "https://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let r = api.post_form("/signin", &[("token", &token)], &[from]);
        assert_eq!(r.status, 403, "{from:?}: {}", r.text());
        assert!(r.all("set-cookie").is_empty(), "{from:?}: {:?}", r.headers);
        let r = api.post_form("/signout", &[], &[from, ("Cookie", &cookie)]);
        assert_eq!(r.status, 403, "{from:?}: {}", r.text());
    }
    let r = api.request("GET", "/", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200, "still signed in: {}", r.text());
    let own = ("Origin", format!("https://localhost:{}", api.port));
    let r = api.post_form("/signin", &[("token", &token)], &[(own.0, &own.1)]);
    assert_eq!(r.status, 303, "{}", r.text());
}

#[test]
fn signing_out_or_revoking_the_token_ends_the_session() {
    let c = Collector::start();
    let api = c.api(None);
    let get = |cookie: &str| api.request("GET", "/", &[("Cookie", cookie)]);

    // Signing out ends the session on the server: the cookie, replayed,
    // opens nothing.
    let cookie = sign_in(&api, &c.operator_token("leaving", "1h"));
    assert_eq!(get(&cookie).status, 200);
    let r = api.post_form("/signout", &[], &[("Cookie", &cookie)]);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/signin"));
    let r = get(&cookie);
    assert!(
        to_sign_in(&r),
        "after signing out: {} {}",
        r.status,
        r.text()
    );

    // Revoking the token ends the sessions it opened.
    let cookie = sign_in(&api, &c.operator_token("revoked", "1h"));
    let other = sign_in(&api, &c.operator_token("staying", "1h"));
    assert_eq!(get(&cookie).status, 200);
    ok(cmd("muster-collector")
        .args(["operator-token", "revoke", "--data-dir"])
        .arg(c.data())
        .arg("revoked"));
    let r = get(&cookie);
    assert!(to_sign_in(&r), "after revoking: {} {}", r.status, r.text());
    assert_eq!(get(&other).status, 200, "another token's session stays");
}

/// What an agent reports is data, never markup: a hostile endpoint's
/// hostname and package version come out escaped on every page that
/// shows them, and on the report.
#[test]
fn what_an_agent_reports_is_escaped_on_every_page() {
    const HOSTNAME: &str = "<meta http-equiv=refresh content='0;url=https://evil.example/'>\"x";
    let c = Collector::start();
    let (state, root) = (c.dir.join("agent"), c.dir.join("img"));
    c.enroll(&state);
    linux_image(
        &root,
        HOSTNAME,
        &[("kesl", "11<b>1</b>", "install ok installed")],
        &[],
    );
    let out = agent_once(&state, &root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = id_of(&c, HOSTNAME);
    let api = c.api(None);
    let cookie = sign_in(&api, &c.operator_token("escapes", "1h"));
    for page in [
        "/".to_string(),
        "/hosts".into(),
        format!("/hosts/{id}"),
        "/campaigns/bod-17-01".into(),
        "/campaigns/bod-17-01/report".into(),
    ] {
        let r = api.request("GET", &page, &[("Cookie", &cookie)]);
        assert_eq!(r.status, 200, "{page}: {}", r.text());
        let text = r.text();
        assert!(
            text.contains("&lt;meta http-equiv=refresh"),
            "{page} does not show the hostname: {text}"
        );
        assert!(!text.contains("<meta http-equiv=refresh"), "{page}: {text}");
        assert!(!text.contains("<b>1</b>"), "{page}: {text}");
    }
    let r = api.request("GET", &format!("/hosts/{id}"), &[("Cookie", &cookie)]);
    assert!(r.text().contains("11&lt;b&gt;1&lt;/b&gt;"), "{}", r.text());
}
