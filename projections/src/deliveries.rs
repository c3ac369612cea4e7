//! The delivery log: one row per call to the webhook or ingest endpoint, accepted or not, so that "builds not
//! appearing" can be diagnosed from Lathe's side. Credentials are never part of a row.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::Page;

/// One delivery and what became of it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub delivery_id: Uuid,
    pub organization_id: Option<Uuid>,
    pub received_at: DateTime<Utc>,
    /// `azure-devops` or `ingest`.
    pub source: String,
    pub event_type: Option<String>,
    /// `created`, `queued`, `duplicate`, `attached`, `ignored`, `filtered`, `unauthorized`, `invalid` or `failed`.
    pub outcome: String,
    pub http_status: i32,
    pub message: String,
    pub build_id: Option<Uuid>,
    pub queued_build_id: Option<Uuid>,
    pub subscription_id: Option<String>,
    pub notification_id: Option<String>,
    pub event_id: Option<String>,
    pub request_id: Option<String>,
}

/// Appends a delivery to the log.
pub async fn record(pool: &PgPool, row: &DeliveryRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO deliveries (delivery_id, organization_id, received_at, source, event_type, outcome, http_status,
            message, build_id, queued_build_id, subscription_id, notification_id, event_id, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(row.delivery_id)
    .bind(row.organization_id)
    .bind(row.received_at)
    .bind(&row.source)
    .bind(&row.event_type)
    .bind(&row.outcome)
    .bind(row.http_status)
    .bind(&row.message)
    .bind(row.build_id)
    .bind(row.queued_build_id)
    .bind(&row.subscription_id)
    .bind(&row.notification_id)
    .bind(&row.event_id)
    .bind(&row.request_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// A page of an organization's deliveries, newest first, optionally with one outcome.
pub async fn page(
    pool: &PgPool,
    organization_id: Uuid,
    outcome: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Page<DeliveryRow>, sqlx::Error> {
    let (after_time, after_id) = after.unzip();
    let rows = sqlx::query_as(
        "SELECT delivery_id, organization_id, received_at, source, event_type, outcome, http_status, message,
            build_id, queued_build_id, subscription_id, notification_id, event_id, request_id
         FROM deliveries
         WHERE organization_id = $1 AND ($2::text IS NULL OR outcome = $2)
           AND ($3::timestamptz IS NULL OR (received_at, delivery_id) < ($3, $4))
         ORDER BY received_at DESC, delivery_id DESC
         LIMIT $5",
    )
    .bind(organization_id)
    .bind(outcome)
    .bind(after_time)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_overfetch(rows, limit))
}

/// The deliveries that reported one build, oldest first.
pub async fn for_build(
    pool: &PgPool,
    organization_id: Uuid,
    build_id: Uuid,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, organization_id, received_at, source, event_type, outcome, http_status, message,
            build_id, queued_build_id, subscription_id, notification_id, event_id, request_id
         FROM deliveries
         WHERE organization_id = $1 AND (build_id = $2 OR queued_build_id = $2)
         ORDER BY received_at, delivery_id",
    )
    .bind(organization_id)
    .bind(build_id)
    .fetch_all(pool)
    .await
}
