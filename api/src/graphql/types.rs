//! GraphQL output types over the read-model rows.

use async_graphql::{ComplexObject, Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use domain::api_key::Scope;
use domain::build_queue::QueueReason as DomainQueueReason;
use projections::deliveries::DeliveryRow;
use projections::test_results::{self, TestResultRow};
use projections::{api_keys::ApiKeyRow, builds, builds::BuildRow, projects, projects::ProjectRow};
use projections::{releases::ReleaseRow, Page};

use super::cursor;
use crate::error::ApiError;
use crate::state::AppState;

/// Where a build stands in the queue.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum QueueStatus {
    /// Waiting for a project and/or a release.
    Pending,
    Assigned,
    Rejected,
}

impl QueueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => builds::queue_status::PENDING,
            Self::Assigned => builds::queue_status::ASSIGNED,
            Self::Rejected => builds::queue_status::REJECTED,
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [Self::Pending, Self::Assigned, Self::Rejected]
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// Why a build waits in the queue.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum QueueReason {
    NoProjectMatched,
    ProjectAmbiguous,
    NoActiveRelease,
    SeveralActiveReleases,
    /// A user selected the project; the build waits for a release.
    ProjectSelected,
}

impl From<DomainQueueReason> for QueueReason {
    fn from(reason: DomainQueueReason) -> Self {
        match reason {
            DomainQueueReason::NoProjectMatched => Self::NoProjectMatched,
            DomainQueueReason::ProjectAmbiguous => Self::ProjectAmbiguous,
            DomainQueueReason::NoActiveRelease => Self::NoActiveRelease,
            DomainQueueReason::SeveralActiveReleases => Self::SeveralActiveReleases,
            DomainQueueReason::ProjectSelected => Self::ProjectSelected,
        }
    }
}

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

/// A project: what incoming builds are matched against.
pub struct Project(pub ProjectRow);

