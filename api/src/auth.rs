//! API keys on the wire: their format, hashing, and turning an `Authorization` header into a [`Principal`].

use chrono::Utc;
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use domain::api_key::{Scope, KEY_PREFIX_CHARS};
use projections::{api_keys, Actor};

use crate::error::ApiError;
use crate::state::AppState;

/// Every key starts with this.
pub const KEY_PREFIX: &str = "pt_live_";
/// Random base62 characters after [`KEY_PREFIX`]: 40 of them carry about 238 bits.
const KEY_RANDOM_CHARS: usize = 40;

/// Makes a new key from the operating system's random source.
pub fn generate_key() -> String {
    let random = Alphanumeric.sample_string(&mut rand::rngs::OsRng, KEY_RANDOM_CHARS);
    format!("{KEY_PREFIX}{random}")
}

/// Lowercase hex SHA-256 of the whole key: the only form in which a key is stored.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The first 12 characters, kept to identify a key in lists and audit records.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX_CHARS).collect()
}

/// Whether a string has the shape of a Lathe key; anything else is refused before touching the database.
fn looks_like_key(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|random| {
        random.len() >= 32 && random.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// An authenticated caller: which organization it acts for and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub organization_id: Uuid,
    pub api_key_id: Uuid,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    /// The key's own rate limit; `None` uses the server's default.
    pub rate_limit_per_minute: Option<u32>,
    /// When the key expires, if it does (a live connection closes then).
    pub expires_at: Option<chrono::DateTime<Utc>>,
}

impl Principal {
    /// Refuses the request unless the key holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this API key lacks the scope {scope}"
            )))
        }
    }

    /// The actor recorded in the events this caller causes.
    pub fn actor(&self) -> Actor {
        Actor::ApiKey {
            api_key_id: self.api_key_id,
            prefix: self.prefix.clone(),
        }
    }
}

/// Reads `Authorization: Bearer <key>`; `None` when the header is absent.
pub fn bearer_token(header: Option<&str>) -> Result<Option<&str>, ApiError> {
    let Some(value) = header else {
        return Ok(None);
    };
    let mut parts = value.trim().splitn(2, ' ');
    match (parts.next(), parts.next()) {
        (Some(scheme), Some(token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::Unauthenticated(
            "the Authorization header must be `Bearer <api key>`".to_owned(),
        )),
    }
}

/// Checks a key: known, unrevoked and unexpired. The hash comparison runs in constant time, so a caller learns
/// nothing from timing about how much of a guess was right.
/// The rows of a prefix are read through the state's cache (see [`crate::cache`]): revocation shows within its time
/// to live, expiry at once.
pub async fn authenticate_key(state: &AppState, key: &str) -> Result<Principal, ApiError> {
    let invalid = || ApiError::Unauthenticated("the API key is not valid".to_owned());
    if !looks_like_key(key) {
        return Err(invalid());
    }
    let hash = hash_key(key);
    let prefix = key_prefix(key);
    let candidates = state
        .caches
        .keys
        .get_or_read(
            &state.store,
            prefix.clone(),
            api_keys::with_prefix(&state.pool, &prefix),
        )
        .await?;
    let found = candidates
        .into_iter()
        .find(|row| bool::from(row.key_hash.as_bytes().ct_eq(hash.as_bytes())))
        .ok_or_else(invalid)?;
    if found.revoked_at.is_some() {
        return Err(ApiError::Unauthenticated(
            "the API key was revoked".to_owned(),
        ));
    }
    if found.expires_at.is_some_and(|expiry| expiry <= Utc::now()) {
        return Err(ApiError::Unauthenticated(
            "the API key has expired".to_owned(),
        ));
    }
    Ok(Principal {
        organization_id: found.organization_id,
        api_key_id: found.api_key_id,
        prefix: found.prefix,
        scopes: found
            .scopes
            .iter()
            .filter_map(|s| Scope::parse(s))
            .collect(),
        rate_limit_per_minute: found
            .rate_limit_per_minute
            .and_then(|n| u32::try_from(n).ok()),
        expires_at: found.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = generate_key();
        assert!(key.starts_with("pt_live_"));
        assert_eq!(key.len(), 8 + 40);
        assert!(looks_like_key(&key));
        assert_ne!(key, generate_key());
        assert_eq!(key_prefix(&key).len(), 12);
    }

    #[test]
    fn the_hash_is_the_sha256_hex_of_the_whole_key() {
        assert_eq!(
            hash_key("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn malformed_keys_are_recognised_without_a_lookup() {
        assert!(!looks_like_key("pt_live_short"));
        assert!(!looks_like_key(&format!("pt_test_{}", "a".repeat(40))));
        assert!(!looks_like_key(&format!("pt_live_{}!", "a".repeat(40))));
    }

    #[test]
    fn only_the_bearer_scheme_is_read() {
        assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), Some("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")).unwrap(), Some("abc"));
        assert_eq!(bearer_token(None).unwrap(), None);
        assert!(bearer_token(Some("Token abc")).is_err());
    }
}
