//! Projects and their retention policies as GraphQL objects.

use async_graphql::{Context, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use projections::projects::ProjectRow;

use crate::error::ApiError;
use crate::state::AppState;

/// A project: what incoming builds are matched against.
pub struct Project(pub ProjectRow);

#[Object]
impl Project {
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.project_id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The Lathe project URL, matched exactly (after normalization).
    async fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }
    async fn repository_urls(&self) -> &[String] {
        &self.0.repository_urls
    }
    async fn azure_project_id(&self) -> Option<&str> {
        self.0.azure_project_id.as_deref()
    }
    async fn azure_repository_ids(&self) -> &[String] {
        &self.0.azure_repository_ids
    }
    /// Branch patterns builds must match; empty takes every branch.
    async fn branch_include(&self) -> &[String] {
        &self.0.branch_include
    }
    /// Branch patterns whose builds are never taken.
    async fn branch_exclude(&self) -> &[String] {
        &self.0.branch_exclude
    }
    async fn retention(&self) -> Retention {
        let policy = self.0.retention();
        let int = |v: Option<u32>| v.map(|v| v as i32);
        Retention {
            keep_days: int(policy.keep_days),
            keep_last: int(policy.keep_last),
            archive_completed_after_days: int(policy.archive_completed_after_days),
        }
    }
    /// The project's Azure DevOps connection, if any (never its token). (A read of its own: costed as 5 fields.)
    #[graphql(complexity = "5 + child_complexity")]
    async fn azure_dev_ops(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<crate::graphql::azure::AzureDevOpsConnection>> {
        let state = ctx.data_unchecked::<AppState>();
        let row = projections::azure::connection(&state.pool, self.0.project_id)
            .await
            .map_err(ApiError::from)?;
        Ok(row.map(Into::into))
    }
    /// When the project was archived (it then matches no new builds); null while it is active.
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.0.archived_at
    }
    async fn archive_reason(&self) -> Option<&str> {
        self.0.archive_reason.as_deref()
    }
    /// The build retention taken from Azure DevOps, if the project syncs it.
    async fn azure_retention(&self) -> super::AzureRetentionSync {
        (&self.0).into()
    }
    /// The retention rules in force: the project's own over the synced ones.
    async fn effective_retention(&self) -> super::EffectiveRetention {
        (&self.0).into()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A project's retention policy; unset rules keep forever.
#[derive(SimpleObject)]
pub struct Retention {
    pub keep_days: Option<i32>,
    pub keep_last: Option<i32>,
    pub archive_completed_after_days: Option<i32>,
}
