//! Short-lived caches of read-model lookups on the intake path (API keys, an organization's projects, a project's
//! active releases), so that a delivery does not read them from the database each time.
//!
//! An entry is used only while it is younger than its time to live and while no command on the aggregate type it
//! depends on has committed in this process since it was read ([`EventStore::generation`]). So this process sees
//! its own changes at once, and another process's within the time to live: half a second, inside the one second
//! the spec allows a revoked or expired key (expiry itself is checked against the cached time on every use).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use projections::EventStore;

/// How long an entry may be used: changes made by another process show within this time.
pub const TIME_TO_LIVE: Duration = Duration::from_millis(500);
/// Entries kept at most; past it the cache starts afresh (a flood of distinct keys cannot grow it without bound).
const MAX_ENTRIES: usize = 10_000;

/// A cache of values read from the read models of `aggregate_type`.
pub struct ReadCache<K, V> {
    aggregate_type: &'static str,
    entries: Mutex<HashMap<K, Entry<V>>>,
}

struct Entry<V> {
    value: V,
    read_at: Instant,
    generation: u64,
}

impl<K: Eq + Hash, V: Clone> ReadCache<K, V> {
    /// A cache invalidated by commands on `aggregate_type`.
    pub fn new(aggregate_type: &'static str) -> Self {
        Self {
            aggregate_type,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached value of `key`, or the one `read` returns (then cached).
    pub async fn get_or_read<E, F>(&self, store: &EventStore, key: K, read: F) -> Result<V, E>
    where
        F: std::future::Future<Output = Result<V, E>>,
    {
        // Taken before the read: a command that commits during the read makes the entry stale at once.
        let generation = store.generation(self.aggregate_type);
        if let Some(value) = self.fresh(&key, generation) {
            return Ok(value);
        }
        let value = read.await?;
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(
                key,
                Entry {
                    value: value.clone(),
                    read_at: Instant::now(),
                    generation,
                },
            );
        }
        Ok(value)
    }

    fn fresh(&self, key: &K, generation: u64) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(key)?;
        (entry.generation == generation && entry.read_at.elapsed() < TIME_TO_LIVE)
            .then(|| entry.value.clone())
    }
}
