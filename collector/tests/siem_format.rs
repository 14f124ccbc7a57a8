//! Black-box tests of the SIEM payload formats. The CEF, LEEF and syslog
//! parsers here are written from the specifications, independently of the
//! module's escaping code.

use muster_collector::siem::event::{EvidenceRef, HostRef, ProductRef, SiemEvent, Verdict};
use muster_collector::siem::format::{
    self, Format, VERSION, cef, ecs, leef, ocsf, octet_frame, rfc5424,
};
use proptest::prelude::*;
use serde_json::Value;

// ------------------------------------------------------------ fixtures

/// 2026-11-29T10:00:00Z
const T0: i64 = 1_795_946_400;

fn kesl_event() -> SiemEvent {
    SiemEvent {
        id: "5b0e6f8e-2f61-4c1a-9d7e-0c6a7d1e2f30".into(),
        seq: 42,
        time: T0,
        kind: "detected".into(),
        severity: 8,
        message: "Kaspersky Endpoint Security for Linux detected (running) on host-one".into(),
        host: HostRef {
            id: "a1b2c3d4-0000-4000-8000-000000000001".into(),
            hostname: "host-one".into(),
            ips: vec!["2001:db8::10".into(), "192.0.2.10".into()],
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            platform: "linux".into(),
            arch: "x86_64".into(),
            agent_version: "0.4.0".into(),
        },
        product: Some(ProductRef {
            id: "kaspersky-endpoint-security-linux".into(),
            vendor: "Kaspersky".into(),
            name: "Kaspersky Endpoint Security for Linux".into(),
            category: "antivirus".into(),
            version: "12.1.0.1297".into(),
        }),
        state: "running".into(),
        previous_state: String::new(),
        verdict: Some(Verdict {
            campaign: "bod-17-01".into(),
            policy: "no-kaspersky".into(),
            verdict: "banned".into(),
            deadline: Some(1_798_675_200),
            overdue: false,
        }),
        evidence: vec![
            EvidenceRef {
                kind: "package".into(),
                value: "kesl".into(),
                matched: "kesl 12.1.0.1297".into(),
                location: "dpkg /var/lib/dpkg/status".into(),
                state: "installed".into(),
            },
            EvidenceRef {
                kind: "service".into(),
                value: "kesl".into(),
                matched: "kesl.service".into(),
                location: "systemd".into(),
                state: "running".into(),
            },
        ],
        observer: "collector-1".into(),
    }
}

/// The same host with no product: an `enrolled`-style host event.
fn host_event(kind: &str) -> SiemEvent {
    SiemEvent {
        kind: kind.into(),
        severity: 3,
        message: format!("host-one {kind}"),
        product: None,
        state: String::new(),
        verdict: None,
        evidence: vec![],
        ..kesl_event()
    }
}

const KINDS: [&str; 10] = [
    "detected",
    "state_changed",
    "removed",
    "enrolled",
    "imported",
    "stale",
    "revoked",
    "campaign_missed",
    "test",
    "something_new",
];

/// One event per kind, products only where Muster sends them.
fn every_kind() -> Vec<SiemEvent> {
    KINDS
        .iter()
        .map(|kind| match *kind {
            "detected" | "state_changed" | "removed" | "campaign_missed" => SiemEvent {
                kind: kind.to_string(),
                previous_state: if *kind == "state_changed" {
                    "installed".into()
                } else {
                    String::new()
                },
                ..kesl_event()
            },
            "test" => SiemEvent {
                host: HostRef::default(),
                ..host_event(kind)
            },
            _ => host_event(kind),
        })
        .collect()
}

fn opt(s: &str) -> Option<&str> {
    if s.is_empty() { None } else { Some(s) }
}

