//! Pruning of the operational tables, which would otherwise grow forever: the delivery log, idempotency answers,
//! idle rate-limit buckets and finished outbox calls. Events and read models are never touched here.

use sqlx::PgPool;

/// How long each kind of operational row is kept.
#[derive(Debug, Clone, Copy)]
pub struct Horizons {
    pub delivery_log_days: u32,
    /// Replays of an `Idempotency-Key` are honoured for this long.
    pub idempotency_hours: u32,
    pub finished_outbox_days: u32,
}

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: u64,
    pub idempotency_keys: u64,
    pub rate_limit_buckets: u64,
    pub outbox_calls: u64,
}

/// Removes operational rows past their horizon.
pub async fn prune(pool: &PgPool, horizons: Horizons) -> Result<Pruned, sqlx::Error> {
    let deliveries = sqlx::query(
        "DELETE FROM public.deliveries WHERE received_at < now() - make_interval(days => $1)",
    )
    .bind(horizons.delivery_log_days as i32)
    .execute(pool)
    .await?
    .rows_affected();
    let idempotency_keys = sqlx::query(
        "DELETE FROM public.idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
    )
    .bind(horizons.idempotency_hours as i32)
    .execute(pool)
    .await?
    .rows_affected();
    // A bucket whose theoretical arrival time has passed is full again: deleting it changes nothing.
    let rate_limit_buckets =
        sqlx::query("DELETE FROM public.rate_limits WHERE tat < now() - interval '1 minute'")
            .execute(pool)
            .await?
            .rows_affected();
    let outbox_calls = sqlx::query(
        "DELETE FROM public.outbox WHERE status <> 'pending' AND updated_at < now() - make_interval(days => $1)",
    )
    .bind(horizons.finished_outbox_days as i32)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(Pruned {
        deliveries,
        idempotency_keys,
        rate_limit_buckets,
        outbox_calls,
    })
}
