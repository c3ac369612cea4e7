//! Delivers the outbox: claims due calls, makes them, and records the outcome. Retries back off exponentially and
//! honour `Retry-After`; a call refused for good, or still failing after the last attempt, ends `failed` with its
//! error, visible in GraphQL.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

use domain::azure::MappedField;
use domain::build_queue::{BuildQueue, BuildQueueCommand};
use projections::outbox::{self, kind, OutboxRow};
use projections::test_results::TestResultRow;
use projections::{builds, test_results, Actor, CommandContext};

use super::client::{AzureError, Target, WorkItem};
use super::target_of;
use crate::state::AppState;

/// States in which a linked work item no longer tracks a failing test.
const CLOSED_STATES: [&str; 5] = ["Closed", "Done", "Removed", "Resolved", "Completed"];

/// Polls the outbox for as long as the service runs.
pub fn spawn(state: AppState, every: Duration) {
    tokio::spawn(async move {
        loop {
            match deliver_due(&state).await {
                Ok(0) => tokio::time::sleep(every).await,
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(error = %error, "outbox delivery failed; retrying");
                    tokio::time::sleep(every).await;
                }
            }
        }
    });
}

/// Most calls one round delivers before the worker looks again (and yields to the other jobs).
const CALLS_PER_ROUND: usize = 16;

/// Delivers calls that are due now, up to [`CALLS_PER_ROUND`]; returns how many were attempted.
///
/// Each call is claimed just before it is made, with a lease sized for that one call: claiming a batch under one
/// lease let the lease run out for the calls late in the batch while they were still waiting their turn, so that
/// another process claimed and made them too (two statuses, two comments on one pull request).
pub async fn deliver_due(state: &AppState) -> Result<usize, sqlx::Error> {
    let mut attempted = 0;
    while attempted < CALLS_PER_ROUND {
        let Some(call) = outbox::claim(&state.pool, state.azure.lease.as_secs_f64(), 1)
            .await?
            .pop()
        else {
            break;
        };
        let outcome = deliver(state, &call).await;
        record(state, &call, outcome).await?;
        attempted += 1;
    }
    Ok(attempted)
}

/// What one attempt came to.
enum Outcome {
    Done { status: Option<u16>, result: Value },
    Failed(AzureError),
}

async fn record(state: &AppState, call: &OutboxRow, outcome: Outcome) -> Result<(), sqlx::Error> {
    match outcome {
        Outcome::Done { status, result } => {
            outbox::succeed(&state.pool, call.outbox_id, status, &result).await
        }
        Outcome::Failed(error @ AzureError::Rejected { .. }) => {
            tracing::warn!(outbox.id = %call.outbox_id, outbox.kind = call.kind, error = %error, "Azure DevOps refused a call");
            outbox::fail(
                &state.pool,
                call.outbox_id,
                error.status(),
                &error.to_string(),
            )
            .await
        }
        Outcome::Failed(error @ AzureError::Retryable { .. })
            if call.attempts >= state.azure.max_attempts =>
        {
            tracing::warn!(outbox.id = %call.outbox_id, outbox.kind = call.kind, error = %error, "giving up on an Azure DevOps call");
            let message = format!("gave up after {} attempts: {error}", call.attempts);
            outbox::fail(&state.pool, call.outbox_id, error.status(), &message).await
        }
        Outcome::Failed(error) => {
            let AzureError::Retryable {
                retry_after_secs, ..
            } = &error
            else {
                unreachable!("rejections are handled above")
            };
            let backoff = state.azure.backoff.as_secs_f64()
                * 2_f64.powi(call.attempts.saturating_sub(1).min(12));
            let after = retry_after_secs.unwrap_or(0.0).max(backoff).min(3600.0);
            outbox::retry(
                &state.pool,
                call.outbox_id,
                after,
                error.status(),
                &error.to_string(),
            )
            .await
        }
    }
}

async fn deliver(state: &AppState, call: &OutboxRow) -> Outcome {
    // Calls enqueued before the project was archived are not made: an archived project's calls stop.
    match projections::projects::find(&state.pool, call.organization_id, call.project_id).await {
        Ok(Some(project)) if project.archived_at.is_some() => {
            return rejected("the project is archived: its Azure DevOps calls stopped")
        }
        Ok(_) => {}
        Err(error) => return retryable(&format!("cannot read the project: {error}")),
    }
    let target = match target_of(state, call.project_id).await {
        Ok(Some((target, connection))) => (target, connection),
        Ok(None) => return rejected("the project is no longer connected to Azure DevOps"),
        Err(error) => return retryable(&format!("cannot read the connection: {error}")),
    };
    let result = match call.kind.as_str() {
        kind::WORK_ITEM | kind::WORK_ITEM_SUMMARY => {
            work_item(state, call, &target.0, &target.1).await
        }
        kind::PULL_REQUEST_STATUS => pull_request_status(state, call, &target.0, &target.1).await,
        other => return rejected(&format!("unknown outbox call `{other}`")),
    };
    match result {
        Ok(result) => Outcome::Done {
            status: Some(200),
            result,
        },
        Err(error) => Outcome::Failed(error),
    }
}

