//! The HTTP API end to end: a real collector serving HTTPS, real agents,
//! operator tokens made and revoked with the real command, and every
//! answer checked against the OpenAPI document the collector serves.

use muster_tests::https::Reply;
use muster_tests::openapi::Spec;
use muster_tests::sample::{fleet, id_of};
use muster_tests::*;
use serde_json::Value;

/// The OpenAPI document, as the collector serves it.
fn spec(c: &Collector, token: &str) -> Spec {
    let r = c.api(None).get("/api/v1/openapi.json", Some(token));
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    Spec::new(doc)
}

/// `r` is `status` and its JSON matches the document's schema for `path`.
fn conforms(spec: &Spec, path: &str, r: &Reply, status: u16) -> Value {
    assert_eq!(r.status, status, "{path}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
    let body = r.json();
    let schema = spec
        .response_schema(path, status)
        .unwrap_or_else(|| panic!("the document has no {status} answer for {path}"));
    let errors = spec.check(schema, &body);
    assert!(
        errors.is_empty(),
        "GET {path} ({status}) does not match the OpenAPI document:\n  {}\n{body:#}",
        errors.join("\n  ")
    );
    body
}

fn is_json_error(r: &Reply, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["error"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

#[test]
fn every_endpoint_answers_a_token_and_matches_the_openapi_document() {
    let c = fleet();
    let token = c.operator_token("dashboard", "1h");
    let api = c.api(None);
    let spec = spec(&c, &token);
    let (alpha, bravo) = (id_of(&c, "alpha"), id_of(&c, "bravo"));

    // Every path of the document is called; a path added without a test
    // here fails.
    let mut seen = Vec::new();
    for path in spec.paths() {
        let target = match path.as_str() {
            "/hosts/{id}" => format!("/hosts/{alpha}"),
            "/campaigns/{name}" | "/campaigns/{name}/report" => path.replace("{name}", "bod-17-01"),
            "/summary" | "/hosts" | "/campaigns" | "/coverage" | "/catalog/products"
            | "/catalog/policies" | "/exporters" | "/me" | "/openapi.json" => path.clone(),
            other => panic!("{other} is in the OpenAPI document but not tested"),
        };
        let r = api.get(&format!("/api/v1{target}"), Some(&token));
        if path.ends_with("/report") {
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(r.header("content-type").unwrap().starts_with("text/html"));
            assert!(
                r.text().contains("alpha"),
                "the report names the affected host"
            );
            assert!(
                r.header("content-disposition")
                    .unwrap()
                    .contains("bod-17-01")
            );
        } else if path == "/openapi.json" {
            assert_eq!(r.status, 200);
        } else {
            let v = conforms(&spec, &path, &r, 200);
            seen.push((path.clone(), v));
        }
    }
    let got = |p: &str| &seen.iter().find(|(path, _)| path == p).unwrap().1;

    // What they say is the fleet's state, as `muster` says it.
    let summary = got("/summary");
    assert_eq!(summary["hosts"], 2);
    assert_eq!(summary["hosts_with_banned"], 1);
    let cli: Value = serde_json::from_str(&c.muster(&["summary", "--format", "json"])).unwrap();
    assert_eq!(summary, &cli, "the API's summary is the CLI's");
    let hosts = got("/hosts");
    let names: Vec<&str> = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "bravo"]);
    assert!(hosts["next"].is_null());
    let host = got("/hosts/{id}");
    assert_eq!(host["hostname"], "alpha");
    let cli: Value =
        serde_json::from_str(&c.muster(&["host", &alpha, "--format", "json"])).unwrap();
    assert_eq!(host, &cli, "the API's host is the CLI's");
    let ev = host["detections"][0]["evidence"].as_array().unwrap();
    assert!(ev.iter().any(|e| e["matched"] == "kesl"), "{ev:?}");
    assert!(
        host["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "detected")
    );
    let campaigns = got("/campaigns");
    let bod = campaigns["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "bod-17-01")
        .expect("bod-17-01 is a campaign without starting it");
    assert_eq!(bod["started"], false);
    assert_eq!(bod["counts"]["affected"], 1);
    let status = got("/campaigns/{name}");
    assert_eq!(status["affected"][0]["hostname"], "alpha");
    let coverage = got("/coverage");
    assert_eq!(coverage["assets_without_agent"][0]["hostname"], "charlie");
    assert_eq!(coverage["agents_not_in_assets"][0]["hostname"], "bravo");
    assert!(
        got("/catalog/products")["products"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "kaspersky.endpoint-security-linux")
    );
    assert!(
        got("/catalog/policies")["policies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "bod-17-01")
    );
    assert_eq!(got("/exporters")["exporters"][0]["name"], "lake");
    assert_eq!(got("/me")["operator"], "dashboard");
    assert_eq!(got("/me")["auth"], "token");

    // Filters mean what they mean for `muster hosts`, and pages chain.
    let list = |q: &str| {
        let r = api.get(&format!("/api/v1/hosts?{q}"), Some(&token));
        conforms(&spec, "/hosts", &r, 200)
    };
    let only = |v: &Value| -> Vec<String> {
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["hostname"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(only(&list("vendor=kaspersky")), ["alpha"]);
    assert_eq!(only(&list("vendor=KASPERSKY&state=installed")), ["alpha"]);
    assert_eq!(
        only(&list("vendor=kaspersky&state=running")),
        Vec::<String>::new()
    );
    assert_eq!(only(&list("violates=bod-17-01")), ["alpha"]);
    assert_eq!(only(&list("name=BRA")), ["bravo"]);
    assert_eq!(only(&list("os=debian&stale=false")), ["alpha", "bravo"]);
    assert_eq!(only(&list("stale=true")), Vec::<String>::new());
    assert_eq!(only(&list("product=&vendor=&name=")), ["alpha", "bravo"]);
    let first = list("limit=1");
    assert_eq!(only(&first), ["alpha"]);
    let next = first["next"].as_str().expect("a next page");
    let second = list(&format!("limit=1&after={next}"));
    assert_eq!(only(&second), ["bravo"]);
    assert!(second["next"].is_null(), "{second}");
    assert_eq!(second["hosts"][0]["id"], bravo.as_str());
    // Sorted the other way, pages chain too; by check-in, in time order.
    let first = list("sort=-hostname&limit=1");
    assert_eq!(only(&first), ["bravo"]);
    let next = first["next"].as_str().expect("a next page");
    assert_eq!(
        only(&list(&format!("sort=-hostname&limit=1&after={next}"))),
        ["alpha"]
    );
    for (sort, newest_first) in [("last_seen", false), ("-last_seen", true)] {
        let v = list(&format!("sort={sort}"));
        let mut times: Vec<&str> = v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["last_checkin"].as_str().unwrap())
            .collect();
        assert_eq!(times.len(), 2, "{v}");
        if newest_first {
            times.reverse();
        }
        assert!(times.is_sorted(), "sort={sort}: {v}");
    }

    // Every request is logged with the operator's name.
    let log = c.log();
    assert!(
        log.lines().any(|l| l.contains("api request")
            && l.contains("operator=dashboard")
            && l.contains("/api/v1/hosts?vendor=kaspersky")),
        "{log}"
    );
}

#[test]
fn missing_wrong_expired_and_revoked_tokens_get_401_and_nothing_else() {
    let c = Collector::start();
    let api = c.api(None);
    let token = c.operator_token("ci", "1h");
    let spec = spec(&c, &token);
    let unauthorized = |r: &Reply| {
        let v = is_json_error(r, 401, "unauthorized");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        assert!(
            spec.check(
                &serde_json::json!({"$ref": "#/components/schemas/Error"}),
                &v
            )
            .is_empty()
        );
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["error", "message"],
            "nothing else: {v}"
        );
        v["message"].as_str().unwrap().to_string()
    };
    for path in [
        "/api/v1/hosts",
        "/api/v1/summary",
        "/api/v1/hosts/anything",
        "/api/v1/openapi.json",
        "/api/v1/no-such-endpoint",
        "/api/v1/hosts?stale=maybe",
    ] {
        let m = unauthorized(&api.get(path, None));
        assert!(m.contains("no credentials"), "{path}: {m}");
    }
    assert!(unauthorized(&api.get("/api/v1/hosts", Some("nope"))).contains("unknown"));
    let basic = api.request("GET", "/api/v1/hosts", &[("Authorization", "Basic YTpi")]);
    assert!(unauthorized(&basic).contains("Bearer"));
    assert_eq!(api.get("/api/v1/hosts", Some(&token)).status, 200);
    // The scheme is case-insensitive.
    let lower = api.request(
        "GET",
        "/api/v1/me",
        &[("Authorization", &format!("bearer {token}"))],
    );
    assert_eq!(lower.status, 200);

    // Revoked by name: refused from the next request on.
    ok(cmd("muster-collector")
        .args(["operator-token", "revoke", "--data-dir"])
        .arg(c.data())
        .arg("ci"));
    assert!(unauthorized(&api.get("/api/v1/hosts", Some(&token))).contains("revoked"));

    // Revoked by id.
    let other = c.operator_token("other", "never");
    let me = api.get("/api/v1/me", Some(&other)).json();
    assert!(me["expires_at"].is_null());
    let id = me["token_id"].as_i64().unwrap().to_string();
    let out = ok(cmd("muster-collector")
        .args(["operator-token", "revoke", "--data-dir"])
        .arg(c.data())
        .arg(&id));
    assert!(out.contains("other"), "{out}");
    assert_eq!(api.get("/api/v1/me", Some(&other)).status, 401);

    // Expired: its expiry moved into the past under the collector.
    let old = c.operator_token("old", "2h");
    assert_eq!(api.get("/api/v1/me", Some(&old)).status, 200);
    sql(
        &c.data().join("muster.db"),
        &["UPDATE operator_tokens SET expires_at = 1000 WHERE name = 'old'"],
    );
    assert!(unauthorized(&api.get("/api/v1/me", Some(&old))).contains("expired"));

    // The list shows every token's state and never a token.
    let list = ok(cmd("muster-collector")
        .args(["operator-token", "list", "--format", "json", "--data-dir"])
        .arg(c.data()));
    for t in [&token, &other, &old] {
        assert!(!list.contains(t.as_str()), "{list}");
    }
    let v: Value = serde_json::from_str(&list).unwrap();
    let states: Vec<(String, String)> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().into(),
                t["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("ci".to_string(), "revoked".to_string()),
            ("other".into(), "revoked".into()),
            ("old".into(), "expired".into())
        ]
    );
    assert!(v["tokens"][0]["last_used_at"].is_string(), "{v}");
    let table = ok(cmd("muster-collector")
        .args(["operator-token", "list", "--data-dir"])
        .arg(c.data()));
    assert!(
        table.contains("3 operator token(s)") && table.contains("expired"),
        "{table}"
    );

    // Refusals are logged too, and the command line refuses bad input.
    assert!(c.log().contains("api request refused"));
    let err = fails(
        cmd("muster-collector")
            .args(["operator-token", "create", "--name", "old", "--data-dir"])
            .arg(c.data()),
    );
    assert!(err.contains("exists already"), "{err}");
    for bad in ["a b", "123", ""] {
        let err = fails(
            cmd("muster-collector")
                .args(["operator-token", "create", "--name", bad, "--data-dir"])
                .arg(c.data()),
        );
        assert!(err.contains("--name"), "{err}");
    }
    let err = fails(
        cmd("muster-collector")
            .args([
                "operator-token",
                "create",
                "--name",
                "x",
                "--expires",
                "soon",
                "--data-dir",
            ])
            .arg(c.data()),
    );
    assert!(err.contains("--expires"), "{err}");
    let err = fails(
        cmd("muster-collector")
            .args(["operator-token", "revoke", "--data-dir"])
            .arg(c.data())
            .arg("nobody"),
    );
    assert!(err.contains("no operator token named \"nobody\""), "{err}");
}

#[test]
fn an_operator_certificate_is_enough_and_an_agent_certificate_is_not() {
    let c = Collector::start();
    let state = c.dir.join("agent");
    c.enroll(&state);
    let operator = c.api(Some(&c.data().join("operator")));
    let r = operator.get("/api/v1/me", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["operator"], "admin");
    assert_eq!(r.json()["auth"], "certificate");
    assert_eq!(
        operator.get("/api/v1/hosts", None).json()["hosts"][0]["last_checkin"],
        Value::Null
    );
    // A token, when given, decides alone.
    is_json_error(
        &operator.get("/api/v1/me", Some("wrong")),
        401,
        "unauthorized",
    );
    let agent = c.api(Some(&state));
    let v = is_json_error(&agent.get("/api/v1/hosts", None), 403, "forbidden");
    assert!(v["message"].as_str().unwrap().contains("agent"), "{v}");
    assert!(
        c.log().lines().any(|l| l.contains("api request")
            && l.contains("operator=admin")
            && l.contains("auth=certificate")),
        "{}",
        c.log()
    );
}

#[test]
fn bad_input_gets_a_clear_json_error_never_a_500() {
    let c = Collector::start();
    let token = c.operator_token("t", "1h");
    let api = c.api(None);
    let spec = spec(&c, &token);
    let error_schema = serde_json::json!({"$ref": "#/components/schemas/Error"});
    let refused = |target: &str, status: u16, code: &str| {
        let r = api.get(target, Some(&token));
        let v = is_json_error(&r, status, code);
        let errors = spec.check(&error_schema, &v);
        assert!(errors.is_empty(), "{target}: {errors:?}");
        v
    };
    let m = refused("/api/v1/hosts/does-not-exist", 404, "not_found");
    assert!(m["message"].as_str().unwrap().contains("does-not-exist"));
    refused("/api/v1/campaigns/no-such-campaign", 404, "not_found");
    refused(
        "/api/v1/campaigns/no-such-campaign/report",
        404,
        "not_found",
    );
    refused("/api/v1/nowhere", 404, "not_found");
    // Outside /api/v1/ is the console's, which answers in HTML.
    let r = api.get("/elsewhere", Some(&token));
    assert_eq!(
        (r.status, r.header("content-type")),
        (404, Some("text/html; charset=utf-8"))
    );

    for (query, parameter) in [
        ("stale=maybe", "stale"),
        ("include_superseded=perhaps", "include_superseded"),
        ("product=no.such-product", "product"),
        ("vendor=nobody", "vendor"),
        ("category=toaster", "category"),
        ("state=gone", "state"),
        ("violates=no-such-policy", "violates"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("after=not-a-cursor", "after"),
        ("sort=newest", "sort"),
        // A position by hostname, read in the order of check-ins.
        ("sort=last_seen&after=5b22616c706861222c2278225d", "after"),
        ("vendr=kaspersky", "vendr"),
        ("name=a&name=b", "name"),
        ("name=%zz", "name"),
        ("name=%ff%fe", "name"),
        ("name=a%00b", "name"),
        ("stale", "stale"),
    ] {
        let v = refused(&format!("/api/v1/hosts?{query}"), 400, "bad_request");
        assert_eq!(v["parameter"], parameter, "{query}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(parameter),
            "{query}: the message names {parameter}: {v}"
        );
    }
    let v = refused("/api/v1/summary?verbose=1", 400, "bad_request");
    assert_eq!(v["parameter"], "verbose");
    let v = refused(
        "/api/v1/catalog/products?category=toaster",
        400,
        "bad_request",
    );
    assert_eq!(v["parameter"], "category");
    refused("/api/v1/hosts?%zz=1", 400, "bad_request");
    refused("/api/v1/hosts/%ff", 400, "bad_request");

    // Oversized query strings: just over the limit, and far over it.
    for n in [9 * 1024, 60 * 1024] {
        let v = refused(
            &format!("/api/v1/hosts?name={}", "a".repeat(n)),
            414,
            "uri_too_long",
        );
        assert!(v["message"].as_str().unwrap().contains("8192"), "{v}");
    }
    // Past 64 KiB the HTTP parser itself refuses the request line, before
    // the API sees it: a bare 414, still no 500.
    let r = api.get(
        &format!("/api/v1/hosts?name={}", "a".repeat(100 * 1024)),
        Some(&token),
    );
    assert_eq!(r.status, 414);
    // Read-only.
    for method in ["POST", "PUT", "DELETE"] {
        let r = api.request(
            method,
            "/api/v1/hosts",
            &[("Authorization", &format!("Bearer {token}"))],
        );
        is_json_error(&r, 405, "method_not_allowed");
    }
    assert!(!c.log().contains("ERROR"), "{}", c.log());
}
