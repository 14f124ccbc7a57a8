//! Checks JSON against the schemas of an OpenAPI 3.1 document: the subset
//! the collector's document uses (`$ref` to `#/components/schemas/...`,
//! `type` as a name or a list of names, `enum`, `properties`, `required`,
//! `additionalProperties` as `false` or a schema, `items`, `minimum`,
//! `maximum`). A keyword outside that subset is itself an error, so the
//! document cannot grow a constraint that is silently not checked.

use serde_json::Value;

/// Keywords that only document.
const ANNOTATIONS: &[&str] = &["description", "format", "title", "example"];
/// Keywords checked.
const CHECKED: &[&str] = &[
    "$ref",
    "type",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minimum",
    "maximum",
];

/// An OpenAPI document.
pub struct Spec {
    /// The document.
    pub doc: Value,
}

impl Spec {
    /// Reads a document.
    pub fn new(doc: Value) -> Spec {
        Spec { doc }
    }

    /// The paths the document describes (`/hosts/{id}`...).
    pub fn paths(&self) -> Vec<String> {
        self.doc["paths"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The JSON schema of `GET path`'s `status` response, if it has one.
    pub fn response_schema(&self, path: &str, status: u16) -> Option<&Value> {
        let s = &self.doc["paths"][path]["get"]["responses"][status.to_string()]["content"]["application/json"]
            ["schema"];
        (!s.is_null()).then_some(s)
    }

    /// Every way `value` breaks `schema`, each with where (a JSON pointer).
    pub fn check(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.walk(schema, value, "", &mut errors, 0);
        errors
    }

    fn walk(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>, depth: u32) {
        let here = if at.is_empty() { "/" } else { at };
        if depth > 64 {
            errors.push(format!("{here}: schema nests too deep ($ref loop?)"));
            return;
        }
        let Some(s) = schema.as_object() else {
            if schema != &Value::Bool(true) {
                errors.push(format!("{here}: the schema is not an object: {schema}"));
            }
            return;
        };
        for k in s.keys() {
            if !CHECKED.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()) {
                errors.push(format!("{here}: unsupported schema keyword {k:?}"));
            }
        }
        if let Some(r) = s.get("$ref") {
            let target = r
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .map(|name| &self.doc["components"]["schemas"][name]);
            match target {
                Some(t) if !t.is_null() => self.walk(t, value, at, errors, depth + 1),
                _ => errors.push(format!("{here}: unresolved $ref {r}")),
            }
            return;
        }
        if let Some(t) = s.get("type") {
            let names: Vec<&str> = match t {
                Value::String(n) => vec![n.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !names.iter().any(|n| is_type(value, n)) {
                errors.push(format!(
                    "{here}: expected {}, found {}",
                    names.join(" or "),
                    kind(value)
                ));
                return;
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array)
            && !e.contains(value)
        {
            errors.push(format!(
                "{here}: {value} is not one of {}",
                Value::Array(e.clone())
            ));
        }
        if let Some(n) = value.as_f64() {
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                errors.push(format!("{here}: {n} is below the minimum {min}"));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                errors.push(format!("{here}: {n} is above the maximum {max}"));
            }
        }
        if let Some(obj) = value.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !obj.contains_key(r) {
                    errors.push(format!("{here}: required property {r:?} is missing"));
                }
            }
            for (k, v) in obj {
                let child = format!("{at}/{k}");
                match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                    (Some(p), _) => self.walk(p, v, &child, errors, depth + 1),
                    (None, Some(Value::Bool(false))) => {
                        errors.push(format!("{child}: property {k:?} is not in the schema"))
                    }
                    (None, Some(extra)) if extra.is_object() => {
                        self.walk(extra, v, &child, errors, depth + 1)
                    }
                    _ => {}
                }
            }
        }
        if let (Some(items), Some(arr)) = (s.get("items"), value.as_array()) {
            for (i, v) in arr.iter().enumerate() {
                self.walk(items, v, &format!("{at}/{i}"), errors, depth + 1);
            }
        }
    }
}

fn is_type(v: &Value, name: &str) -> bool {
    match name {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Spec {
        Spec::new(json!({
            "paths": {"/h": {"get": {"responses": {"200": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Page"}}}}}}}},
            "components": {"schemas": {
                "Page": {"type": "object", "required": ["hosts", "next"], "additionalProperties": false,
                    "properties": {
                        "hosts": {"type": "array", "items": {"$ref": "#/components/schemas/Host"}},
                        "next": {"type": ["string", "null"]}}},
                "Host": {"type": "object", "required": ["id"], "additionalProperties": false,
                    "description": "a host",
                    "properties": {
                        "id": {"type": "string"},
                        "state": {"type": "string", "enum": ["running", "installed"]},
                        "n": {"type": "integer", "minimum": 1, "maximum": 10},
                        "daily": {"type": "object", "additionalProperties": {"type": "integer"}}}}
            }}
        }))
    }

    fn errors(v: Value) -> Vec<String> {
        let s = spec();
        let schema = s.response_schema("/h", 200).unwrap().clone();
        s.check(&schema, &v)
    }

    #[test]
    fn a_conforming_document_passes() {
        let e = errors(
            json!({"hosts": [{"id": "a", "state": "running", "n": 3, "daily": {"x": 1}}], "next": null}),
        );
        assert!(e.is_empty(), "{e:?}");
        assert!(errors(json!({"hosts": [], "next": "c"})).is_empty());
    }

    #[test]
    fn every_kind_of_breach_is_found_with_its_place() {
        let e = errors(
            json!({"hosts": [{"state": "gone", "n": 11, "extra": 1, "daily": {"x": "y"}}, 5]}),
        );
        let want = [
            "/: required property \"next\" is missing",
            "/hosts/0: required property \"id\" is missing",
            "/hosts/0/state: \"gone\" is not one of",
            "/hosts/0/n: 11 is above the maximum",
            "/hosts/0/extra: property \"extra\" is not in the schema",
            "/hosts/0/daily/x: expected integer, found string",
            "/hosts/1: expected object, found integer",
        ];
        for w in want {
            assert!(e.iter().any(|m| m.starts_with(w)), "{w:?} not in {e:?}");
        }
        assert_eq!(e.len(), want.len(), "{e:?}");
        assert_eq!(
            errors(json!({"hosts": [{"id": 1}], "next": 1.5})),
            [
                "/hosts/0/id: expected string, found integer",
                "/next: expected string or null, found number"
            ]
        );
    }

    #[test]
    fn unresolved_refs_and_unknown_keywords_are_errors() {
        let s = Spec::new(json!({"components": {"schemas": {}}}));
        let e = s.check(&json!({"$ref": "#/components/schemas/Nope"}), &json!(1));
        assert!(e[0].contains("unresolved $ref"), "{e:?}");
        let e = s.check(&json!({"type": "string", "pattern": "^a"}), &json!("b"));
        assert!(
            e[0].contains("unsupported schema keyword \"pattern\""),
            "{e:?}"
        );
        let s = Spec::new(
            json!({"components": {"schemas": {"L": {"$ref": "#/components/schemas/L"}}}}),
        );
        let e = s.check(&json!({"$ref": "#/components/schemas/L"}), &json!(1));
        assert!(e[0].contains("too deep"), "{e:?}");
    }
}
