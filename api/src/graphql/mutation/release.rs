//! Mutations of releases: creating them and moving them along their life.

use async_graphql::{Context, Object, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use domain::api_key::Scope;
use domain::release::{Release as ReleaseAggregate, ReleaseCommand};

use crate::error::ApiError;
use crate::graphql::types::Release;
use crate::graphql::{parse_id, Resolver};

use super::{load_project, load_release};

/// Creating releases, completing and archiving them.
#[derive(Default)]
pub struct ReleaseMutation;

#[Object]
impl ReleaseMutation {
    async fn create_release(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        name: String,
    ) -> async_graphql::Result<Release> {
        let r = Resolver::new(ctx, Scope::ReleasesWrite)?;
        let project = load_project(&r, parse_id(&project_id, "projectId")?).await?;
        let release_id = Uuid::new_v4();
        let context = r.command_context();
        let command = ReleaseCommand::CreateRelease {
            release_id,
            organization_id: r.organization_id(),
            project_id: project.project_id,
            name,
            at: context.at,
        };
        r.state
            .store
            .execute::<ReleaseAggregate>(release_id, command, &context)
            .await
            .map_err(ApiError::from)?;
        Ok(load_release(&r, release_id).await?.into())
    }

    async fn complete_release(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Release> {
        let r = Resolver::new(ctx, Scope::ReleasesWrite)?;
        Ok(transition_release(&r, &id, |at| ReleaseCommand::CompleteRelease { at }).await?)
    }

    async fn archive_release(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Release> {
        let r = Resolver::new(ctx, Scope::ReleasesWrite)?;
        Ok(transition_release(&r, &id, |at| ReleaseCommand::ArchiveRelease { at }).await?)
    }
}

/// Moves a release of the caller's organization along its life (complete, archive, reopen, rename) and returns it.
pub(super) async fn transition_release(
    r: &Resolver<'_>,
    id: &ID,
    command: impl FnOnce(DateTime<Utc>) -> ReleaseCommand,
) -> Result<Release, ApiError> {
    let release_id = load_release(r, parse_id(id, "id")?).await?.release_id;
    let context = r.command_context();
    r.state
        .store
        .execute::<ReleaseAggregate>(release_id, command(context.at), &context)
        .await?;
    Ok(load_release(r, release_id).await?.into())
}
