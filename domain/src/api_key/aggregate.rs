//! The API-key aggregate.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApiKeyCommand, ApiKeyError, ApiKeyEvent};
use crate::validate_name;

/// Characters of a key kept for identification (`pt_live_` and four more).
pub const KEY_PREFIX_CHARS: usize = 12;

/// Highest per-key rate limit accepted, in requests per minute.
pub const MAX_RATE_LIMIT: u32 = 1_000_000;

/// State an API key needs to decide its commands.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub api_key_id: Option<Uuid>,
    pub revoked: bool,
    pub rate_limit_per_minute: Option<u32>,
}

impl Aggregate for ApiKey {
    const TYPE: &'static str = "ApiKey";
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            ApiKeyCommand::CreateApiKey {
                api_key_id,
                organization_id,
                name,
                mut scopes,
                expires_at,
                prefix,
                key_hash,
                rate_limit_per_minute,
                at,
            } => {
                if self.api_key_id.is_some() {
                    return Err(ApiKeyError::AlreadyExists);
                }
                let name = validate_name(&name).map_err(ApiKeyError::InvalidName)?;
                scopes.sort();
                scopes.dedup();
                if scopes.is_empty() {
                    return Err(ApiKeyError::NoScopes);
                }
                if expires_at.is_some_and(|expiry| expiry <= at) {
                    return Err(ApiKeyError::ExpiryInThePast);
                }
                let is_hex_digest = key_hash.len() == 64
                    && key_hash
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if !is_hex_digest || prefix.chars().count() != KEY_PREFIX_CHARS {
                    return Err(ApiKeyError::MalformedSecret);
                }
                check_rate_limit(rate_limit_per_minute)?;
                let created = ApiKeyEvent::ApiKeyCreated {
                    api_key_id,
                    organization_id,
                    name,
                    scopes,
                    expires_at,
                    prefix,
                    key_hash,
                    created_at: at,
                };
                sink.write(created, self).await;
                if rate_limit_per_minute.is_some() {
                    let limit = ApiKeyEvent::ApiKeyRateLimitChanged {
                        rate_limit_per_minute,
                    };
                    sink.write(limit, self).await;
                }
                return Ok(());
            }
            ApiKeyCommand::SetRateLimit {
                rate_limit_per_minute,
            } => {
                if self.api_key_id.is_none() {
                    return Err(ApiKeyError::NotFound);
                }
                check_rate_limit(rate_limit_per_minute)?;
                if rate_limit_per_minute == self.rate_limit_per_minute {
                    return Ok(());
                }
                ApiKeyEvent::ApiKeyRateLimitChanged {
                    rate_limit_per_minute,
                }
            }
            ApiKeyCommand::RevokeApiKey { at } => {
                if self.api_key_id.is_none() {
                    return Err(ApiKeyError::NotFound);
                }
                if self.revoked {
                    return Err(ApiKeyError::AlreadyRevoked);
                }
                ApiKeyEvent::ApiKeyRevoked { revoked_at: at }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ApiKeyEvent::ApiKeyCreated { api_key_id, .. } => self.api_key_id = Some(api_key_id),
            ApiKeyEvent::ApiKeyRevoked { .. } => self.revoked = true,
            ApiKeyEvent::ApiKeyRateLimitChanged {
                rate_limit_per_minute,
            } => self.rate_limit_per_minute = rate_limit_per_minute,
        }
    }
}

