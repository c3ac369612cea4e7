//! GraphQL for the Azure DevOps integration: connecting a project, creating work items on demand, and the outbox
//! of calls with their last errors. The personal access token goes in and never comes out.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use domain::api_key::Scope;
use domain::azure::{default_mappings, AzureDevOpsSettings, FieldMapping, MappedField};
use domain::project::{Project as ProjectAggregate, ProjectCommand};
use projections::outbox::{self, OutboxRow};
use projections::{azure, projects, test_results};

use super::types::Project;
use super::{parse_id, Resolver};
use crate::azure::client::{AzureError, Target};
use crate::error::ApiError;

/// A Lathe Studio field a work item can take.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LatheField {
    TestCaseTitle,
    Priority,
    TestSteps,
    TesterNotes,
    Environment,
}

impl From<LatheField> for MappedField {
    fn from(field: LatheField) -> Self {
        match field {
            LatheField::TestCaseTitle => Self::TestCaseTitle,
            LatheField::Priority => Self::Priority,
            LatheField::TestSteps => Self::TestSteps,
            LatheField::TesterNotes => Self::TesterNotes,
            LatheField::Environment => Self::Environment,
        }
    }
}

impl From<MappedField> for LatheField {
    fn from(field: MappedField) -> Self {
        match field {
            MappedField::TestCaseTitle => Self::TestCaseTitle,
            MappedField::Priority => Self::Priority,
            MappedField::TestSteps => Self::TestSteps,
            MappedField::TesterNotes => Self::TesterNotes,
            MappedField::Environment => Self::Environment,
        }
    }
}

/// One field mapping.
#[derive(InputObject, SimpleObject, Clone)]
#[graphql(input_name = "FieldMappingInput")]
pub struct FieldMappingValue {
    pub source: LatheField,
    /// The Azure DevOps field's reference name, e.g. `Microsoft.VSTS.TCM.ReproSteps`.
    pub field: String,
}

/// A project's connection to Azure DevOps.
#[derive(InputObject)]
pub struct AzureDevOpsInput {
    /// `https://dev.azure.com/{org}`, `https://{org}.visualstudio.com`, or an Azure DevOps Server collection URL.
    pub organization_url: String,
    /// The Azure DevOps project's name or id.
    pub project: String,
    /// A personal access token with Work Items (read & write) and Code (status) scopes. Stored encrypted; never
    /// shown again.
    pub personal_access_token: String,
    #[graphql(default_with = "\"Bug\".to_owned()")]
    pub work_item_type: String,
    /// Default: Test Case Title → System.Title, Priority → Microsoft.VSTS.Common.Priority, Test Steps →
    /// Microsoft.VSTS.TCM.ReproSteps, Tester Notes → System.Description.
    pub field_mappings: Option<Vec<FieldMappingValue>>,
    /// Where Environment goes (e.g. `Microsoft.VSTS.TCM.SystemInfo`); not mapped when left out.
    pub environment_field: Option<String>,
    #[graphql(default)]
    pub auto_create_work_items: bool,
    #[graphql(default)]
    pub post_pull_request_comments: bool,
    #[graphql(default = 20)]
    pub failure_threshold: i32,
}

/// A project's connection as shown: everything but the token.
#[derive(SimpleObject)]
pub struct AzureDevOpsConnection {
    pub organization_url: String,
    pub project: String,
    pub work_item_type: String,
    pub field_mappings: Vec<FieldMappingValue>,
    pub auto_create_work_items: bool,
    pub post_pull_request_comments: bool,
    pub failure_threshold: i32,
    pub connected_at: DateTime<Utc>,
}

impl From<azure::ConnectionRow> for AzureDevOpsConnection {
    fn from(row: azure::ConnectionRow) -> Self {
        Self {
            field_mappings: row
                .mappings()
                .into_iter()
                .map(|m| FieldMappingValue {
                    source: m.source.into(),
                    field: m.field,
                })
                .collect(),
            organization_url: row.organization_url,
            project: row.azure_project,
            work_item_type: row.work_item_type,
            auto_create_work_items: row.auto_create_work_items,
            post_pull_request_comments: row.post_pull_request_comments,
            failure_threshold: row.failure_threshold,
            connected_at: row.connected_at,
        }
    }
}

/// Where an outbound call stands.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// One call to Azure DevOps.
pub struct AzureDevOpsDelivery(pub OutboxRow);

#[Object]
impl AzureDevOpsDelivery {
    async fn id(&self) -> ID {
        ID(self.0.outbox_id.to_string())
    }
    /// `work_item`, `work_item_summary` or `pull_request_status`.
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    async fn status(&self) -> DeliveryStatus {
        match self.0.status.as_str() {
            "succeeded" => DeliveryStatus::Succeeded,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        (self.0.status == "pending").then_some(self.0.next_attempt_at)
    }
    /// The last error, for pending retries and failed calls.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    async fn last_http_status(&self) -> Option<i32> {
        self.0.last_status
    }
    async fn project_id(&self) -> ID {
        ID(self.0.project_id.to_string())
    }
    /// What a successful call made, e.g. `{"workItemId": 131489, "url": …}`.
    async fn result(&self) -> Option<async_graphql::Json<&serde_json::Value>> {
        self.0.result.as_ref().map(async_graphql::Json)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// The integration's queries, merged into the root query.
#[derive(Default)]
pub struct AzureQuery;

#[Object]
impl AzureQuery {
    /// Calls to Azure DevOps, newest first: pending ones with their next attempt, failed ones with their error.
    async fn azure_dev_ops_deliveries(
        &self,
        ctx: &Context<'_>,
        status: Option<DeliveryStatus>,
        #[graphql(default = 50)] first: i32,
    ) -> async_graphql::Result<Vec<AzureDevOpsDelivery>> {
        let r = Resolver::new(ctx, Scope::BuildsRead)?;
        let rows = outbox::list(
            &r.state.pool,
            r.organization_id(),
            status.map(DeliveryStatus::as_str),
            i64::from(first.clamp(1, 500)),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(AzureDevOpsDelivery).collect())
    }
}

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

        let (nonce, ciphertext) = sealer.seal(&token);
        azure::store_credential(
            &r.state.pool,
            project_id,
            project.organization_id,
            &nonce,
            &ciphertext,
        )
        .await
        .map_err(ApiError::from)?;
        r.state
            .store
            .execute::<ProjectAggregate>(
                project_id,
                ProjectCommand::ConnectAzureDevOps { settings },
                &r.command_context(),
            )
            .await
            .map_err(ApiError::from)?;
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
