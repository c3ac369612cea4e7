//! The integration's mutations: connecting a project to Azure DevOps and creating work items on demand.

use async_graphql::{Context, Object, ID};
use secrecy::SecretString;
use uuid::Uuid;

use domain::api_key::Scope;
use domain::azure::{default_mappings, AzureDevOpsSettings, FieldMapping, MappedField};
use domain::project::{Project as ProjectAggregate, ProjectCommand};
use projections::outbox;
use projections::{azure, projects, test_results};

use crate::azure::client::{AzureError, Target};
use crate::error::ApiError;
use crate::graphql::types::Project;
use crate::graphql::{parse_id, Resolver};

use super::types::{AzureDevOpsDelivery, AzureDevOpsInput};

/// The integration's mutations, merged into the root mutation.
#[derive(Default)]
pub struct AzureMutation;

#[Object]
impl AzureMutation {
    /// Connects a project to Azure DevOps, after checking the token, the project, the work item type and every
    /// mapped field against Azure DevOps itself.
    async fn connect_azure_dev_ops(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        input: AzureDevOpsInput,
    ) -> async_graphql::Result<Project> {
        let r = Resolver::new(ctx, Scope::ProjectsWrite)?;
        let project_id = parse_id(&project_id, "projectId")?;
        let project = load_project(&r, project_id).await?;
        let sealer = r.state.azure.sealer()?;
        let mut mappings: Vec<FieldMapping> = match input.field_mappings {
            Some(mappings) => mappings
                .into_iter()
                .map(|m| FieldMapping {
                    source: m.source.into(),
                    field: m.field,
                })
                .collect(),
            None => default_mappings(),
        };
        if let Some(field) = input.environment_field {
            mappings.retain(|m| m.source != MappedField::Environment);
            mappings.push(FieldMapping {
                source: MappedField::Environment,
                field,
            });
        }
        let settings = AzureDevOpsSettings {
            organization_url: input.organization_url,
            project: input.project,
            work_item_type: input.work_item_type,
            field_mappings: mappings,
            auto_create_work_items: input.auto_create_work_items,
            post_pull_request_comments: input.post_pull_request_comments,
            failure_threshold: u32::try_from(input.failure_threshold).map_err(|_| {
                ApiError::BadUserInput("failureThreshold must be at least 1".to_owned())
            })?,
        }
        .validated()
        .map_err(|error| ApiError::BadUserInput(format!("Azure DevOps connection: {error}")))?;

        let token = input.personal_access_token.trim().to_owned();
        if token.is_empty() {
            return Err(
                ApiError::BadUserInput("personalAccessToken must not be empty".to_owned()).into(),
            );
        }
        let target = Target {
            organization_url: settings.organization_url.clone(),
            project: settings.project.clone(),
            token: SecretString::from(token.clone()),
        };
        let client = &r.state.azure.client;
        client
            .check_project(&target)
            .await
            .map_err(|e| explain(e, "the project"))?;
        let fields = client
            .work_item_type_fields(&target, &settings.work_item_type)
            .await
            .map_err(|e| explain(e, &format!("work item type `{}`", settings.work_item_type)))?;
        let missing: Vec<&str> = settings
            .field_mappings
            .iter()
            .map(|m| m.field.as_str())
            .filter(|field| !fields.iter().any(|f| f.eq_ignore_ascii_case(field)))
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::BadUserInput(format!(
                "work item type `{}` has no field {}",
                settings.work_item_type,
                missing.join(", ")
            ))
            .into());
        }

        // The token is stored only once the command has succeeded, so that a refused command leaves no credential
        // behind (nor replaces the one of an earlier connection). Until it is stored, the outbox worker treats the
        // connection's calls as not yet deliverable and tries them again later.
        let (nonce, ciphertext) = sealer.seal(&token);
        r.state
            .store
            .execute::<ProjectAggregate>(
                project_id,
                ProjectCommand::ConnectAzureDevOps { settings },
                &r.command_context(),
            )
            .await
            .map_err(ApiError::from)?;
        let stored = azure::store_credential(
            &r.state.pool,
            project_id,
            project.organization_id,
            &nonce,
            &ciphertext,
        )
        .await;
        if let Err(error) = stored {
            // The connection now names settings the old token (if any) was not given for: forget it rather than
            // send it there. Best effort: the database just failed; the caller is told to connect again.
            let _ = azure::delete_credential(&r.state.pool, project_id).await;
            return Err(ApiError::from(error).into());
        }
        Ok(Project(load_project(&r, project_id).await?))
    }

    /// Stops new work items and statuses for a project and forgets its token; links already made remain.
    async fn disconnect_azure_dev_ops(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
    ) -> async_graphql::Result<Project> {
        let r = Resolver::new(ctx, Scope::ProjectsWrite)?;
        let project_id = parse_id(&project_id, "projectId")?;
        load_project(&r, project_id).await?;
        r.state
            .store
            .execute::<ProjectAggregate>(
                project_id,
                ProjectCommand::DisconnectAzureDevOps,
                &r.command_context(),
            )
            .await
            .map_err(ApiError::from)?;
        azure::delete_credential(&r.state.pool, project_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Project(load_project(&r, project_id).await?))
    }

    /// Creates a work item for one test result now (or returns the call already made for it).
    async fn create_work_item(
        &self,
        ctx: &Context<'_>,
        test_result_id: ID,
    ) -> async_graphql::Result<AzureDevOpsDelivery> {
        let r = Resolver::new(ctx, Scope::BuildsAssign)?;
        let id = parse_id(&test_result_id, "testResultId")?;
        let (result, project) = test_results::find(&r.state.pool, r.organization_id(), id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("no test result {id}")))?;
        let project_id = project.ok_or_else(|| {
            ApiError::BadUserInput(
                "the test's build has no project yet: select its project first".to_owned(),
            )
        })?;
        if azure::connection(&r.state.pool, project_id)
            .await
            .map_err(ApiError::from)?
            .is_none()
        {
            return Err(ApiError::BadUserInput(
                "the project is not connected to Azure DevOps".to_owned(),
            )
            .into());
        }
        let mut conn = r.state.pool.acquire().await.map_err(ApiError::from)?;
        let outbox_id = outbox::enqueue(
            &mut conn,
            r.organization_id(),
            project_id,
            outbox::kind::WORK_ITEM,
            &format!("work_item:{id}"),
            &serde_json::json!({ "build_id": result.build_id, "test_result_id": id }),
        )
        .await
        .map_err(ApiError::from)?;
        let row = outbox::find(&r.state.pool, r.organization_id(), outbox_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("the call just enqueued is missing"))
            })?;
        Ok(AzureDevOpsDelivery(row))
    }
}

async fn load_project(r: &Resolver<'_>, id: Uuid) -> Result<projects::ProjectRow, ApiError> {
    projects::find(&r.state.pool, r.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no project {id}")))
}

/// Turns an Azure DevOps refusal at connection time into a message that says what to fix.
fn explain(error: AzureError, what: &str) -> ApiError {
    match error {
        AzureError::Rejected { status: 401 | 203, message } => ApiError::BadUserInput(format!(
            "the personal access token was rejected: {message}"
        )),
        AzureError::Rejected { status: 404, .. } => {
            ApiError::BadUserInput(format!("Azure DevOps does not know {what} (404)"))
        }
        AzureError::Rejected { status: 403, .. } => ApiError::BadUserInput(format!(
            "the personal access token may not read {what} (403): give it the Work Items and Code scopes"
        )),
        AzureError::Rejected { message, .. } => ApiError::BadUserInput(message),
        AzureError::Retryable { message, .. } => ApiError::BadUserInput(format!(
            "Azure DevOps could not be reached to check the connection; try again: {message}"
        )),
    }
}
