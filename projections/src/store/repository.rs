//! Lathe's event repository: postgres-es reads the streams; appends are ours, so that the events, their hash
//! chain, their global order and every read-model update commit in one transaction.

use std::sync::Arc;

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{link, Chained};
use crate::projector::{Registry, StoredEvent, StoredJson};

/// Appends events and applies the projections in the same transaction; reads through postgres-es.
#[derive(Clone)]
pub struct LatheEventRepository {
    pool: PgPool,
    reads: Arc<PostgresEventRepository>,
    registry: Arc<Registry>,
}

impl LatheEventRepository {
    /// A repository over `pool` that keeps the read models of `registry` in step with every append.
    pub fn new(pool: PgPool, registry: Arc<Registry>) -> Self {
        Self {
            reads: Arc::new(PostgresEventRepository::new(pool.clone())),
            pool,
            registry,
        }
    }

    async fn append(&self, events: &[SerializedEvent]) -> Result<(), AppendError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await?;
        let mut previous: String = if first.sequence > 1 {
            sqlx::query_scalar(
                "SELECT hash FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
            )
            .bind(&first.aggregate_type)
            .bind(&first.aggregate_id)
            .bind(first.sequence as i64 - 1)
            .fetch_optional(&mut *tx)
            .await?
            // The previous event is gone: a concurrent writer cannot cause that, so let the insert decide.
            .unwrap_or_default()
        } else {
            String::new()
        };
        let organization_id = first
            .metadata
            .get("organization_id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse::<Uuid>().ok());
        let mut columns = Columns::default();
        for event in events {
            // The exact text stored is the text hashed: the `json` column keeps it byte for byte.
            let payload = serde_json::to_string(&event.payload)?;
            let metadata = serde_json::to_string(&event.metadata)?;
            let sequence = event.sequence as i64;
            previous = link(
                &previous,
                &Chained {
                    aggregate_type: &event.aggregate_type,
                    aggregate_id: &event.aggregate_id,
                    sequence,
                    event_type: &event.event_type,
                    event_version: &event.event_version,
                    payload: &payload,
                    metadata: &metadata,
                },
            );
            columns.sequence.push(sequence);
            columns.event_type.push(event.event_type.clone());
            columns.event_version.push(event.event_version.clone());
            columns.payload.push(payload);
            columns.metadata.push(metadata);
            columns.hash.push(previous.clone());
        }
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
                organization_id, hash)
             SELECT $1, $2, sequence, event_type, event_version, payload::json, metadata::json, $3, hash
             FROM UNNEST($4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
                AS e(sequence, event_type, event_version, payload, metadata, hash)",
        )
        .bind(&first.aggregate_type)
        .bind(&first.aggregate_id)
        .bind(organization_id)
        .bind(&columns.sequence)
        .bind(&columns.event_type)
        .bind(&columns.event_version)
        .bind(&columns.payload)
        .bind(&columns.metadata)
        .bind(&columns.hash)
        .execute(&mut *tx)
        .await?;
        let stored: Vec<StoredEvent<'_>> = events
            .iter()
            .map(|event| StoredEvent {
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                sequence: event.sequence as i64,
                payload: StoredJson::Value(&event.payload),
                metadata: StoredJson::Value(&event.metadata),
            })
            .collect();
        self.registry
            .apply_inline(&mut tx, &stored)
            .await
            .map_err(|error| AppendError::Projection(error.to_string()))?;
        tx.commit().await?;
        Ok(())
    }
}

#[derive(Default)]
struct Columns {
    sequence: Vec<i64>,
    event_type: Vec<String>,
    event_version: Vec<String>,
    payload: Vec<String>,
    metadata: Vec<String>,
    hash: Vec<String>,
}

/// Why an append failed. Nothing of it was committed.
#[derive(Debug, thiserror::Error)]
enum AppendError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("encoding: {0}")]
    Encoding(#[from] serde_json::Error),
    #[error("projection: {0}")]
    Projection(String),
}

impl From<AppendError> for PersistenceError {
    fn from(error: AppendError) -> Self {
        match error {
            // Another command appended the same sequence first: the optimistic-concurrency conflict.
            AppendError::Database(sqlx::Error::Database(db))
                if db.code().as_deref() == Some("23505")
                    && db.constraint() == Some("events_pkey") =>
            {
                PersistenceError::OptimisticLockError
            }
            AppendError::Database(error) if is_connection_error(&error) => {
                PersistenceError::ConnectionError(Box::new(error))
            }
            other => PersistenceError::UnknownError(Box::new(other)),
        }
    }
}

fn is_connection_error(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    )
}

impl PersistedEventRepository for LatheEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        // No snapshots: postgres-es 0.5's snapshot stores double-apply events.
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        self.append(events).await.map_err(PersistenceError::from)
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}
