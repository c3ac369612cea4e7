//! Mutations of API keys and of the organization's authentication settings.

use async_graphql::{Context, InputObject, Object, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use domain::api_key::{ApiKey as ApiKeyAggregate, ApiKeyCommand, Scope};
use domain::organization::{Organization as OrganizationAggregate, OrganizationCommand};
use projections::{api_keys, organizations};

use crate::error::ApiError;
use crate::graphql::types::{ApiKey, CreatedApiKey, Organization};
use crate::graphql::{parse_id, Resolver};
use crate::keys;

/// Creating, changing and revoking API keys.
#[derive(Default)]
pub struct ApiKeyMutation;

/// A key's rate limit.
#[derive(InputObject)]
pub struct UpdateApiKeyInput {
    /// Requests per minute, at most the server's cap (6,000 unless configured); `null` returns the key to the
    /// server's default.
    pub rate_limit_per_minute: async_graphql::MaybeUndefined<i32>,
}

/// Checks a per-key limit against the operator's cap (`LATHE_RATE_LIMIT_MAX_PER_MINUTE`), which the domain's own
/// bound also limits.
fn rate_limit(value: Option<i32>, cap: u32) -> Result<Option<u32>, ApiError> {
    let cap = cap.clamp(1, domain::api_key::MAX_RATE_LIMIT);
    value
        .map(|v| {
            u32::try_from(v)
                .ok()
                .filter(|v| (1..=cap).contains(v))
                .ok_or_else(|| {
                    ApiError::BadUserInput(format!(
                        "rateLimitPerMinute must be between 1 and {cap}, this server's cap \
                         (LATHE_RATE_LIMIT_MAX_PER_MINUTE)"
                    ))
                })
        })
        .transpose()
}

/// A new API key.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    pub name: String,
    /// Scope names such as `builds:read`; see `apiKeyScopes`.
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per minute for this key, at most the server's cap (6,000 unless configured); default: the server's
    /// limit (60 unless configured).
    pub rate_limit_per_minute: Option<i32>,
}

#[Object]
impl ApiKeyMutation {
    /// Creates an API key. The key is in the answer and nowhere else, ever. A key can only grant scopes its
    /// creator holds.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> async_graphql::Result<CreatedApiKey> {
        let r = Resolver::new(ctx, Scope::KeysManage)?;
        let scopes = input
            .scopes
            .iter()
            .map(|name| {
                Scope::parse(name).ok_or_else(|| {
                    ApiError::BadUserInput(format!("unknown scope `{name}`; see `apiKeyScopes`"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(missing) = scopes
            .iter()
            .find(|scope| !r.principal.scopes.contains(scope))
        {
            return Err(ApiError::Forbidden(format!(
                "a key cannot grant the scope {missing}, which the calling key lacks"
            ))
            .into());
        }
        let spec = keys::KeySpec {
            name: input.name,
            scopes,
            expires_at: input.expires_at,
            rate_limit_per_minute: rate_limit(
                input.rate_limit_per_minute,
                r.state.limits.rate_limit_max_per_minute,
            )?,
        };
        let issued = keys::issue(
            &r.state.store,
            &r.state.pool,
            r.organization_id(),
            spec,
            &r.command_context(),
        )
        .await?;
        Ok(CreatedApiKey {
            key: issued.key,
            api_key: ApiKey(issued.row),
        })
    }

    /// Turns `X-Pt-Org-Id` authentication of the webhook and the ingest API on or off for the caller's
    /// organization (off for a new organization). Turning it on needs `builds:create` besides `keys:manage`.
    async fn set_org_id_authentication(
        &self,
        ctx: &Context<'_>,
        enabled: bool,
    ) -> async_graphql::Result<Organization> {
        let r = Resolver::new(ctx, Scope::KeysManage)?;
        // The organization id is readable with any key, so turning org-id authentication on hands `builds:create`
        // to everyone who knows it: only a key that may create builds itself may do that.
        if enabled {
            r.principal.require(Scope::BuildsCreate).map_err(|_| {
                ApiError::Forbidden(
                    "turning org-id authentication on grants builds:create to anyone who knows the organization id; \
                     it needs a key holding builds:create"
                        .to_owned(),
                )
            })?;
        }
        r.state
            .store
            .execute::<OrganizationAggregate>(
                r.organization_id(),
                OrganizationCommand::SetOrgIdAuthentication { enabled },
                &r.command_context(),
            )
            .await
            .map_err(ApiError::from)?;
        let row = organizations::find(&r.state.pool, r.organization_id())
            .await?
            .ok_or_else(|| ApiError::NotFound("the organization does not exist".to_owned()))?;
        Ok(Organization {
            id: ID(row.organization_id.to_string()),
            name: row.name,
            org_id_auth_enabled: row.org_id_auth_enabled,
        })
    }

    /// Sets a key's own rate limit, or returns it to the server's default.
    async fn update_api_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateApiKeyInput,
    ) -> async_graphql::Result<ApiKey> {
        let r = Resolver::new(ctx, Scope::KeysManage)?;
        let api_key_id = parse_id(&id, "id")?;
        load_api_key(&r, api_key_id).await?;
        let limit = match input.rate_limit_per_minute {
            async_graphql::MaybeUndefined::Undefined => {
                return Ok(ApiKey(load_api_key(&r, api_key_id).await?))
            }
            async_graphql::MaybeUndefined::Null => None,
            async_graphql::MaybeUndefined::Value(value) => {
                rate_limit(Some(value), r.state.limits.rate_limit_max_per_minute)?
            }
        };
        r.state
            .store
            .execute::<ApiKeyAggregate>(
                api_key_id,
                ApiKeyCommand::SetRateLimit {
                    rate_limit_per_minute: limit,
                },
                &r.command_context(),
            )
            .await
            .map_err(ApiError::from)?;
        Ok(ApiKey(load_api_key(&r, api_key_id).await?))
    }

    /// Revokes a key; it is refused from the next request on.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiKey> {
        let r = Resolver::new(ctx, Scope::KeysManage)?;
        let api_key_id = parse_id(&id, "id")?;
        load_api_key(&r, api_key_id).await?;
        let context = r.command_context();
        r.state
            .store
            .execute::<ApiKeyAggregate>(
                api_key_id,
                ApiKeyCommand::RevokeApiKey { at: context.at },
                &context,
            )
            .await
            .map_err(ApiError::from)?;
        Ok(ApiKey(load_api_key(&r, api_key_id).await?))
    }
}

async fn load_api_key(r: &Resolver<'_>, id: Uuid) -> Result<api_keys::ApiKeyRow, ApiError> {
    api_keys::find(&r.state.pool, r.organization_id(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no API key {id}")))
}
