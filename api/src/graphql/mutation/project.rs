//! Mutations of projects: creating them and changing their matching, filters and retention.

use async_graphql::{Context, InputObject, Object, ID};
use uuid::Uuid;

use domain::api_key::Scope;
use domain::branches::BranchFilters;
use domain::project::{
    Project as ProjectAggregate, ProjectCommand, ProjectSettings, RetentionPolicy,
};
use projections::OnConflict;

use crate::error::ApiError;
use crate::graphql::types::Project;
use crate::graphql::{parse_id, Resolver};

use super::load_project;

/// Creating and changing projects.
#[derive(Default)]
pub struct ProjectMutation;

/// A new project.
#[derive(InputObject)]
pub struct CreateProjectInput {
    pub name: String,
    /// The Lathe project URL builds are matched against.
    pub url: Option<String>,
    #[graphql(default)]
    pub repository_urls: Vec<String>,
    pub azure_project_id: Option<String>,
    #[graphql(default)]
    pub azure_repository_ids: Vec<String>,
    /// Branch patterns builds must match (`main`, `release/*`); empty takes every branch.
    #[graphql(default)]
    pub branch_include: Vec<String>,
    /// Branch patterns whose builds are never taken (`dependabot/*`); exclude wins over include.
    #[graphql(default)]
    pub branch_exclude: Vec<String>,
    pub retention: Option<RetentionInput>,
}

/// The most days a retention rule may count: 100 years.
const MAX_RETENTION_DAYS: u32 = 36_500;

/// A retention policy; unset rules keep forever.
#[derive(InputObject)]
pub struct RetentionInput {
    /// Builds received more than this many days ago expire.
    pub keep_days: Option<i32>,
    /// Only the newest this many builds are kept.
    pub keep_last: Option<i32>,
    /// Completed releases are archived this many days after completion.
    pub archive_completed_after_days: Option<i32>,
}

impl RetentionInput {
    fn into_policy(self) -> Result<RetentionPolicy, ApiError> {
        // Days are bounded so that "now minus that many days" is a date (i32::MAX days is not).
        let positive = |name: &str, value: Option<i32>, max: u32| {
            value
                .map(|v| {
                    u32::try_from(v)
                        .ok()
                        .filter(|v| (1..=max).contains(v))
                        .ok_or_else(|| {
                            ApiError::BadUserInput(format!(
                                "retention {name} must be between 1 and {max}"
                            ))
                        })
                })
                .transpose()
        };
        Ok(RetentionPolicy {
            keep_days: positive("keepDays", self.keep_days, MAX_RETENTION_DAYS)?,
            keep_last: positive("keepLast", self.keep_last, i32::MAX as u32)?,
            archive_completed_after_days: positive(
                "archiveCompletedAfterDays",
                self.archive_completed_after_days,
                MAX_RETENTION_DAYS,
            )?,
        })
    }
}

/// Changes to a project; fields left out keep their value, and an empty string clears an optional one.
#[derive(InputObject)]
pub struct UpdateProjectInput {
    pub name: Option<String>,
    pub url: Option<String>,
    pub repository_urls: Option<Vec<String>>,
    pub azure_project_id: Option<String>,
    pub azure_repository_ids: Option<Vec<String>>,
    pub branch_include: Option<Vec<String>>,
    pub branch_exclude: Option<Vec<String>>,
    /// Replaces the whole retention policy.
    pub retention: Option<RetentionInput>,
}

#[Object]
impl ProjectMutation {
    async fn create_project(
        &self,
        ctx: &Context<'_>,
        input: CreateProjectInput,
    ) -> async_graphql::Result<Project> {
        let r = Resolver::new(ctx, Scope::ProjectsWrite)?;
        let project_id = Uuid::new_v4();
        let command = ProjectCommand::CreateProject {
            project_id,
            organization_id: r.organization_id(),
            settings: ProjectSettings {
                name: input.name,
                url: input.url,
                repository_urls: input.repository_urls,
                azure_project_id: input.azure_project_id,
                azure_repository_ids: input.azure_repository_ids,
            },
            branch_filters: BranchFilters {
                include: input.branch_include,
                exclude: input.branch_exclude,
            },
            retention: input
                .retention
                .map(RetentionInput::into_policy)
                .transpose()?
                .unwrap_or_default(),
        };
        r.state
            .store
            .execute::<ProjectAggregate>(project_id, command, &r.command_context())
            .await
            .map_err(ApiError::from)?;
        Ok(Project(load_project(&r, project_id).await?))
    }

    async fn update_project(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProjectInput,
    ) -> async_graphql::Result<Project> {
        let r = Resolver::new(ctx, Scope::ProjectsWrite)?;
        let project_id = parse_id(&id, "id")?;
        let current = load_project(&r, project_id).await?;
        let mut settings = current.settings();
        if let Some(name) = input.name {
            settings.name = name;
        }
        if let Some(url) = input.url {
            settings.url = Some(url);
        }
        if let Some(urls) = input.repository_urls {
            settings.repository_urls = urls;
        }
        if let Some(azure_project_id) = input.azure_project_id {
            settings.azure_project_id = Some(azure_project_id);
        }
        if let Some(ids) = input.azure_repository_ids {
            settings.azure_repository_ids = ids;
        }
        let branch_filters = match (input.branch_include, input.branch_exclude) {
            (None, None) => None,
            (include, exclude) => {
                let current = current.branch_filters();
                Some(BranchFilters {
                    include: include.unwrap_or(current.include),
                    exclude: exclude.unwrap_or(current.exclude),
                })
            }
        };
        let retention = input
            .retention
            .map(RetentionInput::into_policy)
            .transpose()?;
        // The settings were merged onto what we read: deciding again after a concurrent change would silently
        // overwrite it, so a lost race is the caller's CONFLICT.
        r.state
            .store
            .execute_with::<ProjectAggregate>(
                project_id,
                ProjectCommand::UpdateProject {
                    settings,
                    branch_filters,
                    retention,
                },
                &r.command_context(),
                OnConflict::Fail,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(Project(load_project(&r, project_id).await?))
    }
}
