//! What every handler shares.

use std::sync::Arc;

use projections::EventStore;
use sqlx::PgPool;

/// Shared by every request: the read-model pool and the event store.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub store: Arc<EventStore>,
}

impl AppState {
    /// Wires the event store to `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            store: Arc::new(EventStore::postgres(pool.clone())),
            pool,
        }
    }
}
