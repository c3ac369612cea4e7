//! The queue's assignment actions: assign a queued build to a release, select its project, reject it.

use async_graphql::{Context, Object, ID};
use uuid::Uuid;

use domain::api_key::Scope;
use domain::build_queue::{BuildQueue, BuildQueueCommand};
use projections::builds;

use crate::error::ApiError;
use crate::graphql::types::QueuedBuild;
use crate::graphql::{parse_id, Resolver};

use super::load_project;

/// The queue's assignment actions.
#[derive(Default)]
pub struct QueueMutation;

#[Object]
impl QueueMutation {
    /// Adds a queued build to an active release of its project. Of two concurrent calls on one build, one wins
    /// and the other gets `CONFLICT`.
    async fn assign_queued_build(
        &self,
        ctx: &Context<'_>,
        id: ID,
        release_id: ID,
    ) -> async_graphql::Result<QueuedBuild> {
        let r = Resolver::new(ctx, Scope::BuildsAssign)?;
        let build_id = load_queued_build(&r, parse_id(&id, "id")?).await?;
        let destination = super::corrections::destination(&r, &release_id).await?;
        let context = r.command_context();
        let command = BuildQueueCommand::AssignToRelease {
            release: destination.release,
            project_archived: destination.project_archived,
            at: context.at,
        };
        r.state
            .store
            .execute::<BuildQueue>(build_id, command, &context)
            .await
            .map_err(ApiError::from)?;
        Ok(QueuedBuild(load_build(&r, build_id).await?))
    }

    /// Sets the project of a queued build whose project was not (or wrongly) detected.
    async fn select_project_for_queued_build(
        &self,
        ctx: &Context<'_>,
        id: ID,
        project_id: ID,
    ) -> async_graphql::Result<QueuedBuild> {
        let r = Resolver::new(ctx, Scope::BuildsAssign)?;
        let build_id = load_queued_build(&r, parse_id(&id, "id")?).await?;
        let project = load_project(&r, parse_id(&project_id, "projectId")?).await?;
        let command = BuildQueueCommand::SelectProject {
            project_id: project.project_id,
        };
        r.state
            .store
            .execute::<BuildQueue>(build_id, command, &r.command_context())
            .await
            .map_err(ApiError::from)?;
        Ok(QueuedBuild(load_build(&r, build_id).await?))
    }

    /// Removes a build from the queue without creating a build.
    async fn reject_queued_build(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> async_graphql::Result<QueuedBuild> {
        let r = Resolver::new(ctx, Scope::BuildsAssign)?;
        let build_id = load_queued_build(&r, parse_id(&id, "id")?).await?;
        let context = r.command_context();
        let command = BuildQueueCommand::Reject {
            reason,
            at: context.at,
        };
        r.state
            .store
            .execute::<BuildQueue>(build_id, command, &context)
            .await
            .map_err(ApiError::from)?;
        Ok(QueuedBuild(load_build(&r, build_id).await?))
    }
}

/// Checks that a queued build exists in the caller's organization, so that no other organization's entry is
/// ever touched.
async fn load_queued_build(r: &Resolver<'_>, id: Uuid) -> Result<Uuid, ApiError> {
    let row = load_build(r, id).await?;
    if row.queue_status.is_none() {
        return Err(ApiError::NotFound(format!(
            "build {id} went straight into a release and was never queued"
        )));
    }
    Ok(row.build_id)
}

async fn load_build(r: &Resolver<'_>, id: Uuid) -> Result<builds::BuildRow, ApiError> {
    builds::find(&r.state.pool, r.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no queued build {id}")))
}
