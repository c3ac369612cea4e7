//! Mutations: projects, releases, the queue's assignment actions, and API keys.

use async_graphql::{Context, InputObject, Object, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use domain::api_key::{ApiKey as ApiKeyAggregate, ApiKeyCommand, Scope};
use domain::branches::BranchFilters;
use domain::build_queue::{BuildQueue, BuildQueueCommand};
use domain::organization::{Organization as OrganizationAggregate, OrganizationCommand};
use domain::project::{
    Project as ProjectAggregate, ProjectCommand, ProjectSettings, RetentionPolicy,
};
use domain::release::{Release as ReleaseAggregate, ReleaseCommand};
use projections::{api_keys, builds, organizations, projects, releases, OnConflict};

use super::types::{ApiKey, CreatedApiKey, Organization, Project, QueuedBuild, Release};
use super::{parse_id, Resolver};
use crate::error::ApiError;
use crate::keys;

/// The root of every mutation.
#[derive(Default)]
pub struct MutationRoot;

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
        let positive = |name: &str, value: Option<i32>| {
            value
                .map(|v| {
                    u32::try_from(v).ok().filter(|v| *v > 0).ok_or_else(|| {
                        ApiError::BadUserInput(format!("retention {name} must be at least 1"))
                    })
                })
                .transpose()
        };
        Ok(RetentionPolicy {
            keep_days: positive("keepDays", self.keep_days)?,
            keep_last: positive("keepLast", self.keep_last)?,
            archive_completed_after_days: positive(
                "archiveCompletedAfterDays",
                self.archive_completed_after_days,
            )?,
        })
    }
}

/// A key's rate limit.
#[derive(InputObject)]
pub struct UpdateApiKeyInput {
    /// Requests per minute; `null` returns the key to the server's default.
    pub rate_limit_per_minute: async_graphql::MaybeUndefined<i32>,
}

fn rate_limit(value: Option<i32>) -> Result<Option<u32>, ApiError> {
    value
        .map(|v| {
            u32::try_from(v)
                .ok()
                .filter(|v| (1..=domain::api_key::MAX_RATE_LIMIT).contains(v))
                .ok_or_else(|| {
                    ApiError::BadUserInput(format!(
                        "rateLimitPerMinute must be between 1 and {}",
                        domain::api_key::MAX_RATE_LIMIT
                    ))
                })
        })
        .transpose()
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

/// A new API key.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    pub name: String,
    /// Scope names such as `builds:read`; see `apiKeyScopes`.
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per minute for this key; default: the server's (60 unless configured).
    pub rate_limit_per_minute: Option<i32>,
}

#[Object]
impl MutationRoot {
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
        let release = load_release(&r, parse_id(&release_id, "releaseId")?).await?;
        let context = r.command_context();
        let command = BuildQueueCommand::AssignToRelease {
            release: release.as_ref(),
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

    /// Creates an API key. The key is in the answer and nowhere else, ever. A key can only grant scopes its
    /// creator holds.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> async_graphql::Result<CreatedApiKey> {
        let r = Resolver::new(ctx, Scope::KeysManage)?;
        let scopes = input
            .scopes
            .iter()
            .map(|name| {
                Scope::parse(name).ok_or_else(|| {
                    ApiError::BadUserInput(format!("unknown scope `{name}`; see `apiKeyScopes`"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(missing) = scopes
            .iter()
            .find(|scope| !r.principal.scopes.contains(scope))
        {
            return Err(ApiError::Forbidden(format!(
                "a key cannot grant the scope {missing}, which the calling key lacks"
            ))
            .into());
        }
        let spec = keys::KeySpec {
            name: input.name,
            scopes,
            expires_at: input.expires_at,
            rate_limit_per_minute: rate_limit(input.rate_limit_per_minute)?,
        };
        let issued = keys::issue(
            &r.state.store,
            &r.state.pool,
            r.organization_id(),
            spec,
            &r.command_context(),
        )
        .await?;
        Ok(CreatedApiKey {
            key: issued.key,
            api_key: ApiKey(issued.row),
        })
    }

    /// Turns `X-Pt-Org-Id` authentication of the webhook on or off for the caller's organization.
    async fn set_org_id_authentication(
        &self,
        ctx: &Context<'_>,
        enabled: bool,
    ) -> async_graphql::Result<Organization> {
        let r = Resolver::new(ctx, Scope::KeysManage)?;
        r.state
            .store
            .execute::<OrganizationAggregate>(
                r.organization_id(),
                OrganizationCommand::SetOrgIdAuthentication { enabled },
                &r.command_context(),
            )
            .await
            .map_err(ApiError::from)?;
        let row = organizations::find(&r.state.pool, r.organization_id())
            .await?
            .ok_or_else(|| ApiError::NotFound("the organization does not exist".to_owned()))?;
        Ok(Organization {
            id: ID(row.organization_id.to_string()),
            name: row.name,
            org_id_auth_enabled: row.org_id_auth_enabled,
        })
    }

    /// Sets a key's own rate limit, or returns it to the server's default.
    async fn update_api_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateApiKeyInput,
    ) -> async_graphql::Result<ApiKey> {
        let r = Resolver::new(ctx, Scope::KeysManage)?;
        let api_key_id = parse_id(&id, "id")?;
        load_api_key(&r, api_key_id).await?;
        let limit = match input.rate_limit_per_minute {
            async_graphql::MaybeUndefined::Undefined => {
                return Ok(ApiKey(load_api_key(&r, api_key_id).await?))
            }
            async_graphql::MaybeUndefined::Null => None,
            async_graphql::MaybeUndefined::Value(value) => rate_limit(Some(value))?,
        };
        r.state
            .store
            .execute::<ApiKeyAggregate>(
                api_key_id,
                ApiKeyCommand::SetRateLimit {
                    rate_limit_per_minute: limit,
                },
                &r.command_context(),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(ApiKey(load_api_key(&r, api_key_id).await?))
    }

    /// Revokes a key; it is refused from the next request on.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiKey> {
        let r = Resolver::new(ctx, Scope::KeysManage)?;
        let api_key_id = parse_id(&id, "id")?;
        load_api_key(&r, api_key_id).await?;
        let context = r.command_context();
        r.state
            .store
            .execute::<ApiKeyAggregate>(
                api_key_id,
                ApiKeyCommand::RevokeApiKey { at: context.at },
                &context,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(ApiKey(load_api_key(&r, api_key_id).await?))
    }
}

/// Moves a release of the caller's organization along its life (complete, archive) and returns it.
async fn transition_release(
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

async fn load_project(r: &Resolver<'_>, id: Uuid) -> Result<projects::ProjectRow, ApiError> {
    projects::find(&r.state.pool, r.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no project {id}")))
}

async fn load_release(r: &Resolver<'_>, id: Uuid) -> Result<releases::ReleaseRow, ApiError> {
    releases::find(&r.state.pool, r.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no release {id}")))
}

async fn load_build(r: &Resolver<'_>, id: Uuid) -> Result<builds::BuildRow, ApiError> {
    builds::find(&r.state.pool, r.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no queued build {id}")))
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

async fn load_api_key(r: &Resolver<'_>, id: Uuid) -> Result<api_keys::ApiKeyRow, ApiError> {
    api_keys::find(&r.state.pool, r.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no API key {id}")))
}
