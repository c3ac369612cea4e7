//! The fields of an Azure DevOps delivery that Lathe reads, each with its rule (see [`crate::input`]), checked
//! before the delivery is interpreted: a delivery with a NUL in an identifier, an overlong URL or a pull-request
//! number out of range can never be stored, so it is refused with 422 naming every such field instead of a 503
//! that Azure DevOps would retry. Keep the list in step with what `azure::meta` and `azure::interpret` read.

use serde_json::Value;

use crate::error::{ApiError, FieldError};
use crate::input::{self, TextRule, AZURE_NAME, BRANCH, IDENTIFIER, URL};

/// Every text field read, as a JSON pointer, with its rule.
const FIELDS: &[(&str, TextRule)] = &[
    ("/eventType", IDENTIFIER),
    ("/subscriptionId", IDENTIFIER),
    ("/notificationId", IDENTIFIER),
    ("/id", IDENTIFIER),
    ("/resourceContainers/collection/id", IDENTIFIER),
    ("/resourceContainers/collection/baseUrl", URL),
    ("/resourceContainers/account/id", IDENTIFIER),
    ("/resourceContainers/account/baseUrl", URL),
    ("/resourceContainers/project/id", IDENTIFIER),
    ("/resourceContainers/project/baseUrl", URL),
    ("/resource/id", IDENTIFIER),
    ("/resource/buildNumber", AZURE_NAME),
    ("/resource/result", IDENTIFIER),
    ("/resource/status", IDENTIFIER),
    ("/resource/sourceBranch", BRANCH),
    ("/resource/sourceVersion", IDENTIFIER),
    ("/resource/sourceGetVersion", BRANCH),
    ("/resource/url", URL),
    ("/resource/_links/web/href", URL),
    ("/resource/definition/name", AZURE_NAME),
    ("/resource/project/id", IDENTIFIER),
    ("/resource/project/name", AZURE_NAME),
    ("/resource/repository/id", IDENTIFIER),
    ("/resource/repository/url", URL),
    ("/resource/triggerInfo/pr.number", IDENTIFIER),
    ("/resource/triggerInfo/pr.sourceBranch", BRANCH),
    ("/resource/triggerInfo/pr.triggerRepository", IDENTIFIER),
    ("/resource/pipeline/name", AZURE_NAME),
    ("/resource/run/id", IDENTIFIER),
    ("/resource/run/name", AZURE_NAME),
    ("/resource/run/state", IDENTIFIER),
    ("/resource/run/result", IDENTIFIER),
    ("/resource/run/url", URL),
    ("/resource/run/_links/web/href", URL),
    ("/resource/run/pipeline/name", AZURE_NAME),
];

/// Checks every field Lathe reads from a delivery; refuses the delivery naming each bad one.
pub fn check(body: &Value) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    for (pointer, rule) in FIELDS {
        if let Some(Value::String(text)) = body.pointer(pointer) {
            if let Err(problem) = rule.apply(text) {
                problems.push(FieldError::new(field_name(pointer), problem));
            }
        }
    }
    // A pull request's number, from the trigger or a `refs/pull/{N}/merge` branch, must fit what stores it.
    let trigger_number = body
        .pointer("/resource/triggerInfo/pr.number")
        .and_then(Value::as_str);
    if let Some(Err(problem)) = trigger_number.map(input::pull_request_number) {
        problems.push(FieldError::new("resource.triggerInfo.pr.number", problem));
    }
    let branch_number = body
        .pointer("/resource/sourceBranch")
        .and_then(Value::as_str)
        .and_then(|branch| branch.strip_prefix("refs/pull/"))
        .and_then(|rest| rest.split('/').next());
    if let Some(Err(problem)) = branch_number.map(input::pull_request_number) {
        problems.push(FieldError::new("resource.sourceBranch", problem));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidFields(problems))
    }
}

/// `/resource/_links/web/href` → `resource._links.web.href`, as the answer names fields.
fn field_name(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(body: &Value) -> Vec<String> {
        match check(body) {
            Ok(()) => Vec::new(),
            Err(ApiError::InvalidFields(fields)) => fields.into_iter().map(|f| f.field).collect(),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn every_bad_field_is_named_and_numbers_outside_the_body_are_not_read() {
        let body = json!({ "eventType": "build.complete\u{0}", "resource": {
            "id": 7, "sourceBranch": "refs/pull/18446744073709551615/merge",
            "url": format!("https://dev.azure.com/{}", "x".repeat(3000)),
            "triggerInfo": { "pr.number": "0", "ci.message": "\u{0}".repeat(5000) } } });
        assert_eq!(
            fields(&body),
            [
                "eventType",
                "resource.url",
                "resource.triggerInfo.pr.number",
                "resource.sourceBranch"
            ]
        );
        assert!(fields(
            &json!({ "eventType": "build.complete", "resource": { "id": 7,
            "sourceBranch": "refs/pull/12/merge", "triggerInfo": { "pr.number": "12" } } })
        )
        .is_empty());
    }

    #[test]
    fn every_listed_field_is_one_the_pruned_parse_keeps() {
        let mut body = json!({});
        for (pointer, _) in FIELDS {
            let mut at = &mut body;
            for part in pointer.trim_start_matches('/').split('/') {
                at = &mut at[part];
            }
            *at = json!("\u{0}");
        }
        let pruned = super::super::azure::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(fields(&pruned).len(), FIELDS.len());
    }
}
