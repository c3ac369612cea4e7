//! Why a build-queue entry refused a command.

use uuid::Uuid;

use crate::release::ReleaseStatus;
use crate::NameError;

/// A rule of the build-queue aggregate that a command broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuildQueueError {
    /// A re-delivery of a build already received: the caller answers `duplicate` with the existing ids.
    #[error("this build was already received")]
    AlreadyReceived,
    #[error("the queued build does not exist")]
    NotFound,
    #[error("the build expired under its project's retention policy")]
    Expired,
    #[error("the build went straight into a release and was never queued")]
    NotQueued,
    #[error("the queued build was already assigned to release {0}")]
    AlreadyAssigned(Uuid),
    #[error("the queued build was already rejected")]
    AlreadyRejected,
    #[error("builds can only be added to an active release; this one is {0}")]
    ReleaseNotActive(ReleaseStatus),
    #[error("the release belongs to another project than the build")]
    ReleaseInAnotherProject,
    #[error("build name {0}")]
    InvalidName(crate::NameError),
    #[error("rejection reason {0}")]
    InvalidReason(NameError),
    /// A retried upload: its results are stored already.
    #[error("these test results were already recorded")]
    UploadAlreadyRecorded,
    #[error("test result {index}: title {error}")]
    InvalidTestTitle { index: usize, error: NameError },
    #[error("reason {0}")]
    InvalidCorrectionReason(NameError),
    #[error("the build is not in a release (a queued build is assigned, not moved)")]
    NotInRelease,
    #[error("the build is already in release {0}")]
    AlreadyInRelease(Uuid),
    #[error("the release's project is archived: it takes no builds")]
    ProjectArchived,
    #[error("only a rejected build can be restored")]
    NotRejected,
}
