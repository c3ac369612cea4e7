//! Rebuilding read models from the event store: `lathe replay`.
//!
//! New tables are built aside in the `read_rebuild` schema from every settled event, then, with appends paused for
//! a moment (`LOCK TABLE events IN SHARE MODE`), the events that committed meanwhile are applied and the new tables
//! are moved into `read` in one transaction. Clients never see an empty or half-built read model, and the service
//! keeps serving throughout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use sqlx::{PgConnection, PgPool, Row};

use crate::database::READ_SCHEMA;
use crate::projector::{
    DecodedBatch, ProjectionError, Registry, Selection, StoredEvent, StoredJson,
};

const REBUILD_SCHEMA: &str = "read_rebuild";
const RETIRED_SCHEMA: &str = "read_retired";
/// Events applied per transaction while building aside.
const BATCH: usize = 5_000;
/// Advisory lock key: one rebuild at a time, across processes.
const REPLAY_LOCK: i64 = 0x6c61_7468_6572_706c;

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub projections: Vec<String>,
    pub events: u64,
    /// Events that committed while the tables were being built aside, applied before the swap.
    pub caught_up: u64,
    pub duration: Duration,
}

/// Why a rebuild stopped. The live read models are untouched.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no projection named `{0}`; known: {1}")]
    UnknownProjection(String, String),
    #[error("another replay is running")]
    AlreadyRunning,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

/// Rebuilds the selected projections (all when `names` is empty) and swaps them in.
pub async fn rebuild(
    pool: &PgPool,
    registry: &Arc<Registry>,
    names: &[String],
) -> Result<RebuildReport, ReplayError> {
    let started = Instant::now();
    let known = registry.projections();
    for name in names {
        if !known.contains(&name.as_str()) {
            return Err(ReplayError::UnknownProjection(
                name.clone(),
                known.join(", "),
            ));
        }
    }
    let projections: Vec<String> = if names.is_empty() {
        known.iter().map(|name| name.to_string()).collect()
    } else {
        names.to_vec()
    };
    let selection = Selection::Only(projections.clone());
    let aggregate_types = registry.aggregate_types(&selection);
    let tables: Vec<&str> = projections
        .iter()
        .flat_map(|p| registry.tables_of(p))
        .collect();

    let mut lock = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REPLAY_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !locked {
        return Err(ReplayError::AlreadyRunning);
    }
    let result = build_and_swap(pool, registry, &selection, &aggregate_types, &tables).await;
    // Also dropped with the connection; released here so that a pooled connection does not keep it.
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(REPLAY_LOCK)
        .execute(&mut *lock)
        .await?;
    let (events, caught_up) = result?;
    Ok(RebuildReport {
        projections,
        events,
        caught_up,
        duration: started.elapsed(),
    })
}

