//! Rebuilding read models from the event store: `lathe replay`.
//!
//! New tables are built aside in the `read_rebuild` schema from every settled event, then, with appends paused for
//! a moment (`LOCK TABLE events IN SHARE MODE`), the events that committed meanwhile are applied and the new tables
//! are moved into `read` in one transaction. Clients never see an empty or half-built read model, and the service
//! keeps serving throughout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use sqlx::{PgConnection, PgPool, Row};

use crate::database::READ_SCHEMA;
use crate::projector::{ProjectionError, Registry, Selection, StoredEvent, StoredJson};

const REBUILD_SCHEMA: &str = "read_rebuild";
const RETIRED_SCHEMA: &str = "read_retired";
/// Events applied per transaction while building aside.
const BATCH: usize = 5_000;
/// Advisory lock key: one rebuild at a time, across processes.
const REPLAY_LOCK: i64 = 0x6c61_7468_6572_706c;

/// The tables each projection owns.
fn tables_of(projection: &str) -> &'static [&'static str] {
    match projection {
        "organizations" => &["organizations"],
        "projects" => &["projects", "azure_connections"],
        "releases" => &["releases"],
        "builds" => &["builds", "test_results", "work_item_links"],
        "api_keys" => &["api_keys"],
        _ => &[],
    }
}

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
    registry: &Registry,
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
        .flat_map(|p| tables_of(p).iter().copied())
        .collect();

    let mut lock = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REPLAY_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !locked {
        return Err(ReplayError::AlreadyRunning);
    }
    let result = build_and_swap(
        pool,
        registry,
        &selection,
        &projections,
        &aggregate_types,
        &tables,
    )
    .await;
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
    registry: &Registry,
    selection: &Selection,
    projections: &[String],
    aggregate_types: &[&'static str],
    tables: &[&str],
) -> Result<(u64, u64), ReplayError> {
    let mut writer = pool.acquire().await?;
    prepare_tables(&mut writer, tables).await?;

    // Everything older than every running transaction is settled; the rest is applied under the lock below.
    let horizon: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&mut *writer)
            .await?;
    let mut reader = pool.acquire().await?;
    let mut rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, payload::text AS payload, metadata::text AS metadata FROM events
         WHERE aggregate_type = ANY($1) AND transaction_id < $2::text::xid8
         ORDER BY transaction_id, position",
    )
    .bind(aggregate_types)
    .bind(horizon)
    .fetch(&mut *reader);
    let mut batch = Vec::with_capacity(BATCH);
    let mut applied = 0;
    while let Some(row) = rows.try_next().await? {
        batch.push(stored(&row));
        if batch.len() == BATCH {
            applied += apply_batch(&mut writer, registry, selection, projections, &batch).await?;
            batch.clear();
        }
    }
    drop(rows);
    applied += apply_batch(&mut writer, registry, selection, projections, &batch).await?;
    fill_checkpoints(&mut writer, registry, projections, horizon).await?;
    create_secondary_indexes(&mut writer, tables).await?;

    // Pause appends, apply what committed meanwhile, and swap the tables in, atomically.
    let mut tx = sqlx::Connection::begin(&mut *writer).await?;
    sqlx::query("LOCK TABLE public.events IN SHARE MODE")
        .execute(&mut *tx)
        .await?;
    let late: Vec<StoredEvent<'static>> = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, payload::text AS payload, metadata::text AS metadata FROM events
         WHERE aggregate_type = ANY($1) AND transaction_id >= $2::text::xid8
         ORDER BY transaction_id, position",
    )
    .bind(aggregate_types)
    .bind(horizon)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(stored)
    .collect();
    let caught_up = apply_in(&mut tx, registry, selection, projections, &late, true).await?;
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
    sqlx::query(&format!(
        "DELETE FROM {READ_SCHEMA}.projection_checkpoints WHERE projection = ANY($1)"
    ))
    .bind(projections)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO {READ_SCHEMA}.projection_checkpoints SELECT * FROM {REBUILD_SCHEMA}.projection_checkpoints"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!("DROP SCHEMA {RETIRED_SCHEMA} CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("DROP SCHEMA {REBUILD_SCHEMA} CASCADE"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((applied + caught_up, caught_up))
}

fn stored(row: &sqlx::postgres::PgRow) -> StoredEvent<'static> {
    StoredEvent {
        aggregate_type: row.get("aggregate_type"),
        aggregate_id: row.get("aggregate_id"),
        sequence: row.get("sequence"),
        payload: StoredJson::Text(row.get("payload")),
        metadata: StoredJson::Text(row.get("metadata")),
    }
}

