//! Events of a project's life. Persisted forever: never rename or reshape one, add an upcaster.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ProjectSettings, RetentionPolicy};
use crate::branches::BranchFilters;

/// What happened to a project. Both events carry the whole validated settings, so projections copy them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProjectEvent {
    ProjectCreated {
        project_id: Uuid,
        organization_id: Uuid,
        settings: ProjectSettings,
    },
    ProjectUpdated {
        settings: ProjectSettings,
    },
    BranchFiltersChanged {
        filters: BranchFilters,
    },
    RetentionPolicyChanged {
        policy: RetentionPolicy,
    },
    AzureDevOpsConnected {
        settings: crate::azure::AzureDevOpsSettings,
    },
    AzureDevOpsDisconnected,
    ProjectArchived {
        reason: Option<String>,
        archived_at: chrono::DateTime<chrono::Utc>,
    },
    ProjectRestored {
        restored_at: chrono::DateTime<chrono::Utc>,
    },
    RetentionSyncChanged {
        enabled: bool,
    },
    /// The Azure DevOps retention read by the retention job (or when the sync was turned on) changed.
    AzureRetentionSynced {
        retention: super::AzureRetention,
        synced_at: chrono::DateTime<chrono::Utc>,
    },
    /// The Azure DevOps retention could not be read, with Azure DevOps' reason; the last values stay in force.
    AzureRetentionSyncFailed {
        message: String,
        failed_at: chrono::DateTime<chrono::Utc>,
    },
}

impl DomainEvent for ProjectEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ProjectCreated { .. } => "ProjectCreated",
            Self::ProjectUpdated { .. } => "ProjectUpdated",
            Self::BranchFiltersChanged { .. } => "BranchFiltersChanged",
            Self::RetentionPolicyChanged { .. } => "RetentionPolicyChanged",
            Self::AzureDevOpsConnected { .. } => "AzureDevOpsConnected",
            Self::AzureDevOpsDisconnected => "AzureDevOpsDisconnected",
            Self::ProjectArchived { .. } => "ProjectArchived",
            Self::ProjectRestored { .. } => "ProjectRestored",
            Self::RetentionSyncChanged { .. } => "RetentionSyncChanged",
            Self::AzureRetentionSynced { .. } => "AzureRetentionSynced",
            Self::AzureRetentionSyncFailed { .. } => "AzureRetentionSyncFailed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
