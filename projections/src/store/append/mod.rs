//! Appending events with group commit: commands decided at the same moment share one transaction.
//!
//! Each command hands its events (as stored text, with their hash-chain links) and its typed events (for the
//! projections) to a small set of writer tasks. A writer takes every append waiting at that moment, up to
//! [`MAX_BATCH`], and commits them together: one `INSERT` of all their event rows, then each one's projections, then
//! one commit and one write-ahead-log flush for all. With many concurrent deliveries this replaces a transaction,
//! a flush and a round trip per delivery by one per batch; a lone command still goes at once.
//!
//! While one writer's batch is being committed, the next gathers the appends that arrive until it ends (`gather`).
//!
//! An append that lost an optimistic-concurrency race (another command stored its stream's next sequence first)
//! stores nothing and gets `Conflict`, while the rest of its batch commits. Otherwise a batch is all or nothing like
//! a single append: when it fails (one projection refused its events), it is rolled back and each of its appends is
//! retried alone, so that every command gets its own answer and no command fails for another's reason.

mod gather;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use crate::database::HeldConnection;
use crate::projector::{ProjectionError, Registry};
use gather::{gather, Committing, InFlight};

/// The most appends committed in one transaction.
const MAX_BATCH: usize = 64;
/// Writer tasks: while one commits, the next gathers the appends that arrived meanwhile.
const WRITERS: usize = 3;

/// One event row as the event table stores it.
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
    pub organization_id: Option<Uuid>,
    pub hash: String,
}

/// A command's typed events, applied to the read models inside the append's transaction.
#[async_trait]
pub(crate) trait Projectable: Send + Sync {
    fn aggregate_type(&self) -> &'static str;
    fn as_any(&self) -> &dyn std::any::Any;
    /// Applies the events of `run`, commands of this one's aggregate type (itself included) committed together, so
    /// that projectors can write them set-based.
    async fn project_run(
        &self,
        run: &[&dyn Projectable],
        conn: &mut PgConnection,
        registry: &Registry,
    ) -> Result<(), ProjectionError>;
}

/// Why an append failed. Nothing of it was committed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum AppendError {
    /// Another command stored an event at one of these sequences first.
    #[error("the aggregate was changed concurrently")]
    Conflict,
    #[error("database: {0}")]
    Database(String),
    #[error("projection: {0}")]
    Projection(String),
}

struct Append {
    rows: Vec<EventRow>,
    projectable: Box<dyn Projectable>,
    done: oneshot::Sender<Result<(), AppendError>>,
}

/// The queue of appends and its writers.
#[derive(Clone)]
pub(crate) struct Appender {
    queue: mpsc::UnboundedSender<Append>,
    stats: Arc<AppendStats>,
}

/// What the group commit has done since the process started (for `/metrics`).
#[derive(Debug, Default)]
pub struct AppendStats {
    /// Commands whose events were committed.
    pub appends: AtomicU64,
    /// Transactions that committed them: `appends / batches` is the mean batch.
    pub batches: AtomicU64,
    /// Batches whose commit took longer than [`SLOW_COMMIT`].
    pub slow_batches: AtomicU64,
}

/// A batch that takes longer than this to commit is logged (with its size and time) and counted.
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(250);

impl Appender {
    /// Starts the writers on `pool`. They stop when the last `Appender` is dropped.
    pub fn start(pool: PgPool, registry: Arc<Registry>) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let stats = Arc::new(AppendStats::default());
        let in_flight = Arc::new(InFlight::default());
        for _ in 0..WRITERS {
            tokio::spawn(write_loop(
                pool.clone(),
                registry.clone(),
                receiver.clone(),
                in_flight.clone(),
                stats.clone(),
            ));
        }
        Self { queue, stats }
    }

    /// The group commit's counters.
    pub fn stats(&self) -> &AppendStats {
        &self.stats
    }

    /// Appends `rows` and applies `projectable` in the same transaction; returns once committed (or not).
    pub async fn append(
        &self,
        rows: Vec<EventRow>,
        projectable: Box<dyn Projectable>,
    ) -> Result<(), AppendError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Append {
                rows,
                projectable,
                done,
            })
            .map_err(|_| AppendError::Database("the event store is shutting down".to_owned()))?;
        answer.await.map_err(|_| {
            AppendError::Database("the append was dropped before it completed".to_owned())
        })?
    }
}

async fn write_loop(
    pool: PgPool,
    registry: Arc<Registry>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Append>>>,
    in_flight: Arc<InFlight>,
    stats: Arc<AppendStats>,
) {
    let mut conn = HeldConnection::new(pool);
    loop {
        let (batch, committing) = {
            let mut receiver = receiver.lock().await;
            let Some(batch) = gather(&mut receiver, &in_flight).await else {
                return;
            };
            // Counted before the next writer may gather, so that it waits for this commit.
            (batch, Committing::start(&in_flight))
        };
        let started = std::time::Instant::now();
        let written = write(&mut conn, &registry, &batch).await;
        let took = started.elapsed();
        if took > SLOW_COMMIT {
            stats.slow_batches.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                appends = batch.len(),
                took_ms = took.as_millis() as u64,
                "slow group commit"
            );
        }
        if let Ok(outcomes) = &written {
            stats.batches.fetch_add(1, Ordering::Relaxed);
            let stored = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
            stats.appends.fetch_add(stored as u64, Ordering::Relaxed);
        }
        match written {
            Ok(outcomes) => {
                for (append, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = append.done.send(outcome);
                }
            }
            Err(_) if batch.len() > 1 => {
                for append in batch {
                    let outcome =
                        match write(&mut conn, &registry, std::slice::from_ref(&append)).await {
                            Ok(mut outcomes) => outcomes.remove(0),
                            Err(error) => Err(error),
                        };
                    let _ = append.done.send(outcome);
                }
            }
            Err(error) => {
                for append in batch {
                    let _ = append.done.send(Err(error.clone()));
                }
            }
        }
        drop(committing);
    }
}

