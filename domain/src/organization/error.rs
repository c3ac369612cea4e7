//! Why an organization refused a command.

use crate::NameError;

/// A rule of the organization aggregate that a command broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrganizationError {
    #[error("the organization already exists")]
    AlreadyExists,
    #[error("the organization does not exist")]
    NotFound,
    #[error("organization name {0}")]
    InvalidName(NameError),
}
