//! Build intake: Azure DevOps service-hook deliveries and CI ingest calls become `BuildQueue` commands.
//!
//! Both endpoints turn their body into a [`BuildSubmission`], then [`submit`] matches a project, routes the build
//! (into the project's one active release, or into the queue with a reason) and records it. A re-delivery of a
//! build addresses the same aggregate and is answered `duplicate` with the first delivery's ids.

mod azure;
mod azure_fields;
mod caller;
mod deliveries;
pub mod ingest;
mod ingest_body;
mod ingest_forms;
mod pruned;
mod reports;
pub mod webhook;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use domain::branches::short_branch;
use domain::build_queue::{
    BuildDetails, BuildIdentity, BuildQueue, BuildQueueCommand, BuildQueueError, BuildSource,
    EntryStatus, QueueReason, Route, TestResultsUpload,
};
use domain::matching::{match_project, BuildSignals, ProjectMatch};
use projections::{projects, releases, CommandContext, CommandError};

use crate::error::{ApiError, FieldError};
use crate::state::AppState;

pub use caller::{authenticate_intake, Caller};
pub use deliveries::DeliveryRecorder;
pub use ingest_forms::{ReportReaders, REPORTS_READ_AT_ONCE_PER_ORGANIZATION};

/// A build as an endpoint understood it, before matching and routing.
#[derive(Debug, Clone)]
pub struct BuildSubmission {
    pub source: BuildSource,
    /// The build's identity at its source, e.g. `dev.azure.com/fabrikam/2727068`.
    pub source_key: String,
    pub details: BuildDetails,
    pub signals: BuildSignals,
    /// A release the caller named (ingest `release`): its id or name.
    pub release: Option<String>,
    pub results: Option<TestResultsUpload>,
    /// The branch the project's branch filters judge: for a pull-request build its source branch, when known.
    pub filter_branch: Option<String>,
}

/// What became of a delivery, as the response and the delivery log state it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Queued,
    Duplicate,
    /// Test results were added to a build that an earlier delivery created or queued.
    Attached,
    Ignored,
    Filtered,
}

impl Outcome {
    /// The outcome's name in responses and the delivery log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Queued => "queued",
            Self::Duplicate => "duplicate",
            Self::Attached => "attached",
            Self::Ignored => "ignored",
            Self::Filtered => "filtered",
        }
    }
}

/// The body of a successful intake response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntakeResponse {
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_build_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_stored: Option<u64>,
    pub message: String,
}

impl IntakeResponse {
    /// A delivery that was understood and deliberately not turned into a build.
    pub fn ignored(message: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Ignored,
            build_id: None,
            queued_build_id: None,
            results_stored: None,
            message: message.into(),
        }
    }
}

