//! Why a project refused a command.

use crate::NameError;

/// A rule of the project aggregate that a command broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProjectError {
    #[error("the project already exists")]
    AlreadyExists,
    #[error("the project does not exist")]
    NotFound,
    #[error("project name {0}")]
    InvalidName(NameError),
    #[error("{field} is not an http(s) URL: {value}")]
    InvalidUrl { field: &'static str, value: String },
    #[error("{field} must not contain blank entries")]
    BlankEntry { field: &'static str },
    #[error("branch filter {0}")]
    InvalidBranchFilter(crate::branches::GlobError),
    #[error("Azure DevOps connection: {0}")]
    InvalidAzureDevOps(crate::azure::AzureSettingsError),
    #[error("the project is not connected to Azure DevOps")]
    NotConnected,
    #[error("retention {0} must be at least 1 when set")]
    InvalidRetention(&'static str),
    #[error("the project is already archived")]
    AlreadyArchived,
    #[error("the project is not archived")]
    NotArchived,
    #[error("archive reason {0}")]
    InvalidArchiveReason(NameError),
    #[error("the project does not sync its retention from Azure DevOps")]
    RetentionSyncOff,
}