/// Creates empty copies of `tables` (and of the checkpoints) in the rebuild schema, with their columns, defaults,
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
    for table in tables.iter().copied().chain(["projection_checkpoints"]) {
        sqlx::query(&format!(
            "CREATE TABLE {REBUILD_SCHEMA}.{table} (LIKE {READ_SCHEMA}.{table}
                INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING GENERATED)"
        ))
        .execute(&mut *conn)
        .await?;
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

/// Sets the rebuilt projections' checkpoints from the events the bulk phase applied (every settled event of their
/// aggregate types): one statement instead of a write per aggregate per batch.
async fn fill_checkpoints(
    conn: &mut PgConnection,
    registry: &Registry,
    projections: &[String],
    horizon: i64,
) -> Result<(), sqlx::Error> {
    let (mut names, mut types) = (Vec::new(), Vec::new());
    for projection in projections {
        for aggregate_type in registry.aggregate_types(&Selection::Only(vec![projection.clone()])) {
            names.push(projection.as_str());
            types.push(aggregate_type);
        }
    }
    sqlx::query(&format!(
        "INSERT INTO {REBUILD_SCHEMA}.projection_checkpoints (projection, aggregate_type, aggregate_id, last_sequence)
         SELECT p.projection, e.aggregate_type, e.aggregate_id, max(e.sequence)
         FROM public.events e JOIN UNNEST($1::text[], $2::text[]) AS p(projection, aggregate_type)
           ON p.aggregate_type = e.aggregate_type
         WHERE e.transaction_id < $3::text::xid8
         GROUP BY p.projection, e.aggregate_type, e.aggregate_id"
    ))
    .bind(&names)
    .bind(&types)
    .bind(horizon)
    .execute(conn)
    .await?;
    Ok(())
}

/// Applies a batch in a transaction of its own into the rebuild schema.
async fn apply_batch(
    conn: &mut PgConnection,
    registry: &Registry,
    selection: &Selection,
    projections: &[String],
    events: &[StoredEvent<'_>],
) -> Result<u64, ReplayError> {
    if events.is_empty() {
        return Ok(0);
    }
    let mut tx = sqlx::Connection::begin(conn).await?;
    let applied = apply_in(&mut tx, registry, selection, projections, events, false).await?;
    tx.commit().await?;
    Ok(applied)
}

/// Applies events into the rebuild schema, and moves the rebuilt projections' checkpoints when asked (the bulk
/// phase leaves them to one set-based statement at its end).
async fn apply_in(
    conn: &mut PgConnection,
    registry: &Registry,
    selection: &Selection,
    projections: &[String],
    events: &[StoredEvent<'_>],
    move_checkpoints: bool,
) -> Result<u64, ReplayError> {
    if events.is_empty() {
        return Ok(0);
    }
    sqlx::query(&format!("SET LOCAL search_path = {REBUILD_SCHEMA}, public"))
        .execute(&mut *conn)
        .await?;
    // The rebuild tables start empty and see each event once, so nothing needs skipping.
    registry.apply_batch(conn, events, selection).await?;
    if !move_checkpoints {
        return Ok(events.len() as u64);
    }
    let mut last: HashMap<(&str, &str), i64> = HashMap::new();
    for event in events {
        last.insert((&event.aggregate_type, &event.aggregate_id), event.sequence);
    }
    let (mut names, mut types, mut ids, mut sequences) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((aggregate_type, aggregate_id), sequence) in last {
        for projection in registry.projections_of(aggregate_type) {
            if projections.iter().any(|p| p == projection) {
                names.push(projection);
                types.push(aggregate_type);
                ids.push(aggregate_id);
                sequences.push(sequence);
            }
        }
    }
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, aggregate_type, aggregate_id, last_sequence)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
         ON CONFLICT (projection, aggregate_type, aggregate_id)
         DO UPDATE SET last_sequence = GREATEST(projection_checkpoints.last_sequence, EXCLUDED.last_sequence)",
    )
    .bind(&names)
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .execute(&mut *conn)
    .await?;
    Ok(events.len() as u64)
}

/// How many events each projection has not applied yet: the events of its aggregate types minus the sum of its
/// per-aggregate checkpoints (sequences are gap-free, so a stream of n events ends at sequence n).
pub async fn lag(pool: &PgPool, registry: &Registry) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let mut lags = Vec::new();
    for projection in registry.projections() {
        let types = registry.aggregate_types(&Selection::Only(vec![projection.to_owned()]));
        let lag: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM events WHERE aggregate_type = ANY($2))
                  - (SELECT coalesce(sum(last_sequence), 0)::bigint FROM projection_checkpoints
                     WHERE projection = $1 AND aggregate_type = ANY($2))",
        )
        .bind(projection)
        .bind(&types)
        .fetch_one(pool)
        .await?;
        lags.push((projection.to_owned(), lag));
    }
    Ok(lags)
}
