//! Why a release refused a command.

use super::ReleaseStatus;
use crate::NameError;

/// A rule of the release aggregate that a command broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReleaseError {
    #[error("the release already exists")]
    AlreadyExists,
    #[error("the release does not exist")]
    NotFound,
    #[error("release name {0}")]
    InvalidName(NameError),
    #[error("only an active release can be completed; this one is {0}")]
    NotActive(ReleaseStatus),
    #[error("only a completed release can be archived; this one is {0}")]
    NotCompleted(ReleaseStatus),
    #[error("only a completed release can be reopened; this one is {0}")]
    NotReopenable(ReleaseStatus),
    #[error("an archived release cannot be renamed")]
    ArchivedIsReadOnly,
}
