//! What every handler shares.

use std::sync::Arc;

use projections::EventStore;
use sqlx::PgPool;

/// Shared by every request: the read-model pool, the event store and the request limits.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub store: Arc<EventStore>,
    pub limits: Limits,
}

/// Sizes an operator may tune.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest ingest body accepted, in bytes.
    pub ingest_max_bytes: usize,
}

impl AppState {
    /// Wires the event store to `pool`.
    pub fn new(pool: PgPool, limits: Limits) -> Self {
        Self {
            store: Arc::new(EventStore::postgres(pool.clone())),
            pool,
            limits,
        }
    }
}
