//! What every handler shares.

use std::sync::Arc;

use projections::EventStore;
use sqlx::PgPool;

/// Shared by every request: the read-model pool, the event store and the request limits.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// For operational writes that need no disk flush per commit (see `projections::connect_relaxed`).
    pub relaxed_pool: PgPool,
    pub store: Arc<EventStore>,
    pub limits: Limits,
    pub usage: Arc<crate::usage::Usage>,
    pub azure: Arc<crate::azure::AzureRuntime>,
}

/// Sizes an operator may tune.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest ingest body accepted, in bytes.
    pub ingest_max_bytes: usize,
    /// Requests per minute for keys without a limit of their own, and per organization for org-id callers.
    pub rate_limit_per_minute: u32,
    /// Days the delivery log keeps a delivery.
    pub delivery_log_days: u32,
}

impl AppState {
    /// Wires the event store to `pool`.
    pub fn new(
        pool: PgPool,
        relaxed_pool: PgPool,
        limits: Limits,
        azure: crate::azure::AzureRuntime,
    ) -> Self {
        Self {
            relaxed_pool,
            store: Arc::new(EventStore::postgres(pool.clone())),
            pool,
            limits,
            usage: Arc::default(),
            azure: Arc::new(azure),
        }
    }
}
