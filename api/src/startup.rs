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
    background_jobs: bool,
}

impl Application {
    /// Creates the database if needed, migrates it, and binds the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let url = settings.database_url();
        projections::ensure_database(url).await?;
        projections::migrate(url).await?;
        let pool = projections::connect(url, settings.db_max_connections).await?;
        let relaxed_pool =
            projections::connect_relaxed(url, (settings.db_max_connections / 2).max(2)).await?;
        let listener = TcpListener::bind(settings.bind).await?;
        let sealer = settings
            .secret_key
            .as_ref()
            .map(|key| {
                crate::azure::crypto::Sealer::from_base64(secrecy::ExposeSecret::expose_secret(key))
            })
            .transpose()?;
        let azure = crate::azure::AzureRuntime {
            client: crate::azure::client::AzureClient::new(
                std::time::Duration::from_millis(settings.azure_timeout_ms),
                crate::azure::egress::Egress::new(
                    &settings.azure_server_hosts,
                    settings.azure_allow_private_addresses,
                )
                .map_err(anyhow::Error::msg)?,
            ),
            sealer,
            public_url: settings.public_url.clone(),
            backoff: std::time::Duration::from_millis(settings.azure_backoff_ms),
            max_attempts: settings.azure_max_attempts.max(1),
            // Each delivery makes at most three calls, each bounded by the timeout.
            lease: std::time::Duration::from_millis((settings.azure_timeout_ms * 4).max(5_000)),
        };
        Ok(Self {
            retention_every: std::time::Duration::from_secs(
                settings.retention_interval_secs.max(1),
            ),
            background_jobs: settings.background_jobs,
            listener,
            state: AppState::new(
                pool,
                relaxed_pool,
                Limits {
                    ingest_max_bytes: settings.ingest_max_bytes,
                    rate_limit_per_minute: settings.rate_limit_per_minute,
                    delivery_log_days: settings.delivery_log_days.max(1),
                    rate_limit_max_per_minute: settings.rate_limit_max_per_minute,
                },
                azure,
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
        // Key usage is noted by whichever process answers, so every process writes its own notes.
        crate::usage::spawn_flusher(self.state.usage.clone(), self.state.relaxed_pool.clone());
        if self.background_jobs {
            crate::retention::spawn(self.state.clone(), self.retention_every);
            crate::azure::worker::spawn(self.state.clone(), std::time::Duration::from_millis(250));
        }
        let (usage, pool) = (self.state.usage.clone(), self.state.relaxed_pool.clone());
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
