//! Connecting to PostgreSQL, creating the database on first run, and running the migrations.

use sqlx::migrate::MigrateDatabase;
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

/// Opens a pool whose connections find the read models first. Unlike postgres-es's `default_postgress_pool`, a
/// failure is an error, not a panic.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, DatabaseError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(DatabaseError::Connect)?
        .options([("search_path", format!("{READ_SCHEMA},public"))]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(DatabaseError::Connect)
}

/// Opens a pool for operational writes whose last moments may be lost in a crash without harm (rate-limit state,
/// the delivery log, key usage): its commits do not wait for the write-ahead log to reach disk
/// (`synchronous_commit = off`), which takes a disk flush off every request. Events never use it.
pub async fn connect_relaxed(url: &str, max_connections: u32) -> Result<PgPool, DatabaseError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(DatabaseError::Connect)?
        .options([
            ("search_path", format!("{READ_SCHEMA},public")),
            ("synchronous_commit", "off".to_owned()),
        ]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
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