fn lines_to_spaces(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Evidence summary as the docs define it: `kind:value@location; ...`.
fn summary(evidence: &[EvidenceRef]) -> String {
    evidence
        .iter()
        .map(|e| {
            if e.location.is_empty() {
                format!("{}:{}", e.kind, e.value)
            } else {
                format!("{}:{}@{}", e.kind, e.value, e.location)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ------------------------------------------------------------ CEF parser

struct Parsed {
    header: Vec<String>,
    ext: Vec<(String, String)>,
}

impl Parsed {
    fn get(&self, key: &str) -> Option<&str> {
        let mut found = self.ext.iter().filter(|(k, _)| k == key);
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "duplicate key {key}");
        first
    }
}

/// Splits a header on unescaped pipes into `n` fields (`\\` and `\|`
/// unescaped) and returns them with the rest of the line.
fn split_header(line: &str, n: usize) -> Result<(Vec<String>, String), String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while fields.len() < n {
        match chars.next() {
            None => return Err(format!("only {} header fields in {line:?}", fields.len())),
            Some('\\') => match chars.next() {
                Some(c @ ('\\' | '|')) => cur.push(c),
                other => return Err(format!("bad header escape \\{other:?}")),
            },
            Some('|') => fields.push(std::mem::take(&mut cur)),
            Some(c) => cur.push(c),
        }
    }
    Ok((fields, chars.collect()))
}

/// Parses a CEF line per the CEF guide: seven pipe-separated header fields,
/// then `key=value` pairs separated by spaces, where a value ends at the space
/// before the next unescaped `=`'s key.
fn parse_cef(line: &str) -> Result<Parsed, String> {
    let (header, ext) = split_header(line, 7)?;
    let chars: Vec<char> = ext.chars().collect();
    // Positions of unescaped '='.
    let mut eqs = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '=' => {
                eqs.push(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    let key_start = |eq: usize| {
        let mut s = eq;
        while s > 0 && chars[s - 1].is_ascii_alphanumeric() {
            s -= 1;
        }
        s
    };
    let mut pairs = Vec::new();
    for (n, &eq) in eqs.iter().enumerate() {
        let ks = key_start(eq);
        if ks == eq {
            return Err(format!("empty key at {eq} in {ext:?}"));
        }
        let end = match eqs.get(n + 1) {
            Some(&next) => {
                let next_ks = key_start(next);
                if next_ks == 0 || chars[next_ks - 1] != ' ' {
                    return Err(format!("no space before key at {next_ks} in {ext:?}"));
                }
                next_ks - 1
            }
            None => chars.len(),
        };
        let key: String = chars[ks..eq].iter().collect();
        let raw: String = chars[eq + 1..end].iter().collect();
        pairs.push((
            key,
            unescape(&raw, &[('\\', '\\'), ('=', '='), ('n', '\n'), ('r', '\r')])?,
        ));
    }
    if eqs.first().is_some_and(|&eq| key_start(eq) != 0) {
        return Err(format!("junk before the first key in {ext:?}"));
    }
    Ok(Parsed { header, ext: pairs })
}

/// Undoes backslash escapes; `map` lists `(escaped char, meaning)`.
fn unescape(raw: &str, map: &[(char, char)]) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let next = chars.next().ok_or("dangling backslash")?;
        let (_, meaning) = map
            .iter()
            .find(|(e, _)| *e == next)
            .ok_or(format!("unknown escape \\{next} in {raw:?}"))?;
        out.push(*meaning);
    }
    Ok(out)
}

// ------------------------------------------------------------ LEEF parser

/// Parses a LEEF 2.0 line: six pipe-separated header fields, the sixth being
/// the delimiter (a character, or hex after `x`/`0x`), then `key=value`
/// attributes split on that delimiter, each at its first `=`.
fn parse_leef(line: &str) -> Result<Parsed, String> {
    let (header, attrs) = split_header(line, 6)?;
    let d = &header[5];
    let delim = if let Some(hex) = d.strip_prefix("0x").or_else(|| d.strip_prefix('x')) {
        let code = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
        char::from_u32(code).ok_or("bad delimiter code")?
    } else {
        let mut cs = d.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None) => c,
            _ => '\t',
        }
    };
    let mut ext = Vec::new();
    for attr in attrs.split(delim) {
        let (k, v) = attr.split_once('=').ok_or(format!("no '=' in {attr:?}"))?;
        ext.push((
            k.to_string(),
            unescape(v, &[('\\', '\\'), ('t', '\t'), ('n', '\n'), ('r', '\r')])?,
        ));
    }
    Ok(Parsed { header, ext })
}

// ------------------------------------------------------------ syslog parser

#[derive(Debug)]
struct Syslog {
    pri: u16,
    version: String,
    timestamp: String,
    hostname: String,
    app: String,
    procid: String,
    msgid: String,
    sd_id: String,
    params: Vec<(String, String)>,
    msg: Option<String>,
}

/// Parses an RFC 5424 message with one SD element (or `-`).
fn parse_5424(line: &str) -> Result<Syslog, String> {
    let rest = line.strip_prefix('<').ok_or("no '<'")?;
    let (pri, rest) = rest.split_once('>').ok_or("no '>'")?;
    if pri.is_empty() || pri.len() > 3 || !pri.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad PRI {pri:?}"));
    }
    let pri: u16 = pri.parse().map_err(|e| format!("{e}"))?;
    let mut parts = rest.splitn(7, ' ');
    let mut next = |what: &str| parts.next().map(str::to_string).ok_or(format!("no {what}"));
    let (version, timestamp, hostname, app, procid, msgid) = (
        next("version")?,
        next("timestamp")?,
        next("hostname")?,
        next("app")?,
        next("procid")?,
        next("msgid")?,
    );
    let rest = next("structured data")?;
    for (field, max) in [(&hostname, 255), (&app, 48), (&procid, 128), (&msgid, 32)] {
        if field.is_empty() || field.len() > max || !field.bytes().all(|b| (33..=126).contains(&b))
        {
            return Err(format!("bad header field {field:?}"));
        }
    }
    let chars: Vec<char> = rest.chars().collect();
    let (sd_id, params, after) = if chars.first() == Some(&'-') {
        (String::from("-"), vec![], 1)
    } else {
        parse_sd(&chars)?
    };
    let msg = match chars.get(after) {
        None => None,
        Some(' ') => Some(chars[after + 1..].iter().collect()),
        Some(c) => return Err(format!("expected SP after SD, got {c:?}")),
    };
    Ok(Syslog {
        pri,
        version,
        timestamp,
        hostname,
        app,
        procid,
        msgid,
        sd_id,
        params,
        msg,
    })
}

