//! Read model of API keys: what authentication looks keys up in, and what `apiKeys` lists.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::EventEnvelope;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::api_key::{ApiKey, ApiKeyEvent};

use crate::organizations::aggregate_uuid;
use crate::{Projector, StreamRows};

/// Projects API-key events into `api_keys`.
pub struct ApiKeysProjector;

#[async_trait]
impl Projector<ApiKey> for ApiKeysProjector {
    fn projection(&self) -> &'static str {
        "api_keys"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["api_keys"]
    }

    fn stream_rows(&self) -> Option<StreamRows> {
        Some(StreamRows {
            table: "api_keys",
            key: "api_key_id",
            removed_by: None,
        })
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope<ApiKey>,
    ) -> Result<(), sqlx::Error> {
        match &event.payload {
            ApiKeyEvent::ApiKeyCreated {
                api_key_id,
                organization_id,
                name,
                scopes,
                expires_at,
                prefix,
                key_hash,
                created_at,
            } => {
                let scopes: Vec<&str> = scopes.iter().map(|scope| scope.as_str()).collect();
                sqlx::query(
                    "INSERT INTO api_keys (api_key_id, organization_id, name, prefix, key_hash, scopes, expires_at,
                        created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(api_key_id)
                .bind(organization_id)
                .bind(name)
                .bind(prefix)
                .bind(key_hash)
                .bind(scopes)
                .bind(expires_at)
                .bind(created_at)
                .execute(conn)
                .await?;
            }
            ApiKeyEvent::ApiKeyRateLimitChanged {
                rate_limit_per_minute,
            } => {
                sqlx::query("UPDATE api_keys SET rate_limit_per_minute = $2 WHERE api_key_id = $1")
                    .bind(aggregate_uuid(&event.aggregate_id))
                    .bind(rate_limit_per_minute.map(|n| n as i32))
                    .execute(conn)
                    .await?;
            }
            ApiKeyEvent::ApiKeyRevoked { revoked_at } => {
                sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE api_key_id = $1")
                    .bind(aggregate_uuid(&event.aggregate_id))
                    .bind(revoked_at)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// An API key's metadata. The hash is there for authentication to compare; it is never shown.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub api_key_id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub rate_limit_per_minute: Option<i32>,
    /// From `api_key_usage`, which is written in batches.
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub(crate) const COLUMNS: &str =
    "k.api_key_id, k.organization_id, k.name, k.prefix, k.key_hash, k.scopes, k.expires_at, \
    k.revoked_at, k.rate_limit_per_minute, u.last_used_at, k.created_at";
pub(crate) const FROM: &str =
    "api_keys k LEFT JOIN public.api_key_usage u ON u.api_key_id = k.api_key_id";

/// Every key that starts with `prefix`: usually one, but prefixes are short, so the caller compares hashes.
pub async fn with_prefix(pool: &PgPool, prefix: &str) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM {FROM} WHERE k.prefix = $1"))
        .bind(prefix)
        .fetch_all(pool)
        .await
}

/// Finds one key of an organization.
pub async fn find(
    pool: &PgPool,
    organization_id: Uuid,
    api_key_id: Uuid,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE k.organization_id = $1 AND k.api_key_id = $2"
    ))
    .bind(organization_id)
    .bind(api_key_id)
    .fetch_optional(pool)
    .await
}

/// Every key of an organization, newest first.
pub async fn list(pool: &PgPool, organization_id: Uuid) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE k.organization_id = $1 ORDER BY k.created_at DESC, k.api_key_id DESC"
    ))
    .bind(organization_id)
    .fetch_all(pool)
    .await
}

/// Records when keys were last used, in one statement for a whole batch; never moves a time backwards.
pub async fn record_usage(
    pool: &PgPool,
    usage: &[(Uuid, DateTime<Utc>)],
) -> Result<(), sqlx::Error> {
    if usage.is_empty() {
        return Ok(());
    }
    let (ids, times): (Vec<Uuid>, Vec<DateTime<Utc>>) = usage.iter().copied().unzip();
    sqlx::query(
        "INSERT INTO public.api_key_usage (api_key_id, last_used_at)
         SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[])
         ON CONFLICT (api_key_id) DO UPDATE
         SET last_used_at = GREATEST(api_key_usage.last_used_at, EXCLUDED.last_used_at)",
    )
    .bind(ids)
    .bind(times)
    .execute(pool)
    .await?;
    Ok(())
}
