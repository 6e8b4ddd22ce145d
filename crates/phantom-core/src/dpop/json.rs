//! JSON objects for JOSE headers and claims: like `serde_json`, but duplicate member names
//! anywhere in the document are an error (RFC 7515 §4: "MUST either reject ... or use a JSON
//! parser that returns only the lexically last duplicate member name"; rejecting is safer).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never produces a non-finite f64; `from` maps it to null anyway.
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(k, v).is_some() {
                return Err(de::Error::custom("duplicate member name"));
            }
        }
        Ok(Value::Object(out))
    }
}

/// Parses a JSON object, refusing duplicate member names at any depth.
/// serde_json's recursion limit (128) still applies.
pub(crate) fn object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Value::Object(m))) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objects_and_refuses_duplicates() {
        let m = object(br#"{"a":1,"b":[true,null,"x",-2,1.5],"c":{"d":{}}}"#).unwrap();
        assert_eq!(m["a"], 1);
        assert_eq!(m["b"][4], 1.5);
        assert_eq!(m["b"][3], -2);
        assert!(object(br#"{"a":1,"a":2}"#).is_none());
        assert!(object(br#"{"c":{"d":1,"d":1}}"#).is_none());
        assert!(object(br#"{"c":[{"d":1,"d":1}]}"#).is_none());
        assert!(object(b"[1]").is_none());
        assert!(object(b"{} x").is_none());
        assert!(object(b"").is_none());
        let deep = "[".repeat(10_000);
        assert!(object(deep.as_bytes()).is_none());
        let deep = format!("{}{}", r#"{"a":"#.repeat(200), "1");
        assert!(object(deep.as_bytes()).is_none());
    }

    #[test]
    fn same_values_as_serde_json() {
        let src = br#"{"n":12345678901234567890,"f":1e300,"s":"\u00e9\n","i":-9}"#;
        let ours = object(src).unwrap();
        let theirs: Map<String, Value> = serde_json::from_slice(src).unwrap();
        assert_eq!(ours, theirs);
    }
}