/// SD-ID, its params, and the index just after the closing `]`.
type Sd = (String, Vec<(String, String)>, usize);

/// Parses `[ID name="value" ...]`.
fn parse_sd(c: &[char]) -> Result<Sd, String> {
    if c.first() != Some(&'[') {
        return Err("SD must start with '['".into());
    }
    let name = |i: &mut usize| {
        let start = *i;
        while *i < c.len() && !matches!(c[*i], ' ' | '=' | ']' | '"') {
            *i += 1;
        }
        c[start..*i].iter().collect::<String>()
    };
    let mut i = 1;
    let id = name(&mut i);
    let mut params = Vec::new();
    loop {
        match c.get(i) {
            Some(']') => return Ok((id, params, i + 1)),
            Some(' ') => i += 1,
            other => return Err(format!("unexpected {other:?} in SD")),
        }
        let key = name(&mut i);
        if c.get(i) != Some(&'=') || c.get(i + 1) != Some(&'"') {
            return Err(format!("bad param {key}"));
        }
        i += 2;
        let mut value = String::new();
        loop {
            match c.get(i) {
                None => return Err("unterminated value".into()),
                Some('\\') if matches!(c.get(i + 1), Some('"' | '\\' | ']')) => {
                    value.push(c[i + 1]);
                    i += 2;
                }
                Some('"') => {
                    i += 1;
                    break;
                }
                Some(']') => return Err("unescaped ']' in value".into()),
                Some(&ch) => {
                    value.push(ch);
                    i += 1;
                }
            }
        }
        params.push((key, value));
    }
}

// ------------------------------------------------------------ CEF tests

#[test]
fn cef_golden() {
    let line = cef(&kesl_event());
    let header = format!(
        "CEF:0|Muster|Muster|{VERSION}|detected|\
         Kaspersky Endpoint Security for Linux detected (running) on host-one|8|"
    );
    assert!(line.starts_with(&header), "{line}");
    assert!(line.contains(" dvchost=host-one dvc=192.0.2.10 "), "{line}");
    let p = parse_cef(&line).unwrap();
    let want = [
        ("rt", "1795946400000"),
        ("externalId", "5b0e6f8e-2f61-4c1a-9d7e-0c6a7d1e2f30"),
        ("act", "detected"),
        ("cat", "antivirus"),
        ("deviceExternalId", "a1b2c3d4-0000-4000-8000-000000000001"),
        ("dvchost", "host-one"),
        ("dvc", "192.0.2.10"),
        ("c6a1", "2001:db8::10"),
        ("cn1", "42"),
        ("cn1Label", "seq"),
        ("cs1", "kaspersky-endpoint-security-linux"),
        ("cs1Label", "productId"),
        ("cs2", "Kaspersky Endpoint Security for Linux"),
        ("cs3", "Kaspersky"),
        ("cs4", "12.1.0.1297"),
        ("cs5", "running"),
        ("cs6", "banned"),
        ("cs6Label", "verdict"),
        ("flexString1", "bod-17-01"),
        ("flexString1Label", "campaign"),
        ("MusterMusterPolicy", "no-kaspersky"),
        ("deviceCustomDate1", "1798675200000"),
        ("cn2", "0"),
        (
            "flexString2",
            "package:kesl@dpkg /var/lib/dpkg/status; service:kesl@systemd",
        ),
        ("MusterMusterObserver", "collector-1"),
    ];
    for (k, v) in want {
        assert_eq!(p.get(k), Some(v), "key {k} in {line}");
    }
    assert_eq!(p.get("MusterMusterPreviousState"), None);
    // Keys come in a stable order.
    let keys: Vec<&str> = p.ext.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(&keys[..4], ["rt", "externalId", "act", "cat"]);
}

