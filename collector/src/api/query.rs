//! Query strings, read strictly: every parameter known, given once, and
//! validly percent-encoded UTF-8. A mistyped filter (`?vendr=acme`) is an
//! error that names it, never a silently unfiltered answer.

use super::ApiError;
use std::collections::BTreeMap;

/// Longest query string accepted, in bytes; longer is `414 URI Too Long`.
pub const MAX_QUERY: usize = 8 * 1024;

/// The parameters of one request.
#[derive(Debug, Default)]
pub struct Params(BTreeMap<String, String>);

/// Reads `raw` (the part after `?`), accepting only `allowed` names.
pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
    let mut out = BTreeMap::new();
    let Some(raw) = raw else {
        return Ok(Params(out));
    };
    if raw.len() > MAX_QUERY {
        return Err(ApiError::uri_too_long(raw.len()));
    }
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            let name = decode(pair).unwrap_or_else(|_| pair.to_string());
            return Err(ApiError::bad_parameter(
                &name,
                format!("the query parameter {name:?} has no value (write {name}=VALUE)"),
            ));
        };
        let name = decode(k).map_err(|e| {
            ApiError::bad_query(format!("a query parameter's name is malformed: {e}"))
        })?;
        let value = decode(v).map_err(|e| {
            ApiError::bad_parameter(&name, format!("the value of {name:?} is malformed: {e}"))
        })?;
        if !allowed.contains(&name.as_str()) {
            let known = if allowed.is_empty() {
                "this endpoint takes none".to_string()
            } else {
                format!("known: {}", allowed.join(", "))
            };
            return Err(ApiError::bad_parameter(
                &name,
                format!("unknown query parameter {name:?} ({known})"),
            ));
        }
        if out.insert(name.clone(), value).is_some() {
            return Err(ApiError::bad_parameter(
                &name,
                format!("the query parameter {name:?} is given more than once"),
            ));
        }
    }
    Ok(Params(out))
}

/// Percent-decodes a query component (`+` is a space); refuses a `%`
/// not followed by two hex digits, and bytes that are not UTF-8.
fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(h) = hex else {
                    return Err(format!(
                        "'%' at byte {} is not followed by two hex digits",
                        i + 1
                    ));
                };
                let h = std::str::from_utf8(h).expect("hex digits are ASCII");
                out.push(u8::from_str_radix(h, 16).expect("two hex digits"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).map_err(|_| "it is not UTF-8 once decoded".to_string())?;
    if text.chars().any(char::is_control) {
        return Err("it holds a control character".into());
    }
    Ok(text)
}

impl Params {
    /// A text parameter; absent or empty (an HTML form's unset field) is
    /// `None`.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// `true`/`1` or `false`/`0`; absent or empty is `false`.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.text(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(v) => Err(ApiError::bad_parameter(
                name,
                format!("{name}={v:?}: use true or false"),
            )),
        }
    }

    /// A whole number between `min` and `max`; absent is `default`.
    pub fn number(&self, name: &str, min: u64, max: u64, default: u64) -> Result<u64, ApiError> {
        let Some(v) = self.text(name) else {
            return Ok(default);
        };
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_parameter(
                name,
                format!("{name}={v:?}: use a whole number from {min} to {max}"),
            )),
        }
    }
}

/// The opaque position of a host listing's next page: the last host's
/// sort key (its hostname, or its last check-in) and id, as hex of a JSON
/// pair.
pub fn cursor(key: &str, id: &str) -> String {
    hex::encode(serde_json::json!([key, id]).to_string())
}

/// Reads a [`cursor`]; `name` is the parameter it came in.
pub fn read_cursor(name: &str, text: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::bad_parameter(
            name,
            format!("{name} is not a cursor this API gave (use the `next` of a previous page)"),
        )
    };
    let bytes = hex::decode(text).map_err(|_| bad())?;
    let (hostname, id): (String, String) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok((hostname, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str, allowed: &[&str]) -> Result<Params, ApiError> {
        parse(Some(raw), allowed)
    }

    #[test]
    fn parameters_are_decoded() {
        let q = p(
            "name=web%2D01&os=Debian+GNU%2fLinux&&stale=true",
            &["name", "os", "stale"],
        )
        .unwrap();
        assert_eq!(q.text("name"), Some("web-01"));
        assert_eq!(q.text("os"), Some("Debian GNU/Linux"));
        assert!(q.flag("stale").unwrap());
        let q = p("name=&stale=", &["name", "stale"]).unwrap();
        assert_eq!(q.text("name"), None);
        assert!(!q.flag("stale").unwrap());
        assert!(parse(None, &[]).unwrap().text("x").is_none());
        assert_eq!(
            p("name=%C3%A9t%C3%A9", &["name"]).unwrap().text("name"),
            Some("été")
        );
    }

    #[test]
    fn malformed_unknown_and_repeated_parameters_are_refused_by_name() {
        let e = p("stale=maybe", &["stale"])
            .unwrap()
            .flag("stale")
            .unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.parameter.as_deref()),
            (400, Some("stale"))
        );
        let e = p("vendr=acme", &["vendor"]).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("vendr"));
        assert!(e.message.contains("known: vendor"), "{}", e.message);
        let e = p("name=a&name=b", &["name"]).unwrap_err();
        assert!(e.message.contains("more than once"));
        let e = p("name=%zz", &["name"]).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("name"));
        assert!(e.message.contains("two hex digits"), "{}", e.message);
        let e = p("name=%ff%fe", &["name"]).unwrap_err();
        assert!(e.message.contains("UTF-8"));
        let e = p("name=%00", &["name"]).unwrap_err();
        assert!(e.message.contains("control"));
        let e = p("stale", &["stale"]).unwrap_err();
        assert!(e.message.contains("no value"));
        let e = p("%=1", &["x"]).unwrap_err();
        assert_eq!((e.status.as_u16(), e.parameter), (400, None));
        let e = p("x=1", &[]).unwrap_err();
        assert!(e.message.contains("takes none"));
        let long = format!("name={}", "a".repeat(MAX_QUERY));
        assert_eq!(p(&long, &["name"]).unwrap_err().status.as_u16(), 414);
    }

    #[test]
    fn numbers_have_bounds() {
        let q = p("limit=0&b=5000&c=x&d=-1", &["limit", "b", "c", "d"]).unwrap();
        assert!(q.number("limit", 1, 1000, 100).is_err());
        assert!(q.number("b", 1, 1000, 100).is_err());
        assert!(q.number("c", 1, 1000, 100).is_err());
        assert!(q.number("d", 1, 1000, 100).is_err());
        assert_eq!(q.number("e", 1, 1000, 100).unwrap(), 100);
        assert_eq!(
            p("limit=7", &["limit"])
                .unwrap()
                .number("limit", 1, 1000, 100)
                .unwrap(),
            7
        );
    }

    #[test]
    fn cursors_round_trip_and_forgeries_are_refused() {
        let c = cursor("web-01", "0b6c");
        assert_eq!(
            read_cursor("after", &c).unwrap(),
            ("web-01".into(), "0b6c".into())
        );
        assert!(read_cursor("after", "zz").is_err());
        assert!(read_cursor("after", &hex::encode("[1]")).is_err());
    }
}
