//! The audit trail: the SHA-256 chain that makes each stream tamper-evident, its verification, the auditors' view
//! of the event history in commit order, and NDJSON export.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::Page;

mod seal;

use seal::Sealing;
pub use seal::{current_horizon, organization_seal, Seal};

/// The stored fields of an event that its link covers, as the exact text stored.
#[derive(Debug, Clone, Copy)]
pub struct Chained<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
}

/// One link of a stream's chain: SHA-256 over the previous link and every stored field of the event, each field
/// length-prefixed (`<bytes>:<value>`) so that no two different events can produce the same input. The first
/// event of a stream links to the empty string. `migrations/…_global_order_audit_chain_read_schema.sql` computes the
/// same link in SQL.
pub fn link(previous: &str, event: &Chained<'_>) -> String {
    let mut hasher = Sha256::new();
    for field in [
        previous,
        event.aggregate_type,
        event.aggregate_id,
        &event.sequence.to_string(),
        event.event_type,
        event.event_version,
        event.payload,
        event.metadata,
    ] {
        hasher.update(field.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The first event whose stored link does not match its recomputed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub position: i64,
}

/// What `lathe verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub events_checked: u64,
    pub streams_checked: u64,
    pub first_broken: Option<BrokenLink>,
    /// A seal of the history just verified, for the auditor to keep (none when a link is broken).
    pub seal: Option<Seal>,
    /// Whether the history committed before the given seal's horizon is still the sealed one (when a seal was
    /// given and every link is intact).
    pub matches_seal: Option<bool>,
}

/// How many events the store holds.
pub async fn event_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
}

/// Walks every stream's chain in sequence order and reports the first broken link (and stops there: everything
/// after a broken link is unproven). When every link holds, it seals what it verified and, given an earlier
/// seal, checks that the history before that seal's horizon is still the sealed one.
pub async fn verify(pool: &PgPool, earlier: Option<&Seal>) -> Result<Verification, sqlx::Error> {
    // One snapshot for the horizon and the walk, so that the seal covers exactly the events the walk saw.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let horizon: String =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            .fetch_one(&mut *tx)
            .await?;
    let mut sealing = Sealing::new(parse_transaction(&horizon)?);
    let mut checking = earlier.map(|seal| Sealing::new(seal.horizon));
    let mut rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text AS payload,
            metadata::text AS metadata, hash, position, transaction_id::text AS transaction_id
         FROM events ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch(&mut *tx);
    let mut report = Verification {
        events_checked: 0,
        streams_checked: 0,
        first_broken: None,
        seal: None,
        matches_seal: None,
    };
    let mut stream: Option<(String, String)> = None;
    let mut previous = String::new();
    let mut expected_sequence = 1;
    while let Some(row) = rows.try_next().await? {
        let aggregate_type: String = row.get("aggregate_type");
        let aggregate_id: String = row.get("aggregate_id");
        let sequence: i64 = row.get("sequence");
        let key = (aggregate_type.clone(), aggregate_id.clone());
        if stream.as_ref() != Some(&key) {
            if let Some((kind, id)) = stream.replace(key) {
                end_stream(&mut sealing, &mut checking, &kind, &id);
            }
            previous.clear();
            expected_sequence = 1;
            report.streams_checked += 1;
        }
        report.events_checked += 1;
        let computed = link(
            &previous,
            &Chained {
                aggregate_type: &aggregate_type,
                aggregate_id: &aggregate_id,
                sequence,
                event_type: row.get("event_type"),
                event_version: row.get("event_version"),
                payload: row.get("payload"),
                metadata: row.get("metadata"),
            },
        );
        let stored: String = row.get("hash");
        // A deleted event shows as a gap in the sequence; an edited or inserted one as a hash mismatch.
        if computed != stored || sequence != expected_sequence {
            report.first_broken = Some(BrokenLink {
                aggregate_type,
                aggregate_id,
                sequence,
                position: row.get("position"),
            });
            return Ok(report);
        }
        let transaction = parse_transaction(row.get("transaction_id"))?;
        sealing.event(sequence, &stored, transaction);
        if let Some(checking) = &mut checking {
            checking.event(sequence, &stored, transaction);
        }
        previous = stored;
        expected_sequence += 1;
    }
    if let Some((kind, id)) = stream {
        end_stream(&mut sealing, &mut checking, &kind, &id);
    }
    report.seal = Some(sealing.finish());
    report.matches_seal = earlier
        .zip(checking)
        .map(|(seal, checking)| checking.finish() == *seal);
    Ok(report)
}

fn end_stream(sealing: &mut Sealing, checking: &mut Option<Sealing>, kind: &str, id: &str) {
    sealing.end_stream(kind, id);
    if let Some(checking) = checking {
        checking.end_stream(kind, id);
    }
}

/// A transaction id (`xid8`) from its text.
fn parse_transaction(text: &str) -> Result<u64, sqlx::Error> {
    text.parse()
        .map_err(|_| sqlx::Error::Protocol(format!("not a transaction id: {text:?}")))
}

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
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    pub hash: String,
}

const RECORD_COLUMNS: &str =
    "position, transaction_id::text::bigint AS transaction_id, organization_id, \
    aggregate_type, aggregate_id, sequence, event_type, event_version, payload::jsonb AS payload, \
    metadata::jsonb AS metadata, recorded_at, hash";

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
        "SELECT {RECORD_COLUMNS} FROM events
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
    .fetch_all(pool)
    .await?;
    Ok(Page::from_overfetch(rows, limit))
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
        let oldest: i64 =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                .fetch_one(pool)
                .await?;
        if oldest >= bound {
            return Ok(bound);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let oldest = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        .fetch_one(pool)
        .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_depend_on_every_field_and_on_the_previous_link() {
        let event = Chained {
            aggregate_type: "BuildQueue",
            aggregate_id: "id",
            sequence: 1,
            event_type: "BuildReceived",
            event_version: "1.0",
            payload: "{}",
            metadata: "{}",
        };
        let base = link("", &event);
        assert_eq!(base.len(), 64);
        assert_ne!(base, link("x", &event));
        assert_ne!(
            base,
            link(
                "",
                &Chained {
                    sequence: 2,
                    ..event
                }
            )
        );
        assert_ne!(
            base,
            link(
                "",
                &Chained {
                    payload: "{ }",
                    ..event
                }
            )
        );
        // Length prefixes keep field boundaries: moving a character across a boundary changes the link.
        let ab_c = Chained {
            aggregate_type: "ab",
            aggregate_id: "c",
            ..event
        };
        let a_bc = Chained {
            aggregate_type: "a",
            aggregate_id: "bc",
            ..event
        };
        assert_ne!(link("", &ab_c), link("", &a_bc));
    }
}
