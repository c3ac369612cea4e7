//! Correcting mistakes on builds: move one to another release, return it to the queue, undo a rejection, and the
//! queue's actions on many builds at once, each build its own command with its own answer.

use async_graphql::{Context, Object, SimpleObject, ID};
use uuid::Uuid;

use domain::api_key::Scope;
use domain::build_queue::{BuildQueue, BuildQueueCommand, Destination};
use projections::{builds, projects};

use crate::error::ApiError;
use crate::graphql::types::QueuedBuild;
use crate::graphql::{parse_id, Resolver};

use super::load_release;

/// Moving builds between releases and the queue, one or many at a time.
#[derive(Default)]
pub struct CorrectionMutation;

/// What became of one build of a bulk mutation.
#[derive(SimpleObject)]
pub struct BulkBuildResult {
    /// The id as given.
    pub id: ID,
    /// Whether this build's command succeeded.
    pub ok: bool,
    /// Why not: the error code (`NOT_FOUND`, `CONFLICT`, `BAD_USER_INPUT`, …), as a single mutation would give.
    pub code: Option<String>,
    pub message: Option<String>,
}

/// What each build of a bulk mutation is asked.
#[derive(Clone)]
enum BulkAction {
    Assign(Destination),
    Reject(String),
    Move(Destination, String),
    Return(String),
}

#[Object]
impl CorrectionMutation {
    /// Moves a build that is in a release into another active release, of its own project or another (a wrong
    /// match corrected); its test results, work-item links and pull request go with it. Recorded on the build's
    /// stream with the caller and the reason.
    async fn move_build(
        &self,
        ctx: &Context<'_>,
        id: ID,
        release_id: ID,
        reason: String,
    ) -> async_graphql::Result<QueuedBuild> {
        let r = Resolver::new(ctx, Scope::BuildsAssign)?;
        let destination = destination(&r, &release_id).await?;
        let build_id = parse_id(&id, "id")?;
        run(&r, build_id, BulkAction::Move(destination, reason)).await?;
        Ok(QueuedBuild(load_build(&r, build_id).await?))
    }