/// Commits the appends of `batch` in one transaction, except those that lost a race (their outcome is
/// `Conflict`), or none of them (`Err`).
async fn write(
    conn: &mut HeldConnection,
    registry: &Registry,
    batch: &[Append],
) -> Result<Vec<Result<(), AppendError>>, AppendError> {
    let written = write_on(conn.get().await.map_err(database)?, registry, batch).await;
    match written {
        Err(AppendError::Database(_)) => conn.discard(),
        Err(_) => conn.recover().await,
        Ok(_) => {}
    }
    written
}

async fn write_on(
    conn: &mut PgConnection,
    registry: &Registry,
    batch: &[Append],
) -> Result<Vec<Result<(), AppendError>>, AppendError> {
    let mut tx = sqlx::Connection::begin(conn).await.map_err(database)?;
    let rows = batch.iter().flat_map(|append| &append.rows);
    let mut columns = Columns::default();
    for row in rows {
        columns.push(row);
    }
    // A row whose sequence is taken is skipped, not an error, so that one lost race does not fail the batch.
    let inserted: Vec<(String, String, i64)> = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
            organization_id, hash)
         SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload::json, metadata::json,
            organization_id, hash
         FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::uuid[], $9::text[])
            AS e(aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
                organization_id, hash)
         ON CONFLICT (aggregate_type, aggregate_id, sequence) DO NOTHING
         RETURNING aggregate_type, aggregate_id, sequence",
    )
    .bind(&columns.aggregate_type)
    .bind(&columns.aggregate_id)
    .bind(&columns.sequence)
    .bind(&columns.event_type)
    .bind(&columns.event_version)
    .bind(&columns.payload)
    .bind(&columns.metadata)
    .bind(&columns.organization_id)
    .bind(&columns.hash)
    .fetch_all(&mut *tx)
    .await
    .map_err(database)?;
    drop(columns);
    let inserted: std::collections::HashSet<(&str, &str, i64)> = inserted
        .iter()
        .map(|(kind, id, sequence)| (kind.as_str(), id.as_str(), *sequence))
        .collect();
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut half_stored: Vec<&EventRow> = Vec::new();
    for append in batch {
        let (stored, taken): (Vec<&EventRow>, Vec<&EventRow>) =
            append.rows.iter().partition(|row| {
                inserted.contains(&(row.aggregate_type, row.aggregate_id.as_str(), row.sequence))
            });
        outcomes.push(if taken.is_empty() {
            Ok(())
        } else {
            // Part of a command's events may have found their sequences free (results for a build decided against
            // an empty stream that holds the build's first two events): never commit half a command.
            half_stored.extend(stored);
            Err(AppendError::Conflict)
        });
    }
    if !half_stored.is_empty() {
        unstore(&mut tx, &half_stored).await.map_err(database)?;
    }
    // Runs of one aggregate type keep their order, so that effects across types (a release before its builds) hold.
    let items: Vec<&dyn Projectable> = batch
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(append, _)| append.projectable.as_ref())
        .collect();
    for run in items.chunk_by(|a, b| a.aggregate_type() == b.aggregate_type()) {
        run[0]
            .project_run(run, &mut tx, registry)
            .await
            .map_err(|error| match error {
                ProjectionError::Database(error) => database(error),
                other => AppendError::Projection(other.to_string()),
            })?;
    }
    tx.commit().await.map_err(database)?;
    Ok(outcomes)
}

/// Deletes rows this transaction inserted, so that they are never committed.
async fn unstore(conn: &mut PgConnection, rows: &[&EventRow]) -> Result<(), sqlx::Error> {
    let types: Vec<&str> = rows.iter().map(|row| row.aggregate_type).collect();
    let ids: Vec<&str> = rows.iter().map(|row| row.aggregate_id.as_str()).collect();
    let sequences: Vec<i64> = rows.iter().map(|row| row.sequence).collect();
    sqlx::query(
        "DELETE FROM events e
         USING UNNEST($1::text[], $2::text[], $3::bigint[]) AS d(aggregate_type, aggregate_id, sequence)
         WHERE e.aggregate_type = d.aggregate_type AND e.aggregate_id = d.aggregate_id
           AND e.sequence = d.sequence",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .execute(conn)
    .await?;
    Ok(())
}

fn database(error: sqlx::Error) -> AppendError {
    match &error {
        sqlx::Error::Database(db)
            if db.code().as_deref() == Some("23505") && db.constraint() == Some("events_pkey") =>
        {
            AppendError::Conflict
        }
        _ => AppendError::Database(error.to_string()),
    }
}

/// The rows of a batch, column by column, for one `UNNEST` insert. Borrows the rows' text.
#[derive(Default)]
struct Columns<'a> {
    aggregate_type: Vec<&'a str>,
    aggregate_id: Vec<&'a str>,
    sequence: Vec<i64>,
    event_type: Vec<&'a str>,
    event_version: Vec<&'a str>,
    payload: Vec<&'a str>,
    metadata: Vec<&'a str>,
    organization_id: Vec<Option<Uuid>>,
    hash: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, row: &'a EventRow) {
        self.aggregate_type.push(row.aggregate_type);
        self.aggregate_id.push(&row.aggregate_id);
        self.sequence.push(row.sequence);
        self.event_type.push(&row.event_type);
        self.event_version.push(&row.event_version);
        self.payload.push(&row.payload);
        self.metadata.push(&row.metadata);
        self.organization_id.push(row.organization_id);
        self.hash.push(&row.hash);
    }
}
