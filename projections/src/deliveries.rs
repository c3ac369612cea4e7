//! The delivery log: one row per call to the webhook or ingest endpoint, accepted or not, so that "builds not
//! appearing" can be diagnosed from Lathe's side. Credentials are never part of a row.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{Keyset, Page};

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

/// Longest text a log row keeps in a short column (ids, event type, request id): the log is for diagnosis, and a
/// row must never be refused for what a caller sent.
pub const MAX_LOG_FIELD_CHARS: usize = 256;
/// Longest message a log row keeps.
pub const MAX_LOG_MESSAGE_CHARS: usize = 4096;

/// Appends deliveries to the log, in one statement. Every text is made storable first (NUL characters removed,
/// cut at [`MAX_LOG_FIELD_CHARS`] or [`MAX_LOG_MESSAGE_CHARS`]): a delivery refused for a NUL in its `eventType`
/// is logged with what it sent, minus the NUL, and never fails the statement for the other rows in it.
pub async fn record(conn: &mut PgConnection, rows: &[DeliveryRow]) -> Result<(), sqlx::Error> {
    let short = |text: &str| domain::clean_text(text, MAX_LOG_FIELD_CHARS).into_owned();
    let column = |f: fn(&DeliveryRow) -> Option<&str>| {
        rows.iter().map(|row| f(row).map(short)).collect::<Vec<_>>()
    };
    let id = |f: fn(&DeliveryRow) -> Option<Uuid>| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO deliveries (delivery_id, organization_id, received_at, source, event_type, outcome, http_status,
            message, build_id, queued_build_id, subscription_id, notification_id, event_id, request_id)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
            $7::int[], $8::text[], $9::uuid[], $10::uuid[], $11::text[], $12::text[], $13::text[], $14::text[])",
    )
    .bind(id(|r| Some(r.delivery_id)))
    .bind(id(|r| r.organization_id))
    .bind(rows.iter().map(|r| r.received_at).collect::<Vec<_>>())
    .bind(column(|r| Some(&r.source)))
    .bind(column(|r| r.event_type.as_deref()))
    .bind(column(|r| Some(&r.outcome)))
    .bind(rows.iter().map(|r| r.http_status).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| domain::clean_text(&r.message, MAX_LOG_MESSAGE_CHARS).into_owned())
            .collect::<Vec<_>>(),
    )
    .bind(id(|r| r.build_id))
    .bind(id(|r| r.queued_build_id))
    .bind(column(|r| r.subscription_id.as_deref()))
    .bind(column(|r| r.notification_id.as_deref()))
    .bind(column(|r| r.event_id.as_deref()))
    .bind(column(|r| r.request_id.as_deref()))
    .execute(conn)
    .await?;
    Ok(())
}

/// A page of an organization's deliveries, newest first, optionally with one outcome.
pub async fn page(
    pool: &PgPool,
    organization_id: Uuid,
    outcome: Option<&str>,
    keyset: Keyset,
    limit: i64,
) -> Result<Page<DeliveryRow>, sqlx::Error> {
    let (after_time, after_id) = keyset.binds();
    let rows = sqlx::query_as(&format!(
        "SELECT delivery_id, organization_id, received_at, source, event_type, outcome, http_status, message,
            build_id, queued_build_id, subscription_id, notification_id, event_id, request_id
         FROM deliveries
         WHERE organization_id = $1 AND ($2::text IS NULL OR outcome = $2) AND {}
         ORDER BY {}
         LIMIT $5",
        keyset.condition("received_at", "delivery_id", 3, 4),
        keyset.order("received_at", "delivery_id"),
    ))
    .bind(organization_id)
    .bind(outcome)
    .bind(after_time)
    .bind(after_id)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_keyset(rows, limit, &keyset))
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
