//! Read model of projects: what the matcher compares builds against and what dashboards list.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::EventEnvelope;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::branches::BranchFilters;
use domain::project::{
    AzureRetention, EffectiveRetention, Project, ProjectEvent, ProjectSettings, RetentionPolicy,
};

use crate::organizations::aggregate_uuid;
use crate::projector::event_time;
use crate::{Projector, StreamRows};

/// Projects project events into `projects`.
pub struct ProjectsProjector;

#[async_trait]
impl Projector<Project> for ProjectsProjector {
    fn projection(&self) -> &'static str {
        "projects"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["projects", "azure_connections"]
    }

    fn stream_rows(&self) -> Option<StreamRows> {
        Some(StreamRows {
            table: "projects",
            key: "project_id",
            removed_by: None,
        })
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope<Project>,
    ) -> Result<(), sqlx::Error> {
        let at = event_time(event);
        match &event.payload {
            ProjectEvent::ProjectCreated {
                project_id,
                organization_id,
                settings,
            } => {
                sqlx::query(
                    "INSERT INTO projects (project_id, organization_id, name, url, repository_urls,
                        azure_project_id, azure_repository_ids, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                )
                .bind(project_id)
                .bind(organization_id)
                .bind(&settings.name)
                .bind(&settings.url)
                .bind(&settings.repository_urls)
                .bind(&settings.azure_project_id)
                .bind(&settings.azure_repository_ids)
                .bind(at)
                .execute(conn)
                .await?;
            }
            ProjectEvent::BranchFiltersChanged { filters } => {
                sqlx::query(
                    "UPDATE projects SET branch_include = $2, branch_exclude = $3, updated_at = $4
                     WHERE project_id = $1",
                )
                .bind(aggregate_uuid(&event.aggregate_id))
                .bind(&filters.include)
                .bind(&filters.exclude)
                .bind(at)
                .execute(conn)
                .await?;
            }
            ProjectEvent::RetentionPolicyChanged { policy } => {
                sqlx::query(
                    "UPDATE projects SET retention_keep_days = $2, retention_keep_last = $3,
                        retention_archive_after_days = $4, updated_at = $5
                     WHERE project_id = $1",
                )
                .bind(aggregate_uuid(&event.aggregate_id))
                .bind(policy.keep_days.map(|d| d as i32))
                .bind(policy.keep_last.map(|n| n as i32))
                .bind(policy.archive_completed_after_days.map(|d| d as i32))
                .bind(at)
                .execute(conn)
                .await?;
            }
            ProjectEvent::AzureDevOpsConnected { settings } => {
                let project_id = aggregate_uuid(&event.aggregate_id);
                crate::azure::upsert_connection(conn, project_id, settings, at).await?;
            }
            ProjectEvent::AzureDevOpsDisconnected => {
                crate::azure::delete_connection(conn, aggregate_uuid(&event.aggregate_id)).await?;
            }
            ProjectEvent::ProjectArchived {
                reason,
                archived_at,
            } => {
                sqlx::query(
                    "UPDATE projects SET archived_at = $2, archive_reason = $3, updated_at = $2 WHERE project_id = $1",
                )
                .bind(aggregate_uuid(&event.aggregate_id))
                .bind(archived_at)
                .bind(reason)
                .execute(conn)
                .await?;
            }
            ProjectEvent::ProjectRestored { restored_at } => {
                sqlx::query(
                    "UPDATE projects SET archived_at = NULL, archive_reason = NULL, updated_at = $2
                     WHERE project_id = $1",
                )
                .bind(aggregate_uuid(&event.aggregate_id))
                .bind(restored_at)
                .execute(conn)
                .await?;
            }
            ProjectEvent::RetentionSyncChanged { enabled } => {
                sqlx::query(
                    "UPDATE projects SET retention_sync = $2, updated_at = $3 WHERE project_id = $1",
                )
                .bind(aggregate_uuid(&event.aggregate_id))
                .bind(enabled)
                .bind(at)
                .execute(conn)
                .await?;
            }
            ProjectEvent::AzureRetentionSynced {
                retention,
                synced_at,
            } => {
                sqlx::query(
                    "UPDATE projects SET azure_purge_runs_days = $2, azure_purge_pull_request_runs_days = $3,
                        azure_retain_runs_per_protected_branch = $4, azure_retention_synced_at = $5,
                        azure_retention_error = NULL, azure_retention_failed_at = NULL
                     WHERE project_id = $1",
                )
                .bind(aggregate_uuid(&event.aggregate_id))
                .bind(retention.purge_runs_days as i32)
                .bind(retention.purge_pull_request_runs_days as i32)
                .bind(retention.retain_runs_per_protected_branch as i32)
                .bind(synced_at)
                .execute(conn)
                .await?;
            }
            ProjectEvent::AzureRetentionSyncFailed { message, failed_at } => {
                sqlx::query(
                    "UPDATE projects SET azure_retention_error = $2, azure_retention_failed_at = $3
                     WHERE project_id = $1",
                )
                .bind(aggregate_uuid(&event.aggregate_id))
                .bind(message)
                .bind(failed_at)
                .execute(conn)
                .await?;
            }
            ProjectEvent::ProjectUpdated { settings } => {
                sqlx::query(
                    "UPDATE projects SET name = $2, url = $3, repository_urls = $4, azure_project_id = $5,
                        azure_repository_ids = $6, updated_at = $7
                     WHERE project_id = $1",
                )
                .bind(aggregate_uuid(&event.aggregate_id))
                .bind(&settings.name)
                .bind(&settings.url)
                .bind(&settings.repository_urls)
                .bind(&settings.azure_project_id)
                .bind(&settings.azure_repository_ids)
                .bind(at)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// A project as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRow {
    pub project_id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub url: Option<String>,
    pub repository_urls: Vec<String>,
    pub azure_project_id: Option<String>,
    pub azure_repository_ids: Vec<String>,
    pub branch_include: Vec<String>,
    pub branch_exclude: Vec<String>,
    pub retention_keep_days: Option<i32>,
    pub retention_keep_last: Option<i32>,
    pub retention_archive_after_days: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
    pub archive_reason: Option<String>,
    pub retention_sync: bool,
    pub azure_purge_runs_days: Option<i32>,
    pub azure_purge_pull_request_runs_days: Option<i32>,
    pub azure_retain_runs_per_protected_branch: Option<i32>,
    pub azure_retention_synced_at: Option<DateTime<Utc>>,
    pub azure_retention_error: Option<String>,
    pub azure_retention_failed_at: Option<DateTime<Utc>>,
}

impl ProjectRow {
    /// The settings as a command takes them, to apply a partial update on top.
    pub fn settings(&self) -> ProjectSettings {
        ProjectSettings {
            name: self.name.clone(),
            url: self.url.clone(),
            repository_urls: self.repository_urls.clone(),
            azure_project_id: self.azure_project_id.clone(),
            azure_repository_ids: self.azure_repository_ids.clone(),
        }
    }

    /// The project's branch filters.
    pub fn branch_filters(&self) -> BranchFilters {
        BranchFilters {
            include: self.branch_include.clone(),
            exclude: self.branch_exclude.clone(),
        }
    }

    /// The Azure DevOps retention last synced, if the project syncs it and a sync succeeded.
    pub fn azure_retention(&self) -> Option<AzureRetention> {
        let value = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok());
        if !self.retention_sync {
            return None;
        }
        Some(AzureRetention {
            purge_runs_days: value(self.azure_purge_runs_days)?,
            purge_pull_request_runs_days: value(self.azure_purge_pull_request_runs_days)?,
            retain_runs_per_protected_branch: value(self.azure_retain_runs_per_protected_branch)?,
        })
    }

    /// The rules the retention job applies: the project's own over the synced Azure DevOps ones.
    pub fn effective_retention(&self) -> EffectiveRetention {
        self.retention().effective(self.azure_retention().as_ref())
    }

    /// The project's retention policy.
    pub fn retention(&self) -> RetentionPolicy {
        let positive = |value: Option<i32>| value.and_then(|v| u32::try_from(v).ok());
        RetentionPolicy {
            keep_days: positive(self.retention_keep_days),
            keep_last: positive(self.retention_keep_last),
            archive_completed_after_days: positive(self.retention_archive_after_days),
        }
    }
}

const COLUMNS: &str = "project_id, organization_id, name, url, repository_urls, azure_project_id, \
    azure_repository_ids, branch_include, branch_exclude, retention_keep_days, retention_keep_last, \
    retention_archive_after_days, created_at, updated_at, archived_at, archive_reason, retention_sync, \
    azure_purge_runs_days, azure_purge_pull_request_runs_days, azure_retain_runs_per_protected_branch, \
    azure_retention_synced_at, azure_retention_error, azure_retention_failed_at";

/// Finds one project of an organization.
pub async fn find(
    pool: &PgPool,
    organization_id: Uuid,
    project_id: Uuid,
) -> Result<Option<ProjectRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projects WHERE organization_id = $1 AND project_id = $2"
    ))
    .bind(organization_id)
    .bind(project_id)
    .fetch_optional(pool)
    .await
}

