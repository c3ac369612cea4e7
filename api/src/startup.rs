//! Building and running the application: used by `lathe serve` and by the tests, which run it on port 0.

use tokio::net::TcpListener;

use crate::config::Settings;
use crate::router::router;
use crate::state::{AppState, Limits};

/// A bound, ready-to-run service.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    retention_every: std::time::Duration,
}

impl Application {
    /// Creates the database if needed, migrates it, and binds the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let url = settings.database_url();
        projections::ensure_database(url).await?;
        projections::migrate(url).await?;
        let pool = projections::connect(url, settings.db_max_connections).await?;
        let listener = TcpListener::bind(settings.bind).await?;
        Ok(Self {
            retention_every: std::time::Duration::from_secs(
                settings.retention_interval_secs.max(1),
            ),
            listener,
            state: AppState::new(
                pool,
                Limits {
                    ingest_max_bytes: settings.ingest_max_bytes,
                    rate_limit_per_minute: settings.rate_limit_per_minute,
                },
            ),
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or_default()
    }

    /// The shared state, for tests that inspect the database.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the process receives Ctrl-C or SIGTERM, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "listening");
        crate::usage::spawn_flusher(self.state.usage.clone(), self.state.pool.clone());
        crate::retention::spawn(self.state.clone(), self.retention_every);
        let (usage, pool) = (self.state.usage.clone(), self.state.pool.clone());
        let served = axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown_signal())
            .await;
        // Uses noted since the last flush are written before the process ends.
        usage.flush(&pool).await;
        served
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
