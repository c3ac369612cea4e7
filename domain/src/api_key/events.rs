//! Events of an API key's life. Persisted forever: never rename or reshape one, add an upcaster.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Scope;

/// What happened to an API key. Auditors read these: they hold the hash and prefix, never the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ApiKeyEvent {
    ApiKeyCreated {
        api_key_id: Uuid,
        organization_id: Uuid,
        name: String,
        scopes: Vec<Scope>,
        expires_at: Option<DateTime<Utc>>,
        prefix: String,
        /// Lowercase hex SHA-256 of the whole key.
        key_hash: String,
        created_at: DateTime<Utc>,
    },
    ApiKeyRevoked {
        revoked_at: DateTime<Utc>,
    },
    /// The key's own limit; `None` returns it to the server's default.
    ApiKeyRateLimitChanged {
        rate_limit_per_minute: Option<u32>,
    },
}

impl DomainEvent for ApiKeyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ApiKeyCreated { .. } => "ApiKeyCreated",
            Self::ApiKeyRevoked { .. } => "ApiKeyRevoked",
            Self::ApiKeyRateLimitChanged { .. } => "ApiKeyRateLimitChanged",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
