//! Short-lived caches of read-model lookups on the intake path (API keys, an organization's projects, a project's
//! active releases), so that a delivery does not read them from the database each time.
//!
//! An entry is used only while it is younger than its time to live and while no command on the aggregate type it
//! depends on has committed in this process since it was read ([`EventStore::generation`]). So this process sees
//! its own changes at once, and another process's within the time to live: half a second, inside the one second
//! the spec allows a revoked or expired key (expiry itself is checked against the cached time on every use).
//!
//! Each cache is a moka cache bounded by entry count. Its admission policy (TinyLFU) lets a new entry in only if
//! it is likely to be used more than the one it would evict, so a flood of lookups that each happen once (fake
//! keys, random organization ids) cannot push out the entries real callers use; concurrent misses for one key
//! wait for a single read.

use std::hash::Hash;
use std::time::Duration;

use moka::future::Cache;

use projections::EventStore;

use crate::error::ApiError;

/// How long an entry may be used: changes made by another process show within this time.
pub const TIME_TO_LIVE: Duration = Duration::from_millis(500);

/// A cache of values read from the read models of `aggregate_type`.
pub struct ReadCache<K, V> {
    aggregate_type: &'static str,
    entries: Cache<K, Entry<V>>,
}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    /// The aggregate type's generation when the value was read.
    generation: u64,
}

impl<K, V> ReadCache<K, V>
where
    K: Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `max_entries`, invalidated by commands on `aggregate_type`.
    pub fn new(aggregate_type: &'static str, max_entries: u64) -> Self {
        Self::with_time_to_live(aggregate_type, max_entries, TIME_TO_LIVE)
    }

    fn with_time_to_live(aggregate_type: &'static str, max_entries: u64, ttl: Duration) -> Self {
        Self {
            aggregate_type,
            entries: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The cached value of `key`, or the one `read` returns (then cached). Concurrent calls for a key that is not
    /// cached wait for one read; a failed read is not cached, and each of its waiters gets the error.
    pub async fn get_or_read<E, F>(
        &self,
        store: &EventStore,
        key: K,
        read: F,
    ) -> Result<V, ApiError>
    where
        F: std::future::Future<Output = Result<V, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        self.get_or_read_at(store.generation(self.aggregate_type), key, read)
            .await
    }

    /// [`Self::get_or_read`] against the aggregate type's `generation`, taken before the read: a command that
    /// commits during the read makes the entry stale at once.
    async fn get_or_read_at<E, F>(&self, generation: u64, key: K, read: F) -> Result<V, ApiError>
    where
        F: std::future::Future<Output = Result<V, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        if let Some(entry) = self.entries.get(&key).await {
            if entry.generation >= generation {
                return Ok(entry.value);
            }
            // Written before a command of this process: read again. Waiters that coalesce on the new read get its
            // value; the stale entry is gone before the read starts.
            self.entries.invalidate(&key).await;
        }
        self.entries
            .try_get_with(key, async move {
                read.await.map(|value| Entry { value, generation })
            })
            .await
            .map(|entry| entry.value)
            .map_err(|error| ApiError::internal(anyhow::anyhow!("{error}")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A read that counts its calls.
    fn counted(
        reads: &Arc<AtomicUsize>,
        value: u32,
    ) -> impl std::future::Future<Output = Result<u32, std::io::Error>> {
        let reads = reads.clone();
        async move {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(value)
        }
    }

    #[tokio::test]
    async fn concurrent_misses_for_one_key_make_one_read() {
        let cache = Arc::new(ReadCache::<String, u32>::with_time_to_live(
            "Test",
            100,
            Duration::from_secs(60),
        ));
        let reads = Arc::new(AtomicUsize::new(0));
        let mut lookups = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (cache, read) = (cache.clone(), counted(&reads, 7));
            lookups.spawn(async move { cache.get_or_read_at(0, "key".to_owned(), read).await });
        }
        while let Some(value) = lookups.join_next().await {
            assert!(matches!(value, Ok(Ok(7))));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_flood_of_one_time_keys_does_not_evict_an_entry_in_use() {
        let cache =
            ReadCache::<String, u32>::with_time_to_live("Test", 1_000, Duration::from_secs(600));
        let reads = Arc::new(AtomicUsize::new(0));
        let flood = Arc::new(AtomicUsize::new(0));
        // Ten fake keys, each used once, for every use of the real one: twenty times the cache's size in all.
        for n in 0..20_000 {
            if n % 10 == 0 {
                cache
                    .get_or_read_at(0, "real".to_owned(), counted(&reads, 1))
                    .await
                    .unwrap();
            }
            cache
                .get_or_read_at(0, format!("fake-{n}"), counted(&flood, 0))
                .await
                .unwrap();
        }
        cache.entries.run_pending_tasks().await;
        assert!(cache.entries.entry_count() <= 1_000, "bounded");
        cache
            .get_or_read_at(0, "real".to_owned(), counted(&reads, 1))
            .await
            .unwrap();
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "the real entry survived the flood"
        );
    }

    #[tokio::test]
    async fn a_command_of_this_process_makes_the_entry_stale_and_errors_are_not_kept() {
        let cache =
            ReadCache::<String, u32>::with_time_to_live("Test", 100, Duration::from_secs(60));
        let reads = Arc::new(AtomicUsize::new(0));
        cache
            .get_or_read_at(3, "k".to_owned(), counted(&reads, 1))
            .await
            .unwrap();
        assert_eq!(
            cache
                .get_or_read_at(3, "k".to_owned(), counted(&reads, 9))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            cache
                .get_or_read_at(4, "k".to_owned(), counted(&reads, 2))
                .await
                .unwrap(),
            2
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2);

        let failing = async { Err::<u32, _>(std::io::Error::other("database away")) };
        assert!(cache
            .get_or_read_at(0, "e".to_owned(), failing)
            .await
            .is_err());
        assert_eq!(
            cache
                .get_or_read_at(0, "e".to_owned(), counted(&reads, 5))
                .await
                .unwrap(),
            5
        );
    }
}
