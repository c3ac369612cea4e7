//! The ingest body: parsed and validated in one pass, naming every wrong field. Its `test_results` are turned
//! into typed results one at a time while the body is read, so a 100,000-result body never exists as a JSON tree
//! (which took several times the body's size).

mod problems;
mod seeds;
#[cfg(test)]
mod tests;

use serde::de::DeserializeSeed;
use serde_json::Value;
use uuid::Uuid;

use domain::build_queue::{
    BuildDetails, BuildSource, PullRequestRef, TestResult, TestResultsUpload, TestStatus,
};
use domain::matching::BuildSignals;
use domain::urls::collection_key;

use super::BuildSubmission;
use crate::error::{ApiError, FieldError};
use crate::input::{self, IDENTIFIER};
use problems::Problems;

use seeds::{BodySeed, Parsed, Results};

/// Most field errors listed in one 422 answer.
const MAX_FIELD_ERRORS: usize = 100;

/// Parses and validates an ingest body and turns it into a submission, or names every wrong field.
pub(super) fn parse_body(
    body: &[u8],
    organization_id: Uuid,
    idempotency_key: Option<&str>,
) -> Result<BuildSubmission, ApiError> {
    // Some Windows-side senders prepend a UTF-8 byte-order mark.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    // The results' problems are found while reading; they are listed after the build's own fields.
    let mut result_problems = Problems::default();
    let mut reader = serde_json::Deserializer::from_slice(body);
    let parsed = BodySeed {
        problems: &mut result_problems,
    }
    .deserialize(&mut reader)
    .and_then(|parsed| reader.end().map(|()| parsed))
    .map_err(|error| ApiError::BadUserInput(format!("the body is not valid JSON: {error}")))?;
    let Parsed::Object {
        fields: object,
        results,
    } = parsed
    else {
        return Err(ApiError::InvalidFields(vec![FieldError::new(
            "$",
            "the body must be a JSON object",
        )]));
    };
    assemble(
        &object,
        results,
        result_problems,
        organization_id,
        idempotency_key,
    )
}

/// A submission from build fields that came as text (query parameters, multipart fields) and results read from
/// report files: the fields are checked exactly as a JSON body's.
pub(super) fn from_fields(
    object: &serde_json::Map<String, Value>,
    results: Vec<TestResult>,
    organization_id: Uuid,
    idempotency_key: Option<&str>,
) -> Result<BuildSubmission, ApiError> {
    assemble(
        object,
        Results::List(results),
        Problems::default(),
        organization_id,
        idempotency_key,
    )
}

fn assemble(
    object: &serde_json::Map<String, Value>,
    results: Results,
    result_problems: Problems,
    organization_id: Uuid,
    idempotency_key: Option<&str>,
) -> Result<BuildSubmission, ApiError> {
    let mut problems = Problems::default();
    let build_name = problems.text(object, "build_name", "build_name", input::NAME);
    if build_name.is_none()
        && problems.0.is_empty()
        && !matches!(object.get("build_name"), Some(v) if !v.is_string())
    {
        problems.add("build_name", "is required");
    }
    let branch = problems.text(object, "branch", "branch", input::BRANCH);
    let commit_sha = problems.text(object, "commit_sha", "commit_sha", IDENTIFIER);
    // A project id, URL or name: as long as a URL may be.
    let project = problems.text(object, "project", "project", input::URL);
    let repository_url = problems.text(object, "repository_url", "repository_url", input::URL);
    let release = problems.text(object, "release", "release", input::NAME);
    let build_url = problems.text(object, "build_url", "build_url", input::URL);
    let azure_collection_url = problems.text(
        object,
        "azure_collection_url",
        "azure_collection_url",
        input::URL,
    );
    let azure_build_id = problems.id(object, "azure_build_id");
    let pull_request = problems.id(object, "pull_request_number").and_then(|n| {
        match input::pull_request_number(&n) {
            Ok(Some(number)) => Some(number),
            Ok(None) => {
                problems.add("pull_request_number", "must be a positive integer");
                None
            }
            Err(problem) => {
                problems.add("pull_request_number", problem);
                None
            }
        }
    });
    let results = match results {
        Results::List(results) => results,
        Results::Missing => {
            problems.add("test_results", "is required (an empty list is fine)");
            Vec::new()
        }
        Results::NotAList => {
            problems.add("test_results", "must be a list");
            Vec::new()
        }
    };
    problems.0.extend(result_problems.0);
    let (source, source_key) = identity(
        &mut problems,
        azure_build_id,
        azure_collection_url.as_deref(),
        build_url.as_deref(),
        idempotency_key,
    );
    if !problems.0.is_empty() {
        let mut fields = problems.0;
        if fields.len() > MAX_FIELD_ERRORS {
            let more = fields.len() - MAX_FIELD_ERRORS;
            fields.truncate(MAX_FIELD_ERRORS);
            fields.push(FieldError::new("$", format!("and {more} more problems")));
        }
        return Err(ApiError::InvalidFields(fields));
    }
    // A retried call with the same Idempotency-Key carries the same upload id, so its results are stored once.
    let upload_id = match idempotency_key {
        Some(key) => Uuid::new_v5(&organization_id, format!("ingest-upload\n{key}").as_bytes()),
        None => Uuid::new_v4(),
    };
    Ok(BuildSubmission {
        source,
        source_key,
        details: BuildDetails {
            name: build_name.unwrap_or_default(),
            branch,
            commit_sha,
            pull_request: pull_request.map(|number| PullRequestRef {
                number,
                repository_id: None,
            }),
            url: build_url,
            result: None,
        },
        signals: BuildSignals {
            repository_urls: repository_url.into_iter().collect(),
            requested_project: project,
            ..BuildSignals::default()
        },
        release,
        results: Some(TestResultsUpload {
            upload_id,
            results: results.into(),
        }),
        filter_branch: None,
    })
}

