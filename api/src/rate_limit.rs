//! Applying rate limits to requests and reporting them in headers.

use axum::http::{HeaderMap, HeaderValue};
use uuid::Uuid;

use projections::rate_limits;

use crate::error::ApiError;
use crate::state::AppState;

/// Whose budget a request spends.
#[derive(Debug, Clone, Copy)]
pub enum Bucket {
    ApiKey(Uuid),
    Organization(Uuid),
}

/// The limit that applied to a request, for the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    /// Unix time at which the budget is full again.
    pub reset_at: i64,
}

impl RateInfo {
    /// Writes `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset_at));
    }
}

/// Spends one request of `bucket`'s budget and, when it is allowed, notes the key's use for `lastUsedAt`.
pub async fn spend_and_note(
    state: &AppState,
    bucket: Bucket,
    limit: Option<u32>,
    api_key_id: Option<Uuid>,
) -> Result<RateInfo, ApiError> {
    let info = spend(state, bucket, limit).await?;
    if let Some(api_key_id) = api_key_id {
        state.usage.touch(api_key_id);
    }
    Ok(info)
}

/// Spends one request of `bucket`'s budget (`limit` per minute, or the server default); refuses it with
/// `RateLimited` when the budget is spent.
pub async fn spend(
    state: &AppState,
    bucket: Bucket,
    limit: Option<u32>,
) -> Result<RateInfo, ApiError> {
    let limit = limit.unwrap_or(state.limits.rate_limit_per_minute);
    let key = match bucket {
        Bucket::ApiKey(id) => format!("key:{id}"),
        Bucket::Organization(id) => format!("org:{id}"),
    };
    let decision = rate_limits::take(&state.relaxed_pool, &key, limit).await?;
    let now = chrono::Utc::now().timestamp();
    let info = RateInfo {
        limit,
        remaining: decision.remaining,
        reset_at: now + decision.reset_after_secs.ceil() as i64,
    };
    if decision.allowed {
        Ok(info)
    } else {
        Err(ApiError::RateLimited {
            retry_after_secs: decision.retry_after_secs.ceil().max(1.0) as u64,
            info,
        })
    }
}
