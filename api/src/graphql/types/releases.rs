//! Releases as GraphQL objects.

use async_graphql::{ComplexObject, Context, Enum, SimpleObject, ID};
use chrono::{DateTime, Utc};

use projections::releases::ReleaseRow;
use projections::Page;

use super::{connection, Build, BuildConnection, Project};
use crate::error::ApiError;
use crate::graphql::loaders::{Loaders, ReleaseBuilds};
use crate::graphql::{budget, paging};

/// A release's stage.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReleaseStatus {
    Active,
    Completed,
    Archived,
}

impl From<domain::release::ReleaseStatus> for ReleaseStatus {
    fn from(status: domain::release::ReleaseStatus) -> Self {
        match status {
            domain::release::ReleaseStatus::Active => Self::Active,
            domain::release::ReleaseStatus::Completed => Self::Completed,
            domain::release::ReleaseStatus::Archived => Self::Archived,
        }
    }
}

impl From<ReleaseStatus> for domain::release::ReleaseStatus {
    fn from(status: ReleaseStatus) -> Self {
        match status {
            ReleaseStatus::Active => Self::Active,
            ReleaseStatus::Completed => Self::Completed,
            ReleaseStatus::Archived => Self::Archived,
        }
    }
}

/// A release of a project.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Release {
    #[graphql(skip)]
    pub row: ReleaseRow,
    // Owned, like every other `Node`'s id.
    #[graphql(owned)]
    pub id: ID,
    pub project_id: ID,
    pub name: String,
    pub status: ReleaseStatus,
    pub build_count: i32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
}

impl From<ReleaseRow> for Release {
    fn from(row: ReleaseRow) -> Self {
        Self {
            id: ID(row.release_id.to_string()),
            project_id: ID(row.project_id.to_string()),
            name: row.name.clone(),
            status: row.status().into(),
            build_count: row.build_count,
            created_at: row.created_at,
            completed_at: row.completed_at,
            archived_at: row.archived_at,
            row,
        }
    }
}

#[ComplexObject]
impl Release {
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Project>> {
        super::project_of(ctx, self.row.organization_id, Some(self.row.project_id)).await
    }

    /// The release's builds, newest first (`last`/`before` page back towards the newest).
    #[graphql(complexity = "budget::paged(paging::requested(first, last), child_complexity)")]
    async fn builds(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<BuildConnection> {
        let window = paging::window(first, after, last, before)?;
        let key = ReleaseBuilds {
            release_id: self.row.release_id,
            keyset: window.keyset,
            limit: window.limit,
        };
        let page = ctx
            .data::<Loaders>()?
            .load_one(key)
            .await
            .map_err(ApiError::from)?
            .map(|page| (*page).clone())
            .unwrap_or(Page {
                items: Vec::new(),
                has_next_page: false,
                has_previous_page: false,
            });
        let mut builds: BuildConnection = connection(
            page,
            |row| row.added_to_release_at.unwrap_or(row.received_at),
            Build,
        );
        // Kept by the releases read model with every build that joins.
        builds.total_count = i64::from(self.row.build_count);
        Ok(builds)
    }
}
