//! Builds, queued builds and their test results as GraphQL objects.

use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use domain::build_queue::QueueReason as DomainQueueReason;
use projections::test_results::TestResultRow;
use projections::{builds, builds::BuildRow};

use super::{PageInfo, Project, TestResultConnection};
use crate::error::ApiError;
use crate::graphql::loaders::{BuildResults, Loaders};
use crate::graphql::{budget, cursor};

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
    /// The matched project is archived; select another project or restore it.
    ProjectArchived,
    /// A user took the build out of its release (`returnBuildToQueue`).
    ReturnedToQueue,
}

impl From<DomainQueueReason> for QueueReason {
    fn from(reason: DomainQueueReason) -> Self {
        match reason {
            DomainQueueReason::NoProjectMatched => Self::NoProjectMatched,
            DomainQueueReason::ProjectAmbiguous => Self::ProjectAmbiguous,
            DomainQueueReason::NoActiveRelease => Self::NoActiveRelease,
            DomainQueueReason::SeveralActiveReleases => Self::SeveralActiveReleases,
            DomainQueueReason::ProjectSelected => Self::ProjectSelected,
            DomainQueueReason::ProjectArchived => Self::ProjectArchived,
            DomainQueueReason::ReturnedToQueue => Self::ReturnedToQueue,
        }
    }
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

/// A build waiting in (or resolved from) the build queue.
pub struct QueuedBuild(pub BuildRow);

#[Object]
impl QueuedBuild {
    pub(crate) async fn id(&self) -> ID {
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
        super::project_of(ctx, self.0.organization_id, self.0.project_id).await
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
    /// The release it was assigned to, if any (read with the other builds' releases of a page).
    async fn release(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<super::Release>> {
        super::release_of(ctx, self.0.organization_id, self.0.release_id).await
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
}

/// A build in a release.
pub struct Build(pub BuildRow);

#[Object]
impl Build {
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.build_id.to_string())
    }
    async fn build_name(&self) -> &str {
        &self.0.build_name
    }
    async fn source(&self) -> &str {
        &self.0.source
    }
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Project>> {
        super::project_of(ctx, self.0.organization_id, self.0.project_id).await
    }
    async fn release_id(&self) -> Option<ID> {
        self.0.release_id.map(|id| ID(id.to_string()))
    }
    /// The release it is in (read with the other builds' releases of a page).
    async fn release(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<super::Release>> {
        super::release_of(ctx, self.0.organization_id, self.0.release_id).await
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
    #[graphql(complexity = "budget::paged(first, child_complexity)")]
    async fn test_results(
        &self,
        ctx: &Context<'_>,
        status: Option<TestStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<TestResultConnection> {
        let has_previous_page = after.is_some();
        let key = BuildResults {
            build_id: self.0.build_id,
            status: status.map(TestStatus::as_str),
            after: after.as_deref().map(cursor::decode_ordinal).transpose()?,
            limit: cursor::page_size(first)?,
        };
        let page = ctx
            .data::<Loaders>()?
            .load_one(key)
            .await
            .map_err(ApiError::from)?;
        let (rows, has_next_page) = page.map_or((Vec::new(), false), |page| {
            (page.items.clone(), page.has_next_page)
        });
        let items: Vec<(String, TestResult)> = rows
            .into_iter()
            .map(|row| (cursor::encode_ordinal(row.ordinal), TestResult(row)))
            .collect();
        let start_cursor = items.first().map(|(cursor, _)| cursor.clone());
        let end_cursor = items.last().map(|(cursor, _)| cursor.clone());
        Ok(TestResultConnection::from((
            items,
            PageInfo {
                has_next_page,
                has_previous_page,
                start_cursor,
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
    pub(crate) async fn id(&self) -> ID {
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
