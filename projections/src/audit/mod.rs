//! The audit trail: the SHA-256 chain that makes each stream tamper-evident and its verification; seals of the
//! history (`seal`); the auditors' view of the history in commit order and NDJSON export (`history`).

mod history;
mod seal;

use futures::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

use crate::database::horizon;
use seal::Sealing;

/// The horizon a seal taken now would have.
pub use crate::database::horizon as current_horizon;
pub use history::{export, page, payload_chunk, EventFilter, EventRecord, ExportError};
pub use seal::{organization_seal, Seal};

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
    let mut tx = snapshot(pool).await?;
    let mut sealing = Sealing::new(horizon(&mut *tx).await?);
    let mut checking = earlier.map(|seal| Sealing::new(seal.horizon));
    let mut rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text AS payload,
            metadata::text AS metadata, hash, position, transaction_id::text::bigint AS transaction_id
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
        let transaction: i64 = row.get("transaction_id");
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

/// A read-only transaction on one snapshot, so that the horizon read in it and the events it reads agree: a seal
/// covers exactly the events its walk saw.
async fn snapshot(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
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