#[test]
fn cef_host_event_has_no_product_keys() {
    let p = parse_cef(&cef(&host_event("enrolled"))).unwrap();
    assert_eq!(p.header[4], "enrolled");
    assert_eq!(p.header[6], "3");
    for k in [
        "cat",
        "cs1",
        "cs1Label",
        "cs6",
        "flexString1",
        "flexString2",
        "cn2",
    ] {
        assert_eq!(p.get(k), None, "{k}");
    }
}

#[test]
fn cef_severity_is_clamped() {
    let e = SiemEvent {
        severity: 200,
        ..kesl_event()
    };
    assert_eq!(parse_cef(&cef(&e)).unwrap().header[6], "10");
}

// ------------------------------------------------------------ LEEF tests

#[test]
fn leef_golden() {
    let line = leef(&kesl_event());
    assert!(
        line.starts_with(&format!(
            "LEEF:2.0|Muster|Muster|{VERSION}|detected|x09|devTime="
        )),
        "{line}"
    );
    let p = parse_leef(&line).unwrap();
    let want = [
        ("devTime", "2026-11-29T10:00:00Z"),
        ("devTimeFormat", "yyyy-MM-dd'T'HH:mm:ssX"),
        ("sev", "8"),
        ("cat", "antivirus"),
        ("src", "192.0.2.10"),
        ("externalId", "5b0e6f8e-2f61-4c1a-9d7e-0c6a7d1e2f30"),
        ("seq", "42"),
        ("hostName", "host-one"),
        ("ips", "2001:db8::10,192.0.2.10"),
        ("productName", "Kaspersky Endpoint Security for Linux"),
        ("productVendor", "Kaspersky"),
        ("verdict", "banned"),
        ("campaign", "bod-17-01"),
        ("deadline", "2026-12-31T00:00:00Z"),
        ("overdue", "false"),
        (
            "evidence",
            "package:kesl@dpkg /var/lib/dpkg/status; service:kesl@systemd",
        ),
    ];
    for (k, v) in want {
        assert_eq!(p.get(k), Some(v), "key {k} in {line}");
    }
}

// ------------------------------------------------------------ hostile input

const HOSTILE: &[char] = &[
    'a', 'Z', '7', ' ', '|', '=', '\\', '\n', '\r', '\t', '^', '"', '\'', '[', ']', ';', ':', '@',
    'n', 't', 'r', 'é', '€', '😀', '\u{1}', '-',
];

fn hostile() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(HOSTILE), 0..16)
        .prop_map(|v| v.into_iter().collect())
}

fn hostile_event() -> impl Strategy<Value = SiemEvent> {
    (
        (hostile(), hostile(), hostile(), hostile()),
        (hostile(), hostile(), hostile(), hostile()),
        prop::collection::vec((hostile(), hostile(), hostile()), 0..4),
        0u8..=12,
    )
        .prop_map(
            |(
                (kind, message, hostname, observer),
                (pname, vendor, campaign, state),
                ev,
                severity,
            )| {
                let mut e = kesl_event();
                e.kind = kind;
                e.message = message;
                e.host.hostname = hostname;
                e.observer = observer;
                e.state = state;
                e.severity = severity;
                let product = e.product.as_mut().unwrap();
                product.name = pname;
                product.vendor = vendor;
                e.verdict.as_mut().unwrap().campaign = campaign;
                e.evidence = ev
                    .into_iter()
                    .map(|(kind, value, location)| EvidenceRef {
                        kind,
                        value,
                        location,
                        ..Default::default()
                    })
                    .collect();
                e
            },
        )
}

