//! Rate limiting shared by every server process: GCRA (the generic cell rate algorithm) on one row per bucket,
//! decided by a single statement against the database clock, so that processes need no coordination of their own
//! and a burst is smoothed instead of allowed twice at a window boundary.

use sqlx::PgPool;

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests that could still be made at once.
    pub remaining: u32,
    /// Seconds until one more request is allowed (0 when allowed now).
    pub retry_after_secs: f64,
    /// Seconds until the bucket is full again.
    pub reset_after_secs: f64,
}

/// Takes `cost` requests at once from `bucket`, which allows `limit` per minute with bursts of up to `limit`
/// (a process may take several to spend them without asking again; see the service's rate limiter).
///
/// GCRA keeps a theoretical arrival time (TAT) per bucket: each request moves it `60 / limit` seconds later, and a
/// request is refused when the TAT is more than the burst allowance ahead of now; `cost` requests are allowed
/// when the last of them would be.
pub async fn take(
    pool: &PgPool,
    bucket: &str,
    limit: u32,
    cost: u32,
) -> Result<Decision, sqlx::Error> {
    let limit = limit.max(1);
    let cost = cost.clamp(1, limit);
    let interval = 60.0 / f64::from(limit);
    let allowance = interval * f64::from(limit - 1);
    let advance = interval * f64::from(cost);
    let threshold = allowance - interval * f64::from(cost - 1);
    // Both branches come back as `ahead`: how far the TAT is ahead of now after this request, in seconds
    // (negative means the request was refused and the TAT was left alone).
    let (allowed, ahead): (bool, f64) = sqlx::query_as(
        "WITH now AS (SELECT clock_timestamp() AS t),
         taken AS (
            INSERT INTO public.rate_limits AS r (bucket, tat)
            SELECT $1, now.t + make_interval(secs => $2) FROM now
            ON CONFLICT (bucket) DO UPDATE
            SET tat = GREATEST(r.tat, (SELECT t FROM now)) + make_interval(secs => $2)
            WHERE GREATEST(r.tat, (SELECT t FROM now)) - (SELECT t FROM now) <= make_interval(secs => $3)
            RETURNING tat)
         SELECT true, extract(epoch FROM (SELECT tat FROM taken) - (SELECT t FROM now))::float8
         WHERE EXISTS (SELECT 1 FROM taken)
         UNION ALL
         SELECT false, extract(epoch FROM r.tat - (SELECT t FROM now))::float8
         FROM public.rate_limits r WHERE r.bucket = $1 AND NOT EXISTS (SELECT 1 FROM taken)",
    )
    .bind(bucket)
    .bind(advance)
    .bind(threshold)
    .fetch_one(pool)
    .await?;
    let capacity = allowance + interval;
    Ok(if allowed {
        Decision {
            allowed,
            remaining: ((capacity - ahead) / interval).floor().max(0.0) as u32,
            retry_after_secs: 0.0,
            reset_after_secs: ahead.max(0.0),
        }
    } else {
        Decision {
            allowed,
            remaining: 0,
            retry_after_secs: (ahead - threshold).max(0.0),
            reset_after_secs: ahead.max(0.0),
        }
    })
}
