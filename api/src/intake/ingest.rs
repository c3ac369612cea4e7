//! `POST /api/v1/results/ingest`: a CI pipeline reports a build and its test results (the spec's
//! `azure-pipelines.yml` step). The body's schema is in the README.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use domain::build_queue::{
    BuildDetails, BuildSource, PullRequestRef, TestResult, TestResultsUpload, TestStatus,
};
use domain::matching::BuildSignals;
use domain::urls::collection_key;
use projections::idempotency::{self, Reservation};
use projections::CommandContext;

use super::deliveries::DeliveryLog;
use super::webhook::{body_error, parse_json, request_id};
use super::{authenticate_intake, submit, BuildSubmission, IntakeResponse, Outcome};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;

/// Most field errors listed in one 422 answer.
const MAX_FIELD_ERRORS: usize = 100;
/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Handles one ingest call and records it in the delivery log.
#[tracing::instrument(name = "ingest", skip_all, fields(org.id, outcome))]
pub async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut log = DeliveryLog::start("ingest", request_id(&headers));
    log.meta.event_type = Some("results.ingest".to_owned());
    let result = handle(&state, &headers, body, &mut log).await;
    log.respond(&state, result).await
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    log: &mut DeliveryLog,
) -> Result<(u16, IntakeResponse), ApiError> {
    let body = body.map_err(|rejection| body_error(rejection, state.limits.ingest_max_bytes))?;
    let caller = authenticate_intake(state, headers).await?;
    let organization_id = caller.organization_id;
    log.organization_id = Some(organization_id);
    log.rate = Some(caller.spend(state).await?);
    let idempotency_key = idempotency_key(headers)?;
    let request_hash = hex(&Sha256::digest(&body));
    let value = parse_json(&body)?;
    let submission = parse_body(&value, organization_id, idempotency_key.as_deref())?;
    // The body and its parsed tree are not needed past this point; a 100,000-result call should not hold them
    // while its events are written.
    drop(value);
    drop(body);
    let context = CommandContext {
        organization_id: Some(organization_id),
        actor: caller.actor,
        request_id: log.request_id.clone(),
        at: log.received_at,
        extra: vec![("delivery.id".to_owned(), log.delivery_id.to_string())],
    };
    let Some(key) = idempotency_key else {
        return process(state, organization_id, submission, &context).await;
    };
    match idempotency::reserve(&state.pool, organization_id, &key, &request_hash).await? {
        Reservation::Reserved => {}
        Reservation::Replay {
            status_code,
            response,
        } => {
            let response: IntakeResponse =
                serde_json::from_value(response).map_err(ApiError::internal)?;
            return Ok((status_code, response));
        }
        Reservation::Mismatch => {
            return Err(ApiError::InvalidFields(vec![FieldError::new(
                "Idempotency-Key",
                "this key was used before with a different body",
            )]))
        }
        Reservation::InProgress => {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still being processed; retry shortly"
                    .to_owned(),
            ))
        }
    }
    let result = process(state, organization_id, submission, &context).await;
    match &result {
        Ok((status, response)) => {
            let stored = serde_json::to_value(response).map_err(ApiError::internal)?;
            idempotency::complete(&state.pool, organization_id, &key, *status, &stored).await?;
        }
        Err(_) => idempotency::release(&state.pool, organization_id, &key).await?,
    }
    result
}