/// The build's identity: the Azure DevOps build it reports on, when named, so that it meets the webhook's
/// delivery of the same build whichever comes first; else the Idempotency-Key; else a new build.
fn identity(
    problems: &mut Problems,
    azure_build_id: Option<String>,
    azure_collection_url: Option<&str>,
    build_url: Option<&str>,
    idempotency_key: Option<&str>,
) -> (BuildSource, String) {
    let from_url = build_url.and_then(|url| {
        let parsed = url::Url::parse(url).ok()?;
        let id = parsed
            .query_pairs()
            .find(|(k, _)| k == "buildId")
            .map(|(_, v)| v.into_owned())?;
        Some((collection_key(url)?, id))
    });
    // The build id is read percent-decoded: `buildId=%00` is a NUL like any other.
    let bad_id = from_url
        .as_ref()
        .and_then(|(_, id)| IDENTIFIER.apply(id).err());
    if let Some(problem) = &bad_id {
        problems.add("build_url", format!("its buildId {problem}"));
    }
    let from_url = from_url.filter(|_| bad_id.is_none());
    if build_url.is_some() && from_url.is_none() && bad_id.is_none() && azure_build_id.is_none() {
        problems.add(
            "build_url",
            "must be an Azure DevOps build results URL with `?buildId=`",
        );
    }
    let collection = azure_collection_url
        .and_then(collection_key)
        .or_else(|| from_url.as_ref().map(|(c, _)| c.clone()));
    if azure_collection_url.is_some() && azure_collection_url.and_then(collection_key).is_none() {
        problems.add(
            "azure_collection_url",
            "must be an http(s) URL such as https://dev.azure.com/fabrikam/",
        );
    }
    match (
        azure_build_id.or_else(|| from_url.map(|(_, id)| id)),
        collection,
    ) {
        (Some(id), Some(collection)) => (BuildSource::AzureDevOps, format!("{collection}/{id}")),
        (Some(_), None) => {
            problems.add(
                "azure_collection_url",
                "is required with azure_build_id: pass $(System.CollectionUri)",
            );
            (BuildSource::Ingest, String::new())
        }
        (None, _) => match idempotency_key {
            Some(key) => (BuildSource::Ingest, format!("idempotency/{key}")),
            None => (BuildSource::Ingest, format!("call/{}", Uuid::new_v4())),
        },
    }
}

fn test_result(problems: &mut Problems, index: usize, item: &Value) -> Option<TestResult> {
    let path = |field: &str| format!("test_results[{index}].{field}");
    let Some(object) = item.as_object() else {
        problems.add(format!("test_results[{index}]"), "must be an object");
        return None;
    };
    let before = problems.0.len();
    let title = problems.text(object, "title", &path("title"), input::TEST_TITLE);
    if title.is_none()
        && problems.0.len() == before
        && !matches!(object.get("title"), Some(v) if !v.is_string())
    {
        problems.add(path("title"), "is required");
    }
    let status = match object.get("status") {
        Some(Value::String(s)) => TestStatus::parse(&s.trim().to_ascii_lowercase()).or_else(|| {
            problems.add(path("status"), "must be passed, failed or skipped");
            None
        }),
        None | Some(Value::Null) => {
            problems.add(path("status"), "is required: passed, failed or skipped");
            None
        }
        Some(_) => {
            problems.add(path("status"), "must be passed, failed or skipped");
            None
        }
    };
    let duration_ms = match object.get("duration_ms") {
        None | Some(Value::Null) => None,
        Some(value) => value
            .as_u64()
            .or_else(|| {
                // Many reporters emit fractional milliseconds. The range is checked before rounding: a cast
                // would saturate 1e300 to a number the database then refuses.
                value
                    .as_f64()
                    .filter(|v| (0.0..=input::MAX_DURATION_MS as f64).contains(v))
                    .map(|v| v.round() as u64)
            })
            .filter(|ms| *ms <= input::MAX_DURATION_MS)
            .or_else(|| {
                problems.add(
                    path("duration_ms"),
                    format!(
                        "must be a number from 0 to {} (milliseconds)",
                        input::MAX_DURATION_MS
                    ),
                );
                None
            }),
    };
    let priority = match object.get("priority") {
        None | Some(Value::Null) => None,
        Some(value) => value
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .or_else(|| {
                problems.add(
                    path("priority"),
                    "must be an integer from -2147483648 to 2147483647",
                );
                None
            }),
    };
    // Steps may come as one text or a list of lines.
    let steps = match object.get("steps") {
        Some(Value::Array(lines)) if lines.iter().all(Value::is_string) => {
            let joined = lines
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n");
            problems.checked(&path("steps"), &joined, input::TOOL_OUTPUT)
        }
        _ => problems.text(object, "steps", &path("steps"), input::TOOL_OUTPUT),
    };
    let error_message = problems.text(
        object,
        "error_message",
        &path("error_message"),
        input::TOOL_OUTPUT,
    );
    let tester_notes = problems.text(
        object,
        "tester_notes",
        &path("tester_notes"),
        input::TOOL_OUTPUT,
    );
    let environment = problems.text(
        object,
        "environment",
        &path("environment"),
        input::TOOL_OUTPUT_SHORT,
    );
    if problems.0.len() > before {
        return None;
    }
    Some(TestResult {
        // Time-ordered: each upload's ids land at the right edge of the key's index instead of at random pages.
        test_result_id: Uuid::now_v7(),
        title: title?,
        status: status?,
        duration_ms,
        error_message,
        priority,
        steps,
        tester_notes,
        environment,
    })
}