fn rejected(message: &str) -> Outcome {
    Outcome::Failed(AzureError::Rejected {
        status: 0,
        message: message.to_owned(),
    })
}

fn retryable(message: &str) -> Outcome {
    Outcome::Failed(AzureError::Retryable {
        status: None,
        retry_after_secs: None,
        message: message.to_owned(),
    })
}

fn internal(error: impl std::fmt::Display) -> AzureError {
    AzureError::Retryable {
        status: None,
        retry_after_secs: None,
        message: error.to_string(),
    }
}

async fn work_item(
    state: &AppState,
    call: &OutboxRow,
    target: &Target,
    connection: &projections::azure::ConnectionRow,
) -> Result<Value, AzureError> {
    let build_id: Uuid =
        serde_json::from_value(call.payload["build_id"].clone()).map_err(internal)?;
    let ids: Vec<Uuid> = match call.kind.as_str() {
        kind::WORK_ITEM => {
            vec![serde_json::from_value(call.payload["test_result_id"].clone()).map_err(internal)?]
        }
        _ => serde_json::from_value(call.payload["test_result_ids"].clone()).map_err(internal)?,
    };
    let results = test_results::of_ids(&state.pool, &ids)
        .await
        .map_err(internal)?;
    let build = builds::find(&state.pool, call.organization_id, build_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| AzureError::Rejected {
            status: 0,
            message: "the build no longer exists (expired?)".to_owned(),
        })?;
    let tag = format!("lathe-{}", call.outbox_id);

    // One work item per failing test: a test whose work item is still open gets no second one.
    if call.kind == kind::WORK_ITEM {
        if let Some(result) = results.first() {
            if let Some((existing, url)) =
                projections::azure::linked_work_item(&state.pool, call.project_id, &result.title)
                    .await
                    .map_err(internal)?
            {
                let state_name = state
                    .azure
                    .client
                    .work_item_state(target, existing as u64)
                    .await?;
                if state_name
                    .as_deref()
                    .is_some_and(|s| !CLOSED_STATES.contains(&s))
                {
                    let item = WorkItem {
                        id: existing as u64,
                        url,
                    };
                    link(state, call, build_id, &ids, &item).await?;
                    return Ok(json!({ "workItemId": item.id, "url": item.url, "reused": true }));
                }
            }
        }
    }

    // A retry after an unknown outcome (a timeout) first looks for the work item the earlier attempt may have made.
    let existing = if call.attempts > 1 {
        state.azure.client.find_by_tag(target, &tag).await?
    } else {
        None
    };
    let item = match existing {
        Some(item) => item,
        None => {
            let patch = match call.kind.as_str() {
                kind::WORK_ITEM => test_patch(connection, results.first(), &build.build_name, &tag),
                _ => summary_patch(connection, &results, &build.build_name, &tag),
            };
            state
                .azure
                .client
                .create_work_item(target, &connection.work_item_type, &patch)
                .await?
        }
    };
    link(state, call, build_id, &ids, &item).await?;
    Ok(json!({ "workItemId": item.id, "url": item.url }))
}

async fn link(
    state: &AppState,
    call: &OutboxRow,
    build_id: Uuid,
    ids: &[Uuid],
    item: &WorkItem,
) -> Result<(), AzureError> {
    let context = CommandContext {
        actor: Actor::System {
            job: "azure-devops",
        },
        organization_id: Some(call.organization_id),
        request_id: None,
        at: Utc::now(),
        extra: vec![("outbox.id".to_owned(), call.outbox_id.to_string())],
    };
    let command = BuildQueueCommand::LinkWorkItem {
        test_result_ids: ids.to_vec(),
        work_item_id: item.id,
        url: item.url.clone(),
        at: context.at,
    };
    state
        .store
        .execute::<BuildQueue>(build_id, command, &context)
        .await
        .map_err(|error| internal(format!("recording the link: {error}")))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', "<br>")
}

