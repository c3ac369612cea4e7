//! What the live subscriptions read: the events a notified transaction appended, and the current rows of what they
//! changed. The notifications themselves come from triggers (migration `live_notifications`).

use sqlx::PgPool;
use uuid::Uuid;

use crate::builds::BuildRow;
use crate::deliveries::DeliveryRow;
use crate::releases::ReleaseRow;

/// The channel on which every transaction that appends events notifies its transaction id.
pub const EVENTS_CHANNEL: &str = "lathe_events";
/// The channel on which the delivery log notifies the rows it wrote (`organization_id:delivery_id`, comma-separated).
pub const DELIVERIES_CHANNEL: &str = "lathe_deliveries";

/// One appended event, as much of it as a subscription needs to decide who is told.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppendedEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub organization_id: Option<Uuid>,
}

/// The events of committed transactions that belong to one of `organizations` or to an API key, transaction by
/// transaction in the order given, each transaction's in append order. One statement for a whole batch of
/// notifications.
pub async fn events_of(
    pool: &PgPool,
    transaction_ids: &[String],
    organizations: &[Uuid],
) -> Result<Vec<AppendedEvent>, sqlx::Error> {
    sqlx::query_as(
        // `= ANY` of an array, not a join with `unnest`: the planner, not knowing the array's length, would hash
        // the whole table for a join (measured: PostgreSQL's CPU doubled under the webhook).
        "SELECT e.aggregate_type, e.aggregate_id, e.event_type, e.organization_id
         FROM events e
         WHERE e.transaction_id = ANY($1::text[]::xid8[])
           AND (e.organization_id = ANY($2) OR e.aggregate_type = 'ApiKey')
         ORDER BY array_position($1::text[], e.transaction_id::text), e.position",
    )
    .bind(transaction_ids)
    .bind(organizations)
    .fetch_all(pool)
    .await
}

/// The current rows of builds, in no particular order.
pub async fn builds(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<BuildRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {} FROM builds WHERE build_id = ANY($1)",
        crate::builds::COLUMNS
    ))
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// The current rows of releases, in no particular order.
pub async fn releases(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<ReleaseRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {} FROM releases WHERE release_id = ANY($1)",
        crate::releases::COLUMNS
    ))
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// Delivery-log rows, in the order of `ids`.
pub async fn deliveries(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, organization_id, received_at, source, event_type, outcome, http_status, message,
            build_id, queued_build_id, subscription_id, notification_id, event_id, request_id
         FROM deliveries
         WHERE delivery_id = ANY($1)
         ORDER BY array_position($1, delivery_id)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
}
