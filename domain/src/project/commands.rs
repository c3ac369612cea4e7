//! Commands a project accepts.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::branches::BranchFilters;

/// How long a project keeps its builds, and when its completed releases are archived. Unset values keep forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Builds received more than this many days ago expire.
    pub keep_days: Option<u32>,
    /// Only the newest this many builds are kept.
    pub keep_last: Option<u32>,
    /// Completed releases are archived this many days after completion.
    pub archive_completed_after_days: Option<u32>,
}

impl RetentionPolicy {
    /// Whether any rule is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The settings a user gives a project; the matcher compares incoming builds against them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSettings {
    pub name: String,
    /// The Lathe project URL, matched exactly (after normalization) against a build's project URL.
    pub url: Option<String>,
    pub repository_urls: Vec<String>,
    /// Azure DevOps project GUID, when known: the most reliable match.
    pub azure_project_id: Option<String>,
    /// Azure Repos repository GUIDs (or `owner/name` for GitHub repositories built by Azure Pipelines).
    pub azure_repository_ids: Vec<String>,
}

/// What can be asked of a project.
#[derive(Debug, Clone, PartialEq)]
pub enum ProjectCommand {
    CreateProject {
        project_id: Uuid,
        organization_id: Uuid,
        settings: ProjectSettings,
        branch_filters: BranchFilters,
        retention: RetentionPolicy,
    },
    /// Replaces every setting at once, so that the event records the whole new state; filters and retention
    /// change only when given.
    UpdateProject {
        settings: ProjectSettings,
        branch_filters: Option<BranchFilters>,
        retention: Option<RetentionPolicy>,
    },
    /// Connects (or reconnects) the project to Azure DevOps. The caller checked the settings against Azure
    /// DevOps and stored the token, encrypted, outside the event store.
    ConnectAzureDevOps {
        settings: crate::azure::AzureDevOpsSettings,
    },
    /// Stops new work items and statuses; links already made remain.
    DisconnectAzureDevOps,
    /// Retires the project: it no longer matches new builds and its Azure DevOps calls stop; its releases and
    /// builds stay readable.
    ArchiveProject {
        reason: Option<String>,
        at: chrono::DateTime<chrono::Utc>,
    },
    /// Undoes [`ProjectCommand::ArchiveProject`].
    RestoreProject { at: chrono::DateTime<chrono::Utc> },
    /// Takes (or stops taking) the build retention from the connected Azure DevOps project.
    SetRetentionSync { enabled: bool },
    /// Records what reading the Azure DevOps retention gave: its values, or why they could not be read.
    RecordAzureRetention {
        outcome: Result<super::AzureRetention, String>,
        at: chrono::DateTime<chrono::Utc>,
    },
}
