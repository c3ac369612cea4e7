//! Why an API key refused a command.

use crate::NameError;

/// A rule of the API-key aggregate that a command broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("the API key already exists")]
    AlreadyExists,
    #[error("the API key does not exist")]
    NotFound,
    #[error("the API key was already revoked")]
    AlreadyRevoked,
    #[error("API key name {0}")]
    InvalidName(NameError),
    #[error("an API key needs at least one scope")]
    NoScopes,
    #[error("the expiry must be in the future")]
    ExpiryInThePast,
    #[error("the rate limit must be between 1 and {max} requests per minute", max = super::MAX_RATE_LIMIT)]
    InvalidRateLimit,
    #[error("the key hash must be a SHA-256 hex digest and the prefix 12 characters")]
    MalformedSecret,
}
