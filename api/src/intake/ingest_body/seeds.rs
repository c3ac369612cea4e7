//! The streaming readers of an ingest body: the body's fields as JSON, its `test_results` typed one at a time.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use domain::build_queue::TestResult;

use super::{test_result, Problems};

/// A body as read: its fields other than `test_results` as JSON, and its results already typed.
pub(super) enum Parsed {
    Object {
        fields: Map<String, Value>,
        results: Results,
    },
    NotAnObject,
}

/// What the body's `test_results` held.
pub(super) enum Results {
    Missing,
    NotAList,
    List(Vec<TestResult>),
}

/// Reads the body, validating each test result as soon as it is read (its problems go to `problems`).
pub(super) struct BodySeed<'p> {
    pub(super) problems: &'p mut Problems,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Parsed;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<Parsed, D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Parsed;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Parsed, M::Error> {
        let mut fields = Map::new();
        let mut results = Results::Missing;
        while let Some(key) = map.next_key::<String>()? {
            if key == "test_results" {
                results = map.next_value_seed(ResultsSeed {
                    problems: &mut *self.problems,
                })?;
            } else {
                fields.insert(key, map.next_value()?);
            }
        }
        Ok(Parsed::Object { fields, results })
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Parsed, S::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Parsed::NotAnObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Parsed, E> {
        Ok(Parsed::NotAnObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Parsed, E> {
        Ok(Parsed::NotAnObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Parsed, E> {
        Ok(Parsed::NotAnObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Parsed, E> {
        Ok(Parsed::NotAnObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<Parsed, E> {
        Ok(Parsed::NotAnObject)
    }

    fn visit_unit<E>(self) -> Result<Parsed, E> {
        Ok(Parsed::NotAnObject)
    }
}

/// Reads `test_results`: each item is read as JSON on its own, validated and turned into a typed result.
struct ResultsSeed<'p> {
    problems: &'p mut Problems,
}

impl<'de> DeserializeSeed<'de> for ResultsSeed<'_> {
    type Value = Results;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<Results, D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResultsSeed<'_> {
    type Value = Results;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a list of test results")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Results, S::Error> {
        let mut results = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        let mut index = 0;
        while let Some(item) = seq.next_element::<Value>()? {
            results.extend(test_result(self.problems, index, &item));
            index += 1;
        }
        Ok(Results::List(results))
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Results, M::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Results::NotAList)
    }

    fn visit_unit<E>(self) -> Result<Results, E> {
        Ok(Results::Missing)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Results, E> {
        Ok(Results::NotAList)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Results, E> {
        Ok(Results::NotAList)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Results, E> {
        Ok(Results::NotAList)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Results, E> {
        Ok(Results::NotAList)
    }

    fn visit_str<E>(self, _: &str) -> Result<Results, E> {
        Ok(Results::NotAList)
    }
}