async fn build_and_swap(
    pool: &PgPool,
    registry: &Arc<Registry>,
    selection: &Selection,
    aggregate_types: &[&'static str],
    tables: &[&str],
) -> Result<(u64, u64), ReplayError> {
    let mut writer = pool.acquire().await?;
    prepare_tables(&mut writer, tables).await?;

    // Everything older than every running transaction is settled; the rest is applied under the lock below.
    let horizon = crate::database::horizon(&mut *writer).await?;
    // Reading and decoding the next batch (another task, so another thread) overlaps with applying this one.
    let (batches, mut incoming) = tokio::sync::mpsc::channel::<DecodedBatch>(2);
    let mut reader = pool.acquire().await?;
    let types: Vec<&'static str> = aggregate_types.to_vec();
    let decoder = registry.clone();
    let reading = tokio::spawn(async move {
        let sql = events_sql("<");
        let mut rows = sqlx::query(&sql)
            .bind(&types)
            .bind(horizon)
            .fetch(&mut *reader);
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(row) = rows.try_next().await? {
            batch.push(stored(&row));
            if batch.len() == BATCH {
                let decoded = decoder.decode(&batch)?;
                batch.clear();
                if batches.send(decoded).await.is_err() {
                    return Ok(());
                }
            }
        }
        let _ = batches.send(decoder.decode(&batch)?).await;
        Ok::<(), ReplayError>(())
    });
    let mut applied = 0;
    let mut batches = 0_u32;
    while let Some(batch) = incoming.recv().await {
        applied += apply_batch(&mut writer, registry, selection, &batch).await?;
        batches += 1;
        // The new tables start without statistics, so the planner takes them for tiny and joins a batch's updates
        // against a scan of the whole table. Statistics taken early (and again as they grow) make it use the keys.
        if batches.is_power_of_two() {
            analyze(&mut writer, tables).await?;
        }
    }
    reading
        .await
        .map_err(|error| sqlx::Error::Protocol(format!("the event reader stopped: {error}")))??;
    // Built unlogged (no write-ahead log per row: a crash mid-rebuild only loses the rebuild), then written to the
    // log once, whole, before they can become the live tables.
    for table in tables {
        sqlx::query(&format!("ALTER TABLE {REBUILD_SCHEMA}.{table} SET LOGGED"))
            .execute(&mut *writer)
            .await?;
    }
    create_secondary_indexes(&mut writer, tables).await?;

    // Pause appends, apply what committed meanwhile, and swap the tables in, atomically.
    let mut tx = sqlx::Connection::begin(&mut *writer).await?;
    sqlx::query("LOCK TABLE public.events IN SHARE MODE")
        .execute(&mut *tx)
        .await?;
    let late: Vec<StoredEvent> = sqlx::query(&events_sql(">="))
        .bind(aggregate_types)
        .bind(horizon)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(stored)
        .collect();
    let caught_up = apply_in(&mut tx, registry, selection, &registry.decode(&late)?).await?;
    sqlx::query(&format!("CREATE SCHEMA {RETIRED_SCHEMA}"))
        .execute(&mut *tx)
        .await?;
    for table in tables {
        sqlx::query(&format!(
            "ALTER TABLE {READ_SCHEMA}.{table} SET SCHEMA {RETIRED_SCHEMA}"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "ALTER TABLE {REBUILD_SCHEMA}.{table} SET SCHEMA {READ_SCHEMA}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(&format!("DROP SCHEMA {RETIRED_SCHEMA} CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("DROP SCHEMA {REBUILD_SCHEMA} CASCADE"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((applied + caught_up, caught_up))
}

/// The events of the aggregate types `$1` in global order, of transactions before (`<`) or from (`>=`) `$2`.
fn events_sql(comparison: &str) -> String {
    format!(
        "SELECT aggregate_type, aggregate_id, sequence, payload::text AS payload, metadata::text AS metadata
         FROM events WHERE aggregate_type = ANY($1) AND transaction_id {comparison} $2::text::xid8
         ORDER BY transaction_id, position"
    )
}

fn stored(row: &sqlx::postgres::PgRow) -> StoredEvent {
    StoredEvent {
        aggregate_type: row.get("aggregate_type"),
        aggregate_id: row.get("aggregate_id"),
        sequence: row.get("sequence"),
        payload: StoredJson(row.get("payload")),
        metadata: StoredJson(row.get("metadata")),
    }
}

/// Creates empty, unlogged copies of `tables` in the rebuild schema, with their columns, defaults,
/// checks and the unique constraints projectors rely on; other indexes come after the load, which is faster.
async fn prepare_tables(conn: &mut PgConnection, tables: &[&str]) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {REBUILD_SCHEMA}"))
        .execute(&mut *conn)
        .await?;
    for table in tables.iter().copied() {
        sqlx::query(&format!(
            "CREATE UNLOGGED TABLE {REBUILD_SCHEMA}.{table} (LIKE {READ_SCHEMA}.{table}
                INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING GENERATED)"
        ))
        .execute(&mut *conn)
        .await?;
        // Storage options (e.g. `builds`' fillfactor) are not copied by LIKE.
        let options: Option<Vec<String>> = sqlx::query_scalar(
            "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
        )
        .bind(READ_SCHEMA)
        .bind(table)
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
        if let Some(options) = options.filter(|o| !o.is_empty()) {
            sqlx::query(&format!(
                "ALTER TABLE {REBUILD_SCHEMA}.{table} SET ({})",
                options.join(", ")
            ))
            .execute(&mut *conn)
            .await?;
        }
        let constraints: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.conname::text, pg_get_constraintdef(c.oid) FROM pg_constraint c
             JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = $1 AND t.relname = $2 AND c.contype IN ('p', 'u')",
        )
        .bind(READ_SCHEMA)
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
        for (name, definition) in constraints {
            sqlx::query(&format!(
                "ALTER TABLE {REBUILD_SCHEMA}.{table} ADD CONSTRAINT {name} {definition}"
            ))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Refreshes the planner's statistics of the rebuild tables.
async fn analyze(conn: &mut PgConnection, tables: &[&str]) -> Result<(), sqlx::Error> {
    for table in tables {
        sqlx::query(&format!("ANALYZE {REBUILD_SCHEMA}.{table}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Recreates the live tables' other indexes on the rebuilt ones, under the same names.
async fn create_secondary_indexes(
    conn: &mut PgConnection,
    tables: &[&str],
) -> Result<(), sqlx::Error> {
    let definitions: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
         JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = $1 AND t.relname = ANY($2)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
    )
    .bind(READ_SCHEMA)
    .bind(tables)
    .fetch_all(&mut *conn)
    .await?;
    for definition in definitions {
        let definition = definition.replace(
            &format!(" ON {READ_SCHEMA}."),
            &format!(" ON {REBUILD_SCHEMA}."),
        );
        sqlx::query(&definition).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Applies a decoded batch in a transaction of its own into the rebuild schema.
async fn apply_batch(
    conn: &mut PgConnection,
    registry: &Registry,
    selection: &Selection,
    batch: &DecodedBatch,
) -> Result<u64, ReplayError> {
    if batch.events() == 0 {
        return Ok(0);
    }
    let mut tx = sqlx::Connection::begin(conn).await?;
    let applied = apply_in(&mut tx, registry, selection, batch).await?;
    tx.commit().await?;
    Ok(applied)
}

/// Applies events into the rebuild schema. The rebuild tables start empty and see each event once, so nothing
/// needs skipping.
async fn apply_in(
    conn: &mut PgConnection,
    registry: &Registry,
    selection: &Selection,
    batch: &DecodedBatch,
) -> Result<u64, ReplayError> {
    if batch.events() == 0 {
        return Ok(0);
    }
    sqlx::query(&format!("SET LOCAL search_path = {REBUILD_SCHEMA}, public"))
        .execute(&mut *conn)
        .await?;
    registry.apply_decoded(conn, batch, selection).await?;
    Ok(batch.events() as u64)
}

/// How many streams each projection is missing: streams of its aggregate type (settled or not) that have no row in
/// its table. Projections are applied in the append's own transaction, so this is 0 unless a read model was edited
/// behind the service's back (or a rebuild is being swapped in at this moment).
pub async fn missing_streams(
    pool: &PgPool,
    registry: &Registry,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    missing_streams_of(pool, registry, None).await
}

/// [`missing_streams`], counting only the streams of one organization when `organization_id` is given (what an
/// organization's auditor may see: other tenants' counts are theirs).
pub async fn missing_streams_of(
    pool: &PgPool,
    registry: &Registry,
    organization_id: Option<uuid::Uuid>,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let mut counts = Vec::new();
    for streams in registry.stream_rows() {
        let (table, key) = (streams.rows.table, streams.rows.key);
        let missing: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM events e
             WHERE e.aggregate_type = $1 AND e.sequence = 1
               AND ($3::uuid IS NULL OR e.organization_id = $3)
               AND NOT EXISTS (SELECT 1 FROM {READ_SCHEMA}.{table} r WHERE r.{key} = e.aggregate_id::uuid)
               AND NOT EXISTS (SELECT 1 FROM events x WHERE x.aggregate_type = e.aggregate_type
                                 AND x.aggregate_id = e.aggregate_id AND x.event_type = $2)"
        ))
        .bind(streams.aggregate_type)
        .bind(streams.rows.removed_by.unwrap_or_default())
        .bind(organization_id)
        .fetch_one(pool)
        .await?;
        counts.push((streams.projection.to_owned(), missing));
    }
    Ok(counts)
}