proptest! {
    #[test]
    fn cef_round_trips_hostile_values(e in hostile_event()) {
        let line = cef(&e);
        prop_assert!(!line.contains('\n') && !line.contains('\r'), "raw newline in {:?}", line);
        let p = parse_cef(&line).map_err(TestCaseError::fail)?;
        prop_assert_eq!(p.header.len(), 7);
        prop_assert_eq!(&p.header[..4], ["CEF:0", "Muster", "Muster", VERSION]);
        prop_assert_eq!(&p.header[4], &lines_to_spaces(&e.kind));
        prop_assert_eq!(&p.header[5], &lines_to_spaces(&e.message));
        prop_assert_eq!(&p.header[6], &e.severity.min(10).to_string());
        let product = e.product.as_ref().unwrap();
        prop_assert_eq!(p.get("msg"), opt(&e.message));
        prop_assert_eq!(p.get("act"), opt(&e.kind));
        prop_assert_eq!(p.get("dvchost"), opt(&e.host.hostname));
        prop_assert_eq!(p.get("cs2"), opt(&product.name));
        prop_assert_eq!(p.get("cs3"), opt(&product.vendor));
        prop_assert_eq!(p.get("cs5"), opt(&e.state));
        prop_assert_eq!(p.get("flexString1"), opt(&e.verdict.as_ref().unwrap().campaign));
        prop_assert_eq!(p.get("MusterMusterObserver"), opt(&e.observer));
        let s = summary(&e.evidence);
        prop_assert_eq!(p.get("flexString2"), opt(&s));
    }

    #[test]
    fn leef_round_trips_hostile_values(e in hostile_event()) {
        let line = leef(&e);
        prop_assert!(!line.contains('\n') && !line.contains('\r'), "raw newline in {:?}", line);
        let p = parse_leef(&line).map_err(TestCaseError::fail)?;
        prop_assert_eq!(p.header.len(), 6);
        prop_assert_eq!(&p.header[..4], ["LEEF:2.0", "Muster", "Muster", VERSION]);
        prop_assert_eq!(&p.header[4], &lines_to_spaces(&e.kind));
        prop_assert_eq!(&p.header[5], "x09");
        let product = e.product.as_ref().unwrap();
        prop_assert_eq!(p.get("msg"), opt(&e.message));
        prop_assert_eq!(p.get("hostName"), opt(&e.host.hostname));
        prop_assert_eq!(p.get("productName"), opt(&product.name));
        prop_assert_eq!(p.get("productVendor"), opt(&product.vendor));
        prop_assert_eq!(p.get("state"), opt(&e.state));
        prop_assert_eq!(p.get("campaign"), opt(&e.verdict.as_ref().unwrap().campaign));
        prop_assert_eq!(p.get("observer"), opt(&e.observer));
        let s = summary(&e.evidence);
        prop_assert_eq!(p.get("evidence"), opt(&s));
        let sev = e.severity.clamp(1, 10).to_string();
        prop_assert_eq!(p.get("sev"), Some(sev.as_str()));
    }

    #[test]
    fn every_format_renders_one_line(e in hostile_event()) {
        for f in [Format::Cef, Format::Leef, Format::Ecs, Format::Ocsf] {
            let out = f.render(&e);
            prop_assert!(!out.contains('\n') && !out.contains('\r'), "{:?}: {:?}", f, out);
        }
        let json: Value = serde_json::from_str(&Format::Ecs.render(&e)).unwrap();
        prop_assert_eq!(json, ecs(&e));
    }

    #[test]
    fn syslog_header_stays_valid(e in hostile_event(), app in hostile(), host in hostile(), msg in hostile()) {
        let line = rfc5424(&e, 16, &app, &host, &msg);
        prop_assert!(!line.contains('\n') && !line.contains('\r'));
        let s = parse_5424(&line).map_err(TestCaseError::fail)?;
        prop_assert_eq!(s.version, "1");
        prop_assert_eq!(&s.procid, "-");
        prop_assert_eq!(s.sd_id, "muster@32473");
        let want_host = opt(&e.host.hostname).map(lines_to_spaces);
        let got_host = s.params.iter().find(|(k, _)| k == "host").map(|(_, v)| v.clone());
        prop_assert_eq!(got_host, want_host);
        prop_assert_eq!(s.msg, opt(&msg).map(lines_to_spaces));
    }
}

// ------------------------------------------------------------ ECS

/// Follows a dotted path through nested objects.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn assert_no_empty(v: &Value, path: &str) {
    match v {
        Value::Null => panic!("null at {path}"),
        Value::String(s) => assert!(!s.is_empty(), "empty string at {path}"),
        Value::Array(a) => {
            assert!(!a.is_empty(), "empty array at {path}");
            a.iter().for_each(|x| assert_no_empty(x, path));
        }
        Value::Object(o) => {
            assert!(!o.is_empty(), "empty object at {path}");
            for (k, x) in o {
                assert!(!k.contains('.') || k == "@timestamp", "dotted key {k}");
                assert_no_empty(x, &format!("{path}.{k}"));
            }
        }
        _ => {}
    }
}

