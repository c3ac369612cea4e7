//! The machinery shared by every projection: checkpoints, catch-up from the event table, and error logging.

use std::collections::HashMap;
use std::marker::PhantomData;

use async_trait::async_trait;
use cqrs_es::{Aggregate, EventEnvelope, Query};
use sqlx::{PgConnection, PgPool, Row};

/// One read model's reaction to one aggregate type's events. It writes only through the connection it is given,
/// which is inside the transaction that also moves its checkpoint.
#[async_trait]
pub trait Projector<A: Aggregate>: Send + Sync {
    /// A stable name, used as the checkpoint key.
    const NAME: &'static str;

    /// Applies one event to the read model.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &EventEnvelope<A>,
    ) -> Result<(), sqlx::Error>;
}

/// A [`Projector`] wired as a cqrs-es [`Query`].
///
/// cqrs-es dispatches after the commit and ignores the outcome, and two commands on one aggregate may dispatch out
/// of order. So the dispatched events are used only as a signal: the projection locks its checkpoint for the
/// aggregate, reads every stored event past it, applies them in order, and moves the checkpoint, all in one
/// transaction. An update that was lost is thus applied by the next dispatch for that aggregate, and nothing is
/// applied twice.
pub struct Projection<A, P> {
    pool: PgPool,
    projector: P,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, P: Projector<A>> Projection<A, P> {
    /// Wraps `projector` so that it can be given to the CQRS framework.
    pub fn new(pool: PgPool, projector: P) -> Self {
        Self {
            pool,
            projector,
            aggregate: PhantomData,
        }
    }

    /// Applies every stored event of one aggregate that this projection has not applied yet.
    pub async fn catch_up(&self, aggregate_id: &str) -> Result<usize, ProjectionError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO projection_checkpoints (projection, aggregate_type, aggregate_id, last_sequence)
             VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
        )
        .bind(P::NAME)
        .bind(A::TYPE)
        .bind(aggregate_id)
        .execute(&mut *tx)
        .await?;
        // The row lock serializes concurrent dispatches for one aggregate.
        let last: i64 = sqlx::query_scalar(
            "SELECT last_sequence FROM projection_checkpoints
             WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3 FOR UPDATE",
        )
        .bind(P::NAME)
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_one(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT sequence, payload, metadata FROM events
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(last)
        .fetch_all(&mut *tx)
        .await?;
        let Some(newest) = rows.last().map(|row| row.get::<i64, _>("sequence")) else {
            return Ok(0);
        };
        for row in &rows {
            let envelope = EventEnvelope::<A> {
                aggregate_id: aggregate_id.to_owned(),
                sequence: row.get::<i64, _>("sequence") as usize,
                payload: serde_json::from_value(row.get("payload"))?,
                metadata: serde_json::from_value::<HashMap<String, String>>(row.get("metadata"))
                    .unwrap_or_default(),
            };
            self.projector.apply(&mut tx, &envelope).await?;
        }
        sqlx::query(
            "UPDATE projection_checkpoints SET last_sequence = $4
             WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        )
        .bind(P::NAME)
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(newest)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.len())
    }
}

#[async_trait]
impl<A: Aggregate + 'static, P: Projector<A> + 'static> Query<A> for Projection<A, P> {
    async fn dispatch(&self, aggregate_id: &str, _events: &[EventEnvelope<A>]) {
        if let Err(error) = self.catch_up(aggregate_id).await {
            // Logged here, where it is handled: the read model stays behind until the next event of this
            // aggregate (or a replay) applies the missed ones.
            tracing::error!(
                projection = P::NAME,
                aggregate.r#type = A::TYPE,
                aggregate.id = aggregate_id,
                error = %error,
                "projection update failed; the read model is behind its events"
            );
        }
    }
}

/// Why a projection could not apply events.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored event does not deserialize: {0}")]
    Deserialize(#[from] serde_json::Error),
}

/// The time recorded in an event's metadata by [`crate::EventStore::execute`].
pub(crate) fn event_time<A: Aggregate>(event: &EventEnvelope<A>) -> chrono::DateTime<chrono::Utc> {
    event
        .metadata
        .get("at")
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.to_utc())
        .unwrap_or_default()
}
