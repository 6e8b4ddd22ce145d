//! `phantom_token_require_claim`: the JWT's claim must equal one of the allowed values.

use serde_json::{Map, Value};

/// One configured requirement: a top-level claim and the values it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The top-level claim's name.
    pub name: String,
    /// The values it may take, compared as text; any one of them satisfies the requirement.
    pub values: Vec<String>,
}

/// A claim value as the text it is compared by (strings as they are, numbers and booleans
/// in their JSON form); objects and nulls never match.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Requirement {
    /// Whether `claims` meets it: the claim equals one of the values, or, for an array claim
    /// such as `aud`, one of its members does.
    pub fn met_by(&self, claims: &Map<String, Value>) -> bool {
        let ok = |v: &Value| text(v).is_some_and(|t| self.values.contains(&t));
        match claims.get(&self.name) {
            Some(Value::Array(items)) => items.iter().any(ok),
            Some(v) => ok(v),
            None => false,
        }
    }
}

/// The first requirement `claims` does not meet.
pub fn first_unmet<'a>(
    reqs: &'a [Requirement],
    claims: &Map<String, Value>,
) -> Option<&'a Requirement> {
    reqs.iter().find(|r| !r.met_by(claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(name: &str, values: &[&str]) -> Requirement {
        Requirement {
            name: name.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn matches_strings_arrays_and_scalars() {
        let c = claims(json!({"iss":"https://id","aud":["a","api"],"lvl":2,"adm":true,"o":{}}));
        assert!(req("iss", &["https://id"]).met_by(&c));
        assert!(req("aud", &["api", "x"]).met_by(&c));
        assert!(req("lvl", &["1", "2"]).met_by(&c));
        assert!(req("adm", &["true"]).met_by(&c));
        assert!(!req("aud", &["b"]).met_by(&c));
        assert!(!req("iss", &["https://id/"]).met_by(&c));
        assert!(!req("missing", &["x"]).met_by(&c));
        assert!(!req("o", &["{}"]).met_by(&c));
        let all = [req("iss", &["https://id"]), req("aud", &["b"])];
        assert_eq!(first_unmet(&all, &c).map(|r| r.name.as_str()), Some("aud"));
    }
}