#[derive(Clone, Copy, Debug)]
enum T {
    Str,
    Int,
    Bool,
    Arr,
    Obj,
}

fn has_type(v: &Value, t: T) -> bool {
    match t {
        T::Str => v.is_string(),
        T::Int => v.is_i64() || v.is_u64(),
        T::Bool => v.is_boolean(),
        T::Arr => v.is_array(),
        T::Obj => v.is_object(),
    }
}

#[test]
fn ecs_fields_and_types() {
    let doc = ecs(&kesl_event());
    assert_no_empty(&doc, "");
    let want = [
        ("@timestamp", T::Str),
        ("message", T::Str),
        ("ecs.version", T::Str),
        ("event.kind", T::Str),
        ("event.category", T::Arr),
        ("event.type", T::Arr),
        ("event.action", T::Str),
        ("event.id", T::Str),
        ("event.severity", T::Int),
        ("event.sequence", T::Int),
        ("event.dataset", T::Str),
        ("event.module", T::Str),
        ("event.created", T::Str),
        ("host.id", T::Str),
        ("host.name", T::Str),
        ("host.hostname", T::Str),
        ("host.ip", T::Arr),
        ("host.architecture", T::Str),
        ("host.os.name", T::Str),
        ("host.os.version", T::Str),
        ("host.os.platform", T::Str),
        ("host.os.type", T::Str),
        ("package.name", T::Str),
        ("package.version", T::Str),
        ("observer.hostname", T::Str),
        ("observer.vendor", T::Str),
        ("observer.product", T::Str),
        ("agent.id", T::Str),
        ("agent.version", T::Str),
        ("agent.type", T::Str),
        ("rule.name", T::Str),
        ("rule.ruleset", T::Str),
        ("muster.product.id", T::Str),
        ("muster.product.category", T::Str),
        ("muster.state", T::Str),
        ("muster.verdict.verdict", T::Str),
        ("muster.verdict.overdue", T::Bool),
        ("muster.evidence", T::Arr),
    ];
    for (path, t) in want {
        let v = at(&doc, path).unwrap_or_else(|| panic!("missing {path} in {doc}"));
        assert!(has_type(v, t), "{path} should be {t:?}, is {v}");
    }
    assert_eq!(doc["@timestamp"], "2026-11-29T10:00:00Z");
    assert_eq!(doc["event"]["kind"], "alert");
    assert_eq!(doc["event"]["category"], serde_json::json!(["package"]));
    assert_eq!(doc["event"]["type"], serde_json::json!(["installation"]));
    assert_eq!(doc["event"]["sequence"], 42);
    assert_eq!(
        doc["host"]["ip"],
        serde_json::json!(["2001:db8::10", "192.0.2.10"])
    );
    assert_eq!(doc["host"]["os"]["type"], "linux");
    assert_eq!(
        doc["package"]["name"],
        "Kaspersky Endpoint Security for Linux"
    );
    assert_eq!(doc["rule"]["name"], "bod-17-01");
    assert_eq!(doc["muster"]["verdict"]["deadline"], "2026-12-31T00:00:00Z");
    assert_eq!(
        doc["muster"]["evidence"][0]["location"],
        "dpkg /var/lib/dpkg/status"
    );
}

#[test]
fn ecs_without_product_or_verdict() {
    let doc = ecs(&host_event("stale"));
    assert_no_empty(&doc, "");
    assert!(doc.get("package").is_none(), "{doc}");
    assert!(doc.get("rule").is_none(), "{doc}");
    assert!(at(&doc, "muster.product").is_none());
    assert_eq!(doc["event"]["kind"], "event");
    assert_eq!(doc["event"]["category"], serde_json::json!(["host"]));
    assert_eq!(doc["event"]["type"], serde_json::json!(["info"]));
    for (kind, ty) in [("removed", "deletion"), ("state_changed", "change")] {
        let e = SiemEvent {
            kind: kind.into(),
            ..kesl_event()
        };
        assert_eq!(ecs(&e)["event"]["type"], serde_json::json!([ty]));
    }
}

// ------------------------------------------------------------ OCSF

