//! Applying rate limits to requests and reporting them in headers.
//!
//! The budget lives in the database (shared by every process, see `projections::rate_limits`). So that a busy key
//! does not cost a database write per request, a process takes a 100th of a key's per-minute budget at once (when
//! the key's limit is at least 200 a minute) and spends it from memory, for at most the time those requests stand
//! for (0.6 s). Other processes see it spent at once; what a process does not use in that time is lost to the
//! key, never added to it. A key with a smaller limit is decided by the database on every request, exactly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    let limit = limit.unwrap_or(state.limits.rate_limit_per_minute).max(1);
    let key = match bucket {
        Bucket::ApiKey(id) => format!("key:{id}"),
        Bucket::Organization(id) => format!("org:{id}"),
    };
    if let Some(info) = state.leases.spend_one(&key, limit) {
        return Ok(info);
    }
    let chunk = (limit / LEASE_FRACTION).max(1);
    let mut taken = chunk;
    let mut decision = rate_limits::take(&state.relaxed_pool, &key, limit, chunk).await?;
    if !decision.allowed && chunk > 1 {
        // Near the limit: the last few requests are decided one by one.
        taken = 1;
        decision = rate_limits::take(&state.relaxed_pool, &key, limit, 1).await?;
    }
    let now = chrono::Utc::now().timestamp();
    let info = RateInfo {
        limit,
        remaining: decision.remaining,
        reset_at: now + decision.reset_after_secs.ceil() as i64,
    };
    if decision.allowed {
        if taken > 1 {
            // This request spends one; the rest are held for this process's next requests.
            let lifetime = Duration::from_secs_f64(60.0 * f64::from(taken) / f64::from(limit));
            state.leases.hold(key, limit, taken - 1, info, lifetime);
        }
        Ok(info)
    } else {
        Err(ApiError::RateLimited {
            retry_after_secs: decision.retry_after_secs.ceil().max(1.0) as u64,
            info,
        })
    }
}

/// A process takes this fraction of a key's per-minute budget at once (1/100).
const LEASE_FRACTION: u32 = 100;

/// Requests this process has taken from the shared budget and not spent yet, by bucket.
#[derive(Default)]
pub struct Leases {
    held: Mutex<HashMap<String, Lease>>,
}

struct Lease {
    limit: u32,
    left: u32,
    /// The headers' figures when the lease was taken; `remaining` counts the lease's own requests too.
    info: RateInfo,
    until: Instant,
}

impl Leases {
    /// Spends one held request of `bucket`, if this process holds one that is still valid for `limit`.
    fn spend_one(&self, bucket: &str, limit: u32) -> Option<RateInfo> {
        let mut held = self.held.lock().ok()?;
        let lease = held.get_mut(bucket)?;
        if lease.limit != limit || lease.left == 0 || Instant::now() >= lease.until {
            held.remove(bucket);
            return None;
        }
        lease.left -= 1;
        Some(RateInfo {
            remaining: lease.info.remaining + lease.left,
            ..lease.info
        })
    }

    fn hold(&self, bucket: String, limit: u32, left: u32, info: RateInfo, lifetime: Duration) {
        if let Ok(mut held) = self.held.lock() {
            // Leases of idle buckets are dropped when they are next looked up; bound the map regardless.
            if held.len() >= 10_000 {
                held.retain(|_, lease| Instant::now() < lease.until);
            }
            held.insert(
                bucket,
                Lease {
                    limit,
                    left,
                    info,
                    until: Instant::now() + lifetime,
                },
            );
        }
    }
}
