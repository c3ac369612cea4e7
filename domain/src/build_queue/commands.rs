//! Commands a build-queue entry accepts, and the values they carry.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::release::ReleaseRef;

/// Namespace of the deterministic entry ids (UUID v5), fixed forever: changing it would give re-deliveries of old
/// builds new ids.
const ENTRY_NAMESPACE: Uuid = Uuid::from_u128(0x6c61_7468_652d_4275_696c_6451_7565_7565);

/// Where a build came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BuildSource {
    /// An Azure DevOps service-hook delivery.
    AzureDevOps,
    /// A call to the results-ingest API from a CI pipeline.
    Ingest,
}

impl BuildSource {
    /// The stable name used in read models and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AzureDevOps => "azure-devops",
            Self::Ingest => "ingest",
        }
    }

    /// Parses [`BuildSource::as_str`] back.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "azure-devops" => Some(Self::AzureDevOps),
            "ingest" => Some(Self::Ingest),
            _ => None,
        }
    }
}

/// A build's identity at its source: for Azure DevOps the collection, project and build id. Two deliveries of one
/// build have the same identity and so address the same aggregate instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BuildIdentity {
    pub organization_id: Uuid,
    pub source: BuildSource,
    /// Source-specific key, e.g. `fabrikamfiber/<project guid>/2727068`.
    pub key: String,
}

impl BuildIdentity {
    /// The queue entry id: a UUID v5 of the organization, source and key, so that it is the same on every delivery.
    pub fn entry_id(&self) -> Uuid {
        let name = format!(
            "{}\n{}\n{}",
            self.organization_id,
            self.source.as_str(),
            self.key
        );
        Uuid::new_v5(&ENTRY_NAMESPACE, name.as_bytes())
    }
}

/// A pull request a build was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestRef {
    pub number: u64,
    /// The repository id at the source (an Azure Repos GUID), needed to post statuses back.
    pub repository_id: Option<String>,
}

/// Counts of a build's test results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestSummary {
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

/// What is known of a build when it arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildDetails {
    pub name: String,
    pub branch: Option<String>,
    pub commit_sha: Option<String>,
    pub pull_request: Option<PullRequestRef>,
    /// Link to the build at its source, for people.
    pub url: Option<String>,
    /// The outcome at the source (`succeeded`, `failed`, …) when it reported one.
    pub result: Option<String>,
}

/// Outcome of one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestStatus {
    Passed,
    Failed,
    Skipped,
}

impl TestStatus {
    /// The stable lowercase name used on the wire and in read models.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// Parses [`TestStatus::as_str`] back.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Passed, Self::Failed, Self::Skipped]
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// One test result as a CI pipeline reported it. The text fields are the sources of the spec's work-item field
/// mappings (title, priority, steps, tester notes, environment).
///
/// Absent fields are left out of the stored event (older events spell them `null`; both read back as `None`): an
/// upload may hold 100,000 results, and the nulls were a third of its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    pub test_result_id: Uuid,
    pub title: String,
    pub status: TestStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tester_notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// A batch of results from one ingest call, stored whole or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResultsUpload {
    /// Identifies the call, so that a retried call is recognised and stored once.
    pub upload_id: Uuid,
    /// Shared, not copied, between the command, its event and the read models: an upload may hold 100,000 results.
    pub results: Arc<Vec<TestResult>>,
}

impl TestResultsUpload {
    /// Counts the upload's results by status.
    pub fn summary(&self) -> TestSummary {
        let mut summary = TestSummary {
            total: self.results.len() as u64,
            ..TestSummary::default()
        };
        for result in self.results.iter() {
            match result.status {
                TestStatus::Passed => summary.passed += 1,
                TestStatus::Failed => summary.failed += 1,
                TestStatus::Skipped => summary.skipped += 1,
            }
        }
        summary
    }
}

/// Why a build waits in the queue instead of going straight into a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueReason {
    NoProjectMatched,
    ProjectAmbiguous,
    NoActiveRelease,
    SeveralActiveReleases,
    /// A user chose the project; the build now waits for a release.
    ProjectSelected,
    /// The matched project is archived: it takes no new builds.
    ProjectArchived,
    /// A user took the build out of its release; it waits for a project and a release again.
    ReturnedToQueue,
}

impl QueueReason {
    /// The stable name used in read models.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoProjectMatched => "no_project_matched",
            Self::ProjectAmbiguous => "project_ambiguous",
            Self::NoActiveRelease => "no_active_release",
            Self::SeveralActiveReleases => "several_active_releases",
            Self::ProjectSelected => "project_selected",
            Self::ProjectArchived => "project_archived",
            Self::ReturnedToQueue => "returned_to_queue",
        }
    }

    /// Parses [`QueueReason::as_str`] back.
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::NoProjectMatched,
            Self::ProjectAmbiguous,
            Self::NoActiveRelease,
            Self::SeveralActiveReleases,
            Self::ProjectSelected,
            Self::ProjectArchived,
            Self::ReturnedToQueue,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == value)
    }
}

/// Where the router decided a new build goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Straight into the project's one active release.
    Release(ReleaseRef),
    /// Into the queue, with or without a matched project.
    Queue {
        project_id: Option<Uuid>,
        reason: QueueReason,
    },
}

/// Where a build is moved, with what the build queue must know of it to decide without I/O: the release (read
/// from the releases read model) and whether its project is archived (read from the projects read model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    pub release: ReleaseRef,
    pub project_archived: bool,
}

/// What can be asked of a build-queue entry.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildQueueCommand {
    /// Records a new build and where it goes; test results that came with it are stored in the same commit.
    ReceiveBuild {
        identity: BuildIdentity,
        details: BuildDetails,
        route: Route,
        received_at: DateTime<Utc>,
        results: Option<TestResultsUpload>,
    },
    /// Adds test results to a build already received (by a webhook or an earlier ingest call).
    RecordTestResults {
        upload: TestResultsUpload,
        at: DateTime<Utc>,
    },
    SelectProject {
        project_id: Uuid,
    },
    AssignToRelease {
        release: ReleaseRef,
        /// Whether the release's project is archived (it then takes no builds), read with the release.
        project_archived: bool,
        at: DateTime<Utc>,
    },
    Reject {
        reason: String,
        at: DateTime<Utc>,
    },
    /// Records a work item created in Azure DevOps for some of the build's failed tests.
    LinkWorkItem {
        test_result_ids: Vec<Uuid>,
        work_item_id: u64,
        url: String,
        at: DateTime<Utc>,
    },
    /// Applies the project's retention policy: the build leaves the read models; its events stay.
    Expire {
        reason: String,
        at: DateTime<Utc>,
    },
    /// Corrects a mistake: takes a build that is in a release into another active release, of its own project or
    /// another; its test results, work-item links and pull request go with it.
    MoveToRelease {
        destination: Destination,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Corrects a mistake: takes a build out of its release; it is pending again, for a project and a release.
    ReturnToQueue {
        reason: String,
        at: DateTime<Utc>,
    },
    /// Undoes a rejection: the build is pending again, with the queue reason it had before.
    RestoreRejected {
        at: DateTime<Utc>,
    },
}
