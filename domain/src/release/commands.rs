//! Commands a release accepts.

use uuid::Uuid;

/// What can be asked of a release.
#[derive(Debug, Clone, PartialEq)]
pub enum ReleaseCommand {
    /// Creates an active release. The caller has checked that the project exists in the organization.
    CreateRelease {
        release_id: Uuid,
        organization_id: Uuid,
        project_id: Uuid,
        name: String,
        at: chrono::DateTime<chrono::Utc>,
    },
    CompleteRelease {
        at: chrono::DateTime<chrono::Utc>,
    },
    ArchiveRelease {
        at: chrono::DateTime<chrono::Utc>,
    },
    /// Gives the release another name; an archived release is read-only.
    RenameRelease {
        name: String,
        at: chrono::DateTime<chrono::Utc>,
    },
    /// Makes a completed (not archived) release active again, so that builds can join it.
    ReopenRelease {
        at: chrono::DateTime<chrono::Utc>,
    },
}
