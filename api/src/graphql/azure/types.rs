//! The integration's GraphQL types: field mappings, a project's connection as shown (never its token), and
//! outbound calls.

use async_graphql::{Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use domain::azure::MappedField;
use projections::azure;
use projections::outbox::OutboxRow;

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
    /// `https://dev.azure.com/{org}`, `https://{org}.visualstudio.com`, or the collection URL of an Azure DevOps
    /// Server host this service is configured for (`LATHE_AZURE_SERVER_HOSTS`).
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
    pub(super) fn as_str(self) -> &'static str {
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
