//! Issuing API keys, shared by the `createApiKey` mutation and `lathe org create`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use domain::api_key::{ApiKey, ApiKeyCommand, Scope};
use projections::{api_keys, CommandContext, EventStore};
use sqlx::PgPool;

use crate::auth::{generate_key, hash_key, key_prefix};
use crate::error::ApiError;

/// A key just created: the plaintext, shown this once, and its stored metadata.
pub struct IssuedKey {
    pub key: String,
    pub row: api_keys::ApiKeyRow,
}

/// What a new key is to be.
pub struct KeySpec {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<DateTime<Utc>>,
    pub rate_limit_per_minute: Option<u32>,
}

/// Creates a key for an organization. Only its hash and prefix reach the event store.
pub async fn issue(
    store: &EventStore,
    pool: &PgPool,
    organization_id: Uuid,
    spec: KeySpec,
    context: &CommandContext,
) -> Result<IssuedKey, ApiError> {
    let KeySpec {
        name,
        scopes,
        expires_at,
        rate_limit_per_minute,
    } = spec;
    let key = generate_key();
    let api_key_id = Uuid::new_v4();
    let command = ApiKeyCommand::CreateApiKey {
        api_key_id,
        organization_id,
        name,
        scopes,
        expires_at,
        prefix: key_prefix(&key),
        key_hash: hash_key(&key),
        rate_limit_per_minute,
        at: context.at,
    };
    store
        .execute::<ApiKey>(api_key_id, command, context)
        .await?;
    let row = api_keys::find(pool, organization_id, api_key_id)
        .await?
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "the new key is missing from the read model"
            ))
        })?;
    Ok(IssuedKey { key, row })
}