#[Object]
impl Project {
    async fn id(&self) -> ID {
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
    /// The project's Azure DevOps connection, if any (never its token).
    async fn azure_dev_ops(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<super::azure::AzureDevOpsConnection>> {
        let state = ctx.data_unchecked::<AppState>();
        let row = projections::azure::connection(&state.pool, self.0.project_id)
            .await
            .map_err(ApiError::from)?;
        Ok(row.map(Into::into))
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

/// A pull request a build was made for.
#[derive(SimpleObject)]
pub struct PullRequest {
    pub number: i64,
    /// The repository id at the source (an Azure Repos GUID).
    pub repository_id: Option<String>,
}

/// Counts of a build's test results.
#[derive(SimpleObject)]
pub struct TestSummary {
    pub total: i64,
    pub passed: i64,
    pub failed: i64,
    pub skipped: i64,
}

fn pull_request(row: &BuildRow) -> Option<PullRequest> {
    row.pull_request_number.map(|number| PullRequest {
        number,
        repository_id: row.pull_request_repository_id.clone(),
    })
}

async fn project_of(ctx: &Context<'_>, row: &BuildRow) -> async_graphql::Result<Option<Project>> {
    let Some(project_id) = row.project_id else {
        return Ok(None);
    };
    let state = ctx.data_unchecked::<AppState>();
    let project = projects::find(&state.pool, row.organization_id, project_id)
        .await
        .map_err(ApiError::from)?;
    Ok(project.map(Project))
}

/// A build waiting in (or resolved from) the build queue.
pub struct QueuedBuild(pub BuildRow);

#[Object]
impl QueuedBuild {
    async fn id(&self) -> ID {
        ID(self.0.build_id.to_string())
    }
    async fn build_name(&self) -> &str {
        &self.0.build_name
    }
    /// `azure-devops` or `ingest`.
    async fn source(&self) -> &str {
        &self.0.source
    }
    /// The matched or selected project, if any.
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Project>> {
        project_of(ctx, &self.0).await
    }
    async fn branch(&self) -> Option<&str> {
        self.0.branch.as_deref()
    }
    async fn commit_sha(&self) -> Option<&str> {
        self.0.commit_sha.as_deref()
    }
    async fn pull_request(&self) -> Option<PullRequest> {
        pull_request(&self.0)
    }
    async fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }
    async fn status(&self) -> Option<QueueStatus> {
        self.0.queue_status.as_deref().and_then(QueueStatus::parse)
    }
    /// Why the build waits; empty once it is assigned or rejected.
    async fn reason(&self) -> Option<QueueReason> {
        self.0
            .queue_reason
            .as_deref()
            .and_then(DomainQueueReason::parse)
            .map(QueueReason::from)
    }
    async fn rejection_reason(&self) -> Option<&str> {
        self.0.rejection_reason.as_deref()
    }
    async fn release_id(&self) -> Option<ID> {
        self.0.release_id.map(|id| ID(id.to_string()))
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
}

/// A build in a release.
pub struct Build(pub BuildRow);

#[Object]
impl Build {
    async fn id(&self) -> ID {
        ID(self.0.build_id.to_string())
    }
    async fn build_name(&self) -> &str {
        &self.0.build_name
    }
    async fn source(&self) -> &str {
        &self.0.source
    }
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Project>> {
        project_of(ctx, &self.0).await
    }
    async fn release_id(&self) -> Option<ID> {
        self.0.release_id.map(|id| ID(id.to_string()))
    }
    async fn branch(&self) -> Option<&str> {
        self.0.branch.as_deref()
    }
    async fn commit_sha(&self) -> Option<&str> {
        self.0.commit_sha.as_deref()
    }
    async fn pull_request(&self) -> Option<PullRequest> {
        pull_request(&self.0)
    }
    async fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }
    /// The outcome at the source (`succeeded`, `failed`, …).
    async fn result(&self) -> Option<&str> {
        self.0.result.as_deref()
    }
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }
    async fn added_to_release_at(&self) -> Option<DateTime<Utc>> {
        self.0.added_to_release_at
    }
    async fn test_summary(&self) -> TestSummary {
        TestSummary {
            total: self.0.tests_total,
            passed: self.0.tests_passed,
            failed: self.0.tests_failed,
            skipped: self.0.tests_skipped,
        }
    }

    /// The build's test results in upload order, optionally of one status.
    async fn test_results(
        &self,
        ctx: &Context<'_>,
        status: Option<TestStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<TestResultConnection> {
        let state = ctx.data_unchecked::<AppState>();
        let limit = cursor::page_size(first)?;
        let after = after.as_deref().map(cursor::decode_ordinal).transpose()?;
        let page = test_results::page(
            &state.pool,
            self.0.build_id,
            status.map(TestStatus::as_str),
            after,
            limit,
        )
        .await
        .map_err(ApiError::from)?;
        let items: Vec<(String, TestResult)> = page
            .items
            .into_iter()
            .map(|row| (cursor::encode_ordinal(row.ordinal), TestResult(row)))
            .collect();
        let end_cursor = items.last().map(|(cursor, _)| cursor.clone());
        Ok(TestResultConnection::from((
            items,
            PageInfo {
                has_next_page: page.has_next_page,
                end_cursor,
            },
        )))
    }
}

/// Outcome of one test.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum TestStatus {
    Passed,
    Failed,
    Skipped,
}

impl TestStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// One test result of a build.
pub struct TestResult(pub TestResultRow);

#[Object]
impl TestResult {
    async fn id(&self) -> ID {
        ID(self.0.test_result_id.to_string())
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn status(&self) -> TestStatus {
        match self.0.status.as_str() {
            "passed" => TestStatus::Passed,
            "skipped" => TestStatus::Skipped,
            _ => TestStatus::Failed,
        }
    }
    async fn duration_ms(&self) -> Option<i64> {
        self.0.duration_ms
    }
    async fn error_message(&self) -> Option<&str> {
        self.0.error_message.as_deref()
    }
    async fn priority(&self) -> Option<i32> {
        self.0.priority
    }
    async fn steps(&self) -> Option<&str> {
        self.0.steps.as_deref()
    }
    async fn tester_notes(&self) -> Option<&str> {
        self.0.tester_notes.as_deref()
    }
    async fn environment(&self) -> Option<&str> {
        self.0.environment.as_deref()
    }
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at
    }
    /// The Azure DevOps work item tracking this failure, if one was created.
    async fn work_item(&self) -> Option<WorkItemLink> {
        Some(WorkItemLink {
            id: self.0.work_item_id?,
            url: self.0.work_item_url.clone()?,
        })
    }
}

/// A work item in Azure DevOps.
#[derive(SimpleObject)]
pub struct WorkItemLink {
    pub id: i64,
    pub url: String,
}

/// One call to the webhook or ingest endpoint and what became of it.
pub struct Delivery(pub DeliveryRow);

#[Object]
impl Delivery {
    async fn id(&self) -> ID {
        ID(self.0.delivery_id.to_string())
    }
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }
    /// `azure-devops` or `ingest`.
    async fn source(&self) -> &str {
        &self.0.source
    }
    async fn event_type(&self) -> Option<&str> {
        self.0.event_type.as_deref()
    }
    /// `created`, `queued`, `duplicate`, `attached`, `ignored`, `filtered`, `unauthorized`, `invalid`,
    /// `rate_limited` or `failed`.
    async fn outcome(&self) -> &str {
        &self.0.outcome
    }
    async fn http_status(&self) -> i32 {
        self.0.http_status
    }
    /// What was done and why.
    async fn message(&self) -> &str {
        &self.0.message
    }
    async fn build_id(&self) -> Option<ID> {
        self.0.build_id.map(|id| ID(id.to_string()))
    }
    async fn queued_build_id(&self) -> Option<ID> {
        self.0.queued_build_id.map(|id| ID(id.to_string()))
    }
    /// The Azure DevOps service-hook subscription, to find the delivery in its history.
    async fn subscription_id(&self) -> Option<&str> {
        self.0.subscription_id.as_deref()
    }
    async fn notification_id(&self) -> Option<&str> {
        self.0.notification_id.as_deref()
    }
    async fn event_id(&self) -> Option<&str> {
        self.0.event_id.as_deref()
    }
    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }
}