/// Required attributes of OCSF 1.3.0 class Software Inventory Info
/// (`software_info`, class_uid 5020), with their types. Taken from the
/// schema server's JSON Schema export for version 1.3.0 (classes/software_info
/// and objects/metadata, product, device, os, package, network_interface; as
/// stored in github.com/jasmaa/ocsf-schema-rs `ocsf-schema-rs/all.json`) and
/// checked against ocsf/ocsf-schema `events/discovery/software_info.json` (1.3
/// form: `device` and `package` required), `events/base_event.json` and
/// `objects/device.json`. `cloud` and `osint`, which the export lists because
/// it applies every profile, belong to the `cloud`/`osint` profiles and are
/// not used. A trailing `?` marks an object required only when its parent
/// optional object is present; `[]` means every array element.
const OCSF_REQUIRED: &[(&str, T)] = &[
    ("activity_id", T::Int),
    ("category_uid", T::Int),
    ("class_uid", T::Int),
    ("type_uid", T::Int),
    ("severity_id", T::Int),
    ("time", T::Int),
    ("metadata", T::Obj),
    ("metadata.version", T::Str),
    ("metadata.product", T::Obj),
    ("metadata.product.vendor_name", T::Str),
    ("device", T::Obj),
    ("device.type_id", T::Int),
    ("device.os?.name", T::Str),
    ("device.os?.type_id", T::Int),
    ("device.network_interfaces[].type_id", T::Int),
    ("package", T::Obj),
    ("package.name", T::Str),
    ("package.version", T::Str),
    ("product?.vendor_name", T::Str),
];

/// Checks one required path; optional parents (`x?`) may be absent.
fn check_required(doc: &Value, path: &str, t: T) {
    fn walk(v: &Value, parts: &[&str], t: T, path: &str) {
        let Some((first, rest)) = parts.split_first() else {
            assert!(has_type(v, t), "{path} should be {t:?}, is {v}");
            return;
        };
        if let Some(name) = first.strip_suffix("[]") {
            let arr = v.get(name).and_then(Value::as_array);
            arr.into_iter()
                .flatten()
                .for_each(|x| walk(x, rest, t, path));
        } else if let Some(name) = first.strip_suffix('?') {
            if let Some(x) = v.get(name) {
                walk(x, rest, t, path);
            }
        } else {
            let x = v
                .get(*first)
                .unwrap_or_else(|| panic!("missing {path} in {v}"));
            walk(x, rest, t, path);
        }
    }
    walk(doc, &path.split('.').collect::<Vec<_>>(), t, path);
}

#[test]
fn ocsf_required_attributes_for_every_kind() {
    for e in every_kind() {
        let doc = ocsf(&e);
        assert_no_empty(&doc, &e.kind);
        for &(path, t) in OCSF_REQUIRED {
            check_required(&doc, path, t);
        }
        let id = |k: &str| doc[k].as_i64().unwrap();
        assert_eq!(id("class_uid"), 5020);
        assert_eq!(id("category_uid"), 5);
        assert!([0, 1, 2, 99].contains(&id("activity_id")), "{doc}");
        assert_eq!(id("type_uid"), id("class_uid") * 100 + id("activity_id"));
        assert!([0, 1, 2, 3, 4, 5, 6, 99].contains(&id("severity_id")));
        assert_eq!(id("time"), e.time * 1000);
        assert_eq!(doc["metadata"]["version"], "1.3.0");
        assert_eq!(doc["metadata"]["uid"], e.id.as_str());
        assert_eq!(doc["metadata"]["product"]["name"], "Muster");
        assert_eq!(doc["metadata"]["product"]["version"], VERSION);
        let want_activity = match e.kind.as_str() {
            "detected" | "state_changed" | "removed" | "imported" | "campaign_missed" => 2,
            _ => 99,
        };
        assert_eq!(id("activity_id"), want_activity, "{}", e.kind);
        if want_activity == 99 {
            assert_eq!(doc["activity_name"], e.kind.as_str());
        }
    }
}

#[test]
fn ocsf_golden_values() {
    let doc = ocsf(&kesl_event());
    assert_eq!(doc["type_uid"], 502002);
    assert_eq!(doc["type_name"], "Software Inventory Info: Collect");
    assert_eq!(doc["severity_id"], 4);
    assert_eq!(doc["device"]["hostname"], "host-one");
    assert_eq!(doc["device"]["os"]["type_id"], 200);
    assert_eq!(
        doc["package"]["name"],
        "Kaspersky Endpoint Security for Linux"
    );
    assert_eq!(doc["package"]["version"], "12.1.0.1297");
    assert_eq!(doc["product"]["uid"], "kaspersky-endpoint-security-linux");
    assert_eq!(
        doc["unmapped"]["muster"]["verdict"]["campaign"],
        "bod-17-01"
    );
    let host = ocsf(&host_event("enrolled"));
    assert_eq!(host["package"]["name"], "muster-agent");
    assert_eq!(host["package"]["version"], "0.4.0");
    assert_eq!(host["type_uid"], 502099);
    assert!(host.get("product").is_none());
}

// ------------------------------------------------------------ syslog

