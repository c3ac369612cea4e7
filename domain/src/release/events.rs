//! Events of a release's life. Persisted forever: never rename or reshape one, add an upcaster.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What happened to a release. Builds join a release through the build queue's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReleaseEvent {
    ReleaseCreated {
        release_id: Uuid,
        organization_id: Uuid,
        project_id: Uuid,
        name: String,
        created_at: DateTime<Utc>,
    },
    ReleaseCompleted {
        completed_at: DateTime<Utc>,
    },
    ReleaseArchived {
        archived_at: DateTime<Utc>,
    },
    ReleaseRenamed {
        name: String,
        renamed_at: DateTime<Utc>,
    },
    /// A completed release is active again.
    ReleaseReopened {
        reopened_at: DateTime<Utc>,
    },
}

impl DomainEvent for ReleaseEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ReleaseCreated { .. } => "ReleaseCreated",
            Self::ReleaseCompleted { .. } => "ReleaseCompleted",
            Self::ReleaseArchived { .. } => "ReleaseArchived",
            Self::ReleaseRenamed { .. } => "ReleaseRenamed",
            Self::ReleaseReopened { .. } => "ReleaseReopened",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
