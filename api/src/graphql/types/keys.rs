//! Organizations and API keys as GraphQL objects.

use async_graphql::{Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use domain::api_key::Scope;
use projections::api_keys::ApiKeyRow;

/// An API key's metadata. The key itself is shown once, by `createApiKey`.
pub struct ApiKey(pub ApiKeyRow);

#[Object]
impl ApiKey {
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.api_key_id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The key's first 12 characters, to recognise it.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    async fn scopes(&self) -> &[String] {
        &self.0.scopes
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    /// When the key was last used (recorded within a few seconds).
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    /// The key's own limit in requests per minute; `null` means the server's default.
    async fn rate_limit_per_minute(&self) -> Option<i32> {
        self.0.rate_limit_per_minute
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A key just created: `key` is shown this once and cannot be retrieved again.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub key: String,
    pub api_key: ApiKey,
}

/// The caller's organization.
#[derive(SimpleObject)]
pub struct Organization {
    pub id: ID,
    pub name: String,
    /// Whether `X-Pt-Org-Id` is accepted in place of an API key on the webhook.
    pub org_id_auth_enabled: bool,
}

/// Every scope a key can hold, for clients building a key form.
pub fn scope_names() -> Vec<String> {
    Scope::ALL.iter().map(|scope| scope.to_string()).collect()
}
