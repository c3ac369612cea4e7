//! The auditors' view of the event history: pages in commit order and NDJSON export.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::database::horizon;
use crate::Page;

/// One stored event, as auditors read it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub position: i64,
    /// The transaction that appended it: with `position`, the event's place in commit order.
    pub transaction_id: i64,
    pub organization_id: Option<Uuid>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The stored payload; `null` when the page was read with [`EventFilter::payload_inline_max`] and the payload
    /// is longer (read it with [`payload_chunk`]).
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    pub hash: String,
    /// Characters of the payload's stored text, when read with [`EventFilter::payload_inline_max`].
    #[serde(skip)]
    pub payload_chars: Option<i64>,
    /// Whether `payload` was left out for its length.
    #[serde(skip)]
    pub payload_truncated: bool,
}

/// The payload's length is measured (in the database) only when a page has an inline limit, and a payload over it
/// is neither decoded nor sent to the service: a build of 200,000 results has a 30 MB payload.
const RECORD_COLUMNS: &str =
    "position, transaction_id::text::bigint AS transaction_id, organization_id, \
    aggregate_type, aggregate_id, sequence, event_type, event_version, \
    CASE WHEN l.truncated THEN 'null'::jsonb ELSE payload::jsonb END AS payload, \
    metadata::jsonb AS metadata, recorded_at, hash, l.chars AS payload_chars, l.truncated AS payload_truncated";

/// Measures each row's payload for [`RECORD_COLUMNS`] against the inline limit `$9`.
const PAYLOAD_LENGTH: &str = "CROSS JOIN LATERAL (
        SELECT m.chars, coalesce(m.chars > $9::bigint, false) AS truncated
        FROM (SELECT CASE WHEN $9::bigint IS NULL THEN NULL
                          ELSE char_length(events.payload::text)::bigint END AS chars) m) l";

/// Only transactions older than every running one are read: a transaction still running may hold an earlier
/// place in the order, and would otherwise appear behind a reader's cursor later.
const SETTLED_OR_UNBOUND: &str =
    "transaction_id < pg_snapshot_xmin(pg_current_snapshot()) AND $8::bigint IS NULL";

/// Filter and position of a page of events.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub organization_id: Option<Uuid>,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    /// Keyset cursor: `(transaction_id, position)` of the last event of the previous page.
    pub after: Option<(i64, i64)>,
    pub since: Option<DateTime<Utc>>,
    /// Read transactions below this id (all finished), instead of those settled when the page is read.
    pub before_transaction: Option<i64>,
    /// Leave out payloads longer than this many characters (`payload` is `null`, `payload_truncated` set).
    pub payload_inline_max: Option<i64>,
}

/// A page of events in commit order. One stream's events are read as they are (a stream only grows at its end);
/// reads across streams see settled transactions only.
pub async fn page(
    pool: &PgPool,
    filter: &EventFilter,
    limit: i64,
) -> Result<Page<EventRecord>, sqlx::Error> {
    let (after_tx, after_position) = filter.after.unzip();
    let horizon = match (filter.before_transaction, &filter.aggregate_id) {
        (Some(_), _) => "transaction_id < $8::bigint::text::xid8",
        (None, Some(_)) => "($8::bigint IS NULL)",
        (None, None) => SETTLED_OR_UNBOUND,
    };
    let rows = sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM events {PAYLOAD_LENGTH}
         WHERE {horizon}
           AND ($1::uuid IS NULL OR organization_id = $1)
           AND ($2::text IS NULL OR aggregate_type = $2)
           AND ($3::text IS NULL OR aggregate_id = $3)
           AND ($4::bigint IS NULL OR (transaction_id, position) > ($4::text::xid8, $5))
           AND ($6::timestamptz IS NULL OR recorded_at >= $6)
         ORDER BY transaction_id, position
         LIMIT $7"
    ))
    .bind(filter.organization_id)
    .bind(&filter.aggregate_type)
    .bind(&filter.aggregate_id)
    .bind(after_tx)
    .bind(after_position)
    .bind(filter.since)
    .bind(limit + 1)
    .bind(filter.before_transaction)
    .bind(filter.payload_inline_max)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_overfetch(rows, limit))
}

/// Up to `length` characters of one event's stored payload text from character `offset` (0-based), if the event
/// belongs to the organization: how a payload left out of a page is read in pieces.
pub async fn payload_chunk(
    pool: &PgPool,
    organization_id: Uuid,
    event: (&str, &str, i64),
    offset: i32,
    length: i32,
) -> Result<Option<String>, sqlx::Error> {
    let (aggregate_type, aggregate_id, sequence) = event;
    // By the primary key: `position` has no index of its own.
    sqlx::query_scalar(
        "SELECT substr(payload::text, $5::int + 1, $6::int) FROM events
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3 AND organization_id = $4",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(organization_id)
    .bind(offset)
    .bind(length)
    .fetch_optional(pool)
    .await
}

/// Writes every settled event matching `filter` as one JSON object per line, in commit order; returns the count.
pub async fn export(
    pool: &PgPool,
    filter: &EventFilter,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64, ExportError> {
    let mut filter = filter.clone();
    filter.before_transaction = Some(settle_everything_begun(pool).await?);
    let mut written = 0;
    loop {
        let page = page(pool, &filter, 5_000).await?;
        for record in &page.items {
            serde_json::to_writer(&mut *out, record)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        match page.items.last() {
            Some(last) if page.has_next_page => {
                filter.after = Some((last.transaction_id, last.position))
            }
            _ => break,
        }
    }
    out.flush()?;
    Ok(written)
}

/// Waits until every transaction that had begun when it was called has finished (at most 30 s), and returns the
/// transaction id below which the history is then complete and final.
async fn settle_everything_begun(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let bound: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            .fetch_one(pool)
            .await?;
    for _ in 0..600 {
        let oldest = horizon(pool).await?;
        if oldest >= bound {
            return Ok(bound);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let oldest = horizon(pool).await?;
    tracing::warn!(
        transaction.bound = bound,
        transaction.oldest = oldest,
        "a transaction has been running for over 30 s; exporting what is final up to it"
    );
    Ok(oldest)
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
}