/// Several projects of an organization, by id (in no particular order): one statement for the projects of a page
/// of builds or releases.
pub async fn of_ids(
    pool: &PgPool,
    organization_id: Uuid,
    project_ids: &[Uuid],
) -> Result<Vec<ProjectRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projects WHERE organization_id = $1 AND project_id = ANY($2)"
    ))
    .bind(organization_id)
    .bind(project_ids)
    .fetch_all(pool)
    .await
}

/// Every project of an organization, by name.
pub async fn list(pool: &PgPool, organization_id: Uuid) -> Result<Vec<ProjectRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projects WHERE organization_id = $1 ORDER BY lower(name), project_id"
    ))
    .bind(organization_id)
    .fetch_all(pool)
    .await
}

/// Every project of an organization as the matcher sees it.
pub async fn candidates(
    pool: &PgPool,
    organization_id: Uuid,
) -> Result<Vec<domain::matching::ProjectCandidate>, sqlx::Error> {
    Ok(list(pool, organization_id)
        .await?
        .into_iter()
        .map(|row| domain::matching::ProjectCandidate {
            branch_filters: row.branch_filters().compile(),
            archived: row.archived_at.is_some(),
            project_id: row.project_id,
            name: row.name,
            url: row.url,
            repository_urls: row.repository_urls,
            azure_project_id: row.azure_project_id,
            azure_repository_ids: row.azure_repository_ids,
        })
        .collect())
}

/// Every project, of every organization, that has a retention rule or takes its retention from Azure DevOps:
/// what the retention job works through.
pub async fn with_retention(pool: &PgPool) -> Result<Vec<ProjectRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projects
         WHERE retention_keep_days IS NOT NULL OR retention_keep_last IS NOT NULL
            OR retention_archive_after_days IS NOT NULL OR retention_sync
         ORDER BY project_id"
    ))
    .fetch_all(pool)
    .await
}