/// The JSON Patch of a work item for one failed test, per the project's field mappings.
fn test_patch(
    connection: &projections::azure::ConnectionRow,
    result: Option<&TestResultRow>,
    build_name: &str,
    tag: &str,
) -> Vec<Value> {
    let mut patch = Vec::new();
    let Some(result) = result else {
        return patch;
    };
    for mapping in connection.mappings() {
        let value = match mapping.source {
            MappedField::TestCaseTitle => Some(json!(truncate(
                &format!("Test failed: {}", result.title),
                255
            ))),
            MappedField::Priority => result.priority.map(|p| json!(p)),
            MappedField::TestSteps => {
                let mut html = result.steps.as_deref().map(escape).unwrap_or_default();
                if let Some(error) = &result.error_message {
                    html.push_str(&format!(
                        "<br><br><b>Error</b><br><pre>{}</pre>",
                        escape(error)
                    ));
                }
                html.push_str(&format!("<br><br>Failed in build {}", escape(build_name)));
                Some(json!(html))
            }
            MappedField::TesterNotes => result.tester_notes.as_deref().map(|n| json!(escape(n))),
            MappedField::Environment => result.environment.as_deref().map(|e| json!(escape(e))),
        };
        if let Some(value) = value {
            patch.push(json!({ "op": "add", "path": format!("/fields/{}", mapping.field), "from": null, "value": value }));
        }
    }
    patch.push(json!({ "op": "add", "path": "/fields/System.Tags", "from": null, "value": format!("lathe; {tag}") }));
    patch
}

/// The JSON Patch of one summary work item for a build with many failures.
fn summary_patch(
    connection: &projections::azure::ConnectionRow,
    results: &[TestResultRow],
    build_name: &str,
    tag: &str,
) -> Vec<Value> {
    let title_field = connection
        .mappings()
        .into_iter()
        .find(|m| m.source == MappedField::TestCaseTitle)
        .map(|m| m.field)
        .unwrap_or_else(|| "System.Title".to_owned());
    let mut list: String = results
        .iter()
        .take(50)
        .map(|r| format!("<li>{}</li>", escape(&r.title)))
        .collect();
    if results.len() > 50 {
        list.push_str(&format!("<li>… and {} more</li>", results.len() - 50));
    }
    vec![
        json!({ "op": "add", "path": format!("/fields/{title_field}"), "from": null,
            "value": truncate(&format!("{} tests failed in build {build_name}", results.len()), 255) }),
        json!({ "op": "add", "path": "/fields/System.Description", "from": null,
            "value": format!("One work item for the whole build instead of one per test (more failures than the \
                project's threshold, which usually means a broken environment).<ul>{list}</ul>") }),
        json!({ "op": "add", "path": "/fields/System.Tags", "from": null, "value": format!("lathe; {tag}") }),
    ]
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

async fn pull_request_status(
    state: &AppState,
    call: &OutboxRow,
    target: &Target,
    connection: &projections::azure::ConnectionRow,
) -> Result<Value, AzureError> {
    let build_id: Uuid =
        serde_json::from_value(call.payload["build_id"].clone()).map_err(internal)?;
    let build = builds::find(&state.pool, call.organization_id, build_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| AzureError::Rejected {
            status: 0,
            message: "the build no longer exists".to_owned(),
        })?;
    let (Some(number), Some(repository)) = (
        build.pull_request_number,
        build.pull_request_repository_id.clone(),
    ) else {
        return Err(AzureError::Rejected {
            status: 0,
            message: "the build has no pull request".to_owned(),
        });
    };
    if Uuid::parse_str(&repository).is_err() {
        return Err(AzureError::Rejected {
            status: 0,
            message: format!(
                "repository `{repository}` is hosted on GitHub: pull-request statuses are posted to Azure Repos only"
            ),
        });
    }
    let description = format!(
        "{} passed, {} failed, {} skipped",
        build.tests_passed, build.tests_failed, build.tests_skipped
    );
    let status = json!({
        "state": if build.tests_failed > 0 { "failed" } else { "succeeded" },
        "description": description,
        "context": { "name": "lathe-studio/tests", "genre": "lathe-studio" },
        "targetUrl": format!("{}/builds/{build_id}", state.azure.public_url.trim_end_matches('/')),
    });
    let posted = state
        .azure
        .client
        .post_pull_request_status(target, &repository, number, &status)
        .await;
    match posted {
        // A completed or abandoned pull request refuses statuses: recorded, not retried.
        Err(AzureError::Rejected {
            status: 403,
            message,
        }) => {
            return Err(AzureError::Rejected {
                status: 403,
                message: format!("the pull request is no longer active: {message}"),
            })
        }
        other => other?,
    }
    if connection.post_pull_request_comments {
        let content = format!(
            "**Lathe Studio** test results for build {}: {description} ({} tests).",
            build.build_name, build.tests_total
        );
        state
            .azure
            .client
            .post_pull_request_thread(target, &repository, number, &content)
            .await?;
    }
    Ok(json!({ "pullRequest": number, "state": status["state"], "description": description }))
}