/// Matches, routes and records a build for `organization_id`.
pub async fn submit(
    state: &AppState,
    organization_id: Uuid,
    submission: BuildSubmission,
    context: &CommandContext,
) -> Result<IntakeResponse, ApiError> {
    let identity = BuildIdentity {
        organization_id,
        source: submission.source,
        key: submission.source_key.clone(),
    };
    let entry_id = identity.entry_id();
    check_branches(&submission)?;
    let (route, explanation) = match route(state, organization_id, &submission).await? {
        Routing::Route(route, explanation) => (route, explanation),
        Routing::Filtered(why) => {
            return Ok(IntakeResponse {
                outcome: Outcome::Filtered,
                build_id: None,
                queued_build_id: None,
                results_stored: None,
                message: format!("filtered: {why}; no build was created"),
            })
        }
    };
    let results_count = submission.results.as_ref().map(|u| u.results.len() as u64);
    let command = BuildQueueCommand::ReceiveBuild {
        identity,
        details: submission.details,
        route: route.clone(),
        received_at: context.at,
        results: submission.results.clone(),
    };
    // Most deliveries are of builds not seen before: their stream is not read unless it turns out to exist.
    match state
        .store
        .execute_expecting_new::<BuildQueue>(entry_id, command, context)
        .await
    {
        Ok(()) => Ok(match route {
            Route::Release(release) => IntakeResponse {
                outcome: Outcome::Created,
                build_id: Some(entry_id),
                queued_build_id: None,
                results_stored: results_count,
                message: format!(
                    "build created in release {}; {explanation}",
                    release.release_id
                ),
            },
            Route::Queue { .. } => IntakeResponse {
                outcome: Outcome::Queued,
                build_id: None,
                queued_build_id: Some(entry_id),
                results_stored: results_count,
                message: format!("build queued: {explanation}"),
            },
        }),
        // Received before, or received by a concurrent delivery this very moment.
        Err(CommandError::Domain(BuildQueueError::AlreadyReceived) | CommandError::Conflict) => {
            match submission.results {
                Some(upload) => attach(state, entry_id, upload, context).await,
                None => duplicate(state, entry_id).await,
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// Refuses a branch longer than [`domain::branches::MAX_BRANCH_CHARS`] (422, naming the field): no Git host makes
/// one, and the bound keeps branch-filter matching cheap.
fn check_branches(submission: &BuildSubmission) -> Result<(), ApiError> {
    let (branch_field, filter_field) = match submission.source {
        BuildSource::Ingest => ("branch", "branch"),
        BuildSource::AzureDevOps => (
            "resource.sourceBranch",
            "resource.triggerInfo.pr.sourceBranch",
        ),
    };
    let fields: Vec<FieldError> = [
        (branch_field, submission.details.branch.as_deref()),
        (filter_field, submission.filter_branch.as_deref()),
    ]
    .into_iter()
    .filter_map(|(field, branch)| {
        let error = domain::branches::check_branch_length(branch?).err()?;
        Some(FieldError::new(field, error.to_string()))
    })
    .collect();
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidFields(fields))
    }
}

/// Adds an upload's results to an existing build; a retried upload is a duplicate.
async fn attach(
    state: &AppState,
    entry_id: Uuid,
    upload: TestResultsUpload,
    context: &CommandContext,
) -> Result<IntakeResponse, ApiError> {
    let count = upload.results.len() as u64;
    // A lost race is decided again by the event store: the upload is valid against any state of the build.
    let command = BuildQueueCommand::RecordTestResults {
        upload,
        at: context.at,
    };
    match state
        .store
        .execute::<BuildQueue>(entry_id, command, context)
        .await
    {
        Ok(()) => {
            let mut response = duplicate(state, entry_id).await?;
            response.outcome = Outcome::Attached;
            response.results_stored = Some(count);
            response.message = format!("{count} test results added to an existing build");
            Ok(response)
        }
        Err(CommandError::Domain(BuildQueueError::UploadAlreadyRecorded)) => {
            duplicate(state, entry_id).await
        }
        Err(error) => Err(error.into()),
    }
}

/// Answers a re-delivery with what the first delivery made, read from the build's own events.
async fn duplicate(state: &AppState, entry_id: Uuid) -> Result<IntakeResponse, ApiError> {
    let build = state
        .store
        .load::<BuildQueue>(entry_id)
        .await
        .map_err(|error| ApiError::internal(anyhow::anyhow!("{error}")))?;
    let (build_id, queued_build_id) = match build.status {
        EntryStatus::New => {
            return Err(ApiError::internal(anyhow::anyhow!(
                "build {entry_id} was reported received but has no events"
            )))
        }
        EntryStatus::Created => (Some(entry_id), None),
        EntryStatus::Assigned => (Some(entry_id), Some(entry_id)),
        EntryStatus::Queued | EntryStatus::Rejected => (None, Some(entry_id)),
        EntryStatus::Expired => {
            return Ok(IntakeResponse {
                outcome: Outcome::Duplicate,
                build_id: None,
                queued_build_id: None,
                results_stored: None,
                message: "this build was received before and has since expired under its project's retention \
                          policy; nothing new was created"
                    .to_owned(),
            })
        }
    };
    Ok(IntakeResponse {
        outcome: Outcome::Duplicate,
        build_id,
        queued_build_id,
        results_stored: None,
        message: "this build was already received; nothing new was created".to_owned(),
    })
}

/// Where a new build goes, and why.
enum Routing {
    Route(Route, String),
    /// The matched project's branch filters refuse the build; the text names the rule.
    Filtered(String),
}

/// Decides where a new build goes, per the spec: one active release of the matched project → that release;
/// otherwise the queue, with the reason. A matched project's branch filters may refuse it first.
async fn route(
    state: &AppState,
    organization_id: Uuid,
    submission: &BuildSubmission,
) -> Result<Routing, ApiError> {
    let candidates = state
        .caches
        .projects
        .get_or_read(
            &state.store,
            organization_id,
            projects::candidates(&state.pool, organization_id),
        )
        .await?;
    let (project_id, by) = match match_project(&candidates, &submission.signals) {
        ProjectMatch::Matched { project_id, by } => {
            let filters = candidates
                .iter()
                .find(|c| c.project_id == project_id)
                .map(|c| &c.branch_filters);
            let branch = submission
                .filter_branch
                .as_deref()
                .or(submission.details.branch.as_deref());
            if let (Some(filters), Some(branch)) = (filters, branch) {
                if let Err(filtered) = filters.check(branch) {
                    return Ok(Routing::Filtered(filtered.describe(short_branch(branch))));
                }
            }
            // A retired project takes no new builds: they wait for a person, who sees which project matched.
            if candidates
                .iter()
                .any(|c| c.project_id == project_id && c.archived)
            {
                let route = Route::Queue {
                    project_id: Some(project_id),
                    reason: QueueReason::ProjectArchived,
                };
                let why = format!(
                    "project matched by {}, but it is archived; select another project or restore it",
                    by.describe()
                );
                return Ok(Routing::Route(route, why));
            }
            (project_id, by)
        }
        ProjectMatch::Ambiguous { by, candidates } => {
            let route = Route::Queue {
                project_id: None,
                reason: QueueReason::ProjectAmbiguous,
            };
            let why = format!(
                "{} projects match by {}; select the project",
                candidates.len(),
                by.describe()
            );
            return Ok(Routing::Route(route, why));
        }
        ProjectMatch::NoMatch => {
            let route = Route::Queue {
                project_id: None,
                reason: QueueReason::NoProjectMatched,
            };
            return Ok(Routing::Route(
                route,
                "no project matched; select the project".to_owned(),
            ));
        }
    };
    let mut active = state
        .caches
        .active_releases
        .get_or_read(
            &state.store,
            (organization_id, project_id),
            releases::active_for_project(&state.pool, organization_id, project_id),
        )
        .await?;
    if let Some(wanted) = submission.release.as_deref().map(str::trim) {
        active.retain(|release| {
            release.release_id.to_string() == wanted || release.name.eq_ignore_ascii_case(wanted)
        });
    }
    let matched = format!("project matched by {}", by.describe());
    let (route, why) = match active.as_slice() {
        [one] => (Route::Release(one.as_ref()), matched),
        [] => (
            Route::Queue {
                project_id: Some(project_id),
                reason: QueueReason::NoActiveRelease,
            },
            match &submission.release {
                Some(wanted) => format!("{matched}, but it has no active release `{wanted}`"),
                None => format!("{matched}, but it has no active release"),
            },
        ),
        several => (
            Route::Queue {
                project_id: Some(project_id),
                reason: QueueReason::SeveralActiveReleases,
            },
            format!(
                "{matched}, which has {} active releases; assign one",
                several.len()
            ),
        ),
    };
    Ok(Routing::Route(route, why))
}