#[test]
fn syslog_golden() {
    let e = kesl_event();
    let payload = cef(&e);
    let line = rfc5424(&e, 16, "muster", "collector-1", &payload);
    let want = "<131>1 2026-11-29T10:00:00Z collector-1 muster - detected \
        [muster@32473 id=\"5b0e6f8e-2f61-4c1a-9d7e-0c6a7d1e2f30\" seq=\"42\" \
        host=\"host-one\" product=\"kaspersky-endpoint-security-linux\"] CEF:0|";
    assert!(line.starts_with(want), "{line}");
    let s = parse_5424(&line).unwrap();
    assert_eq!(s.pri, 16 * 8 + 3);
    assert_eq!(s.timestamp, "2026-11-29T10:00:00Z");
    assert_eq!(
        (s.hostname.as_str(), s.app.as_str(), s.msgid.as_str()),
        ("collector-1", "muster", "detected")
    );
    assert_eq!(s.msg.as_deref(), Some(payload.as_str()));
    assert!(!line.as_bytes().starts_with(&[0xEF, 0xBB, 0xBF]) && !line.contains('\u{feff}'));
}

#[test]
fn syslog_priorities() {
    for (sev, want) in [
        (10, 2),
        (9, 3),
        (8, 3),
        (7, 4),
        (6, 4),
        (5, 5),
        (4, 5),
        (3, 6),
        (1, 6),
        (0, 6),
    ] {
        let e = SiemEvent {
            severity: sev,
            ..kesl_event()
        };
        let s = parse_5424(&rfc5424(&e, 1, "a", "h", "m")).unwrap();
        assert_eq!(s.pri, 8 + want, "severity {sev}");
    }
    // Facilities past local7 (23) are clamped.
    let s = parse_5424(&rfc5424(&kesl_event(), 200, "a", "h", "")).unwrap();
    assert_eq!(s.pri, 23 * 8 + 3);
    assert_eq!(s.msg, None);
}

#[test]
fn syslog_sd_values_round_trip() {
    let mut e = kesl_event();
    e.id = r#"a"b\c]d"#.into();
    e.host.hostname = r#"]]"\\"#.into();
    e.product.as_mut().unwrap().id = "p\"q\\r]".into();
    let s = parse_5424(&rfc5424(&e, 1, "app", "h", "msg")).unwrap();
    let get = |k: &str| {
        s.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("id"), Some(e.id.as_str()));
    assert_eq!(get("host"), Some(e.host.hostname.as_str()));
    assert_eq!(get("product"), Some("p\"q\\r]"));
    assert_eq!(get("seq"), Some("42"));
}

#[test]
fn syslog_hostile_header_fields() {
    let e = SiemEvent {
        kind: "a very long kind with spaces and ünïcode, longer than 32".into(),
        ..kesl_event()
    };
    let long_app = "x".repeat(100);
    let line = rfc5424(&e, 3, &long_app, "host one\n\té", "two\nlines\r\n");
    let s = parse_5424(&line).unwrap();
    assert_eq!(s.hostname, "host_one___");
    assert_eq!(s.app.len(), 48);
    assert_eq!(s.msgid.len(), 32);
    assert_eq!(s.msg.as_deref(), Some("two lines  "));
    let empty = parse_5424(&rfc5424(
        &SiemEvent {
            kind: String::new(),
            ..kesl_event()
        },
        3,
        "",
        "",
        "m",
    ))
    .unwrap();
    assert_eq!(
        (
            empty.hostname.as_str(),
            empty.app.as_str(),
            empty.msgid.as_str()
        ),
        ("-", "-", "-")
    );
}

#[test]
fn octet_frame_counts_bytes() {
    for msg in ["", "abc", "héllo wörld 😀", "<14>1 - - - - - - Grüße"] {
        let frame = octet_frame(msg);
        let text = String::from_utf8(frame.clone()).unwrap();
        let (len, rest) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
        assert_eq!(rest, msg);
        assert_eq!(frame.len(), len.len() + 1 + msg.len());
    }
    assert_eq!(octet_frame("é"), b"2 \xc3\xa9");
}

#[test]
fn format_names_round_trip() {
    for f in [Format::Cef, Format::Leef, Format::Ecs, Format::Ocsf] {
        assert_eq!(Format::parse(f.as_str()), Ok(f));
    }
    let err = Format::parse("syslog").unwrap_err();
    assert!(err.contains("syslog") && err.contains("leef"), "{err}");
    assert_eq!(format::PRODUCT, "Muster");
    assert_eq!(format::VENDOR, "Muster");
}
