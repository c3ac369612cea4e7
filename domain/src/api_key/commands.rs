//! Commands an API key accepts, and the scopes a key can hold.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One permission a key can hold. Every query and mutation requires exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "builds:read")]
    BuildsRead,
    #[serde(rename = "builds:create")]
    BuildsCreate,
    #[serde(rename = "builds:assign")]
    BuildsAssign,
    #[serde(rename = "releases:write")]
    ReleasesWrite,
    #[serde(rename = "projects:write")]
    ProjectsWrite,
    #[serde(rename = "keys:manage")]
    KeysManage,
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 7] = [
        Scope::BuildsRead,
        Scope::BuildsCreate,
        Scope::BuildsAssign,
        Scope::ReleasesWrite,
        Scope::ProjectsWrite,
        Scope::KeysManage,
        Scope::AuditRead,
    ];

    /// The scope's name as users write it, e.g. `builds:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BuildsRead => "builds:read",
            Self::BuildsCreate => "builds:create",
            Self::BuildsAssign => "builds:assign",
            Self::ReleasesWrite => "releases:write",
            Self::ProjectsWrite => "projects:write",
            Self::KeysManage => "keys:manage",
            Self::AuditRead => "audit:read",
        }
    }

    /// Parses [`Scope::as_str`] back.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == value)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can be asked of an API key.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiKeyCommand {
    /// Records a new key. The caller generated it and passes only its identifying prefix and SHA-256 hash: the
    /// plaintext never enters the domain, so it can never reach an event.
    CreateApiKey {
        api_key_id: Uuid,
        organization_id: Uuid,
        name: String,
        scopes: Vec<Scope>,
        expires_at: Option<DateTime<Utc>>,
        prefix: String,
        key_hash: String,
        /// Requests per minute this key may make; `None` uses the server's default.
        rate_limit_per_minute: Option<u32>,
        at: DateTime<Utc>,
    },
    /// Sets (or, with `None`, clears) the key's own rate limit.
    SetRateLimit {
        rate_limit_per_minute: Option<u32>,
    },
    RevokeApiKey {
        at: DateTime<Utc>,
    },
}
