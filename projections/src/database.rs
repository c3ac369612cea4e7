//! Connecting to PostgreSQL, creating the database on first run, and running the migrations.

use sqlx::migrate::MigrateDatabase;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use std::str::FromStr;
use std::time::Duration;

/// Why the database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot create the database: {0}")]
    Create(#[source] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Creates the database named in `url` if it does not exist yet, so that a fresh machine needs no manual step.
pub async fn ensure_database(url: &str) -> Result<(), DatabaseError> {
    // Validate the URL first so that a typo reports itself instead of a confusing creation failure.
    PgConnectOptions::from_str(url).map_err(DatabaseError::Connect)?;
    if !Postgres::database_exists(url)
        .await
        .map_err(DatabaseError::Connect)?
    {
        match Postgres::create_database(url).await {
            Ok(()) => tracing::info!("created the database"),
            // Another process may have created it between the check and here.
            Err(error) if is_duplicate_database(&error) => {}
            Err(error) => return Err(DatabaseError::Create(error)),
        }
    }
    Ok(())
}

fn is_duplicate_database(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "42P04")
}

/// The schema of the read models, searched before `public` (the event store) by every pooled connection.
pub const READ_SCHEMA: &str = "read";

/// A connection idle for longer than this is checked with a round trip before it is handed out.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(10);

/// Pool settings shared by both pools. sqlx checks every connection with a round trip before handing it out; a
/// connection in steady use is checked by the work it does instead (a failure there is answered 503 and retried by
/// the caller), so only one that sat idle, e.g. across a database restart, is checked first.
fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > CHECK_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// A connection a long-lived writer task keeps between its writes, instead of taking one from the pool and
/// giving it back each time (sqlx checks a connection with a round trip whenever it goes back). A connection whose
/// work failed is given up, so the next write starts on a fresh one.
pub struct HeldConnection {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
}

impl HeldConnection {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, conn: None }
    }

    /// The held connection, taken from the pool first if there is none.
    pub async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if self.conn.is_none() {
            self.conn = Some(self.pool.acquire().await?);
        }
        Ok(self.conn.as_deref_mut().expect("a connection is held"))
    }

    /// Makes the connection ready for the next write after a failed one: a transaction dropped without its commit is
    /// rolled back only when the connection is next used, and until then it holds its locks, so the rollback is
    /// sent now. A connection that cannot do that is given up.
    pub async fn recover(&mut self) {
        if let Some(conn) = self.conn.as_deref_mut() {
            if conn.ping().await.is_err() {
                self.discard();
            }
        }
    }

    /// Gives the connection up (after a failure it may be broken).
    pub fn discard(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}

/// Settings of every pooled connection:
/// - the read models are found first, then the event store (`search_path`);
/// - table pages this connection writes out of PostgreSQL's buffers (evicting them) are handed to the disk every
///   256 kB (`backend_flush_after`) instead of piling up in the kernel's cache, to be written all at once 30 s later
///   with every commit's log flush queued behind (stalls of 50-150 ms in the webhook's p99). The zero-filled blocks
///   of a table's extension are not reached by it (see docs/PERFORMANCE.md, fourth session).
fn connect_options(url: &str) -> Result<PgConnectOptions, DatabaseError> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(DatabaseError::Connect)?
        .options([
            ("search_path", format!("{READ_SCHEMA},public")),
            ("backend_flush_after", "256kB".to_owned()),
        ]))
}

/// Opens a pool whose connections find the read models first. Unlike postgres-es's `default_postgress_pool`, a
/// failure is an error, not a panic.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, DatabaseError> {
    let options = connect_options(url)?;
    pool_options(max_connections)
        .connect_with(options)
        .await
        .map_err(DatabaseError::Connect)
}

/// Opens a pool for operational writes whose last moments may be lost in a crash without harm (rate-limit state,
/// the delivery log, key usage): its commits do not wait for the write-ahead log to reach disk
/// (`synchronous_commit = off`), which takes a disk flush off every request. Events never use it.
pub async fn connect_relaxed(url: &str, max_connections: u32) -> Result<PgPool, DatabaseError> {
    let options = connect_options(url)?.options([("synchronous_commit", "off")]);
    pool_options(max_connections)
        .connect_with(options)
        .await
        .map_err(DatabaseError::Connect)
}

/// Applies every migration in `migrations/` that has not been applied yet, the event store's tables included.
///
/// Runs on a connection of its own with the default search path, so that sqlx's bookkeeping table and every
/// unqualified name in a migration stay in `public`.
pub async fn migrate(url: &str) -> Result<(), DatabaseError> {
    let mut conn = PgConnection::connect(url)
        .await
        .map_err(DatabaseError::Connect)?;
    sqlx::migrate!("../migrations").run(&mut conn).await?;
    conn.close().await.map_err(DatabaseError::Connect)?;
    Ok(())
}

/// The oldest transaction still running on the server (`pg_snapshot_xmin` of the current snapshot): every
/// transaction with a lower id has ended, so what they committed is final and nothing new appears below it.
pub async fn horizon<'c>(executor: impl sqlx::PgExecutor<'c>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        .fetch_one(executor)
        .await
}
