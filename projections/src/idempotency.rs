//! `Idempotency-Key` bookkeeping for the ingest API: a key is reserved before the work and holds the answer after
//! it, so that a retry gets the first answer and stores nothing new.

use sqlx::PgPool;
use uuid::Uuid;

/// What a reservation found.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// The key is new: do the work, then [`complete`] (or [`release`] on failure).
    Reserved,
    /// The same key and body were answered before: send this answer again.
    Replay {
        status_code: u16,
        response: serde_json::Value,
    },
    /// The same key with a different body.
    Mismatch,
    /// The first request with this key is still being processed.
    InProgress,
}

/// Reserves `key` for a request whose body hashes to `request_hash`.
pub async fn reserve(
    pool: &PgPool,
    organization_id: Uuid,
    key: &str,
    request_hash: &str,
) -> Result<Reservation, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (organization_id, idempotency_key, request_hash) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(organization_id)
    .bind(key)
    .bind(request_hash)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Reservation::Reserved);
    }
    let (hash, status_code, response): (String, Option<i32>, Option<serde_json::Value>) =
        sqlx::query_as(
            "SELECT request_hash, status_code, response FROM idempotency_keys
         WHERE organization_id = $1 AND idempotency_key = $2",
        )
        .bind(organization_id)
        .bind(key)
        .fetch_one(pool)
        .await?;
    Ok(match (hash == request_hash, status_code, response) {
        (false, _, _) => Reservation::Mismatch,
        (true, Some(status_code), Some(response)) => Reservation::Replay {
            status_code: u16::try_from(status_code).unwrap_or(200),
            response,
        },
        (true, _, _) => Reservation::InProgress,
    })
}

/// Stores the answer of a reserved key.
pub async fn complete(
    pool: &PgPool,
    organization_id: Uuid,
    key: &str,
    status_code: u16,
    response: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys SET status_code = $3, response = $4
         WHERE organization_id = $1 AND idempotency_key = $2",
    )
    .bind(organization_id)
    .bind(key)
    .bind(i32::from(status_code))
    .bind(response)
    .execute(pool)
    .await?;
    Ok(())
}

/// Frees a reserved key after a failure, so that a retry does the work.
pub async fn release(pool: &PgPool, organization_id: Uuid, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_keys
         WHERE organization_id = $1 AND idempotency_key = $2 AND status_code IS NULL",
    )
    .bind(organization_id)
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}