    /// Takes a build out of its release: it is pending in the queue again (reason `RETURNED_TO_QUEUE`), keeping
    /// its project as a suggestion, for a person to select a project and assign a release.
    async fn return_build_to_queue(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> async_graphql::Result<QueuedBuild> {
        let r = Resolver::new(ctx, Scope::BuildsAssign)?;
        let build_id = parse_id(&id, "id")?;
        run(&r, build_id, BulkAction::Return(reason)).await?;
        Ok(QueuedBuild(load_build(&r, build_id).await?))
    }

    /// Undoes a rejection: the build is pending again, with the queue reason it had before.
    async fn restore_rejected_build(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<QueuedBuild> {
        let r = Resolver::new(ctx, Scope::BuildsAssign)?;
        let build_id = parse_id(&id, "id")?;
        let command = BuildQueueCommand::RestoreRejected {
            at: chrono::Utc::now(),
        };
        execute(&r, build_id, command).await?;
        Ok(QueuedBuild(load_build(&r, build_id).await?))
    }

    /// Assigns queued builds to an active release, each on its own (at most `LATHE_BULK_MAX_BUILDS`, 500 by
    /// default): one answer per id, in order.
    #[graphql(complexity = "bulk_cost(ids.len(), child_complexity)")]
    async fn bulk_assign_builds(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
        release_id: ID,
    ) -> async_graphql::Result<Vec<BulkBuildResult>> {
        let r = Resolver::new(ctx, Scope::BuildsAssign)?;
        check_bulk(&r, &ids)?;
        let destination = destination(&r, &release_id).await?;
        Ok(bulk(&r, ids, BulkAction::Assign(destination)).await)
    }

    /// Rejects queued builds with one reason, each on its own: one answer per id, in order.
    #[graphql(complexity = "bulk_cost(ids.len(), child_complexity)")]
    async fn bulk_reject_builds(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
        reason: String,
    ) -> async_graphql::Result<Vec<BulkBuildResult>> {
        let r = Resolver::new(ctx, Scope::BuildsAssign)?;
        check_bulk(&r, &ids)?;
        Ok(bulk(&r, ids, BulkAction::Reject(reason)).await)
    }

    /// Moves builds that are in releases into one active release, each on its own: one answer per id, in order.
    #[graphql(complexity = "bulk_cost(ids.len(), child_complexity)")]
    async fn bulk_move_builds(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
        release_id: ID,
        reason: String,
    ) -> async_graphql::Result<Vec<BulkBuildResult>> {
        let r = Resolver::new(ctx, Scope::BuildsAssign)?;
        check_bulk(&r, &ids)?;
        let destination = destination(&r, &release_id).await?;
        Ok(bulk(&r, ids, BulkAction::Move(destination, reason)).await)
    }

    /// Returns builds to the queue, each on its own: one answer per id, in order.
    #[graphql(complexity = "bulk_cost(ids.len(), child_complexity)")]
    async fn bulk_return_builds_to_queue(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
        reason: String,
    ) -> async_graphql::Result<Vec<BulkBuildResult>> {
        let r = Resolver::new(ctx, Scope::BuildsAssign)?;
        check_bulk(&r, &ids)?;
        Ok(bulk(&r, ids, BulkAction::Return(reason)).await)
    }
}

/// A bulk mutation costs what its answers cost, plus 10 per build for the command each one is.
fn bulk_cost(ids: usize, child_complexity: usize) -> usize {
    ids.saturating_mul(10usize.saturating_add(child_complexity))
}

/// Refuses a list over the limit before anything runs.
fn check_bulk(r: &Resolver<'_>, ids: &[ID]) -> Result<(), ApiError> {
    let limit = r.state.limits.bulk_max_builds;
    if ids.len() > limit {
        return Err(ApiError::BadUserInput(format!(
            "ids names {} builds; a bulk mutation takes at most {limit}",
            ids.len()
        )));
    }
    Ok(())
}

/// Runs the action on each build in turn: one build's failure never stops or undoes another's.
async fn bulk(r: &Resolver<'_>, ids: Vec<ID>, action: BulkAction) -> Vec<BulkBuildResult> {
    let mut answers = Vec::with_capacity(ids.len());
    for id in ids {
        let outcome = match parse_id(&id, "id") {
            Ok(build_id) => run(r, build_id, action.clone()).await,
            Err(error) => Err(error),
        };
        answers.push(match outcome {
            Ok(()) => BulkBuildResult {
                id,
                ok: true,
                code: None,
                message: None,
            },
            Err(error) => {
                error.log_if_internal();
                BulkBuildResult {
                    id,
                    ok: false,
                    code: Some(error.code().to_owned()),
                    message: Some(error.to_string()),
                }
            }
        });
    }
    answers
}

/// One build's command.
async fn run(r: &Resolver<'_>, build_id: Uuid, action: BulkAction) -> Result<(), ApiError> {
    let at = chrono::Utc::now();
    let command = match action {
        BulkAction::Assign(destination) => BuildQueueCommand::AssignToRelease {
            release: destination.release,
            project_archived: destination.project_archived,
            at,
        },
        BulkAction::Reject(reason) => BuildQueueCommand::Reject { reason, at },
        BulkAction::Move(destination, reason) => BuildQueueCommand::MoveToRelease {
            destination,
            reason,
            at,
        },
        BulkAction::Return(reason) => BuildQueueCommand::ReturnToQueue { reason, at },
    };
    execute(r, build_id, command).await
}

/// Sends a command to a build of the caller's organization. The build is looked up in its own stream, not a read
/// model, so that an expired build (gone from the read models) is refused as expired; another organization's build
/// is not found.
async fn execute(
    r: &Resolver<'_>,
    build_id: Uuid,
    command: BuildQueueCommand,
) -> Result<(), ApiError> {
    let entry = r.state.store.load::<BuildQueue>(build_id).await?;
    if entry.organization_id != Some(r.organization_id()) {
        return Err(ApiError::NotFound(format!("no build {build_id}")));
    }
    r.state
        .store
        .execute::<BuildQueue>(build_id, command, &r.command_context())
        .await?;
    Ok(())
}

/// A release of the caller's organization and whether its project is archived: what a build joining it (assigned
/// or moved) needs to know.
pub(super) async fn destination(
    r: &Resolver<'_>,
    release_id: &ID,
) -> Result<Destination, ApiError> {
    let release = load_release(r, parse_id(release_id, "releaseId")?).await?;
    let project = projects::find(&r.state.pool, r.organization_id(), release.project_id).await?;
    Ok(Destination {
        release: release.as_ref(),
        project_archived: project.is_some_and(|p| p.archived_at.is_some()),
    })
}

async fn load_build(r: &Resolver<'_>, id: Uuid) -> Result<builds::BuildRow, ApiError> {
    builds::find(&r.state.pool, r.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no build {id}")))
}
