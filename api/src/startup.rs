//! Building and running the application: used by `lathe serve` and by the tests, which run it on port 0.

use std::time::Duration;

use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::Settings;
use crate::router::{routes, with_layers};
use crate::state::{AppState, Limits};
use crate::transport::{listener, Edge};

/// A bound, ready-to-run service.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    retention_every: std::time::Duration,
    background_jobs: bool,
    /// Set when the service terminates TLS itself.
    tls: Option<TlsAcceptor>,
    edge: Edge,
    header_read_timeout: Duration,
    /// A listener of its own for `/metrics`, when the operator asked for one.
    metrics_listener: Option<TcpListener>,
    metrics_token: Option<SecretString>,
    metrics_every: Duration,
    integrity_every: Duration,
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
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(listener::tls_acceptor(cert, key)?),
            (None, None) => None,
            _ => anyhow::bail!("TLS needs both a certificate (--tls-cert) and its key (--tls-key)"),
        };
        let metrics_listener = match settings.metrics_bind {
            Some(address) => Some(TcpListener::bind(address).await?),
            None => None,
        };
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
            tls,
            edge: Edge::from_settings(settings),
            header_read_timeout: Duration::from_secs(settings.header_read_timeout_secs.max(1)),
            metrics_listener,
            metrics_token: settings.metrics_token.clone(),
            metrics_every: Duration::from_secs(settings.metrics_interval_secs.max(1)),
            integrity_every: Duration::from_secs(settings.integrity_interval_secs.max(1)),
            state: AppState::new(
                pool,
                relaxed_pool,
                Limits {
                    ingest_max_bytes: settings.ingest_max_bytes,
                    rate_limit_per_minute: settings.rate_limit_per_minute,
                    delivery_log_days: settings.delivery_log_days.max(1),
                    graphql_max_body_bytes: settings.graphql_max_body_bytes,
                    graphql_anonymous_max_body_bytes: settings.graphql_anonymous_max_body_bytes,
                    graphql_max_fields: settings.graphql_max_fields,
                    graphql_max_cost: settings.graphql_max_cost,
                    graphql_max_response_bytes: settings.graphql_max_response_bytes,
                    unauthenticated_rate_limit_per_minute: settings
                        .unauthenticated_rate_limit_per_minute,
                    cache_max_entries: settings.cache_max_entries.max(1),
                    rate_limit_max_per_minute: settings.rate_limit_max_per_minute,
                    bulk_max_builds: settings.bulk_max_builds,
                    subscriptions_max_per_key: settings.subscriptions_max_per_key,
                    subscriptions_max_per_process: settings.subscriptions_max_per_process,
                    websocket_max_connections: settings.websocket_max_connections,
                    subscription_buffer: settings.subscription_buffer.max(1),
                    websocket_init_timeout_secs: settings.websocket_init_timeout_secs.max(1),
                    websocket_ping_interval_secs: settings.websocket_ping_interval_secs.max(1),
                    console_session_idle_minutes: settings.console_session_idle_minutes.max(1),
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

    /// The port of the separate metrics listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
            .map(|addr| addr.port())
    }

    /// Whether the service terminates TLS itself (then its address is `https://`).
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The shared state, for tests that inspect the database.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the process receives Ctrl-C or SIGTERM, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %self.listener.local_addr()?, scheme, "listening");
        // Key usage is noted by whichever process answers, so every process writes its own notes.
        crate::usage::spawn_flusher(self.state.usage.clone(), self.state.relaxed_pool.clone());
        crate::live::spawn_feed(self.state.live.clone(), self.state.pool.clone());
        if self.background_jobs {
            crate::retention::spawn(self.state.clone(), self.retention_every);
            crate::azure::worker::spawn(self.state.clone(), std::time::Duration::from_millis(250));
        }
        // Every process serves /metrics, so every process computes its gauges.
        crate::metrics::spawn_refresher(
            self.state.gauges.clone(),
            self.state.pool.clone(),
            self.metrics_every,
            self.integrity_every,
        );
        let metrics = crate::metrics::router(self.state.clone(), self.metrics_token.clone());
        let mut app = routes(self.state.clone());
        // One signal, observed by both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut metrics_served = None;
        match self.metrics_listener {
            Some(metrics_listener) => {
                tracing::info!(addr = %metrics_listener.local_addr()?, "metrics listening");
                metrics_served = Some(tokio::spawn(listener::serve(
                    metrics_listener,
                    None,
                    with_layers(metrics, &self.edge),
                    self.header_read_timeout,
                    wait_for(stopped.clone()),
                )));
            }
            None => app = app.merge(metrics),
        }
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let (usage, pool) = (self.state.usage.clone(), self.state.relaxed_pool.clone());
        listener::serve(
            self.listener,
            self.tls,
            with_layers(app, &self.edge),
            self.header_read_timeout,
            wait_for(stopped),
        )
        .await;
        if let Some(metrics_served) = metrics_served {
            let _ = metrics_served.await;
        }
        // Uses noted since the last flush are written before the process ends.
        usage.flush(&pool).await;
        Ok(())
    }
}

/// Completes when `stopped` turns true (or its sender is gone).
async fn wait_for(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stopped| *stopped).await;
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