fn check_rate_limit(limit: Option<u32>) -> Result<(), ApiKeyError> {
    match limit {
        Some(0) => Err(ApiKeyError::InvalidRateLimit),
        Some(n) if n > MAX_RATE_LIMIT => Err(ApiKeyError::InvalidRateLimit),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::api_key::Scope;

    type ApiKeyTest = TestFramework<ApiKey>;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn at() -> DateTime<Utc> {
        "2026-11-26T10:00:00Z".parse().unwrap()
    }

    fn create(scopes: Vec<Scope>, expires_at: Option<DateTime<Utc>>) -> ApiKeyCommand {
        ApiKeyCommand::CreateApiKey {
            api_key_id: Uuid::from_u128(1),
            organization_id: Uuid::from_u128(2),
            name: "Azure DevOps".to_owned(),
            scopes,
            expires_at,
            prefix: "pt_live_AbCd".to_owned(),
            key_hash: HASH.to_owned(),
            rate_limit_per_minute: None,
            at: at(),
        }
    }

    fn created() -> ApiKeyEvent {
        ApiKeyEvent::ApiKeyCreated {
            api_key_id: Uuid::from_u128(1),
            organization_id: Uuid::from_u128(2),
            name: "Azure DevOps".to_owned(),
            scopes: vec![Scope::BuildsRead, Scope::BuildsCreate],
            expires_at: None,
            prefix: "pt_live_AbCd".to_owned(),
            key_hash: HASH.to_owned(),
            created_at: at(),
        }
    }

    #[test]
    fn a_key_is_created_with_sorted_unique_scopes() {
        // Given / When / Then
        ApiKeyTest::with(())
            .given_no_previous_events()
            .when(create(
                vec![Scope::BuildsCreate, Scope::BuildsRead, Scope::BuildsCreate],
                None,
            ))
            .then_expect_events(vec![created()]);
    }

    #[test]
    fn a_key_needs_a_scope() {
        ApiKeyTest::with(())
            .given_no_previous_events()
            .when(create(vec![], None))
            .then_expect_error(ApiKeyError::NoScopes);
    }

    #[test]
    fn a_key_cannot_expire_in_the_past() {
        ApiKeyTest::with(())
            .given_no_previous_events()
            .when(create(
                vec![Scope::BuildsRead],
                Some(at() - Duration::seconds(1)),
            ))
            .then_expect_error(ApiKeyError::ExpiryInThePast);
    }

    #[test]
    fn only_a_digest_and_a_short_prefix_are_accepted() {
        let mut command = create(vec![Scope::BuildsRead], None);
        if let ApiKeyCommand::CreateApiKey { key_hash, .. } = &mut command {
            *key_hash = "pt_live_the_plaintext_key_itself".to_owned();
        }
        ApiKeyTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(ApiKeyError::MalformedSecret);
    }

    #[test]
    fn a_key_is_revoked_once() {
        ApiKeyTest::with(())
            .given(vec![created()])
            .when(ApiKeyCommand::RevokeApiKey { at: at() })
            .then_expect_events(vec![ApiKeyEvent::ApiKeyRevoked { revoked_at: at() }]);
        ApiKeyTest::with(())
            .given(vec![
                created(),
                ApiKeyEvent::ApiKeyRevoked { revoked_at: at() },
            ])
            .when(ApiKeyCommand::RevokeApiKey { at: at() })
            .then_expect_error(ApiKeyError::AlreadyRevoked);
    }

    #[test]
    fn an_unknown_key_cannot_be_revoked() {
        ApiKeyTest::with(())
            .given_no_previous_events()
            .when(ApiKeyCommand::RevokeApiKey { at: at() })
            .then_expect_error(ApiKeyError::NotFound);
    }

    #[test]
    fn scopes_round_trip_through_their_names() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{scope}\""));
        }
        assert_eq!(Scope::parse("builds:delete"), None);
    }

    #[test]
    fn a_key_can_have_its_own_rate_limit() {
        let mut command = create(vec![Scope::BuildsCreate], None);
        if let ApiKeyCommand::CreateApiKey {
            rate_limit_per_minute,
            scopes,
            ..
        } = &mut command
        {
            *rate_limit_per_minute = Some(600);
            *scopes = vec![Scope::BuildsRead, Scope::BuildsCreate];
        }
        ApiKeyTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_events(vec![
                created(),
                ApiKeyEvent::ApiKeyRateLimitChanged {
                    rate_limit_per_minute: Some(600),
                },
            ]);
        ApiKeyTest::with(())
            .given(vec![created()])
            .when(ApiKeyCommand::SetRateLimit {
                rate_limit_per_minute: Some(0),
            })
            .then_expect_error(ApiKeyError::InvalidRateLimit);
        ApiKeyTest::with(())
            .given(vec![created()])
            .when(ApiKeyCommand::SetRateLimit {
                rate_limit_per_minute: None,
            })
            .then_expect_events(vec![]);
    }
}
