//! Requests that carry no valid credentials, limited per client address.
//!
//! Such a caller has no key or organization whose budget could be spent, and each of its requests costs a key
//! lookup. The budget of an address lives in this process's memory, not in PostgreSQL: a flood of refused requests
//! must not become a flood of database writes. So with several processes an address gets that many budgets.
//! IPv6 addresses count per /64, the block one subscriber usually holds, so that rotating through it does not buy
//! a fresh budget each time.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ApiError;
use crate::rate_limit::RateInfo;

/// Addresses tracked at most; the least recently seen are dropped first.
const MAX_ADDRESSES: u64 = 100_000;

/// Per-address budgets for requests without valid credentials (GCRA, like the keys' budgets).
pub struct AddressLimiter {
    per_minute: u32,
    /// Each address's theoretical arrival time: when its budget would be full if nothing more were spent.
    buckets: moka::future::Cache<IpAddr, Arc<Mutex<Instant>>>,
    refused: AtomicU64,
    limited: AtomicU64,
}

impl AddressLimiter {
    /// A limiter allowing `per_minute` refused requests a minute per address (a burst of as many).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: moka::future::Cache::builder()
                .max_capacity(MAX_ADDRESSES)
                // An address idle for a minute has its whole budget again: forgetting it changes nothing.
                .time_to_idle(Duration::from_secs(60))
                .build(),
            refused: AtomicU64::new(0),
            limited: AtomicU64::new(0),
        }
    }

    /// Spends one request of `client`'s budget for a request refused for its credentials. `Ok` means the refusal
    /// stands as it is; past the budget the answer becomes 429 with `Retry-After`.
    pub async fn spend(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let Some(client) = client else {
            return Ok(());
        };
        let bucket = self
            .buckets
            .get_with(bucket_of(client), async {
                Arc::new(Mutex::new(Instant::now()))
            })
            .await;
        let decision = {
            let Ok(mut tat) = bucket.lock() else {
                return Ok(());
            };
            let now = Instant::now();
            let decision = gcra(*tat, now, self.per_minute);
            if let Ok(next) = decision {
                *tat = next;
            }
            decision
        };
        decision.map(|_| ()).map_err(|wait| {
            self.limited.fetch_add(1, Ordering::Relaxed);
            let retry_after_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            ApiError::RateLimited {
                retry_after_secs,
                info: RateInfo {
                    limit: self.per_minute,
                    remaining: 0,
                    reset_at: chrono::Utc::now().timestamp() + retry_after_secs as i64,
                },
            }
        })
    }

    /// Requests refused for their credentials since the process started.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Of those, the ones answered 429 because their address was over its budget.
    pub fn limited_total(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }
}

/// The key an address's budget is kept under: the address, or for IPv6 its /64.
fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        },
    }
}

/// One request against a budget of `per_minute` (a burst of that many, then one per `60 / per_minute` s) whose
/// theoretical arrival time is `tat`: the new one if allowed, else how long until one more would be.
fn gcra(tat: Instant, now: Instant, per_minute: u32) -> Result<Instant, Duration> {
    let interval = Duration::from_secs(60) / per_minute;
    let tolerance = interval * (per_minute - 1);
    let allowed_until = now + tolerance;
    if tat > allowed_until {
        return Err(tat - allowed_until);
    }
    Ok(tat.max(now) + interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_budget_allows_its_burst_then_one_per_interval() {
        let start = Instant::now();
        let mut tat = start;
        for _ in 0..6 {
            tat = gcra(tat, start, 6).expect("within the burst");
        }
        let wait = gcra(tat, start, 6).expect_err("the seventh is refused");
        assert_eq!(wait, Duration::from_secs(10));
        assert!(gcra(tat, start + Duration::from_secs(9), 6).is_err());
        let tat = gcra(tat, start + Duration::from_secs(10), 6).expect("one more after 10 s");
        assert!(gcra(tat, start + Duration::from_secs(10), 6).is_err());
        // After a quiet minute the whole burst is back.
        let mut tat = tat;
        for _ in 0..6 {
            tat = gcra(tat, start + Duration::from_secs(80), 6).expect("a new burst");
        }
    }

    #[test]
    fn ipv6_addresses_share_the_budget_of_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket_of(a), bucket_of(b));
        assert_ne!(bucket_of(a), bucket_of(c));
        let v4: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(bucket_of(v4), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[tokio::test]
    async fn an_address_over_its_budget_is_answered_429_and_others_are_not() {
        let limiter = AddressLimiter::new(2);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.spend(Some(one)).await.is_ok());
        assert!(limiter.spend(Some(one)).await.is_ok());
        let refused = limiter.spend(Some(one)).await.expect_err("over the budget");
        assert!(
            matches!(refused, ApiError::RateLimited { retry_after_secs, .. } if retry_after_secs >= 1)
        );
        assert!(limiter.spend(Some(two)).await.is_ok());
        assert_eq!((limiter.refused_total(), limiter.limited_total()), (4, 1));
    }
}
