//! When each API key was last used, without a database write per request: uses are noted in memory and written
//! in one statement every few seconds (and once more at shutdown).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// How often noted uses are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// Uses noted since the last flush.
#[derive(Default)]
pub struct Usage {
    pending: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl Usage {
    /// Notes that a key was used now.
    pub fn touch(&self, api_key_id: Uuid) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(api_key_id, Utc::now());
        }
    }

    /// Writes the noted uses.
    pub async fn flush(&self, pool: &PgPool) {
        let batch: Vec<(Uuid, DateTime<Utc>)> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => return,
        };
        if let Err(error) = projections::api_keys::record_usage(pool, &batch).await {
            tracing::warn!(error = %error, keys = batch.len(), "cannot record key usage; will retry");
            if let Ok(mut pending) = self.pending.lock() {
                for (id, at) in batch {
                    pending.entry(id).or_insert(at);
                }
            }
        }
    }
}

/// Flushes on an interval for as long as the service runs.
pub fn spawn_flusher(usage: std::sync::Arc<Usage>, pool: PgPool) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(FLUSH_EVERY);
        loop {
            ticker.tick().await;
            usage.flush(&pool).await;
        }
    });
}
