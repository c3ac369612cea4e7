//! Queries: the build queue, projects, releases, builds and keys of the caller's organization.

use async_graphql::{Context, Object, ID};

use domain::api_key::Scope;
use projections::releases::ReleaseFilter;
use projections::{api_keys, builds, deliveries, organizations, projects, releases};

use super::types::{
    connection, scope_names, ApiKey, Build, DeliveryConnection, Organization, Project, QueueStatus,
    QueuedBuild, QueuedBuildConnection, Release, ReleaseConnection, ReleaseStatus,
};
use super::{budget, paging, parse_id, Resolver};
use crate::error::ApiError;

/// The dashboards' queries.
#[derive(Default)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The organization the API key belongs to.
    async fn organization(&self, ctx: &Context<'_>) -> async_graphql::Result<Organization> {
        let r = Resolver::new(ctx, Scope::BuildsRead)?;
        let row = organizations::find(&r.state.pool, r.organization_id())
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound("the organization does not exist".to_owned()))?;
        Ok(Organization {
            id: ID(row.organization_id.to_string()),
            name: row.name,
            org_id_auth_enabled: row.org_id_auth_enabled,
        })
    }

    /// Builds in the queue with one status, newest first (`last`/`before` page back towards the newest);
    /// `totalCount` counts the builds with that status.
    #[graphql(complexity = "budget::paged(paging::requested(first, last), child_complexity)")]
    async fn build_queue(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "QueueStatus::Pending")] status: QueueStatus,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<QueuedBuildConnection> {
        let r = Resolver::new(ctx, Scope::BuildsRead)?;
        let window = paging::window(first, after, last, before)?;
        let page = builds::queue_page(
            &r.state.pool,
            r.organization_id(),
            status.as_str(),
            window.keyset,
            window.limit,
        )
        .await
        .map_err(ApiError::from)?;
        let mut queue: QueuedBuildConnection = connection(page, |row| row.received_at, QueuedBuild);
        // Counted only when asked for: a count reads every entry with the status.
        if ctx.look_ahead().field("totalCount").exists() {
            queue.total_count =
                builds::queue_count(&r.state.pool, r.organization_id(), status.as_str())
                    .await
                    .map_err(ApiError::from)?;
        }
        Ok(queue)
    }

    /// One build that went through the queue.
    async fn queued_build(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<QueuedBuild>> {
        let r = Resolver::new(ctx, Scope::BuildsRead)?;
        let row = builds::find(&r.state.pool, r.organization_id(), parse_id(&id, "id")?)
            .await
            .map_err(ApiError::from)?;
        Ok(row
            .filter(|row| row.queue_status.is_some())
            .map(QueuedBuild))
    }

    /// The organization's projects, by name. (Costed as 20 projects: an organization has few.)
    #[graphql(complexity = "budget::listed(20, child_complexity)")]
    async fn projects(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Project>> {
        let r = Resolver::new(ctx, Scope::BuildsRead)?;
        let rows = projects::list(&r.state.pool, r.organization_id())
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(Project).collect())
    }

    async fn project(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Project>> {
        let r = Resolver::new(ctx, Scope::BuildsRead)?;
        let row = projects::find(&r.state.pool, r.organization_id(), parse_id(&id, "id")?)
            .await
            .map_err(ApiError::from)?;
        Ok(row.map(Project))
    }

    /// Releases, newest first, optionally of one project and one status (`last`/`before` page back towards
    /// the newest).
    #[graphql(complexity = "budget::paged(paging::requested(first, last), child_complexity)")]
    #[expect(
        clippy::too_many_arguments,
        reason = "a GraphQL field's arguments are its parameters: two filters and Relay's four"
    )]
    async fn releases(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        status: Option<ReleaseStatus>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<ReleaseConnection> {
        let r = Resolver::new(ctx, Scope::BuildsRead)?;
        let window = paging::window(first, after, last, before)?;
        let filter = ReleaseFilter {
            project_id: project_id
                .as_ref()
                .map(|id| parse_id(id, "projectId"))
                .transpose()?,
            status: status.map(Into::into),
            keyset: window.keyset,
        };
        let page = releases::page(&r.state.pool, r.organization_id(), &filter, window.limit)
            .await
            .map_err(ApiError::from)?;
        Ok(connection(page, |row| row.created_at, Release::from))
    }

    async fn release(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Release>> {
        let r = Resolver::new(ctx, Scope::BuildsRead)?;
        let row = releases::find(&r.state.pool, r.organization_id(), parse_id(&id, "id")?)
            .await
            .map_err(ApiError::from)?;
        Ok(row.map(Release::from))
    }

    /// One build that is in a release.
    async fn build(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Build>> {
        let r = Resolver::new(ctx, Scope::BuildsRead)?;
        let row = builds::find(&r.state.pool, r.organization_id(), parse_id(&id, "id")?)
            .await
            .map_err(ApiError::from)?;
        Ok(row.filter(|row| row.release_id.is_some()).map(Build))
    }

    /// The organization's API keys, newest first, revoked ones included. (Costed as 20 keys.)
    #[graphql(complexity = "budget::listed(20, child_complexity)")]
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
        let r = Resolver::new(ctx, Scope::KeysManage)?;
        let rows = api_keys::list(&r.state.pool, r.organization_id())
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(ApiKey).collect())
    }

    /// The organization's deliveries to the webhook and ingest endpoints, newest first: what arrived, and what
    /// became of it and why. Refused deliveries whose caller could not be identified are not shown.
    #[graphql(complexity = "budget::paged(paging::requested(first, last), child_complexity)")]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        outcome: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<DeliveryConnection> {
        let r = Resolver::new(ctx, Scope::BuildsRead)?;
        let window = paging::window(first, after, last, before)?;
        let page = deliveries::page(
            &r.state.pool,
            r.organization_id(),
            outcome.as_deref(),
            window.keyset,
            window.limit,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(connection(
            page,
            |row| row.received_at,
            super::types::Delivery,
        ))
    }

    /// Every scope an API key can hold.
    async fn api_key_scopes(&self) -> Vec<String> {
        scope_names()
    }
}
