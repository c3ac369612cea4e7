//! Reading one aggregate's stream back: its events, folded into the aggregate, and where the stream ends.

use cqrs_es::Aggregate;
use futures::TryStreamExt;
use sqlx::{PgPool, Row};

use super::CommandError;

/// An aggregate as its stored events leave it.
pub(super) struct Stream<A> {
    pub aggregate: A,
    /// The sequence of the last stored event; 0 for a new stream.
    pub last_sequence: i64,
    /// The hash-chain link of the last stored event; empty for a new stream.
    pub last_hash: String,
}

impl<A: Aggregate> Stream<A> {
    /// A stream with no events yet.
    pub(super) fn empty() -> Self {
        Self {
            aggregate: A::default(),
            last_sequence: 0,
            last_hash: String::new(),
        }
    }
}

/// Loads the stream of `A` with id `aggregate_id`, decoding each payload straight from its stored text.
pub(super) async fn load<A: Aggregate>(
    pool: &PgPool,
    aggregate_id: &str,
) -> Result<Stream<A>, CommandError<A::Error>> {
    let mut stream = Stream::<A>::empty();
    let mut rows = sqlx::query(
        "SELECT sequence, payload::text AS payload, hash FROM events
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
    )
    .bind(A::TYPE)
    .bind(aggregate_id)
    .fetch(pool);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|error| CommandError::Store(format!("database: {error}")))?
    {
        let sequence: i64 = row.get("sequence");
        let payload: &str = row.get("payload");
        let event: A::Event = serde_json::from_str(payload).map_err(|error| {
            CommandError::Store(format!(
                "stored event {}/{aggregate_id}#{sequence} does not deserialize: {error}",
                A::TYPE
            ))
        })?;
        stream.aggregate.apply(event);
        stream.last_sequence = sequence;
        stream.last_hash = row.get("hash");
    }
    Ok(stream)
}
