//! Who is delivering: an API key (Bearer, or HTTP Basic with the key as password, which is what the Service Hook
//! dialog's own fields send) with `builds:create`, or an organization id where the organization allows it.

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use uuid::Uuid;

use domain::api_key::Scope;
use projections::{organizations, Actor};

use crate::auth::{authenticate_key, KEY_PREFIX};
use crate::error::ApiError;
use crate::rate_limit::{self, Bucket, RateInfo};
use crate::state::AppState;
use crate::transport::ClientIp;

/// An authenticated deliverer.
#[derive(Debug, Clone)]
pub struct Caller {
    pub organization_id: Uuid,
    pub actor: Actor,
    /// The key used, if any (org-id callers have none).
    pub api_key_id: Option<Uuid>,
    pub bucket: Bucket,
    pub rate_limit_per_minute: Option<u32>,
}

/// Authenticates a webhook or ingest call from `client`. A refusal for missing or wrong credentials spends the
/// client address's budget and becomes 429 past it (see [`crate::address_limit`]).
pub async fn authenticate_intake(
    state: &AppState,
    headers: &HeaderMap,
    client: ClientIp,
) -> Result<Caller, ApiError> {
    match identify(state, headers).await {
        Err(refused @ ApiError::Unauthenticated(_)) => {
            state.unauthenticated.spend(client.0).await?;
            Err(refused)
        }
        identified => identified,
    }
}

/// Reads the caller's credentials. An `Authorization` header, when present, decides alone: a wrong key is never
/// rescued by an organization id.
async fn identify(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default().trim();
        let key = key_from_authorization(value)?;
        let principal = authenticate_key(state, &key).await?;
        principal.require(Scope::BuildsCreate).map_err(|_| {
            ApiError::Forbidden("this API key lacks the scope builds:create".to_owned())
        })?;
        return Ok(Caller {
            organization_id: principal.organization_id,
            actor: principal.actor(),
            api_key_id: Some(principal.api_key_id),
            bucket: Bucket::ApiKey(principal.api_key_id),
            rate_limit_per_minute: principal.rate_limit_per_minute,
        });
    }
    if let Some(value) = headers.get("x-pt-org-id") {
        let refused = || {
            ApiError::Unauthenticated(
                "X-Pt-Org-Id names no organization that accepts org-id authentication".to_owned(),
            )
        };
        let organization_id: Uuid = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(refused)?;
        let organization = state
            .caches
            .organizations
            .get_or_read(
                &state.store,
                organization_id,
                organizations::find(&state.pool, organization_id),
            )
            .await?;
        return match organization {
            Some(org) if org.org_id_auth_enabled => Ok(Caller {
                organization_id,
                actor: Actor::OrganizationId { organization_id },
                api_key_id: None,
                bucket: Bucket::Organization(organization_id),
                rate_limit_per_minute: None,
            }),
            _ => Err(refused()),
        };
    }
    Err(ApiError::Unauthenticated(
        "send `Authorization: Bearer <api key>`, HTTP Basic with the key as password, or `X-Pt-Org-Id`".to_owned(),
    ))
}

impl Caller {
    /// Spends one request of the caller's rate-limit budget and notes the key's use.
    pub async fn spend(&self, state: &AppState) -> Result<RateInfo, ApiError> {
        rate_limit::spend_and_note(
            state,
            self.bucket,
            self.rate_limit_per_minute,
            self.api_key_id,
        )
        .await
    }
}

/// Reads the key out of `Bearer <key>` or `Basic base64(user:key)`.
fn key_from_authorization(value: &str) -> Result<String, ApiError> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(rest)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                ApiError::Unauthenticated("the Basic credentials are not valid base64".to_owned())
            })?;
        let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
        // The key belongs in the password; a key put in the user name field is accepted too.
        let key = if password.starts_with(KEY_PREFIX) || !user.starts_with(KEY_PREFIX) {
            password
        } else {
            user
        };
        return Ok(key.to_owned());
    }
    Err(ApiError::Unauthenticated(
        "the Authorization header must be `Bearer <api key>` or `Basic <credentials>`".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_read_from_bearer_or_basic() {
        let key = format!("{KEY_PREFIX}{}", "a".repeat(40));
        assert_eq!(
            key_from_authorization(&format!("Bearer {key}")).unwrap(),
            key
        );
        let basic = STANDARD.encode(format!("azure:{key}"));
        assert_eq!(
            key_from_authorization(&format!("Basic {basic}")).unwrap(),
            key
        );
        let in_user = STANDARD.encode(format!("{key}:"));
        assert_eq!(
            key_from_authorization(&format!("basic {in_user}")).unwrap(),
            key
        );
        assert!(key_from_authorization("Basic !!!").is_err());
        assert!(key_from_authorization("Digest abc").is_err());
    }
}
