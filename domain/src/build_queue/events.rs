//! Events of a build's life. Persisted forever: never rename or reshape one, add an upcaster.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{BuildDetails, BuildSource, QueueReason, TestResult, TestSummary};

/// What happened to a build. `BuildReceived` is always followed, in the same commit, by `BuildCreatedInRelease` or
/// `BuildQueued`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BuildQueueEvent {
    BuildReceived {
        entry_id: Uuid,
        organization_id: Uuid,
        source: BuildSource,
        source_key: String,
        details: BuildDetails,
        received_at: DateTime<Utc>,
    },
    BuildCreatedInRelease {
        release_id: Uuid,
        project_id: Uuid,
    },
    BuildQueued {
        project_id: Option<Uuid>,
        reason: QueueReason,
    },
    ProjectSelectedForBuild {
        project_id: Uuid,
    },
    BuildAssignedToRelease {
        release_id: Uuid,
        project_id: Uuid,
        assigned_at: DateTime<Utc>,
    },
    QueuedBuildRejected {
        reason: String,
        rejected_at: DateTime<Utc>,
    },
    /// The project's retention policy expired the build: it and its results leave the read models.
    BuildExpired {
        /// The release the build was in, if any, so that its count can drop without a lookup.
        release_id: Option<Uuid>,
        reason: String,
        expired_at: DateTime<Utc>,
    },
    /// A work item in Azure DevOps now tracks these failed tests (one, or all of them for a summary item).
    WorkItemLinked {
        test_result_ids: Vec<Uuid>,
        work_item_id: u64,
        url: String,
        linked_at: DateTime<Utc>,
    },
    /// One upload's results, with their counts so that projections need not recount.
    TestResultsRecorded {
        upload_id: Uuid,
        results: Arc<Vec<TestResult>>,
        summary: TestSummary,
        recorded_at: DateTime<Utc>,
    },
    /// A person moved the build from one release into another (of the same project or another).
    BuildMovedToRelease {
        from_release_id: Uuid,
        from_project_id: Option<Uuid>,
        release_id: Uuid,
        project_id: Uuid,
        reason: String,
        moved_at: DateTime<Utc>,
    },
    /// A person took the build out of its release: it is pending in the queue again.
    BuildReturnedToQueue {
        from_release_id: Uuid,
        /// The project the build keeps as a suggestion (a person may select another).
        project_id: Option<Uuid>,
        reason: String,
        returned_at: DateTime<Utc>,
    },
    /// A rejection was undone: the build is pending again with the queue reason it had before.
    RejectedBuildRestored {
        project_id: Option<Uuid>,
        reason: QueueReason,
        restored_at: DateTime<Utc>,
    },
}

impl DomainEvent for BuildQueueEvent {
    fn event_type(&self) -> String {
        match self {
            Self::BuildReceived { .. } => "BuildReceived",
            Self::BuildCreatedInRelease { .. } => "BuildCreatedInRelease",
            Self::BuildQueued { .. } => "BuildQueued",
            Self::ProjectSelectedForBuild { .. } => "ProjectSelectedForBuild",
            Self::BuildAssignedToRelease { .. } => "BuildAssignedToRelease",
            Self::QueuedBuildRejected { .. } => "QueuedBuildRejected",
            Self::TestResultsRecorded { .. } => "TestResultsRecorded",
            Self::BuildExpired { .. } => "BuildExpired",
            Self::WorkItemLinked { .. } => "WorkItemLinked",
            Self::BuildMovedToRelease { .. } => "BuildMovedToRelease",
            Self::BuildReturnedToQueue { .. } => "BuildReturnedToQueue",
            Self::RejectedBuildRestored { .. } => "RejectedBuildRestored",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
