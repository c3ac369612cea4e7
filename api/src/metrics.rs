//! `GET /metrics` (Prometheus text). The database gauges (events stored, streams missing from each read model)
//! cost a count over the event store and an anti-join per read model, so a background task computes them every
//! `LATHE_METRICS_INTERVAL_SECS` and a scrape serves the last values: scraping costs no query, however often it
//! comes. The operator may require a bearer token (`LATHE_METRICS_TOKEN`) and serve metrics on a listener of
//! their own (`LATHE_METRICS_BIND`), since they show every organization's totals.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::RwLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// The last computed database gauges; empty until the first computation ends.
#[derive(Default)]
pub struct Gauges {
    last: RwLock<Option<Snapshot>>,
}

#[derive(Clone, Default)]
struct Snapshot {
    events: Option<i64>,
    missing_streams: Option<Vec<(String, i64)>>,
}

impl Gauges {
    /// Counts the events now. A failure keeps the previous value (and is logged).
    pub async fn refresh(&self, pool: &PgPool) {
        match projections::audit::event_count(pool).await {
            Ok(events) => {
                if let Ok(mut last) = self.last.write() {
                    last.get_or_insert_with(Snapshot::default).events = Some(events);
                }
            }
            Err(error) => tracing::warn!(error = %error, "cannot count the events for /metrics"),
        }
    }

    /// Checks every read model for missing streams now: a read of the whole event store. A failure keeps the
    /// previous values (and is logged).
    pub async fn refresh_integrity(&self, pool: &PgPool) {
        match projections::replay::missing_streams(pool, &projections::Registry::standard()).await {
            Ok(missing) => {
                if let Ok(mut last) = self.last.write() {
                    last.get_or_insert_with(Snapshot::default).missing_streams = Some(missing);
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot check the read models for /metrics")
            }
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.last.read().ok().and_then(|last| last.clone())
    }
}

/// Recomputes `gauges` for as long as the process runs: the event count every `every`, the read models' missing
/// streams every `integrity_every` (each first at once).
pub fn spawn_refresher(
    gauges: std::sync::Arc<Gauges>,
    pool: PgPool,
    every: Duration,
    integrity_every: Duration,
) {
    let (counted, counting_pool) = (gauges.clone(), pool.clone());
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            counted.refresh(&counting_pool).await;
        }
    });
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(integrity_every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            gauges.refresh_integrity(&pool).await;
        }
    });
}

/// What `GET /metrics` reads.
#[derive(Clone)]
struct MetricsState {
    app: AppState,
    token: Option<SecretString>,
}

/// The `/metrics` route, requiring `token` as a bearer token when there is one.
pub fn router(app: AppState, token: Option<SecretString>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(MetricsState { app, token })
}

async fn metrics(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.token {
        let sent = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(sent.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
            return ApiError::Unauthenticated(
                "metrics require `Authorization: Bearer <LATHE_METRICS_TOKEN>`".to_owned(),
            )
            .into_response();
        }
    }
    render(&state.app).into_response()
}

/// The Prometheus text of this process's counters and the last database gauges.
fn render(state: &AppState) -> String {
    let mut out = String::new();
    let snapshot = state.gauges.snapshot().unwrap_or_default();
    if let Some(events) = snapshot.events {
        let _ = writeln!(out, "# HELP lathe_events_total Events in the event store.");
        let _ = writeln!(out, "# TYPE lathe_events_total gauge");
        let _ = writeln!(out, "lathe_events_total {events}");
    }
    if let Some(missing_streams) = snapshot.missing_streams {
        let _ = writeln!(
            out,
            "# HELP lathe_projection_missing_streams Streams without their row in a read model."
        );
        let _ = writeln!(out, "# TYPE lathe_projection_missing_streams gauge");
        for (name, count) in missing_streams {
            let _ = writeln!(
                out,
                "lathe_projection_missing_streams{{projection=\"{name}\"}} {count}"
            );
        }
    }
    let stats = state.store.append_stats();
    let counters = [
        (
            "lathe_appends_total",
            "Commands whose events this process committed.",
            stats.appends.load(Ordering::Relaxed),
        ),
        (
            "lathe_append_batches_total",
            "Group-commit transactions of this process (appends / batches = mean batch).",
            stats.batches.load(Ordering::Relaxed),
        ),
        (
            "lathe_append_slow_batches_total",
            "Group-commit transactions that took over 250 ms to commit.",
            stats.slow_batches.load(Ordering::Relaxed),
        ),
        (
            "lathe_unauthenticated_refusals_total",
            "Requests this process refused for missing or invalid credentials.",
            state.unauthenticated.refused_total(),
        ),
        (
            "lathe_unauthenticated_rate_limited_total",
            "Of those, the ones answered 429 because their client address was over its budget.",
            state.unauthenticated.limited_total(),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP lathe_subscriptions_open GraphQL subscriptions open in this process.\n\
         # TYPE lathe_subscriptions_open gauge\nlathe_subscriptions_open {}",
        state.live.open_subscriptions()
    );
    let _ = writeln!(
        out,
        "# HELP lathe_subscription_executions Distinct subscription operations running in this process (identical \
         subscriptions of one key share one).\n\
         # TYPE lathe_subscription_executions gauge\nlathe_subscription_executions {}",
        state.shared_streams.executions()
    );
    out
}