/// A release of a project.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Release {
    #[graphql(skip)]
    pub row: ReleaseRow,
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
        let state = ctx.data_unchecked::<AppState>();
        let project = projects::find(&state.pool, self.row.organization_id, self.row.project_id)
            .await
            .map_err(ApiError::from)?;
        Ok(project.map(Project))
    }

    /// The release's builds, newest first.
    async fn builds(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<BuildConnection> {
        let state = ctx.data_unchecked::<AppState>();
        let limit = cursor::page_size(first)?;
        let page = builds::release_page(
            &state.pool,
            self.row.release_id,
            cursor::after(after)?,
            limit,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(connection(
            page,
            |row| row.added_to_release_at.unwrap_or(row.received_at),
            Build,
        ))
    }
}

/// An API key's metadata. The key itself is shown once, by `createApiKey`.
pub struct ApiKey(pub ApiKeyRow);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ID(self.0.api_key_id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The key's first 12 characters, to recognise it.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    async fn scopes(&self) -> &[String] {
        &self.0.scopes
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    /// When the key was last used (recorded within a few seconds).
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    /// The key's own limit in requests per minute; `null` means the server's default.
    async fn rate_limit_per_minute(&self) -> Option<i32> {
        self.0.rate_limit_per_minute
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A key just created: `key` is shown this once and cannot be retrieved again.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub key: String,
    pub api_key: ApiKey,
}

/// The caller's organization.
#[derive(SimpleObject)]
pub struct Organization {
    pub id: ID,
    pub name: String,
    /// Whether `X-Pt-Org-Id` is accepted in place of an API key on the webhook.
    pub org_id_auth_enabled: bool,
}

/// Every scope a key can hold, for clients building a key form.
pub fn scope_names() -> Vec<String> {
    Scope::ALL.iter().map(|scope| scope.to_string()).collect()
}

macro_rules! connection_type {
    ($connection:ident, $edge:ident, $node:ty) => {
        /// A page of results with keyset cursors.
        #[derive(SimpleObject)]
        pub struct $connection {
            pub edges: Vec<$edge>,
            pub page_info: PageInfo,
        }

        /// One result and its cursor.
        #[derive(SimpleObject)]
        pub struct $edge {
            pub cursor: String,
            pub node: $node,
        }

        impl From<(Vec<(String, $node)>, PageInfo)> for $connection {
            fn from((items, page_info): (Vec<(String, $node)>, PageInfo)) -> Self {
                Self {
                    edges: items
                        .into_iter()
                        .map(|(cursor, node)| $edge { cursor, node })
                        .collect(),
                    page_info,
                }
            }
        }
    };
}

connection_type!(QueuedBuildConnection, QueuedBuildEdge, QueuedBuild);
connection_type!(BuildConnection, BuildEdge, Build);
connection_type!(ReleaseConnection, ReleaseEdge, Release);
connection_type!(TestResultConnection, TestResultEdge, TestResult);
connection_type!(DeliveryConnection, DeliveryEdge, Delivery);

/// Where a page ends.
#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// Pass as `after` to read the next page.
    pub end_cursor: Option<String>,
}

/// Turns a read-model page into a connection, with cursors made from each row's sort key.
pub fn connection<R, N, C>(
    page: Page<R>,
    sort_time: impl Fn(&R) -> DateTime<Utc>,
    node: impl Fn(R) -> N,
) -> C
where
    R: RowId,
    C: From<(Vec<(String, N)>, PageInfo)>,
{
    let has_next_page = page.has_next_page;
    let items: Vec<(String, N)> = page
        .items
        .into_iter()
        .map(|row| (cursor::encode(sort_time(&row), row.row_id()), node(row)))
        .collect();
    let end_cursor = items.last().map(|(cursor, _)| cursor.clone());
    C::from((
        items,
        PageInfo {
            has_next_page,
            end_cursor,
        },
    ))
}

/// The id a row's cursor is made from.
pub trait RowId {
    fn row_id(&self) -> uuid::Uuid;
}

impl RowId for BuildRow {
    fn row_id(&self) -> uuid::Uuid {
        self.build_id
    }
}

impl RowId for DeliveryRow {
    fn row_id(&self) -> uuid::Uuid {
        self.delivery_id
    }
}

impl RowId for ReleaseRow {
    fn row_id(&self) -> uuid::Uuid {
        self.release_id
    }
}
