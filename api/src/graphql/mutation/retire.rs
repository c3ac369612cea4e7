//! Housekeeping of projects and releases: retire a project (and bring it back), rename or reopen a release, and
//! take a project's build retention from Azure DevOps.

use async_graphql::{Context, Object, ID};
use chrono::{DateTime, Utc};

use domain::api_key::Scope;
use domain::project::{Project as ProjectAggregate, ProjectCommand};
use domain::release::ReleaseCommand;

use crate::azure::retention_sync;
use crate::error::ApiError;
use crate::graphql::types::{Project, Release};
use crate::graphql::{parse_id, Resolver};

use super::load_project;
use super::release::transition_release;

/// Archiving and restoring projects, renaming and reopening releases, syncing retention.
#[derive(Default)]
pub struct HousekeepingMutation;

#[Object]
impl HousekeepingMutation {
    /// Retires a project: it no longer matches new builds (they are queued with reason `PROJECT_ARCHIVED`), its
    /// Azure DevOps calls stop, and its releases and builds stay readable.
    async fn archive_project(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> async_graphql::Result<Project> {
        let r = Resolver::new(ctx, Scope::ProjectsWrite)?;
        Ok(transition_project(&r, &id, |at| ProjectCommand::ArchiveProject { reason, at }).await?)
    }

    /// Brings an archived project back: it matches new builds again.
    async fn restore_project(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Project> {
        let r = Resolver::new(ctx, Scope::ProjectsWrite)?;
        Ok(transition_project(&r, &id, |at| ProjectCommand::RestoreProject { at }).await?)
    }

    /// Takes the project's build retention from its Azure DevOps project (`purgeRuns`, `purgePullRequestRuns`,
    /// `retainRunsPerProtectedBranch`), read now and again by every run of the retention job; rules set on the
    /// project itself override the synced days. Turning it on reads the settings first: a token that may not read
    /// them is refused with the reason (`BAD_USER_INPUT`), and the sync stays off.
    async fn set_retention_sync(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        enabled: bool,
    ) -> async_graphql::Result<Project> {
        let r = Resolver::new(ctx, Scope::ProjectsWrite)?;
        let project_id = load_project(&r, parse_id(&project_id, "projectId")?)
            .await?
            .project_id;
        let context = r.command_context();
        let outcome = if enabled {
            match retention_sync::read(r.state, project_id).await {
                Err(unreadable) if unreadable.permanent => {
                    return Err(ApiError::BadUserInput(unreadable.message).into())
                }
                outcome => Some(outcome),
            }
        } else {
            None
        };
        r.state
            .store
            .execute::<ProjectAggregate>(
                project_id,
                ProjectCommand::SetRetentionSync { enabled },
                &context,
            )
            .await
            .map_err(ApiError::from)?;
        // A failure worth another try (Azure DevOps away) is recorded and shown; the job tries again.
        if let Some(outcome) = outcome {
            retention_sync::record(r.state, project_id, outcome, &context).await?;
        }
        Ok(Project(load_project(&r, project_id).await?))
    }

    /// Gives a release another name (an archived release is read-only).
    async fn rename_release(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: String,
    ) -> async_graphql::Result<Release> {
        let r = Resolver::new(ctx, Scope::ReleasesWrite)?;
        Ok(transition_release(&r, &id, |at| ReleaseCommand::RenameRelease { name, at }).await?)
    }

    /// Makes a completed release active again (not an archived one), so that builds can join it.
    async fn reopen_release(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Release> {
        let r = Resolver::new(ctx, Scope::ReleasesWrite)?;
        Ok(transition_release(&r, &id, |at| ReleaseCommand::ReopenRelease { at }).await?)
    }
}

/// Archives or restores a project of the caller's organization and returns it (the project twin of
/// [`transition_release`]).
async fn transition_project(
    r: &Resolver<'_>,
    id: &ID,
    command: impl FnOnce(DateTime<Utc>) -> ProjectCommand,
) -> Result<Project, ApiError> {
    let project_id = load_project(r, parse_id(id, "id")?).await?.project_id;
    let context = r.command_context();
    r.state
        .store
        .execute::<ProjectAggregate>(project_id, command(context.at), &context)
        .await?;
    Ok(Project(load_project(r, project_id).await?))
}