async fn process(
    state: &AppState,
    organization_id: Uuid,
    submission: BuildSubmission,
    context: &CommandContext,
) -> Result<(u16, IntakeResponse), ApiError> {
    let response = submit(state, organization_id, submission, context).await?;
    let status = match response.outcome {
        Outcome::Created | Outcome::Queued => 201,
        _ => 200,
    };
    Ok((status, response))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default().trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::BadUserInput(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Collects every problem of a body instead of stopping at the first, so that one answer names them all.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// An optional string field.
    fn text(&mut self, object: &Map<String, Value>, field: &str, path: &str) -> Option<String> {
        match object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            Some(_) => {
                self.add(path, "must be a string");
                None
            }
        }
    }

    /// An optional field that may be a string or an integer (ids that pipelines print either way).
    fn id(&mut self, object: &Map<String, Value>, field: &str) -> Option<String> {
        match object.get(field) {
            Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
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

/// Validates an ingest body and turns it into a submission, or names every wrong field.
fn parse_body(
    value: &Value,
    organization_id: Uuid,
    idempotency_key: Option<&str>,
) -> Result<BuildSubmission, ApiError> {
    let Some(object) = value.as_object() else {
        return Err(ApiError::InvalidFields(vec![FieldError::new(
            "$",
            "the body must be a JSON object",
        )]));
    };
    let mut problems = Problems::default();
    let build_name = problems.text(object, "build_name", "build_name");
    if build_name.is_none() && !matches!(object.get("build_name"), Some(v) if !v.is_string()) {
        problems.add("build_name", "is required");
    }
    let branch = problems.text(object, "branch", "branch");
    let commit_sha = problems.text(object, "commit_sha", "commit_sha");
    let project = problems.text(object, "project", "project");
    let repository_url = problems.text(object, "repository_url", "repository_url");
    let release = problems.text(object, "release", "release");
    let build_url = problems.text(object, "build_url", "build_url");
    let azure_collection_url =
        problems.text(object, "azure_collection_url", "azure_collection_url");
    let azure_build_id = problems.id(object, "azure_build_id");
    let pull_request = problems
        .id(object, "pull_request_number")
        .and_then(|n| match n.parse() {
            Ok(number) => Some(number),
            Err(_) => {
                problems.add("pull_request_number", "must be a positive integer");
                None
            }
        });
    let results = match object.get("test_results") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| test_result(&mut problems, index, item))
            .collect(),
        None | Some(Value::Null) => {
            problems.add("test_results", "is required (an empty list is fine)");
            Vec::new()
        }
        Some(_) => {
            problems.add("test_results", "must be a list");
            Vec::new()
        }
    };
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
        results: Some(TestResultsUpload { upload_id, results }),
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
    if build_url.is_some() && from_url.is_none() && azure_build_id.is_none() {
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
    let title = problems.text(object, "title", &path("title"));
    if title.is_none() && !matches!(object.get("title"), Some(v) if !v.is_string()) {
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
                // Many reporters emit fractional milliseconds.
                value
                    .as_f64()
                    .filter(|v| *v >= 0.0)
                    .map(|v| v.round() as u64)
            })
            .or_else(|| {
                problems.add(path("duration_ms"), "must be a non-negative number");
                None
            }),
    };
    let priority = match object.get("priority") {
        None | Some(Value::Null) => None,
        Some(value) => value
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .or_else(|| {
                problems.add(path("priority"), "must be an integer");
                None
            }),
    };
    // Steps may come as one text or a list of lines.
    let steps = match object.get("steps") {
        Some(Value::Array(lines)) if lines.iter().all(Value::is_string) => Some(
            lines
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => problems.text(object, "steps", &path("steps")),
    };
    let error_message = problems.text(object, "error_message", &path("error_message"));
    let tester_notes = problems.text(object, "tester_notes", &path("tester_notes"));
    let environment = problems.text(object, "environment", &path("environment"));
    if problems.0.len() > before {
        return None;
    }
    Some(TestResult {
        test_result_id: Uuid::new_v4(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(error: ApiError) -> Vec<String> {
        match error {
            ApiError::InvalidFields(fields) => fields.into_iter().map(|f| f.field).collect(),
            other => panic!("expected field errors, got {other}"),
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let body = json!({ "branch": 3, "test_results": [
            { "title": "ok", "status": "passed" },
            { "status": "exploded", "duration_ms": -1 },
            "nope"
        ] });
        let error = parse_body(&body, Uuid::nil(), None).unwrap_err();
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
        let submission = parse_body(&body, Uuid::nil(), None).unwrap();
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
            let submission = parse_body(&body, Uuid::nil(), None).unwrap();
            assert_eq!(submission.source, BuildSource::AzureDevOps);
            assert_eq!(submission.source_key, "dev.azure.com/fabrikamfiber/2727068");
        }
        let missing = json!({ "build_name": "b", "test_results": [], "azure_build_id": "5" });
        assert_eq!(
            fields(parse_body(&missing, Uuid::nil(), None).unwrap_err()),
            ["azure_collection_url"]
        );
    }
}
