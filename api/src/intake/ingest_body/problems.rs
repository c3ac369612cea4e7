//! The problems of an ingest body, collected field by field, and the reading of its text fields under their rules.

use serde_json::{Map, Value};

use crate::error::FieldError;
use crate::input::{TextRule, IDENTIFIER};

/// Collects every problem of a body instead of stopping at the first, so that one answer names them all.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<FieldError>);

impl Problems {
    pub(super) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// An optional string field, checked (or cleaned) by `rule`.
    pub(super) fn text(
        &mut self,
        object: &Map<String, Value>,
        field: &str,
        path: &str,
        rule: TextRule,
    ) -> Option<String> {
        match object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => self.checked(path, s, rule),
            Some(_) => {
                self.add(path, "must be a string");
                None
            }
        }
    }

    /// A string trimmed and checked (or cleaned) by `rule`; `None` when blank or refused.
    pub(super) fn checked(&mut self, path: &str, value: &str, rule: TextRule) -> Option<String> {
        match rule.apply(value.trim()) {
            Ok(value) => Some(value.trim().to_owned()).filter(|s| !s.is_empty()),
            Err(problem) => {
                self.add(path, problem);
                None
            }
        }
    }

    /// An optional field that may be a string or an integer (ids that pipelines print either way).
    pub(super) fn id(&mut self, object: &Map<String, Value>, field: &str) -> Option<String> {
        match object.get(field) {
            Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
            Some(Value::String(s)) if !s.trim().is_empty() => self.checked(field, s, IDENTIFIER),
            None | Some(Value::Null) => None,
            Some(_) => {
                self.add(
                    field,
                    "must be a non-empty string or a non-negative integer",
                );
                None
            }
        }
    }
}
