//! Read model of releases: status and build count per release, listed per project.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::EventEnvelope;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::build_queue::{BuildQueue, BuildQueueEvent};
use domain::release::{Release, ReleaseEvent, ReleaseRef, ReleaseStatus};

use crate::organizations::aggregate_uuid;
use crate::{Keyset, Page, Projector, StreamRows};

/// Projects release events into `releases`.
pub struct ReleasesProjector;

#[async_trait]
impl Projector<Release> for ReleasesProjector {
    fn projection(&self) -> &'static str {
        "releases"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["releases"]
    }

    fn stream_rows(&self) -> Option<StreamRows> {
        Some(StreamRows {
            table: "releases",
            key: "release_id",
            removed_by: None,
        })
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope<Release>,
    ) -> Result<(), sqlx::Error> {
        let release_id = aggregate_uuid(&event.aggregate_id);
        match &event.payload {
            ReleaseEvent::ReleaseCreated {
                release_id,
                organization_id,
                project_id,
                name,
                created_at,
            } => {
                sqlx::query(
                    "INSERT INTO releases (release_id, organization_id, project_id, name, status, created_at)
                     VALUES ($1, $2, $3, $4, 'active', $5)",
                )
                .bind(release_id)
                .bind(organization_id)
                .bind(project_id)
                .bind(name)
                .bind(created_at)
                .execute(conn)
                .await?;
            }
            ReleaseEvent::ReleaseCompleted { completed_at } => {
                sqlx::query(
                    "UPDATE releases SET status = 'completed', completed_at = $2 WHERE release_id = $1",
                )
                .bind(release_id)
                .bind(completed_at)
                .execute(conn)
                .await?;
            }
            ReleaseEvent::ReleaseArchived { archived_at } => {
                sqlx::query(
                    "UPDATE releases SET status = 'archived', archived_at = $2 WHERE release_id = $1",
                )
                .bind(release_id)
                .bind(archived_at)
                .execute(conn)
                .await?;
            }
            ReleaseEvent::ReleaseRenamed { name, .. } => {
                sqlx::query("UPDATE releases SET name = $2 WHERE release_id = $1")
                    .bind(release_id)
                    .bind(name)
                    .execute(conn)
                    .await?;
            }
            ReleaseEvent::ReleaseReopened { .. } => {
                sqlx::query(
                    "UPDATE releases SET status = 'active', completed_at = NULL WHERE release_id = $1",
                )
                .bind(release_id)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// Keeps each release's build count from the builds that join it (build-queue events), as part of the releases
/// projection.
pub struct ReleaseBuildCountsProjector;

#[async_trait]
impl Projector<BuildQueue> for ReleaseBuildCountsProjector {
    fn projection(&self) -> &'static str {
        "releases"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["releases"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope<BuildQueue>,
    ) -> Result<(), sqlx::Error> {
        let changes: Vec<(Uuid, i32)> = match &event.payload {
            BuildQueueEvent::BuildCreatedInRelease { release_id, .. }
            | BuildQueueEvent::BuildAssignedToRelease { release_id, .. } => vec![(*release_id, 1)],
            BuildQueueEvent::BuildExpired {
                release_id: Some(release_id),
                ..
            }
            | BuildQueueEvent::BuildReturnedToQueue {
                from_release_id: release_id,
                ..
            } => vec![(*release_id, -1)],
            BuildQueueEvent::BuildMovedToRelease {
                from_release_id,
                release_id,
                ..
            } => vec![(*from_release_id, -1), (*release_id, 1)],
            _ => return Ok(()),
        };
        for (release_id, change) in changes {
            sqlx::query("UPDATE releases SET build_count = build_count + $2 WHERE release_id = $1")
                .bind(release_id)
                .bind(change)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// A release as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReleaseRow {
    pub release_id: Uuid,
    pub organization_id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub status: String,
    pub build_count: i32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
}

impl ReleaseRow {
    /// The release's status as the domain knows it.
    pub fn status(&self) -> ReleaseStatus {
        ReleaseStatus::parse(&self.status).unwrap_or(ReleaseStatus::Archived)
    }

    /// What the build queue needs to decide whether a build may join this release.
    pub fn as_ref(&self) -> ReleaseRef {
        ReleaseRef {
            release_id: self.release_id,
            project_id: self.project_id,
            status: self.status(),
        }
    }
}

pub(crate) const COLUMNS: &str =
    "release_id, organization_id, project_id, name, status, build_count, created_at, completed_at, archived_at";

/// Finds one release of an organization.
pub async fn find(
    pool: &PgPool,
    organization_id: Uuid,
    release_id: Uuid,
) -> Result<Option<ReleaseRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM releases WHERE organization_id = $1 AND release_id = $2"
    ))
    .bind(organization_id)
    .bind(release_id)
    .fetch_optional(pool)
    .await
}

/// The active releases of a project, newest first.
pub async fn active_for_project(
    pool: &PgPool,
    organization_id: Uuid,
    project_id: Uuid,
) -> Result<Vec<ReleaseRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM releases
         WHERE organization_id = $1 AND project_id = $2 AND status = 'active'
         ORDER BY created_at DESC, release_id DESC"
    ))
    .bind(organization_id)
    .bind(project_id)
    .fetch_all(pool)
    .await
}

/// Filter and position of a page of releases.
#[derive(Debug, Clone, Default)]
pub struct ReleaseFilter {
    pub project_id: Option<Uuid>,
    pub status: Option<ReleaseStatus>,
    /// Where the page starts, on `(created_at, release_id)`.
    pub keyset: Keyset,
}

/// A page of an organization's releases, newest first.
pub async fn page(
    pool: &PgPool,
    organization_id: Uuid,
    filter: &ReleaseFilter,
    limit: i64,
) -> Result<Page<ReleaseRow>, sqlx::Error> {
    let (after_time, after_id) = filter.keyset.binds();
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM releases
         WHERE organization_id = $1
           AND ($2::uuid IS NULL OR project_id = $2)
           AND ($3::text IS NULL OR status = $3)
           AND {}
         ORDER BY {}
         LIMIT $6",
        filter.keyset.condition("created_at", "release_id", 4, 5),
        filter.keyset.order("created_at", "release_id"),
    ))
    .bind(organization_id)
    .bind(filter.project_id)
    .bind(filter.status.map(ReleaseStatus::as_str))
    .bind(after_time)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_keyset(rows, limit, &filter.keyset))
}

/// Completed releases whose completion is older than `days`: what the retention job archives.
pub async fn completed_before(
    pool: &PgPool,
    project_id: Uuid,
    before: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT release_id FROM releases WHERE project_id = $1 AND status = 'completed' AND completed_at < $2",
    )
    .bind(project_id)
    .bind(before)
    .fetch_all(pool)
    .await
}
