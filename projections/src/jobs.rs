//! Background jobs that must run in one process at a time, whichever processes share the database.

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

/// A held job lock; released when [`JobLock::release`] is called or its connection closes.
pub struct JobLock {
    conn: PoolConnection<Postgres>,
    key: i64,
}

/// Takes the session advisory lock `key` if no other process holds it.
pub async fn try_lock(pool: &PgPool, key: i64) -> Result<Option<JobLock>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
    Ok(locked.then_some(JobLock { conn, key }))
}

impl JobLock {
    /// Releases the lock.
    pub async fn release(mut self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }
}
