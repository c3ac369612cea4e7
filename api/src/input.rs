//! What text and numbers from outside become before they reach PostgreSQL, decided once for every way in: the
//! ingest body, the webhook payload and GraphQL arguments.
//!
//! PostgreSQL stores no NUL character (`\u0000`) in text, and a number past its column's range is refused: a value
//! like that can never be stored, so a request carrying one must be answered as the caller's mistake (4xx), never
//! with a 503 that Azure DevOps and CI steps retry forever. The rule per kind of field:
//!
//! - identifiers, names, branches, URLs, GraphQL arguments: a NUL is refused, naming the field, and so is a value
//!   over the field's length;
//! - a real tool's output (a test result's error message, steps, tester notes, environment: test stdout may hold
//!   NUL bytes and megabytes of log): NULs are removed and an overlong value is cut at its limit with a note
//!   saying how much was cut. Nothing there is ever refused.

use std::borrow::Cow;

/// How one kind of text field is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    /// Longest value accepted, in characters (Unicode scalar values).
    pub max_chars: usize,
    /// The value is a tool's output: cleaned (NUL removed, cut at `max_chars`) instead of refused.
    pub cleaned: bool,
}

/// Ids, hashes, event types, subscription and notification ids.
pub const IDENTIFIER: TextRule = TextRule {
    max_chars: 256,
    cleaned: false,
};
/// A build's name, and a project or release named by the caller (the domain's limit for names).
pub const NAME: TextRule = TextRule {
    max_chars: domain::MAX_NAME_CHARS,
    cleaned: false,
};
/// A name Azure DevOps sends as part of a build's name (pipeline, definition, run, build number, project).
pub const AZURE_NAME: TextRule = TextRule {
    max_chars: 512,
    cleaned: false,
};
/// A test's title (the domain's limit: parameterised test names are long).
pub const TEST_TITLE: TextRule = TextRule {
    max_chars: domain::MAX_TEST_TITLE_CHARS,
    cleaned: false,
};
/// A git ref, e.g. `refs/heads/feature/x`.
pub const BRANCH: TextRule = TextRule {
    max_chars: 1024,
    cleaned: false,
};
/// A URL.
pub const URL: TextRule = TextRule {
    max_chars: 2048,
    cleaned: false,
};
/// Every string argument and variable of a GraphQL request (names, URLs, globs, reasons, filters, cursors).
pub const GRAPHQL_ARGUMENT: TextRule = URL;
/// A test result's error message, steps and tester notes: tool output, cleaned.
pub const TOOL_OUTPUT: TextRule = TextRule {
    max_chars: 64 * 1024,
    cleaned: true,
};
/// A test result's environment: tool output, cleaned.
pub const TOOL_OUTPUT_SHORT: TextRule = TextRule {
    max_chars: 1024,
    cleaned: true,
};

/// The largest `duration_ms` accepted: 2^53 - 1 ms (285,000 years), the largest integer every JSON reader
/// (JavaScript dashboards included) reads exactly, and well inside PostgreSQL's `bigint`.
pub const MAX_DURATION_MS: u64 = (1 << 53) - 1;
/// The largest pull-request number accepted: Azure DevOps numbers them with 32-bit integers, as GraphQL's `Int`.
pub const MAX_PULL_REQUEST_NUMBER: u64 = i32::MAX as u64;

/// What is said of a refused NUL.
pub const NUL_REFUSED: &str = "contains a NUL character (\\u0000), which cannot be stored";

impl TextRule {
    /// Applies the rule: the value to store, or why it is refused (for a field error naming it).
    pub fn apply(self, value: &str) -> Result<Cow<'_, str>, String> {
        if self.cleaned {
            return Ok(clean(value, self.max_chars));
        }
        if value.contains('\0') {
            return Err(NUL_REFUSED.to_owned());
        }
        // Counting stops one past the limit: a 30 MB value is not walked to the end to be refused.
        if value.chars().nth(self.max_chars).is_some() {
            return Err(format!("must be at most {} characters", self.max_chars));
        }
        Ok(Cow::Borrowed(value))
    }
}

pub use domain::clean_text as clean;

/// A pull-request number written as text: `Ok(None)` when it is not a whole number at all (not a pull request),
/// `Err` when it is one outside 1 ..= [`MAX_PULL_REQUEST_NUMBER`].
pub fn pull_request_number(text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match text.parse::<u64>() {
        Ok(number) if (1..=MAX_PULL_REQUEST_NUMBER).contains(&number) => Ok(Some(number)),
        _ => Err(format!(
            "a pull request number must be between 1 and {MAX_PULL_REQUEST_NUMBER}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_nul_and_overlong_values() {
        assert_eq!(IDENTIFIER.apply("abc").unwrap(), "abc");
        assert_eq!(IDENTIFIER.apply("a\0b").unwrap_err(), NUL_REFUSED);
        assert!(IDENTIFIER.apply(&"é".repeat(256)).is_ok());
        assert!(IDENTIFIER.apply(&"é".repeat(257)).is_err());
    }

    #[test]
    fn tool_output_is_cleaned_never_refused() {
        assert!(matches!(
            TOOL_OUTPUT.apply("plain"),
            Ok(Cow::Borrowed("plain"))
        ));
        assert_eq!(TOOL_OUTPUT.apply("a\0b\0").unwrap(), "ab");
        let long = "x".repeat(TOOL_OUTPUT.max_chars + 10);
        assert!(TOOL_OUTPUT
            .apply(&long)
            .unwrap()
            .ends_with("[… 10 more characters cut by Lathe]"));
    }

    #[test]
    fn pull_request_numbers_are_range_checked() {
        assert_eq!(pull_request_number("42"), Ok(Some(42)));
        assert_eq!(pull_request_number("feature"), Ok(None));
        assert!(pull_request_number("0").is_err());
        assert!(pull_request_number("18446744073709551615").is_err());
        assert!(pull_request_number("99999999999999999999999").is_err());
        assert!(pull_request_number("2147483648").is_err());
    }
}
