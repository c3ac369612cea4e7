//! Unit tests of the ingest body's parsing and validation.

use super::*;
use serde_json::json;

fn fields(error: ApiError) -> Vec<String> {
    match error {
        ApiError::InvalidFields(fields) => fields.into_iter().map(|f| f.field).collect(),
        other => panic!("expected field errors, got {other}"),
    }
}

#[test]
fn the_shape_of_the_body_and_its_results_list_is_checked() {
    let parse = |body: &str| parse_body(body.as_bytes(), Uuid::nil(), None);
    assert_eq!(fields(parse("[1, 2]").unwrap_err()), ["$"]);
    assert_eq!(fields(parse("\"text\"").unwrap_err()), ["$"]);
    for results in [r#"{"a": 1}"#, "3", "\"x\"", "true"] {
        let body = format!(r#"{{"build_name": "b", "test_results": {results}}}"#);
        assert_eq!(
            fields(parse(&body).unwrap_err()),
            ["test_results"],
            "{body}"
        );
    }
    assert_eq!(
        fields(parse(r#"{"build_name": "b", "test_results": null}"#).unwrap_err()),
        ["test_results"]
    );
    for broken in [
        r#"{"build_name": "b", "test_results": [] } x"#,
        r#"{"test_results": [{"#,
        "",
    ] {
        assert!(
            matches!(parse(broken), Err(ApiError::BadUserInput(_))),
            "{broken}"
        );
    }
    let bom = "\u{feff}{\"build_name\": \"b\", \"test_results\": [{\"title\": \"t\", \"status\": \"passed\"}]}";
    let upload = parse(bom).unwrap().results.unwrap();
    assert_eq!(upload.results.len(), 1);
}

#[test]
fn every_bad_field_is_named() {
    let body = json!({ "branch": 3, "test_results": [
        { "title": "ok", "status": "passed" },
        { "status": "exploded", "duration_ms": -1 },
        "nope"
    ] });
    let error = parse_body(&serde_json::to_vec(&body).unwrap(), Uuid::nil(), None).unwrap_err();
    assert_eq!(
        fields(error),
        [
            "build_name",
            "branch",
            "test_results[1].title",
            "test_results[1].status",
            "test_results[1].duration_ms",
            "test_results[2]"
        ]
    );
}

#[test]
fn the_pipeline_example_body_is_accepted() {
    let body = json!({ "build_name": "Build 20241202.1", "branch": "main", "commit_sha": "6e12f61",
        "test_results": [{ "title": "login works", "status": "FAILED", "duration_ms": 12.4,
            "error_message": "timeout", "priority": 1, "steps": ["open", "log in"],
            "tester_notes": "flaky?", "environment": "staging", "unknown": true }],
        "something_new": {} });
    let submission = parse_body(&serde_json::to_vec(&body).unwrap(), Uuid::nil(), None).unwrap();
    let upload = submission.results.unwrap();
    assert_eq!(upload.results[0].status, TestStatus::Failed);
    assert_eq!(upload.results[0].duration_ms, Some(12));
    assert_eq!(upload.results[0].steps.as_deref(), Some("open\nlog in"));
    assert_eq!(submission.source, BuildSource::Ingest);
}

#[test]
fn an_azure_build_is_identified_as_the_webhook_identifies_it() {
    let by_id = json!({ "build_name": "b", "test_results": [], "azure_build_id": 2727068,
        "azure_collection_url": "https://dev.azure.com/FabrikamFiber/" });
    let by_url = json!({ "build_name": "b", "test_results": [],
        "build_url": "https://fabrikamfiber.visualstudio.com/Chat/_build/results?buildId=2727068" });
    for body in [by_id, by_url] {
        let submission =
            parse_body(&serde_json::to_vec(&body).unwrap(), Uuid::nil(), None).unwrap();
        assert_eq!(submission.source, BuildSource::AzureDevOps);
        assert_eq!(submission.source_key, "dev.azure.com/fabrikamfiber/2727068");
    }
    let missing = json!({ "build_name": "b", "test_results": [], "azure_build_id": "5" });
    assert_eq!(
        fields(parse_body(&serde_json::to_vec(&missing).unwrap(), Uuid::nil(), None).unwrap_err()),
        ["azure_collection_url"]
    );
}
