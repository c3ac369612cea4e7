//! Read model of builds: every build received, the queue (builds with a queue status) and the builds of each
//! release, in one table with an index per slice.

mod projector;
mod received;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{Keyset, Page};

pub use projector::BuildsProjector;

/// Status of a build in the queue, as stored in `builds.queue_status`.
pub mod queue_status {
    pub const PENDING: &str = "pending";
    pub const ASSIGNED: &str = "assigned";
    pub const REJECTED: &str = "rejected";
}

/// A build as the API shows it, in the queue or in a release.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildRow {
    pub build_id: Uuid,
    pub organization_id: Uuid,
    pub source: String,
    pub build_name: String,
    pub project_id: Option<Uuid>,
    pub branch: Option<String>,
    pub commit_sha: Option<String>,
    pub pull_request_number: Option<i64>,
    pub pull_request_repository_id: Option<String>,
    pub url: Option<String>,
    pub result: Option<String>,
    pub received_at: DateTime<Utc>,
    pub queue_status: Option<String>,
    pub queue_reason: Option<String>,
    pub rejection_reason: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub release_id: Option<Uuid>,
    pub added_to_release_at: Option<DateTime<Utc>>,
    pub tests_total: i64,
    pub tests_passed: i64,
    pub tests_failed: i64,
    pub tests_skipped: i64,
}

pub(crate) const COLUMNS: &str = "build_id, organization_id, source, build_name, project_id, branch, commit_sha, \
    pull_request_number, pull_request_repository_id, url, result, received_at, queue_status, queue_reason, \
    rejection_reason, resolved_at, release_id, added_to_release_at, tests_total, tests_passed, tests_failed, \
    tests_skipped";

/// Finds one build of an organization, whether queued, in a release, or both.
pub async fn find(
    pool: &PgPool,
    organization_id: Uuid,
    build_id: Uuid,
) -> Result<Option<BuildRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM builds WHERE organization_id = $1 AND build_id = $2"
    ))
    .bind(organization_id)
    .bind(build_id)
    .fetch_optional(pool)
    .await
}

/// A page of the queue with one status, newest first, at `keyset` on `(received_at, build_id)`.
pub async fn queue_page(
    pool: &PgPool,
    organization_id: Uuid,
    status: &str,
    keyset: Keyset,
    limit: i64,
) -> Result<Page<BuildRow>, sqlx::Error> {
    let (after_time, after_id) = keyset.binds();
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM builds
         WHERE organization_id = $1 AND queue_status = $2 AND {}
         ORDER BY {}
         LIMIT $5",
        keyset.condition("received_at", "build_id", 3, 4),
        keyset.order("received_at", "build_id"),
    ))
    .bind(organization_id)
    .bind(status)
    .bind(after_time)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_keyset(rows, limit, &keyset))
}

/// How many builds of an organization's queue have a status.
pub async fn queue_count(
    pool: &PgPool,
    organization_id: Uuid,
    status: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM builds WHERE organization_id = $1 AND queue_status = $2",
    )
    .bind(organization_id)
    .bind(status)
    .fetch_one(pool)
    .await
}

/// A page of the builds of each of several releases, newest first: one statement for a page of releases
/// (the dashboards' `releases { builds }`), instead of one per release. `keyset` (on `(added_to_release_at,
/// build_id)`) applies to every release.
pub async fn release_pages(
    pool: &PgPool,
    release_ids: &[Uuid],
    keyset: Keyset,
    limit: i64,
) -> Result<std::collections::HashMap<Uuid, Page<BuildRow>>, sqlx::Error> {
    let (after_time, after_id) = keyset.binds();
    let rows: Vec<BuildRow> = sqlx::query_as(&format!(
        "SELECT b.* FROM unnest($1::uuid[]) WITH ORDINALITY AS p(release_id, n)
         CROSS JOIN LATERAL (
             SELECT {COLUMNS} FROM builds
             WHERE release_id = p.release_id AND {}
             ORDER BY {}
             LIMIT $4) b
         ORDER BY p.n, {}",
        keyset.condition("added_to_release_at", "build_id", 2, 3),
        keyset.order("added_to_release_at", "build_id"),
        keyset.order("b.added_to_release_at", "b.build_id"),
    ))
    .bind(release_ids)
    .bind(after_time)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(crate::group_pages(
        release_ids,
        rows,
        |row| row.release_id,
        limit,
        &keyset,
    ))
}

/// A live build as the retention job measures it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveBuild {
    pub build_id: Uuid,
    pub received_at: DateTime<Utc>,
    pub branch: Option<String>,
    pub pull_request: bool,
}

/// A project's live builds, newest first: what the retention job measures against its policy.
pub async fn of_project(pool: &PgPool, project_id: Uuid) -> Result<Vec<LiveBuild>, sqlx::Error> {
    sqlx::query_as(
        "SELECT build_id, received_at, branch, pull_request_number IS NOT NULL AS pull_request FROM builds
         WHERE project_id = $1 ORDER BY received_at DESC, build_id DESC",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await
}
