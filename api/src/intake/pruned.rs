//! Parsing a JSON document into a [`Value`] that keeps only the fields a reader looks at.
//!
//! A service-hook delivery is mostly text the intake never reads (the build's messages, its requester, its
//! links). Building a full `Value` of it allocated a map node and a string per field and was the largest part of a
//! delivery's processing; the fields outside the [`Shape`] are checked for syntax and skipped without allocating.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Which parts of a document to keep.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// The whole value.
    All,
    /// Of an object, only these members, each pruned by its own shape. A scalar here is kept as it is; an array is
    /// kept empty (no reader of a pruned document looks into an array where it expects an object).
    Fields(&'static [(&'static str, Shape)]),
}

/// Parses `body` (a UTF-8 byte-order mark tolerated), keeping what `shape` names. Syntax errors anywhere in the
/// document, kept or not, are errors.
pub fn parse(body: &[u8], shape: Shape) -> Result<Value, serde_json::Error> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = serde_json::Deserializer::from_slice(body);
    let value = shape.deserialize(&mut reader)?;
    reader.end()?;
    Ok(value)
}

impl<'de> DeserializeSeed<'de> for Shape {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Shape::All => Value::deserialize(deserializer),
            Shape::Fields(fields) => deserializer.deserialize_any(Pruning(fields)),
        }
    }
}

struct Pruning(&'static [(&'static str, Shape)]);

impl<'de> Visitor<'de> for Pruning {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.0.iter().find(|(name, _)| *name == key) {
                Some((name, shape)) => {
                    let value = map.next_value_seed(*shape)?;
                    kept.insert((*name).to_owned(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Array(Vec::new()))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHAPE: Shape = Shape::Fields(&[
        ("kept", Shape::All),
        ("nested", Shape::Fields(&[("inner", Shape::All)])),
    ]);

    #[test]
    fn only_the_named_fields_are_kept() {
        let body = br#"{"kept": {"a": [1, 2]}, "dropped": {"b": "x"}, "nested": {"inner": "y", "other": 3}}"#;
        assert_eq!(
            parse(body, SHAPE).unwrap(),
            json!({"kept": {"a": [1, 2]}, "nested": {"inner": "y"}})
        );
    }

    #[test]
    fn scalars_where_an_object_is_expected_are_kept_and_arrays_emptied() {
        assert_eq!(
            parse(br#"{"nested": "text"}"#, SHAPE).unwrap(),
            json!({"nested": "text"})
        );
        assert_eq!(
            parse(br#"{"nested": [{"inner": 1}]}"#, SHAPE).unwrap(),
            json!({"nested": []})
        );
        assert_eq!(parse(b"42", SHAPE).unwrap(), json!(42));
    }

    #[test]
    fn syntax_errors_in_skipped_fields_are_errors() {
        for body in [
            &br#"{"dropped": {"b": }, "kept": 1}"#[..],
            br#"{"dropped": "unterminated}"#,
            br#"{"kept": 1} trailing"#,
            br#"{"dropped": "\q"}"#,
        ] {
            assert!(
                parse(body, SHAPE).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_byte_order_mark_is_tolerated() {
        assert_eq!(
            parse(b"\xEF\xBB\xBF{\"kept\": true}", SHAPE).unwrap(),
            json!({"kept": true})
        );
    }
}
